// model.vocab_multiple end to end through the `qisa` executable: a model whose vocab_size is
// the char corpus's rounded up trains, stores the padded vocab_size in its model file, and
// evaluates, samples (never a padding id, even at a high temperature) and resumes against the
// corpus whose vocabulary is smaller.
#include <gtest/gtest.h>

#include <sstream>
#include <nlohmann/json.hpp>

#include "io/corpus.h"
#include "io/model_file.h"
#include "test_util.h"

namespace qisa {
namespace {

using test::run_command;

std::string config(const std::string& corpus, const std::string& dir, int64_t steps) {
  return "model:\n"
         "  vocab_multiple: 64\n  block_size: 16\n  n_embd: 16\n  n_head: 2\n  n_layer: 2\n"
         "  attention: qisa\n  mask: causal\n"
         "data:\n  corpus: " + corpus + "\n"
         "train:\n  batch_size: 32\n  steps: " + std::to_string(steps) + "\n  lr: 0.01\n  seed: 7\n  threads: 1\n"
         "eval:\n  every: 0\n  windows: 50\n"
         "log:\n  every: 50\n  dir: " + dir + "\n"
         "checkpoint:\n  every_steps: 100\n";
}

TEST(VocabMultiple, PaddedModelTrainsEvaluatesSamplesAndResumes) {
  test::TempDir tmp;
  test::write_file(tmp / "text.txt", test::make_training_text(3000));
  const std::string corpus = tmp / "corpus.h5";
  auto r = run_command(test::qisa_bin() + " prepare --input " + (tmp / "text.txt") + " --out " + corpus);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const int64_t real = read_corpus_info(corpus).vocab_size;
  ASSERT_LT(real, 64);
  ASSERT_GT(real, 10);

  const std::string dir = tmp / "run", cfg = tmp / "padded.yaml";
  test::write_file(cfg, config(corpus, dir, 200));
  r = run_command(test::qisa_bin() + " train " + cfg + " train.steps=100 --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("vocab 64"), std::string::npos) << r.output;
  // resume from the step-100 checkpoint to 200 (the padded model's shape and the vocabulary match)
  r = run_command(test::qisa_bin() + " train " + cfg + " --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resum"), std::string::npos) << r.output;
  std::istringstream lines(r.output);
  nlohmann::json last;
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("{", 0) == 0 && line.find("\"ce\"") != std::string::npos) last = nlohmann::json::parse(line);
  ASSERT_FALSE(last.is_null()) << r.output;
  EXPECT_LT(last["ce"].get<double>(), 1.2) << last.dump();  // it learned (uniform: ln(real) ~ 3.2)

  // the model file stores the padded vocab_size (tok_emb and head rows) and the corpus's vocabulary
  const ModelFile mf = read_model_file(dir + "/final.h5");
  for (const auto& t : mf.params) {
    if (t.name == "tok_emb.weight" || t.name == "head.weight" || t.name == "head.bias") {
      EXPECT_EQ(t.shape[0], 64) << t.name;
    }
  }
  EXPECT_EQ(mf.vocab.size(), real);

  // eval against the corpus whose vocabulary is smaller: the same numbers as training's
  auto e = run_command(test::qisa_bin() + " eval " + dir + "/final.h5 --data " + corpus +
                       " --windows 50 --gen-prompts 4 --gen-tokens 8");
  ASSERT_EQ(e.exit_code, 0) << e.output;
  const auto j = nlohmann::json::parse(e.output);
  EXPECT_NEAR(j["ce"].get<double>(), last["ce"].get<double>(), 1e-9);
  EXPECT_TRUE(j.contains("gen_cer"));

  // sampling at a high temperature draws nearly uniformly, but never a padding id: a char
  // tokenizer decodes an id outside its vocabulary to U+FFFD
  for (const char* t : {"1", "100"}) {
    auto s = run_command(test::qisa_bin() + " sample " + dir + "/final.h5 --prompt 'the ' --tokens 400 --temperature " +
                         t + " --seed 5");
    ASSERT_EQ(s.exit_code, 0) << s.output;
    EXPECT_EQ(s.output.find("\xEF\xBF\xBD"), std::string::npos) << s.output;
    EXPECT_GT(s.output.size(), 400u);
  }
  auto p = run_command(test::qisa_bin() + " probe-leak " + dir + "/final.h5 --windows 2");
  ASSERT_EQ(p.exit_code, 0) << p.output;
  EXPECT_EQ(nlohmann::json::parse(p.output)["max_abs_delta"].get<double>(), 0.0);

  // a model file trained without padding is not the same model: resuming with another
  // vocab_multiple is refused, naming the key
  r = run_command(test::qisa_bin() + " train " + cfg + " train.steps=300 model.vocab_multiple=1 --quiet");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("model.vocab_multiple"), std::string::npos) << r.output;
}

TEST(VocabMultiple, BadValuesAreOneLineErrors) {
  test::TempDir tmp;
  test::write_file(tmp / "c.yaml", config(tmp / "missing.h5", tmp / "run", 10));
  for (const char* v : {"0", "-128"}) {
    auto r = run_command(test::qisa_bin() + " train " + (tmp / "c.yaml") + " model.vocab_multiple=" + v);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("model.vocab_multiple = " + std::string(v) + ": must be >= 1"), std::string::npos)
        << r.output;
  }
}

}  // namespace
}  // namespace qisa
