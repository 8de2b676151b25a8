// End to end with GPT-2's tokenizer through the `qisa` executable: prepare a gpt2 corpus from
// text the test writes, train, evaluate (CER/WER decode byte-level ids), sample with a prompt
// the stored tokenizer encodes; and import llm.c / nanoGPT token files through the CLI.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "gpt2_files.h"
#include "test_util.h"

namespace qisa {
namespace {

using test::run_command;

std::string gpt2_dir_flag() { return " --gpt2-dir " + test::gpt2_files().dir; }

TEST(Gpt2EndToEnd, PrepareTrainEvalSample) {
  QISA_REQUIRE_GPT2_FILES();
  test::TempDir tmp;
  // Two documents of templated sentences, "\n\n\n" between them inside one file.
  const std::string text = test::make_training_text(1500) + "\n\n\n" + test::make_training_text(1500);
  test::write_file(tmp / "text.txt", text);
  const std::string corpus = tmp / "corpus.h5";
  auto p = run_command(test::qisa_bin() + " prepare --tokenizer gpt2 --doc-separator '\\n\\n\\n' --input " +
                       (tmp / "text.txt") + " --out " + corpus + gpt2_dir_flag());
  ASSERT_EQ(p.exit_code, 0) << p.output;
  EXPECT_NE(p.output.find("vocab_size 50257"), std::string::npos) << p.output;
  EXPECT_NE(p.output.find("2 documents"), std::string::npos) << p.output;

  const std::string run = tmp / "run";
  test::write_file(tmp / "c.yaml",
                   "model:\n  block_size: 16\n  n_embd: 16\n  n_head: 2\n  n_layer: 1\n  attention: csa\n  mask: causal\n"
                   "data:\n  corpus: " + corpus + "\n"
                   "train:\n  batch_size: 32\n  steps: 120\n  lr: 0.01\n  seed: 7\n  threads: 1\n"
                   "eval:\n  every: 0\n  windows: 20\n"
                   "log:\n  every: 40\n  dir: " + run + "\n");
  auto t = run_command(test::qisa_bin() + " train " + (tmp / "c.yaml") + " --quiet");
  ASSERT_EQ(t.exit_code, 0) << t.output;

  // ln(50257) = 10.8 nats untrained; the templated text has a few dozen distinct tokens.
  // Measured: ce 0.97, cer 0.40, wer 0.50, gen_cer 0.72 after 120 steps.
  auto e = run_command(test::qisa_bin() + " eval " + run + "/final.h5 --data " + corpus +
                       " --windows 40 --gen-prompts 6 --gen-tokens 8");
  ASSERT_EQ(e.exit_code, 0) << e.output;
  const auto j = nlohmann::json::parse(e.output);
  EXPECT_LT(j["ce"].get<double>(), 2.5) << e.output;
  EXPECT_LT(j["cer"].get<double>(), 0.7) << e.output;
  EXPECT_LT(j["wer"].get<double>(), 0.9) << e.output;
  EXPECT_LT(j["gen_cer"].get<double>(), 0.9) << e.output;

  // The prompt goes through the stored BPE (any UTF-8 is fine); the greedy continuation of the
  // templated text decodes to its letters, spaces and full stops, nothing else.
  for (const std::string& model : {run + "/final.h5", run + "/checkpoints/ckpt_00000120.h5"}) {
    auto s = run_command(test::qisa_bin() + " sample " + model + " --prompt 'the old king' --greedy --tokens 12");
    ASSERT_EQ(s.exit_code, 0) << s.output;
    ASSERT_EQ(s.output.rfind("the old king", 0), 0u) << s.output;
    const std::string cont = s.output.substr(12);
    EXPECT_GT(cont.size(), 12u) << s.output;
    EXPECT_EQ(cont.find_first_not_of("abcdefghijklmnopqrstuvwxyz .\n"), std::string::npos) << s.output;
  }
  auto u = run_command(test::qisa_bin() + " sample " + run + "/final.h5 --prompt 'naïve 😀 日本' --tokens 5 --seed 3");
  ASSERT_EQ(u.exit_code, 0) << u.output;
  EXPECT_EQ(u.output.rfind("naïve 😀 日本", 0), 0u) << u.output;
}

TEST(Gpt2EndToEnd, ImportTokenFilesThroughTheCli) {
  QISA_REQUIRE_GPT2_FILES();
  test::TempDir tmp;
  auto bytes = [](int n, int start) {
    std::string s;
    for (int i = 0; i < n; ++i) {
      const int id = (start + 13 * i) % 50257;
      s += static_cast<char>(id & 0xFF);
      s += static_cast<char>(id >> 8);
    }
    return s;
  };
  test::write_file(tmp / "train.bin", bytes(3000, 1));
  test::write_file(tmp / "val.bin", bytes(500, 2));
  auto r = run_command(test::qisa_bin() + " prepare --import-raw-u16 " + (tmp / "train.bin") + " " + (tmp / "val.bin") +
                       " --out " + (tmp / "c.h5") + gpt2_dir_flag());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("train 3000 tokens, val 500 tokens (by file name: 1 train, 1 val file)"), std::string::npos)
      << r.output;
  std::string header(1024, '\0');
  const int32_t fields[3] = {20240520, 1, 3000};
  for (int f = 0; f < 3; ++f)
    for (int k = 0; k < 4; ++k) header[static_cast<size_t>(4 * f + k)] = static_cast<char>((fields[f] >> (8 * k)) & 0xFF);
  test::write_file(tmp / "s_train_000001.bin", header + bytes(3000, 1));
  r = run_command(test::qisa_bin() + " prepare --import-llmc " + (tmp / "s_train_000001.bin") + " --val-fraction 0.1 --out " +
                  (tmp / "d.h5") + gpt2_dir_flag());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("train 2700 tokens, val 300 tokens (the last 0.1"), std::string::npos) << r.output;

  // a bad file: one line naming it, non-zero, no corpus
  r = run_command(test::qisa_bin() + " prepare --import-llmc " + (tmp / "train.bin") + " --out " + (tmp / "e.h5") +
                  gpt2_dir_flag());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(tmp / "train.bin"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("magic"), std::string::npos) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_FALSE(std::filesystem::exists(tmp / "e.h5"));
  // exactly one source
  r = run_command(test::qisa_bin() + " prepare --out " + (tmp / "e.h5"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("exactly one of --input, --import-llmc, --import-raw-u16"), std::string::npos) << r.output;
}

TEST(Gpt2EndToEnd, BenchTokenizerReportsThroughputAndRoundTrip) {
  QISA_REQUIRE_GPT2_FILES();
  test::TempDir tmp;
  test::write_file(tmp / "t.txt", test::make_training_text(200) + "naïve 😀 日本語\n");
  auto r = run_command(test::qisa_bin() + " bench tokenizer " + (tmp / "t.txt") + " --min-mb 0.1" + gpt2_dir_flag());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_TRUE(j["roundtrip"].get<bool>());
  EXPECT_GE(j["bytes"].get<int64_t>(), 100000);
  EXPECT_GT(j["encode_mb_per_s"].get<double>(), 0.0);
  EXPECT_GT(j["tokens"].get<int64_t>(), 0);
}

}  // namespace
}  // namespace qisa
