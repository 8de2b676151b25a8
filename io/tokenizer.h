// Character tokenizer (the paper's): one token per Unicode code point, ids in code-point order.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qisa {

// Decode UTF-8 into code points. Returns std::nullopt and sets *bad_offset on invalid UTF-8
// (overlong forms, surrogates, code points > U+10FFFF, truncated sequences).
std::optional<std::vector<char32_t>> decode_utf8(std::string_view text, size_t* bad_offset = nullptr);
std::string encode_utf8(char32_t cp);

// Decode the one code point that starts at text[pos] into *cp. Returns its length in bytes
// (1..4), or 0 when the bytes at pos are not valid UTF-8 (same rules as decode_utf8). Lets
// callers stream over large texts without materialising a code-point vector.
size_t decode_utf8_at(std::string_view text, size_t pos, char32_t* cp);

// Bytes -> valid UTF-8, each maximal ill-formed subsequence replaced by one U+FFFD: the
// WHATWG decoder's rule (TextDecoder, which the npm GPT-2 decoder uses), also Python's
// bytes.decode(errors="replace"). Valid input comes back unchanged.
std::string replace_invalid_utf8(std::string_view bytes);

class CharTokenizer {
 public:
  // Vocabulary from the distinct code points of `text` (must be valid UTF-8), sorted.
  static CharTokenizer from_text(std::string_view text);
  // Vocabulary from code points in any order (sorted and de-duplicated here).
  static CharTokenizer from_code_points(std::vector<char32_t> code_points);
  // From a stored vocabulary (index = id); each entry is one UTF-8 encoded code point.
  explicit CharTokenizer(std::vector<std::string> vocab);

  const std::vector<std::string>& vocab() const { return vocab_; }
  int64_t size() const { return static_cast<int64_t>(vocab_.size()); }
  // The id of a code point, or -1 when it is not in the vocabulary.
  int32_t id_of(char32_t cp) const;
  // Throws qisa::Error on characters not in the vocabulary.
  std::vector<int32_t> encode(std::string_view text) const;
  // Ids outside the vocabulary decode to U+FFFD.
  std::string decode(const std::vector<int32_t>& ids) const;

 private:
  std::vector<std::string> vocab_;
  std::vector<char32_t> code_points_;  // sorted, parallel to vocab_
};

}  // namespace qisa
