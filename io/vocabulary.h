// The tokenizer a corpus, model file or checkpoint carries, so that ids decode to text (and a
// prompt encodes) with no other file at hand; and the codec that does it.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace qisa {

struct Vocabulary {
  std::string tokenizer;            // "char" or "gpt2"; empty when a file stores none
  std::vector<std::string> tokens;  // index = id. char: one UTF-8 character each; gpt2:
                                    // encoder.json's token strings (byte-level alphabet)
  std::vector<std::string> merges;  // gpt2: vocab.bpe's merge lines "first second", by rank
  bool empty() const { return tokens.empty(); }
  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
  bool operator==(const Vocabulary&) const = default;
};

// The char tokenizer's vocabulary (file format 1 stores only the strings).
Vocabulary char_vocabulary(std::vector<std::string> tokens);

// Ids <-> text.
class TextCodec {
 public:
  virtual ~TextCodec() = default;
  // Throws qisa::Error on text the tokenizer cannot encode (char: a character outside the
  // vocabulary; any: invalid UTF-8).
  virtual std::vector<int32_t> encode(std::string_view text) = 0;
  // Always valid UTF-8: ids outside the vocabulary, and (gpt2) byte sequences that are not
  // UTF-8, e.g. a character cut at a window's edge, become U+FFFD.
  virtual std::string decode(const int32_t* ids, size_t n) const = 0;
};

// Checks the vocabulary (one-line errors naming `source`) and builds its codec.
std::unique_ptr<TextCodec> make_codec(const Vocabulary& v, const std::string& source = "the vocabulary");

}  // namespace qisa
