// Fuzz target: the char tokenizer (io/tokenizer.h) on arbitrary bytes.
//  1. The input as text: decode_utf8 and decode_utf8_at agree; valid text gives a tokenizer
//     (from_text) whose encode/decode round trip is exact; invalid text is rejected with
//     qisa::Error by from_text and by encode.
//  2. The input as a stored vocabulary (entries separated by '\n', as read from a corpus):
//     the constructor accepts it or throws qisa::Error; an accepted one round-trips its ids,
//     decodes any int32 ids (out of range: U+FFFD) to valid UTF-8, and encodes that back.
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.h"
#include "io/tokenizer.h"
#include "kernels/error.h"

namespace {

using qisa::CharTokenizer;

void as_text(std::string_view text) {
  size_t bad = 0;
  const auto cps = qisa::decode_utf8(text, &bad);
  // decode_utf8 is decode_utf8_at applied from the start.
  size_t pos = 0, n = 0;
  while (pos < text.size()) {
    char32_t cp = 0;
    const size_t len = qisa::decode_utf8_at(text, pos, &cp);
    if (len == 0) break;
    QISA_FUZZ_REQUIRE(len <= 4 && pos + len <= text.size(), "decode_utf8_at length out of range");
    QISA_FUZZ_REQUIRE(cps ? (*cps)[n] == cp : true, "decode_utf8 and decode_utf8_at disagree");
    QISA_FUZZ_REQUIRE(qisa::encode_utf8(cp) == text.substr(pos, len), "encode_utf8(decode) != bytes");
    pos += len;
    ++n;
  }
  if (!cps) {
    QISA_FUZZ_REQUIRE(pos == bad, "bad_offset is not where decoding stopped");
    bool threw = false;
    try {
      CharTokenizer::from_text(text);
    } catch (const qisa::Error&) {
      threw = true;
    }
    QISA_FUZZ_REQUIRE(threw, "from_text accepted invalid UTF-8");
    threw = false;
    try {
      CharTokenizer(std::vector<std::string>{"a"}).encode(text);
    } catch (const qisa::Error&) {
      threw = true;
    }
    QISA_FUZZ_REQUIRE(threw, "encode accepted invalid UTF-8");
    return;
  }
  QISA_FUZZ_REQUIRE(pos == text.size() && n == cps->size(), "decode_utf8 length mismatch");
  const CharTokenizer tok = CharTokenizer::from_text(text);
  const std::vector<int32_t> ids = tok.encode(text);
  QISA_FUZZ_REQUIRE(ids.size() == cps->size(), "one id per code point");
  QISA_FUZZ_REQUIRE(tok.decode(ids) == text, "decode(encode(text)) != text");
  // The stored form (what a corpus holds) gives the same tokenizer.
  const CharTokenizer stored(tok.vocab());
  QISA_FUZZ_REQUIRE(stored.encode(text) == ids, "a tokenizer rebuilt from its vocab encodes differently");
}

void as_vocab(std::string_view bytes) {
  std::vector<std::string> vocab;
  for (size_t pos = 0; pos <= bytes.size();) {
    const size_t nl = bytes.find('\n', pos);
    const size_t end = nl == std::string_view::npos ? bytes.size() : nl;
    vocab.emplace_back(bytes.substr(pos, end - pos));
    pos = end + 1;
  }
  std::optional<CharTokenizer> tok;
  try {
    tok.emplace(vocab);
  } catch (const qisa::Error&) {
    return;
  }
  std::vector<int32_t> all(static_cast<size_t>(tok->size()));
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int32_t>(i);
  const std::string text = tok->decode(all);
  QISA_FUZZ_REQUIRE(tok->encode(text) == all, "encode(decode(ids)) != ids");
  // Arbitrary ids (the input's bytes as int32): always valid UTF-8 out, and what comes out
  // encodes again (U+FFFD only when it is in the vocabulary).
  std::vector<int32_t> ids(bytes.size() / 4);
  if (!ids.empty()) std::memcpy(ids.data(), bytes.data(), ids.size() * 4);
  const std::string out = tok->decode(ids);
  QISA_FUZZ_REQUIRE(qisa::decode_utf8(out).has_value(), "decode produced invalid UTF-8");
  for (int32_t id : ids)
    if (id >= 0 && id < tok->size()) QISA_FUZZ_REQUIRE(tok->id_of(qisa::decode_utf8(tok->vocab()[id])->at(0)) == id, "id_of");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  as_text(bytes);
  as_vocab(bytes);
  return 0;
}
