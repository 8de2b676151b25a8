// Vocabularies in files (io/vocabulary.h, io/vocabulary_file.h, io/model_file.h): the gpt2
// tables round-trip through corpora' and model files' layout, old char files still read, and
// codecs refuse what they cannot decode. No GPT-2 download: a small BPE vocabulary stands in.
#include <gtest/gtest.h>

#include "expect_error.h"
#include "io/bpe.h"
#include "io/hdf5.h"
#include "io/model_file.h"
#include "io/tokenizer.h"
#include "io/vocabulary.h"
#include "io/vocabulary_file.h"
#include "kernels/error.h"
#include "test_util.h"

namespace qisa {
namespace {

using test::error_of;
using test::expect_mentions;

// A byte-level BPE vocabulary in GPT-2's format: 256 byte tokens, three merges, <|endoftext|>.
Vocabulary tiny_gpt2() {
  Vocabulary v;
  v.tokenizer = "gpt2";
  for (int b = 0; b < 256; ++b) v.tokens.push_back(encode_utf8(gpt2_byte_char(static_cast<uint8_t>(b))));
  for (const char* t : {"Ġt", "Ġth", "he", "<|endoftext|>"}) v.tokens.push_back(t);
  v.merges = {"Ġ t", "Ġt h", "h e"};
  return v;
}

TEST(Vocabulary, Gpt2TablesRoundTripAndAreChecksummed) {
  test::TempDir tmp;
  const Vocabulary v = tiny_gpt2();
  {
    h5::File f(tmp / "v.h5", h5::File::Mode::create);
    write_bpe_tables(f, v);
    f.close();
  }
  h5::File f(tmp / "v.h5", h5::File::Mode::read);
  EXPECT_EQ(read_stored_vocabulary(f), v);
  for (const char* ds : {"/tokenizer/encoder", "/tokenizer/merges"}) {
    h5::Handle d(H5Dopen2(f.id(), ds, H5P_DEFAULT), H5Dclose);
    h5::Handle dcpl(H5Dget_create_plist(d.get()), H5Pclose);
    bool fletcher = false;
    for (int i = 0; i < H5Pget_nfilters(dcpl.get()); ++i) {
      unsigned flags = 0, config = 0;
      size_t n = 0;
      fletcher |= H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &n, nullptr, 0, nullptr, &config) ==
                  H5Z_FILTER_FLETCHER32;
    }
    EXPECT_TRUE(fletcher) << ds;
  }
  // the newline form is exact only because no entry holds a newline
  Vocabulary bad = v;
  bad.tokens[5] = "a\nb";
  h5::File g(tmp / "bad.h5", h5::File::Mode::create);
  expect_mentions(error_of([&] { write_bpe_tables(g, bad); }), {"/tokenizer/encoder", "newline"});
}

TEST(Vocabulary, ModelFilesCarryEitherTokenizer) {
  test::TempDir tmp;
  for (const Vocabulary& v : {tiny_gpt2(), char_vocabulary({"\n", "a", "é"}), Vocabulary{}}) {
    ModelFile m;
    m.config_yaml = "model: {}\n";
    m.params.push_back(NamedTensor{"w", {2}, {1.0f, 2.0f}});
    m.vocab = v;
    write_model_file(tmp / "m.h5", m);
    EXPECT_EQ(read_model_file(tmp / "m.h5").vocab, v) << v.tokenizer;
  }
}

// Files written before the gpt2 tokenizer existed hold /tokenizer/vocab only: char.
TEST(Vocabulary, OldCharLayoutReadsAsChar) {
  test::TempDir tmp;
  {
    h5::File f(tmp / "old.h5", h5::File::Mode::create);
    f.write_strings("/tokenizer/vocab", {"a", "b"}, {2});
    f.close();
  }
  h5::File f(tmp / "old.h5", h5::File::Mode::read);
  EXPECT_EQ(read_stored_vocabulary(f), char_vocabulary({"a", "b"}));
  h5::File none(tmp / "none.h5", h5::File::Mode::create);
  EXPECT_TRUE(read_stored_vocabulary(none).empty());
}

TEST(Vocabulary, CodecsEncodeAndDecode) {
  auto gpt2 = make_codec(tiny_gpt2());
  const std::vector<int32_t> ids = gpt2->encode("the then");
  // "the" -> t, he ; " then" -> Ġth, e, n
  EXPECT_EQ(ids, (std::vector<int32_t>{'t', 258, 257, 'e', 'n'}));
  EXPECT_EQ(gpt2->decode(ids.data(), ids.size()), "the then");
  const std::vector<int32_t> cut = {0xC3};  // the first byte of "é" alone
  EXPECT_EQ(gpt2->decode(cut.data(), cut.size()), "\xEF\xBF\xBD");
  auto chars = make_codec(char_vocabulary({" ", "a", "b"}));
  EXPECT_EQ(chars->encode("ab a"), (std::vector<int32_t>{1, 2, 0, 1}));
  const std::vector<int32_t> out = {2, 1, 7};
  EXPECT_EQ(chars->decode(out.data(), out.size()), "ba\xEF\xBF\xBD");
}

TEST(Vocabulary, CodecErrorsNameTheSource) {
  expect_mentions(error_of([] { make_codec(Vocabulary{}, "'m.h5'"); }), {"'m.h5'", "no vocabulary"});
  Vocabulary odd = char_vocabulary({"a"});
  odd.tokenizer = "llama";
  expect_mentions(error_of([&] { make_codec(odd, "'m.h5'"); }), {"'m.h5'", "'llama'", "char, gpt2"});
  Vocabulary broken = tiny_gpt2();
  broken.merges.push_back("Ġth e");  // "Ġthe" is no token
  expect_mentions(error_of([&] { make_codec(broken, "'m.h5'"); }), {"'m.h5'", "merge 3", "'Ġthe'"});
  expect_mentions(error_of([] { make_codec(char_vocabulary({"b", "a"}), "'m.h5'"); }), {"'m.h5'", "sorted"});
}

}  // namespace
}  // namespace qisa
