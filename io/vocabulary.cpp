#include "io/vocabulary.h"

#include "io/bpe.h"
#include "io/tokenizer.h"
#include "kernels/error.h"

namespace qisa {

namespace {

class CharCodec final : public TextCodec {
 public:
  explicit CharCodec(const std::vector<std::string>& tokens) : tok_(tokens) {}
  std::vector<int32_t> encode(std::string_view text) override { return tok_.encode(text); }
  std::string decode(const int32_t* ids, size_t n) const override { return tok_.decode(std::vector<int32_t>(ids, ids + n)); }

 private:
  CharTokenizer tok_;
};

class Gpt2Codec final : public TextCodec {
 public:
  Gpt2Codec(const Vocabulary& v, const std::string& source) : bpe_(v.tokens, v.merges, source) {}
  std::vector<int32_t> encode(std::string_view text) override { return bpe_.encode(text); }
  std::string decode(const int32_t* ids, size_t n) const override { return bpe_.decode(ids, n); }

 private:
  Gpt2Bpe bpe_;
};

}  // namespace

Vocabulary char_vocabulary(std::vector<std::string> tokens) {
  Vocabulary v;
  v.tokenizer = "char";
  v.tokens = std::move(tokens);
  return v;
}

std::unique_ptr<TextCodec> make_codec(const Vocabulary& v, const std::string& source) {
  QISA_CHECK(!v.empty(), source + " holds no vocabulary to encode and decode text with",
             "use a corpus or model written by this version of qisa");
  try {
    if (v.tokenizer == "char") {
      QISA_CHECK(v.merges.empty(), "a char vocabulary has merges", "the file is corrupt: re-run qisa prepare");
      return std::make_unique<CharCodec>(v.tokens);
    }
    if (v.tokenizer == "gpt2") return std::make_unique<Gpt2Codec>(v, source);
  } catch (const Error& e) {
    if (std::string(e.what()).rfind(source, 0) == 0) throw;
    throw Error(source + ": " + e.what(), e.hint());
  }
  throw Error(source + " uses tokenizer '" + v.tokenizer + "', which this qisa does not know (known: char, gpt2)",
              "use a qisa version that knows it");
}

}  // namespace qisa
