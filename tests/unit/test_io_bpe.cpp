// GPT-2's byte-level BPE (io/bpe.h, io/gpt2_pretokenizer.h, io/gpt2_files.h): the
// pre-tokenizer against the regex's pieces, the heap merge against the reference algorithm on
// made-up vocabularies, U+FFFD decoding, and with GPT-2's own files: round trips and token ids
// equal to the npm package's encoder, run with node on the same strings.
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "expect_error.h"
#include "gpt2_files.h"
#include "io/bpe.h"
#include "io/gpt2_files.h"
#include "io/gpt2_pretokenizer.h"
#include "io/tokenizer.h"
#include "io/unicode_tables.h"
#include "kernels/error.h"
#include "test_util.h"

namespace qisa {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using test::expect_mentions;

std::vector<std::string> pieces(std::string_view text) {
  std::vector<std::string> out;
  for (auto p : gpt2_pieces(text)) out.emplace_back(p);
  return out;
}

// ------------------------------------------------------------------ pre-tokenizer

// Expected pieces are what node's String.prototype.matchAll gives for the npm package's regex.
TEST(Gpt2Pretokenizer, MatchesTheRegexPieces) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"Hello world's end", {"Hello", " world", "'s", " end"}},
      // contractions are lowercase only, and only where a match starts
      {"I'M HERE'S 'S 'sup''s", {"I", "'", "M", " HERE", "'", "S", " '", "S", " '", "sup", "''", "s"}},
      {"it'll we've you're they'd can't", {"it", "'ll", " we", "'ve", " you", "'re", " they", "'d", " can", "'t"}},
      // a whitespace run leaves its last character to the next piece when a non-space follows
      {"a   b\n\nc \t d  ", {"a", "  ", " b", "\n", "\n", "c", " \t", " d", "  "}},
      {"x\u00a0\u00a0y", {"x", "\u00a0", "\u00a0", "y"}},  // NBSP is \s but not the optional ' '
      {"tab\tsep\u0085nel\ufeffbom", {"tab", "\t", "sep", "\u0085", "nel", "\ufeff", "bom"}},  // NEL is not \s in JS
      {"1234 ½ Ⅻ ²3", {"1234", " ½", " Ⅻ", " ²3"}},
      {" !!! ?? ...\"", {" !!!", " ??", " ...\""}},
      {"e\u0301 cafe\u0301", {"e", "\u0301", " cafe", "\u0301"}},  // combining marks are not \p{L}
      {"日本語 テキスト", {"日本語", " テキスト"}},
      {"😀 😀😀 a😀", {"😀", " 😀😀", " a", "😀"}},
      {"  \n", {"  \n"}},
      {" 's", {" '", "s"}},
      {"$12.50/hr", {"$", "12", ".", "50", "/", "hr"}},
      {"x\r\ny", {"x", "\r", "\n", "y"}},
      {"", {}},
      {" ", {" "}},
      {"'", {"'"}},
  };
  for (const auto& [text, want] : cases) EXPECT_EQ(pieces(text), want) << "text: " << text;
}

TEST(Gpt2Pretokenizer, PiecesCoverTheTextExactly) {
  const std::string text = "  Mixed 'S'm 12ab!?\t\n\n  é\u0301😀 \u3000x  ";
  std::string joined;
  for (const auto& p : pieces(text)) {
    EXPECT_FALSE(p.empty());
    joined += p;
  }
  EXPECT_EQ(joined, text);
}

TEST(Gpt2Pretokenizer, CharacterClasses) {
  EXPECT_STREQ(unicode::kUnicodeVersion, "14.0.0");
  for (char32_t c : {U'a', U'Z', U'é', U'ß', U'Ω', U'ж', U'日', U'ア', U'한', U'ع', U'ש', U'न', char32_t{0x1D400}})
    EXPECT_EQ(gpt2_char_class(c), CharClass::letter) << static_cast<uint32_t>(c);
  for (char32_t c : {U'0', U'9', U'½', U'²', U'Ⅻ', U'٣', char32_t{0xFF10}, char32_t{0x1D7D9}})
    EXPECT_EQ(gpt2_char_class(c), CharClass::number) << static_cast<uint32_t>(c);
  for (char32_t c : {U'\t', U'\n', U'\v', U'\f', U'\r', U' ', char32_t{0xA0}, char32_t{0x1680}, char32_t{0x2000},
                     char32_t{0x200A}, char32_t{0x2028}, char32_t{0x2029}, char32_t{0x202F}, char32_t{0x205F},
                     char32_t{0x3000}, char32_t{0xFEFF}})
    EXPECT_EQ(gpt2_char_class(c), CharClass::space) << static_cast<uint32_t>(c);
  // U+0085 (NEL), U+180E and U+200B are \s in some engines, not in JavaScript's
  for (char32_t c : {char32_t{0x85}, char32_t{0x180E}, char32_t{0x200B}, U'\'', U'!', char32_t{0x301}, char32_t{0x93F},
                     char32_t{0x200D}, char32_t{0xFE0F}, char32_t{0x1F600}, char32_t{0}, char32_t{0x7F}, char32_t{0x10FFFF}})
    EXPECT_EQ(gpt2_char_class(c), CharClass::other) << static_cast<uint32_t>(c);
}

TEST(Gpt2Pretokenizer, InvalidUtf8NamesTheOffset) {
  expect_mentions(error_of([] { gpt2_pieces("ok \xC3(bad"); }), {"not valid UTF-8", "offset 3"});
  expect_mentions(error_of([] { gpt2_pieces("abc\xED\xA0\x80"); }), {"offset 3"});  // a surrogate
}

// ------------------------------------------------------------------ U+FFFD

TEST(Utf8Replacement, MaximalSubpartsAsTheWhatwgDecoder) {
  const std::string R = "\xEF\xBF\xBD";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"plain é 😀", "plain é 😀"},
      {"\x80", R},
      {"a\xE2\x82", "a" + R},              // truncated at the end: one
      {"\xE2\x82" "b", R + "b"},
      {"\xF0\x80\x80\x80", R + R + R + R},  // overlong: F0 80 is no prefix of anything
      {"\xED\xA0\x80", R + R + R},          // a surrogate
      {"\xC0\xAF", R + R},
      {"\xF4\x90\x80\x80", R + R + R + R},  // > U+10FFFF
      {"\xF0\x9F\x98", R},                 // a truncated emoji
      {"\xF0\x9F\x98" "x\xF0\x9F\x98\x80", R + "x😀"},
      {"\xFF\xFE", R + R},
      {std::string("\0a", 2), std::string("\0a", 2)},
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(replace_invalid_utf8(in), want) << in;
}

// ------------------------------------------------------------------ BPE on made-up vocabularies

std::string byte_token(unsigned char b) { return encode_utf8(gpt2_byte_char(b)); }

// A vocabulary as BPE training makes one: the 256 byte tokens, then merges of existing tokens
// over `alphabet`, each forming a new token.
struct TinyVocab {
  std::vector<std::string> tokens, merges;
};
TinyVocab train_tiny(std::mt19937_64& rng, const std::string& alphabet, int n_merges) {
  TinyVocab v;
  for (int b = 0; b < 256; ++b) v.tokens.push_back(byte_token(static_cast<unsigned char>(b)));
  std::vector<std::string> usable;
  for (unsigned char c : alphabet) usable.push_back(byte_token(c));
  std::set<std::string> have(v.tokens.begin(), v.tokens.end());
  while (static_cast<int>(v.merges.size()) < n_merges) {
    const std::string& a = usable[rng() % usable.size()];
    const std::string& b = usable[rng() % usable.size()];
    if (!have.insert(a + b).second) continue;
    v.merges.push_back(a + " " + b);
    v.tokens.push_back(a + b);
    usable.push_back(a + b);
  }
  return v;
}

// OpenAI's bpe(): merge every occurrence of the lowest-ranked pair, left to right, then look again.
std::vector<int32_t> reference_bpe(const TinyVocab& v, std::string_view text) {
  std::map<std::pair<std::string, std::string>, int> rank;
  for (size_t r = 0; r < v.merges.size(); ++r) {
    const size_t sp = v.merges[r].find(' ');
    rank[{v.merges[r].substr(0, sp), v.merges[r].substr(sp + 1)}] = static_cast<int>(r);
  }
  std::map<std::string, int32_t> id;
  for (size_t i = 0; i < v.tokens.size(); ++i) id[v.tokens[i]] = static_cast<int32_t>(i);
  std::vector<int32_t> out;
  for (auto piece : gpt2_pieces(text)) {
    std::vector<std::string> word;
    for (unsigned char b : piece) word.push_back(byte_token(b));
    while (word.size() > 1) {
      int best = INT_MAX;
      for (size_t i = 0; i + 1 < word.size(); ++i)
        if (auto it = rank.find({word[i], word[i + 1]}); it != rank.end()) best = std::min(best, it->second);
      if (best == INT_MAX) break;
      const std::string first = v.merges[best].substr(0, v.merges[best].find(' '));
      const std::string second = v.merges[best].substr(v.merges[best].find(' ') + 1);
      std::vector<std::string> merged;
      for (size_t i = 0; i < word.size();) {
        if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
          merged.push_back(first + second);
          i += 2;
        } else {
          merged.push_back(word[i++]);
        }
      }
      word = merged;
    }
    for (const auto& w : word) out.push_back(id.at(w));
  }
  return out;
}

TEST(Gpt2Bpe, HeapMergeEqualsTheReferenceAlgorithm) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("QISA_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int vocab = 0; vocab < 20; ++vocab) {
    // Few letters and many merges: long words with repeats and overlaps ("aaaa", "abab").
    const std::string alphabet = vocab % 2 ? "ab" : "abc d";
    const TinyVocab v = train_tiny(rng, alphabet, 10 + vocab * 4);
    Gpt2Bpe bpe(v.tokens, v.merges);
    for (int t = 0; t < 100; ++t) {
      std::string text;
      const size_t len = 1 + rng() % 40;
      for (size_t i = 0; i < len; ++i) text += alphabet[rng() % alphabet.size()];
      const std::vector<int32_t> want = reference_bpe(v, text);
      ASSERT_EQ(bpe.encode(text), want) << "vocab " << vocab << " text '" << text << "'";
      ASSERT_EQ(bpe.encode(text), want) << "from the word cache: text '" << text << "'";
      ASSERT_EQ(bpe.decode_bytes(want.data(), want.size()), text);
    }
  }
}

TEST(Gpt2Bpe, OverlappingOccurrencesMergeLeftFirst) {
  std::mt19937_64 rng(1);
  TinyVocab v = train_tiny(rng, "a", 0);
  v.merges = {"a a"};
  v.tokens.push_back("aa");
  Gpt2Bpe bpe(v.tokens, v.merges);
  const int32_t a = 'a', aa = 256;  // tiny vocabularies list the byte tokens in byte order
  EXPECT_EQ(bpe.encode("aaa"), (std::vector<int32_t>{aa, a}));
  EXPECT_EQ(bpe.encode("aaaa"), (std::vector<int32_t>{aa, aa}));
  EXPECT_EQ(bpe.encode("aaaaa"), (std::vector<int32_t>{aa, aa, a}));
}

TEST(Gpt2Bpe, RejectsInconsistentVocabularies) {
  TinyVocab v;
  for (int b = 0; b < 256; ++b) v.tokens.push_back(byte_token(static_cast<unsigned char>(b)));
  v.tokens.push_back("ab");
  v.tokens.push_back("abc");
  v.merges = {"a b", "ab c"};
  EXPECT_NO_THROW(Gpt2Bpe(v.tokens, v.merges, "v"));

  TinyVocab order = v;
  std::swap(order.merges[0], order.merges[1]);  // "ab c" before "ab" exists
  expect_mentions(error_of([&] { Gpt2Bpe(order.tokens, order.merges, "v"); }), {"v: merge 0", "'ab c'", "before"});
  TinyVocab missing = v;
  missing.tokens.erase(missing.tokens.begin() + 'x');  // the byte 'x' has no token
  expect_mentions(error_of([&] { Gpt2Bpe(missing.tokens, missing.merges, "v"); }), {"no token for byte 120"});
  TinyVocab bad_line = v;
  bad_line.merges[1] = "ab  c";
  expect_mentions(error_of([&] { Gpt2Bpe(bad_line.tokens, bad_line.merges, "v"); }), {"merge 1", "one space"});
  TinyVocab unknown = v;
  unknown.merges.push_back("abc abc");
  expect_mentions(error_of([&] { Gpt2Bpe(unknown.tokens, unknown.merges, "v"); }), {"merge 2", "'abcabc' is not a token"});
  TinyVocab twice = v;
  twice.tokens.push_back("ab");
  expect_mentions(error_of([&] { Gpt2Bpe(twice.tokens, twice.merges, "v"); }), {"token 258", "twice"});
  TinyVocab alien = v;
  alien.tokens.push_back("a b");  // a space is no byte-level character
  expect_mentions(error_of([&] { Gpt2Bpe(alien.tokens, alien.merges, "v"); }), {"token 258", "byte-level alphabet"});
}

// ------------------------------------------------------------------ GPT-2's vocabulary

class Gpt2 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (test::gpt2_files().error.empty() && test::gpt2_files().skip_reason.empty()) {
      vocab_ = new Vocabulary(load_gpt2_vocabulary(test::gpt2_files().dir));
      bpe_ = new Gpt2Bpe(vocab_->tokens, vocab_->merges);
    }
  }
  static void TearDownTestSuite() {
    delete bpe_;
    delete vocab_;
  }
  static Vocabulary* vocab_;
  static Gpt2Bpe* bpe_;
};
Vocabulary* Gpt2::vocab_ = nullptr;
Gpt2Bpe* Gpt2::bpe_ = nullptr;

// Text that trips up pre-tokenizers and byte handling.
std::vector<std::string> tricky_texts() {
  return {
      "Hello, world! It's 3:45pm — naïve café; 'QUOTED' He'S I'M we'LL they'RE",
      "emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇩🇪🇯🇵 keycap 1️⃣ ❤️",
      "combining: e\u0301 a\u0308\u0323 Z\u0351\u0360\u0361 n\u0303o",
      "日本語のテキスト、中文文本。한국어 텍스트",
      "a  b   c\t\td\n\n\ne \r\n trailing   ",
      "   leading spaces",
      "\n",
      " ",
      "\t \t",
      "ends with newlines\n\n",
      "ends with a space ",
      "1234567890 3.14159 1,000,000 ½ ² Ⅻ ٣٤٥ ０１２",
      "!!! ??? ...--- ((())) \"quoted\" <|endoftext|> ~~~ @#$%^&*",
      "x\u00a0y\u2003z\ufeffw\u0085v\u2028u\u3000t",
      "مرحبا بالعالم שלום नमस्ते",
      "𝐀𝐁𝐂 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛",
      "\x01\x02\x7f controls",
      std::string("nul\0inside", 10),
      "can't won't shouldn't y'all 'tis '' ' ''s",
  };
}

TEST_F(Gpt2, KnownIds) {
  QISA_REQUIRE_GPT2_FILES();
  EXPECT_EQ(bpe_->size(), 50257);
  EXPECT_EQ(bpe_->end_of_text(), Gpt2Bpe::kEndOfText);
  EXPECT_EQ(bpe_->encode("Hello world"), (std::vector<int32_t>{15496, 995}));
  EXPECT_EQ(bpe_->encode(" Hello"), (std::vector<int32_t>{18435}));
  // the special token's text is ordinary text, as in the npm encoder
  EXPECT_EQ(bpe_->encode("<|endoftext|>"), (std::vector<int32_t>{27, 91, 437, 1659, 5239, 91, 29}));
  const int32_t eot = Gpt2Bpe::kEndOfText;
  EXPECT_EQ(bpe_->decode(&eot, 1), "<|endoftext|>");
}

TEST_F(Gpt2, RoundTripsTrickyText) {
  QISA_REQUIRE_GPT2_FILES();
  for (const auto& t : tricky_texts()) {
    const std::vector<int32_t> ids = bpe_->encode(t);
    EXPECT_EQ(bpe_->decode(ids.data(), ids.size()), t) << t;
    for (int32_t id : ids) EXPECT_TRUE(id >= 0 && id < 50257 && id != Gpt2Bpe::kEndOfText);
  }
}

TEST_F(Gpt2, DecodeReplacesCutCharactersAndUnknownIds) {
  QISA_REQUIRE_GPT2_FILES();
  const std::vector<int32_t> ids = bpe_->encode("😀");  // 4 bytes, more than one token
  ASSERT_GT(ids.size(), 1u);
  EXPECT_EQ(bpe_->decode(ids.data(), ids.size()), "😀");
  EXPECT_EQ(bpe_->decode(ids.data(), 1), "\xEF\xBF\xBD");
  const std::vector<int32_t> bad = {15496, 50257, -1};
  EXPECT_EQ(bpe_->decode(bad.data(), bad.size()), "Hello\xEF\xBF\xBD\xEF\xBF\xBD");
}

// Characters for random text: several of each class, all assigned before Unicode 14 (our
// tables) with categories unchanged since, so that node's newer Unicode agrees.
std::vector<std::string> fuzz_alphabet() {
  std::vector<std::string> a;
  for (char c = 0x20; c < 0x7F; ++c) a.emplace_back(1, c);
  for (const char* s : {"a", "e", "t", "s", " ", " ", " ", " ", "'", "'s", "'S", "'ll", "'re", "'d", "\n", "\n\n", "\t",
                        "\r\n", "  ", "   "})
    for (int k = 0; k < 3; ++k) a.emplace_back(s);
  for (const char* s : {"\u00a0", "\u2003", "\u3000", "\ufeff", "\u0085", "\u2028", "\v", "\f", "é", "ß", "Ω", "ж", "日",
                        "本", "ア", "한", "ع", "ש", "न", "𝐀", "\u0301", "\u0308", "\u093F", "\ufe0f", "٣", "½", "²",
                        "Ⅻ", "０", "𝟙", "😀", "👍", "🏽", "\u200d", "🇩", "€", "©", "™", "—", "“", "”", "…", "\x01",
                        "\x7f", "0", "7", "42"})
    a.emplace_back(s);
  return a;
}

TEST_F(Gpt2, IdsEqualTheNpmEncoderRunByNode) {
  QISA_REQUIRE_GPT2_FILES();
  QISA_REQUIRE_NODE();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("QISA_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::vector<std::string> texts = tricky_texts();
  const std::vector<std::string> alphabet = fuzz_alphabet();
  for (int i = 0; i < 400; ++i) {
    std::string t;
    const size_t len = 1 + rng() % (i < 390 ? 60 : 4000);
    for (size_t k = 0; k < len; ++k) t += alphabet[rng() % alphabet.size()];
    texts.push_back(t);
  }
  // Id sequences to decode: random ids (after an ASCII one, so that no BOM leads: TextDecoder
  // drops a leading BOM, we keep it), and byte tokens that do not form UTF-8.
  std::vector<std::vector<int32_t>> id_lists;
  for (int i = 0; i < 300; ++i) {
    std::vector<int32_t> ids{87};  // "x"
    const size_t len = 1 + rng() % 12;
    for (size_t k = 0; k < len; ++k)
      ids.push_back(i % 2 ? static_cast<int32_t>(rng() % 50257) : static_cast<int32_t>(rng() % 256));
    id_lists.push_back(ids);
  }
  test::TempDir tmp;
  test::write_file(tmp / "in.json", nlohmann::json{{"texts", texts}, {"ids", id_lists}}.dump());
  test::write_file(tmp / "run.js",
                   "const fs = require('fs');\n"
                   "const enc = require(process.argv[2] + '/Encoder.js');\n"
                   "const input = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));\n"
                   "fs.writeFileSync(process.argv[4], JSON.stringify({\n"
                   "  encoded: input.texts.map(t => enc.encode(t)),\n"
                   "  decoded: input.ids.map(ids => enc.decode(ids))}));\n");
  const auto r = test::run_command("node " + (tmp / "run.js") + " " + test::gpt2_files().dir + " " + (tmp / "in.json") +
                                   " " + (tmp / "out.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json out = nlohmann::json::parse(test::read_file(tmp / "out.json"));
  ASSERT_EQ(out["encoded"].size(), texts.size());
  size_t total = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto want = out["encoded"][i].get<std::vector<int32_t>>();
    ASSERT_EQ(bpe_->encode(texts[i]), want) << "text " << i << ": " << nlohmann::json(texts[i]).dump();
    total += want.size();
  }
  EXPECT_GT(total, 20000u);
  for (size_t i = 0; i < id_lists.size(); ++i)
    ASSERT_EQ(bpe_->decode(id_lists[i].data(), id_lists[i].size()), out["decoded"][i].get<std::string>())
        << "ids " << nlohmann::json(id_lists[i]).dump();
}

TEST_F(Gpt2, DamagedFilesAreNamed) {
  QISA_REQUIRE_GPT2_FILES();
  test::TempDir tmp;
  const std::string dir = test::gpt2_files().dir;
  expect_mentions(error_of([&] { load_gpt2_vocabulary(tmp.path()); }),
                  {tmp / "encoder.json", "does not exist", "fetch_gpt2_bpe.sh"});
  fs::copy_file(dir + "/encoder.json", tmp / "encoder.json");
  const std::string merges = test::read_file(dir + "/vocab.bpe");
  test::write_file(tmp / "vocab.bpe", merges.substr(0, merges.size() / 2));  // cut mid-line
  expect_mentions(error_of([&] { load_gpt2_vocabulary(tmp.path()); }), {tmp / "vocab.bpe", "newline"});
  test::write_file(tmp / "vocab.bpe", merges.substr(0, merges.rfind('\n', merges.size() / 2) + 1));
  expect_mentions(error_of([&] { load_gpt2_vocabulary(tmp.path()); }), {tmp / "vocab.bpe", "merges", "50000"});
  test::write_file(tmp / "vocab.bpe", merges);
  test::write_file(tmp / "encoder.json", "{\"a\": 0, \"b\": 0}");
  expect_mentions(error_of([&] { load_gpt2_vocabulary(tmp.path()); }), {tmp / "encoder.json", "id 0", "two tokens"});
  test::write_file(tmp / "encoder.json", "{\"a\": 0");
  expect_mentions(error_of([&] { load_gpt2_vocabulary(tmp.path()); }), {tmp / "encoder.json", "not valid JSON"});
  fs::copy_file(dir + "/encoder.json", tmp / "encoder.json", fs::copy_options::overwrite_existing);
  EXPECT_EQ(load_gpt2_vocabulary(tmp.path()), *vocab_);
}

}  // namespace
}  // namespace qisa
