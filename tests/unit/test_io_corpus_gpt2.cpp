// qisa prepare --tokenizer gpt2 (io/corpus.h): documents encoded with GPT-2's BPE,
// <|endoftext|> between them, uint16 ids, and the tokenizer stored so that the corpus alone
// decodes its ids back to the text.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "expect_error.h"
#include "gpt2_files.h"
#include "io/bpe.h"
#include "io/corpus.h"
#include "io/gpt2_files.h"
#include "io/hdf5.h"
#include "kernels/error.h"
#include "test_util.h"

namespace qisa {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using test::expect_mentions;

std::set<std::string> entries(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

class Gpt2Corpus : public ::testing::Test {
 protected:
  test::TempDir dir;
  std::string path(const std::string& name) const { return dir / name; }
  PrepareOptions opts(std::vector<std::string> names) const {
    PrepareOptions o;
    for (auto& n : names) o.inputs.push_back(path(n));
    o.out = path("c.h5");
    o.tokenizer = "gpt2";
    o.gpt2_dir = test::gpt2_files().dir;
    return o;
  }
  // All ids of the corpus (train then val) and their text, decoded with the stored tokenizer.
  static std::vector<int32_t> all_ids(const std::string& corpus) {
    std::vector<int32_t> ids = read_split(corpus, "train");
    const std::vector<int32_t> val = read_split(corpus, "val");
    ids.insert(ids.end(), val.begin(), val.end());
    return ids;
  }
  static std::string text_of(const std::string& corpus) {
    const std::vector<int32_t> ids = all_ids(corpus);
    return make_codec(read_vocabulary(corpus))->decode(ids.data(), ids.size());
  }
};

TEST_F(Gpt2Corpus, DocumentsAreSeparatedByEndOfText) {
  QISA_REQUIRE_GPT2_FILES();
  const std::string a = "First document: naïve café, 日本語 😀.\n", b = "Second one.\n\n  trailing  ", c = "x";
  test::write_file(path("a.txt"), a);
  test::write_file(path("b.txt"), b);
  test::write_file(path("c.txt"), c);
  PrepareOptions o = opts({"a.txt", "b.txt", "c.txt"});
  o.val_fraction = 0.25;
  const PrepareResult r = prepare_corpus(o);
  EXPECT_EQ(r.vocab_size, 50257);
  EXPECT_EQ(r.documents, 3);

  const Vocabulary v = load_gpt2_vocabulary(o.gpt2_dir);
  Gpt2Bpe bpe(v.tokens, v.merges);
  std::vector<int32_t> want = bpe.encode(a);
  want.push_back(50256);
  for (int32_t id : bpe.encode(b)) want.push_back(id);
  want.push_back(50256);
  for (int32_t id : bpe.encode(c)) want.push_back(id);
  EXPECT_EQ(all_ids(o.out), want);
  const auto n_train = static_cast<int64_t>(std::floor(0.75 * static_cast<double>(want.size())));
  EXPECT_EQ(r.train_tokens, n_train);
  EXPECT_EQ(read_split(o.out, "train").size(), static_cast<size_t>(n_train));
  EXPECT_EQ(text_of(o.out), a + "<|endoftext|>" + b + "<|endoftext|>" + c);

  const CorpusInfo info = read_corpus_info(o.out);
  EXPECT_EQ(info.tokenizer, "gpt2");
  EXPECT_EQ(info.vocab_size, 50257);
  EXPECT_EQ(read_vocabulary(o.out), v);
  h5::File f(o.out, h5::File::Mode::read);
  for (const char* ds : {"/train/tokens", "/val/tokens"}) {
    h5::Handle d(H5Dopen2(f.id(), ds, H5P_DEFAULT), H5Dclose);
    h5::Handle type(H5Dget_type(d.get()), H5Tclose);
    EXPECT_GT(H5Tequal(type.get(), H5T_STD_U16LE), 0) << ds;
  }
  EXPECT_FALSE(f.exists("/tokenizer/vocab"));
}

TEST_F(Gpt2Corpus, SeparatorSplitsFilesIntoDocumentsAndEmptyOnesAreSkipped) {
  QISA_REQUIRE_GPT2_FILES();
  test::write_file(path("a.txt"), "\n\n\none\n\n\ntwo\n\n\n\n\n\nthree\n\n\n");
  test::write_file(path("b.txt"), "four");
  PrepareOptions o = opts({"a.txt", "b.txt"});
  o.doc_separator = "\n\n\n";
  o.val_fraction = 0;
  const PrepareResult r = prepare_corpus(o);
  EXPECT_EQ(r.documents, 4);
  EXPECT_EQ(text_of(o.out), "one<|endoftext|>two<|endoftext|>three<|endoftext|>four");
  const auto ids = all_ids(o.out);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 50256), 3);
}

TEST_F(Gpt2Corpus, BytesTheCharTokenizerRefusesAreFineButUtf8IsChecked) {
  QISA_REQUIRE_GPT2_FILES();
  test::write_file(path("nul.txt"), std::string("a\0b", 3));  // NUL: fine for byte-level BPE
  PrepareOptions o = opts({"nul.txt"});
  o.val_fraction = 0;
  prepare_corpus(o);
  EXPECT_EQ(text_of(o.out), std::string("a\0b", 3));
  fs::remove(o.out);
  test::write_file(path("latin1.txt"), "line one\ncaf\xE9 au lait\n");
  expect_mentions(error_of([&] { prepare_corpus(opts({"latin1.txt"})); }),
                  {path("latin1.txt"), "not valid UTF-8", "0xE9", "offset 12", "line 2"});
  EXPECT_EQ(entries(dir.path()), (std::set<std::string>{"nul.txt", "latin1.txt"}));
}

TEST_F(Gpt2Corpus, OptionErrors) {
  test::write_file(path("t.txt"), "text");
  PrepareOptions o = opts({"t.txt"});
  o.gpt2_dir = path("nowhere");
  expect_mentions(error_of([&] { prepare_corpus(o); }),
                  {path("nowhere") + "/encoder.json", "does not exist", "cluster/fetch_gpt2_bpe.sh"});
  o = opts({"t.txt"});
  o.tokenizer = "char";
  o.doc_separator = "\n";
  expect_mentions(error_of([&] { prepare_corpus(o); }), {path("c.h5"), "--doc-separator", "gpt2"});
  EXPECT_EQ(entries(dir.path()), (std::set<std::string>{"t.txt"}));
}

// A corpus whose tokenizer attribute and stored tables disagree is refused, naming it.
TEST_F(Gpt2Corpus, MismatchedStoredTokenizerIsNamed) {
  test::write_file(path("t.txt"), "abc");
  PrepareOptions o = opts({"t.txt"});
  o.tokenizer = "char";
  prepare_corpus(o);
  {
    h5::File f(o.out, h5::File::Mode::read_write);
    f.set_attr("/", "tokenizer", std::string("gpt2"));
  }
  expect_mentions(error_of([&] { read_corpus_info(o.out); }), {o.out, "'gpt2'", "/tokenizer/encoder"});
}

}  // namespace
}  // namespace qisa
