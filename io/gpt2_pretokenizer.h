// GPT-2's pre-tokenizer: splits text into the pieces that byte-level BPE (io/bpe.h) encodes one
// at a time. A hand-written matcher for the regex of OpenAI's encoder exactly as the npm
// package gpt-3-encoder runs it (JavaScript, flags /gu):
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// with \p{L}, \p{N} and JavaScript's \s from io/unicode_tables.h (U+0085 is not \s there,
// U+FEFF is). Contractions are lowercase only: "'S" is "'" then "S". No regex library: the
// alternatives are tried in order at each position, which is all the regex does.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace qisa {

enum class CharClass : uint8_t { other, letter, number, space };
// The class of a code point in the regex: \p{L}, \p{N}, JavaScript's \s, or anything else.
CharClass gpt2_char_class(char32_t cp);

class Gpt2Pretokenizer {
 public:
  explicit Gpt2Pretokenizer(std::string_view text) : text_(text) {}
  // The next piece (a view into the text), or false at the end. Throws qisa::Error naming the
  // byte offset when the text is not valid UTF-8.
  bool next(std::string_view* piece);

 private:
  // Decodes the code point at pos into *cp and *cls; returns its length in bytes.
  size_t read(size_t pos, char32_t* cp, CharClass* cls) const;
  // End of the run of class `cls` that starts at pos.
  size_t run_end(size_t pos, CharClass cls) const;

  std::string_view text_;
  size_t pos_ = 0;
};

// All pieces of `text` (for tests and tools; the encoder streams through Gpt2Pretokenizer).
std::vector<std::string_view> gpt2_pieces(std::string_view text);

}  // namespace qisa
