// Strict UTF-8 decoding and the char tokenizer.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "io/tokenizer.h"
#include "kernels/error.h"

namespace qisa {
namespace {

// Offset of the first invalid byte, or -1 when `bytes` is valid UTF-8.
long bad_at(const std::string& bytes) {
  size_t off = 12345;
  return decode_utf8(bytes, &off) ? -1 : static_cast<long>(off);
}

TEST(Utf8, DecodesOneToFourByteForms) {
  auto cps = decode_utf8("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");  // a é € 😀
  ASSERT_TRUE(cps);
  EXPECT_EQ(*cps, (std::vector<char32_t>{U'a', 0xE9, 0x20AC, 0x1F600}));
  EXPECT_TRUE(decode_utf8("")->empty());
}

TEST(Utf8, BoundaryCodePointsAreValid) {
  for (char32_t cp : {0x0u, 0x7Fu, 0x80u, 0x7FFu, 0x800u, 0xD7FFu, 0xE000u, 0xFFFDu, 0xFFFFu, 0x10000u, 0x10FFFFu}) {
    SCOPED_TRACE(static_cast<uint32_t>(cp));
    auto cps = decode_utf8(encode_utf8(cp));
    ASSERT_TRUE(cps);
    ASSERT_EQ(cps->size(), 1u);
    EXPECT_EQ((*cps)[0], cp);
  }
}

TEST(Utf8, RejectsOverlongForms) {
  EXPECT_EQ(bad_at("\xC0\x80"), 0);          // U+0000 in two bytes
  EXPECT_EQ(bad_at("\xC1\xBF"), 0);          // U+007F in two bytes
  EXPECT_EQ(bad_at("ab\xE0\x80\x80"), 2);    // U+0000 in three bytes
  EXPECT_EQ(bad_at("\xE0\x9F\xBF"), 0);      // U+07FF in three bytes
  EXPECT_EQ(bad_at("\xF0\x80\x80\x80"), 0);  // U+0000 in four bytes
  EXPECT_EQ(bad_at("\xF0\x8F\xBF\xBF"), 0);  // U+FFFF in four bytes
}

TEST(Utf8, RejectsSurrogatesAndBeyondUnicode) {
  EXPECT_EQ(bad_at("x\xED\xA0\x80"), 1);  // U+D800
  EXPECT_EQ(bad_at("\xED\xBF\xBF"), 0);   // U+DFFF
  EXPECT_EQ(bad_at("\xED\x9F\xBF"), -1);  // U+D7FF is fine
  EXPECT_EQ(bad_at("\xF4\x90\x80\x80"), 0);  // U+110000
  EXPECT_EQ(bad_at("\xF4\x8F\xBF\xBF"), -1);  // U+10FFFF is fine
  for (int lead = 0xF5; lead <= 0xFF; ++lead) EXPECT_EQ(bad_at(std::string(1, static_cast<char>(lead)) + "\x80\x80\x80"), 0);
}

TEST(Utf8, RejectsTruncatedAndStrayBytes) {
  EXPECT_EQ(bad_at("abc\xE2\x82"), 3);       // truncated at the end
  EXPECT_EQ(bad_at("\xE2\x82" "a"), 0);      // continuation missing in the middle
  EXPECT_EQ(bad_at("\xF0\x9F\x98"), 0);
  EXPECT_EQ(bad_at("\xC3"), 0);
  EXPECT_EQ(bad_at("ok\x80"), 2);            // stray continuation byte
  EXPECT_EQ(bad_at("\xC3\xA9\xC3\xA9\xFF"), 4);  // offset counts bytes, not characters
}

// Every two-byte string is valid exactly when it is two ASCII bytes or the encoding of a code
// point in [U+0080, U+07FF]; checked exhaustively against encode_utf8.
TEST(Utf8, AllTwoByteStringsMatchTheEncoder) {
  std::set<std::string> valid;
  for (char32_t cp = 0x80; cp <= 0x7FF; ++cp) valid.insert(encode_utf8(cp));
  for (int a = 0; a < 256; ++a)
    for (int b = 0; b < 256; ++b) {
      const std::string s{static_cast<char>(a), static_cast<char>(b)};
      const bool want = (a < 0x80 && b < 0x80) || valid.count(s);
      ASSERT_EQ(decode_utf8(s).has_value(), want) << std::hex << a << " " << b;
    }
}

// Every scalar value encodes and decodes back to itself, with the expected length.
TEST(Utf8, EveryScalarValueRoundTrips) {
  for (char32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    const std::string s = encode_utf8(cp);
    const size_t want_len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    char32_t got = 0;
    ASSERT_EQ(s.size(), want_len) << static_cast<uint32_t>(cp);
    ASSERT_EQ(decode_utf8_at(s, 0, &got), want_len) << static_cast<uint32_t>(cp);
    ASSERT_EQ(got, cp);
  }
  EXPECT_THROW(encode_utf8(0xD800), Error);
  EXPECT_THROW(encode_utf8(0x110000), Error);
}

TEST(CharTokenizer, VocabularyIsSortedByCodePoint) {
  const std::string text = "zé a\n€b😀aé";
  CharTokenizer tok = CharTokenizer::from_text(text);
  EXPECT_EQ(tok.vocab(), (std::vector<std::string>{"\n", " ", "a", "b", "z", "é", "€", "😀"}));
  EXPECT_EQ(tok.size(), 8);
  EXPECT_EQ(tok.id_of(U'a'), 2);
  EXPECT_EQ(tok.id_of(0x1F600), 7);
  EXPECT_EQ(tok.id_of(U'q'), -1);
}

TEST(CharTokenizer, EncodeDecodeRoundTrip) {
  const std::string text = "Ünïcödé text, ✓ and 😀.\n";
  CharTokenizer tok = CharTokenizer::from_text(text);
  const auto ids = tok.encode(text);
  EXPECT_EQ(ids.size(), decode_utf8(text)->size());
  EXPECT_EQ(tok.decode(ids), text);
  // The same vocabulary loaded from its strings behaves identically.
  CharTokenizer again(tok.vocab());
  EXPECT_EQ(again.encode(text), ids);
}

TEST(CharTokenizer, UnknownCharacterAndBadIds) {
  CharTokenizer tok = CharTokenizer::from_text("abc");
  try {
    tok.encode("abxc");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("U+0078 'x'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("offset 2"), std::string::npos) << e.what();
  }
  EXPECT_EQ(tok.decode({0, 7, -1, 2}), "a\xEF\xBF\xBD\xEF\xBF\xBD" "c");
  EXPECT_THROW(tok.encode("a\xFF"), Error);
}

TEST(CharTokenizer, RejectsBadStoredVocabularies) {
  EXPECT_THROW(CharTokenizer({"b", "a"}), Error);   // not sorted
  EXPECT_THROW(CharTokenizer({"a", "a"}), Error);   // duplicate
  EXPECT_THROW(CharTokenizer({"ab"}), Error);       // two characters
  EXPECT_THROW(CharTokenizer({""}), Error);         // none
  EXPECT_THROW(CharTokenizer({"\xFF"}), Error);     // not UTF-8
  EXPECT_NO_THROW(CharTokenizer({"a", "é"}));
}

TEST(CharTokenizer, FromTextRejectsInvalidUtf8WithOffset) {
  try {
    CharTokenizer::from_text("hello\xC0\x80");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("offset 5"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qisa
