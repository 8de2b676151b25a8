// A bad corpus ends `qisa train` at start, before anything is written: a config naming a
// missing corpus, a truncated corpus file, token ids beyond vocab_size (found through the
// max_id attribute, or by a scan when a corpus has none). One line naming the config key, the
// file and what is wrong, with a hint; exit status 1; no run directory, no checkpoint.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "io/corpus.h"
#include "io/hdf5.h"
#include "expect_error.h"
#include "test_util.h"

namespace qisa {
namespace {

namespace fs = std::filesystem;
using test::run_command;

class LoadErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_file(tmp / "text.txt", test::make_training_text(400));
    auto r = run_command(test::qisa_bin() + " prepare --input " + (tmp / "text.txt") + " --out " + good());
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  std::string good() const { return tmp / "corpus.h5"; }
  std::string run_dir() const { return tmp / "run"; }

  test::CommandResult train(const std::string& corpus) {
    const std::string cfg = tmp / "c.yaml";
    test::write_file(cfg, "model:\n  block_size: 8\n  n_embd: 8\n  n_layer: 1\n"
                          "data:\n  corpus: " + corpus + "\n"
                          "train:\n  batch_size: 8\n  steps: 20\n  threads: 1\n"
                          "log:\n  dir: " + run_dir() + "\n");
    return run_command(test::qisa_bin() + " train --quiet " + cfg);
  }

  // Exit 1, one line "qisa: error: <config>: data.corpus = '<corpus>': ...; hint: ..." that
  // mentions every needle, and nothing written.
  void expect_failed_at_start(const test::CommandResult& r, const std::string& corpus,
                              std::initializer_list<std::string> needles) {
    EXPECT_EQ(r.exit_code, 1) << r.output;
    std::istringstream in(r.output);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);)
      if (!l.empty()) lines.push_back(l);
    ASSERT_EQ(lines.size(), 1u) << r.output;
    const std::string& line = lines[0];
    EXPECT_EQ(line.rfind("qisa: error: " + (tmp / "c.yaml") + ": data.corpus = '" + corpus + "'", 0), 0u) << line;
    EXPECT_NE(line.find("; hint: "), std::string::npos) << line;
    for (const auto& n : needles) EXPECT_NE(line.find(n), std::string::npos) << "'" << n << "' not in: " << line;
    EXPECT_FALSE(fs::exists(run_dir())) << "something was written before the corpus was checked";
  }

  test::TempDir tmp;
};

TEST_F(LoadErrors, MissingCorpus) {
  const std::string missing = tmp / "nowhere/corpus.h5";
  expect_failed_at_start(train(missing), missing, {"does not exist", "qisa prepare"});
}

TEST_F(LoadErrors, TruncatedCorpus) {
  const std::string cut = tmp / "cut.h5";
  fs::copy_file(good(), cut);
  fs::resize_file(cut, fs::file_size(cut) / 2);
  expect_failed_at_start(train(cut), cut, {"truncated", "qisa prepare"});
}

// Written with the HDF5 layer as another tool might: no max_id attribute, so the split is scanned.
TEST_F(LoadErrors, TokenIdBeyondVocabSizeFoundByTheScan) {
  const std::string bad = tmp / "bad_ids.h5";
  {
    h5::File f(bad, h5::File::Mode::create);
    f.set_attr("/", "format_version", int64_t{1});
    f.set_attr("/", "vocab_size", int64_t{5});
    f.set_attr("/", "tokenizer", std::string("char"));
    f.write_strings("/tokenizer/vocab", {"a", "b", "c", "d", "e"}, {5});
    std::vector<uint16_t> ids(5000);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<uint16_t>(i % 5);
    f.write("/val/tokens", ids.data(), {ids.size()});
    ids[4321] = 7;
    f.write("/train/tokens", ids.data(), {ids.size()});
    f.close();
  }
  expect_failed_at_start(train(bad), bad, {"/train/tokens", "token id 7", "position 4321", "vocab_size is 5", "qisa prepare"});
}

// A prepared corpus whose vocabulary was swapped for a smaller one: the max_id attribute that
// qisa prepare stored gives it away without reading the split.
TEST_F(LoadErrors, TokenIdBeyondVocabSizeFoundByTheMaxIdAttribute) {
  const std::string bad = tmp / "small_vocab.h5";
  fs::copy_file(good(), bad);
  {
    h5::File f(bad, h5::File::Mode::read_write);
    std::vector<std::string> vocab = f.read_strings("/tokenizer/vocab");
    vocab.resize(5);
    ASSERT_GE(H5Ldelete(f.id(), "/tokenizer/vocab", H5P_DEFAULT), 0);
    f.write_strings("/tokenizer/vocab", vocab, {5});
    ASSERT_GE(H5Adelete(f.id(), "vocab_size"), 0);
    f.set_attr("/", "vocab_size", int64_t{5});
    f.close();
  }
  expect_failed_at_start(train(bad), bad, {"/train/tokens", "token ids up to", "attribute max_id", "vocab_size is 5"});
}

// Every reader names the kind of file it found and the kind it expected (issue 17 A.5): a
// model where a corpus belongs, a corpus where a model or a checkpoint belongs; and the hint
// never suggests writing a corpus over the file given. A corpus of another vocabulary is
// refused by probe-leak as by eval.
TEST_F(LoadErrors, AFileOfTheWrongKindIsNamedWithTheKindExpected) {
  ASSERT_EQ(train(good()).exit_code, 0);
  const std::string model = run_dir() + "/final.h5";
  const std::string ckpt = run_dir() + "/checkpoints/ckpt_00000020.h5";
  ASSERT_TRUE(fs::exists(model) && fs::exists(ckpt));
  fs::rename(run_dir(), tmp / "trained");
  const std::string m = tmp / "trained/final.h5", c = tmp / "trained/checkpoints/ckpt_00000020.h5";
  auto as_corpus = train(m);
  expect_failed_at_start(as_corpus, m, {"is a qisa model file (the final.h5 of qisa train), not a qisa corpus"});
  EXPECT_EQ(as_corpus.output.find("--out " + m), std::string::npos) << as_corpus.output;
  expect_failed_at_start(train(c), c, {"is a qisa checkpoint", "not a qisa corpus"});
  auto eval_corpus = run_command(test::qisa_bin() + " eval " + good() + " --data " + good());
  EXPECT_EQ(eval_corpus.exit_code, 1);
  test::expect_mentions(eval_corpus.output, {"'" + good() + "' is a qisa corpus (written by qisa prepare), not a qisa model file"});
  auto inspect_corpus = run_command(test::qisa_bin() + " inspect " + good());
  EXPECT_EQ(inspect_corpus.exit_code, 1);
  test::expect_mentions(inspect_corpus.output, {"is a qisa corpus", "not a qisa checkpoint"});
  auto eval_data_model = run_command(test::qisa_bin() + " eval " + m + " --data " + m);
  EXPECT_EQ(eval_data_model.exit_code, 1);
  test::expect_mentions(eval_data_model.output, {"is a qisa model file", "not a qisa corpus"});
  // another vocabulary: a corpus of other text
  test::write_file(tmp / "other.txt", std::string(2000, 'x') + "yz\n");
  ASSERT_EQ(run_command(test::qisa_bin() + " prepare --input " + (tmp / "other.txt") + " --out " + (tmp / "other.h5")).exit_code, 0);
  for (const std::string cmd : {" probe-leak ", " eval "}) {
    auto r = run_command(test::qisa_bin() + cmd + m + " --data " + (tmp / "other.h5"));
    EXPECT_EQ(r.exit_code, 1) << cmd << r.output;
    test::expect_mentions(r.output, {"corpus '" + (tmp / "other.h5") + "' has vocab_size", "the corpus the model was trained on"});
  }
}

}  // namespace
}  // namespace qisa
