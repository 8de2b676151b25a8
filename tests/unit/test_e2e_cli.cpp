// End to end through the `qisa` executable, as a user runs it: prepare a corpus from text the
// test writes, train, evaluate, probe for leaks; plus --help and one-line errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <nlohmann/json.hpp>

#include "io/corpus.h"
#include "test_util.h"
#include "trainer/flops.h"

namespace qisa {
namespace {

using test::run_command;

std::string tiny_config(const std::string& corpus, const std::string& dir, const std::string& extra_model = "") {
  return "model:\n"
         "  block_size: 16\n  n_embd: 16\n  n_head: 2\n  n_layer: 2\n"
         "  attention: qisa\n  mask: causal\n" + extra_model +
         "data:\n  corpus: " + corpus + "\n"
         "train:\n  batch_size: 32\n  steps: 300\n  lr: 0.01\n  seed: 7\n  threads: 1\n"
         "eval:\n  every: 100\n  windows: 50\n"
         "log:\n  every: 50\n  dir: " + dir + "\n";
}

class CliEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_file(tmp / "text.txt", test::make_training_text(3000));
    auto r = run_command(test::qisa_bin() + " prepare --input " + (tmp / "text.txt") + " --out " + corpus());
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  std::string corpus() const { return tmp / "corpus.h5"; }
  // Train with `config_text`; returns the parsed final eval JSON line.
  nlohmann::json train(const std::string& name, const std::string& config_text) {
    const std::string cfg = tmp / (name + ".yaml");
    test::write_file(cfg, config_text);
    auto r = run_command(test::qisa_bin() + " train " + cfg);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    // the last output line that is a JSON object with "ce": the final evaluation
    std::istringstream lines(r.output);
    nlohmann::json last;
    for (std::string line; std::getline(lines, line);)
      if (line.rfind("{", 0) == 0 && line.find("\"ce\"") != std::string::npos) last = nlohmann::json::parse(line);
    EXPECT_FALSE(last.is_null()) << r.output;
    return last;
  }
  test::TempDir tmp;
};

TEST_F(CliEndToEnd, TrainEvalAndProbeCausalQisa) {
  const std::string dir = tmp / "run_causal";
  nlohmann::json ev = train("causal", tiny_config(corpus(), dir));
  ASSERT_TRUE(ev.contains("ce"));
  // The text is 5x5x5 templated sentences; a uniform guess costs ln(24) = 3.2 nats. This run
  // measured ce 0.39 after 300 steps (0.92 after 100): the bound 0.8 leaves a 2x margin.
  EXPECT_LT(ev["ce"].get<double>(), 0.8) << ev.dump();
  EXPECT_GT(ev["ce"].get<double>(), 0.0);
  for (const char* f : {"config.yaml", "metrics.jsonl", "final.h5"})
    EXPECT_TRUE(std::filesystem::exists(dir + "/" + f)) << f;

  // metrics.jsonl: the loss falls from the first logged step to the last
  std::istringstream lines(test::read_file(dir + "/metrics.jsonl"));
  std::string line;
  double first = -1, last = -1;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line);
    if (!j.contains("loss")) continue;
    if (first < 0) first = j["loss"].get<double>();
    last = j["loss"].get<double>();
    EXPECT_TRUE(j.contains("lr") && j.contains("ms") && j.contains("tokens_per_s")) << line;
  }
  EXPECT_GT(first, 2.5);
  EXPECT_LT(last, 0.8);

  auto e = run_command(test::qisa_bin() + " eval " + dir + "/final.h5 --data " + corpus() + " --windows 50");
  ASSERT_EQ(e.exit_code, 0) << e.output;
  auto j = nlohmann::json::parse(e.output);
  EXPECT_NEAR(j["ce"].get<double>(), ev["ce"].get<double>(), 1e-9);  // same windows, same model
  EXPECT_EQ(j["tokens"].get<int64_t>(), 50 * 16);
  EXPECT_GE(j["cer"].get<double>(), 0.0);
  EXPECT_LE(j["cer"].get<double>(), 1.0);

  // the final checkpoint holds the same model
  auto ec = run_command(test::qisa_bin() + " eval " + dir + "/checkpoints/ckpt_00000300.h5 --data " + corpus() +
                        " --windows 50");
  ASSERT_EQ(ec.exit_code, 0) << ec.output;
  EXPECT_EQ(nlohmann::json::parse(ec.output)["ce"].get<double>(), j["ce"].get<double>());

  auto p = run_command(test::qisa_bin() + " probe-leak " + dir + "/final.h5 --data " + corpus());
  ASSERT_EQ(p.exit_code, 0) << p.output;
  EXPECT_EQ(nlohmann::json::parse(p.output)["max_abs_delta"].get<double>(), 0.0) << p.output;

  // generation: greedy continuations of held-out prompts scored against the true text
  auto g = run_command(test::qisa_bin() + " eval " + dir + "/final.h5 --data " + corpus() +
                       " --windows 10 --gen-prompts 12 --gen-tokens 20");
  ASSERT_EQ(g.exit_code, 0) << g.output;
  auto gj = nlohmann::json::parse(g.output);
  EXPECT_EQ(gj["prompts"].get<int64_t>(), 12);
  EXPECT_GE(gj["gen_cer"].get<double>(), 0.0);
  EXPECT_LT(gj["gen_cer"].get<double>(), 1.0);  // a trained model continues the templated text
  EXPECT_GT(gj["ms_per_batch"].get<double>(), 0.0);

  // sampling is a pure function of the seed; the prompt is echoed
  const std::string sample = test::qisa_bin() + " sample " + dir + "/final.h5 --prompt 'the cat' --tokens 40";
  auto s1 = run_command(sample + " --seed 4"), s2 = run_command(sample + " --seed 4"), s3 = run_command(sample + " --seed 5");
  ASSERT_EQ(s1.exit_code, 0) << s1.output;
  EXPECT_EQ(s1.output, s2.output);
  EXPECT_NE(s1.output, s3.output);
  EXPECT_EQ(s1.output.rfind("the cat", 0), 0u) << s1.output;
  EXPECT_EQ(s1.output.size(), std::string("the cat").size() + 40 + 1);  // one byte per char + newline
  auto bad = run_command(test::qisa_bin() + " sample " + dir + "/final.h5 --prompt 'Zebra'");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("Z"), std::string::npos) << bad.output;
}

TEST_F(CliEndToEnd, ReferenceMaskLeaksAndCausalCsaDoesNot) {
  const std::string ref = tmp / "run_ref";
  std::string cfg = tiny_config(corpus(), ref);
  cfg.replace(cfg.find("mask: causal"), 12, "mask: reference");
  cfg.replace(cfg.find("steps: 300"), 10, "steps: 20");
  train("ref", cfg);
  auto p = run_command(test::qisa_bin() + " probe-leak " + ref + "/final.h5");
  ASSERT_EQ(p.exit_code, 0) << p.output;
  EXPECT_GT(nlohmann::json::parse(p.output)["max_abs_delta"].get<double>(), 1e-4) << p.output;
  // probe-attention: the paper's qisa score keeps every row within a factor e of uniform
  auto a = run_command(test::qisa_bin() + " probe-attention " + ref + "/final.h5 --data " + corpus() + " --windows 4");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  const auto qa = nlohmann::json::parse(a.output);
  EXPECT_EQ(qa["windows"], 4);
  ASSERT_EQ(qa["layers"].size(), 2u) << a.output;  // tiny_config: two blocks
  for (const auto& l : qa["layers"]) {
    EXPECT_LE(l["max_ratio"].get<double>(), std::exp(1.0)) << a.output;
    EXPECT_GT(l["min_entropy"].get<double>(), 0.9) << a.output;
    EXPECT_LE(l["mean_entropy"].get<double>(), 1.0) << a.output;
    EXPECT_GE(l["mean_entropy"].get<double>(), l["min_entropy"].get<double>()) << a.output;
  }

  const std::string csa = tmp / "run_csa";
  cfg = tiny_config(corpus(), csa);
  cfg.replace(cfg.find("attention: qisa"), 15, "attention: csa");
  cfg.replace(cfg.find("steps: 300"), 10, "steps: 20");
  train("csa", cfg);
  p = run_command(test::qisa_bin() + " probe-leak " + csa + "/final.h5");
  ASSERT_EQ(p.exit_code, 0) << p.output;
  EXPECT_EQ(nlohmann::json::parse(p.output)["max_abs_delta"].get<double>(), 0.0) << p.output;
  a = run_command(test::qisa_bin() + " probe-attention " + csa + "/final.h5 --windows 3");  // random windows
  ASSERT_EQ(a.exit_code, 0) << a.output;
  const auto ca = nlohmann::json::parse(a.output);
  EXPECT_EQ(ca["rows_per_layer"].get<int64_t>(), 3 * 2 * 15);  // windows x heads x rows i >= 1 (T = 16)
  for (const auto& l : ca["layers"]) {
    EXPECT_GT(l["min_entropy"].get<double>(), 0.0) << a.output;
    EXPECT_LE(l["mean_entropy"].get<double>(), 1.0) << a.output;
    EXPECT_GE(l["max_ratio"].get<double>(), 1.0) << a.output;
  }
}

// model.qisa_score: gaussian trains end to end on the CPU backend; its checkpoint and model
// file carry the score, and the probe reads it from there.
TEST_F(CliEndToEnd, TheGaussianScoreTrainsAndIsKeptWithTheModel) {
  const std::string dir = tmp / "run_gauss";
  std::string cfg = tiny_config(corpus(), dir, "  qisa_score: gaussian\n  qisa_score_scale: 2.0\n");
  cfg.replace(cfg.find("steps: 300"), 10, "steps: 100");
  const nlohmann::json ev = train("gauss", cfg);
  ASSERT_TRUE(ev.contains("ce")) << ev.dump();
  EXPECT_LT(ev["ce"].get<double>(), 2.5) << ev.dump();  // below uniform over the ~30-letter vocabulary (3.4)
  auto in = run_command(test::qisa_bin() + " inspect " + dir + "/checkpoints/ckpt_00000100.h5");
  ASSERT_EQ(in.exit_code, 0) << in.output;
  EXPECT_NE(in.output.find("qisa_score: gaussian"), std::string::npos) << in.output;
  EXPECT_NE(in.output.find("qisa_score_scale: 2"), std::string::npos) << in.output;
  auto a = run_command(test::qisa_bin() + " probe-attention " + dir + "/final.h5 --data " + corpus() + " --windows 4");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  const auto probe = nlohmann::json::parse(a.output);
  double worst = 0;
  for (const auto& l : probe["layers"]) worst = std::max(worst, l["max_ratio"].get<double>());
  EXPECT_GT(worst, std::exp(1.0)) << "the gaussian score is bounded like the paper's: " << a.output;
}

TEST_F(CliEndToEnd, ARerunResumesAndNeverReplacesARunUnlessAsked) {
  const std::string dir = tmp / "run_once";
  std::string cfg_text = tiny_config(corpus(), dir);
  cfg_text.replace(cfg_text.find("steps: 300"), 10, "steps: 3");
  const std::string cfg = tmp / "once.yaml";
  test::write_file(cfg, cfg_text);
  ASSERT_EQ(run_command(test::qisa_bin() + " train --quiet " + cfg).exit_code, 0);
  // train.resume=auto (the default) finds the final checkpoint: the run is complete already
  auto again = run_command(test::qisa_bin() + " train --quiet " + cfg);
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("resumed from"), std::string::npos) << again.output;
  // no step ran: it says so instead of a 'final loss 0.0000' (issue 17 A.1)
  EXPECT_NE(again.output.find("nothing left to train: resumed at step 3 of 3"), std::string::npos) << again.output;
  EXPECT_EQ(again.output.find("final loss"), std::string::npos) << again.output;
  // a fresh start must not mix with the old run's checkpoints and metrics
  auto never = run_command(test::qisa_bin() + " train --quiet " + cfg + " train.resume=never");
  EXPECT_NE(never.exit_code, 0);
  EXPECT_NE(never.output.find("holds checkpoints"), std::string::npos) << never.output;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/checkpoints")) std::filesystem::remove(e.path());
  auto orphan = run_command(test::qisa_bin() + " train --quiet " + cfg);
  EXPECT_NE(orphan.exit_code, 0);
  EXPECT_NE(orphan.output.find("already holds a run"), std::string::npos) << orphan.output;
  auto over = run_command(test::qisa_bin() + " train --quiet --overwrite " + cfg);
  EXPECT_EQ(over.exit_code, 0) << over.output;
  EXPECT_EQ(over.output.find("resumed from"), std::string::npos) << over.output;
}

// Nothing a run wrote, and nothing a user wrote, is overwritten by a run that then stops: a
// refused resume keeps the run's config.yaml byte for byte, and a config.yaml of the user's in
// log.dir (log.dir: .) is never replaced, --overwrite or not.
TEST_F(CliEndToEnd, ARefusedRunOverwritesNoConfigYaml) {
  const std::string dir = tmp / "run_kept";
  std::string cfg_text = tiny_config(corpus(), dir);
  cfg_text.replace(cfg_text.find("steps: 300"), 10, "steps: 3");
  const std::string cfg = tmp / "kept.yaml";
  test::write_file(cfg, cfg_text);
  ASSERT_EQ(run_command(test::qisa_bin() + " train --quiet " + cfg).exit_code, 0);
  const std::string recorded = test::read_file(dir + "/config.yaml");
  // another model in the same directory: its checkpoint cannot be resumed
  auto refused = run_command(test::qisa_bin() + " train --quiet " + cfg + " model.n_embd=32 train.steps=6");
  EXPECT_NE(refused.exit_code, 0) << refused.output;
  EXPECT_EQ(test::read_file(dir + "/config.yaml"), recorded);

  const std::string own = tmp / "own";
  std::filesystem::create_directories(own);
  test::write_file(own + "/config.yaml", "my notes\n");
  for (const char* flag : {"", " --overwrite"}) {
    auto r = run_command("cd " + own + " && " + test::qisa_bin() + " train --quiet" + flag + " " + cfg + " log.dir=.");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("log.dir = '.' holds a config.yaml that qisa did not write"), std::string::npos) << r.output;
    EXPECT_EQ(test::read_file(own + "/config.yaml"), "my notes\n");
  }
}

// Silent oddities are said when they happen: a corpus without a val split (at prepare, not
// at the first training run), a warm-up longer than the run.
TEST_F(CliEndToEnd, OdditiesAreSaidWhenTheyHappen) {
  auto r = run_command(test::qisa_bin() + " prepare --input " + (tmp / "text.txt") + " --out " + (tmp / "noval.h5") +
                       " --val-fraction 0");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("note: the corpus has no validation split: qisa train evaluates on it"), std::string::npos)
      << r.output;
  std::string text = tiny_config(corpus(), tmp / "run_warm");
  text.replace(text.find("steps: 300"), 10, "steps: 2");
  test::write_file(tmp / "warm.yaml", text);
  r = run_command(test::qisa_bin() + " train " + (tmp / "warm.yaml") + " train.warmup_steps=10");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("warning: train.warmup_steps = 10 is longer than the run (train.steps = 2)"),
            std::string::npos)
      << r.output;
}

// A checkpoint directory on a read-only file system: the hint says so (not "free disk space").
// Needs a tmpfs mount (root in a container that allows it); skipped where mounting is refused.
TEST_F(CliEndToEnd, ReadOnlyCheckpointDirGetsItsOwnHint) {
  const std::string mnt = tmp / "ro";
  std::filesystem::create_directories(mnt);
  if (run_command("mount -t tmpfs -o size=4m tmpfs " + mnt).exit_code != 0) GTEST_SKIP() << "cannot mount a tmpfs here";
  std::filesystem::create_directories(mnt + "/ckpt");
  const bool ro = run_command("mount -o remount,ro " + mnt).exit_code == 0;
  if (ro) {
    std::string text = tiny_config(corpus(), tmp / "run_ro");
    text.replace(text.find("steps: 300"), 10, "steps: 3");
    test::write_file(tmp / "ro.yaml", text);
    auto r = run_command(test::qisa_bin() + " train --quiet " + (tmp / "ro.yaml") + " checkpoint.dir=" + mnt + "/ckpt");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("Read-only file system"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("hint: make checkpoint.dir writable"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("free disk space"), std::string::npos) << r.output;
  }
  run_command("umount " + mnt);
  if (!ro) GTEST_SKIP() << "cannot remount the tmpfs read-only here";
}

// MFU: every metrics line carries the achieved model TFLOP/s per rank (trainer/flops.h's count
// times tokens/s), and the MFU against train.peak_tflops; without a peak (the CPU backend has
// no table entry) there is no MFU, and the log says how to get one.
TEST_F(CliEndToEnd, MetricsReportModelTflopsAndMfuAgainstThePeak) {
  const std::string dir = tmp / "run_mfu";
  std::string text = tiny_config(corpus(), dir);
  text.replace(text.find("steps: 300"), 10, "steps: 20");
  text.replace(text.find("every: 50"), 9, "every: 5");
  test::write_file(tmp / "mfu.yaml", text);
  auto r = run_command(test::qisa_bin() + " train " + (tmp / "mfu.yaml") + " train.peak_tflops=0.25");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("peak 0.25 TFLOP/s per rank (train.peak_tflops)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("TFLOP/s  MFU "), std::string::npos) << r.output;

  ModelConfig m;  // the run's model: vocab from the corpus
  m.block_size = 16, m.n_embd = 16, m.n_head = 2, m.n_layer = 2, m.attention = AttentionKind::qisa;
  m.vocab_size = read_corpus_info(corpus()).vocab_size;
  const double per_token = forward_flops(m).training();
  std::istringstream lines(test::read_file(dir + "/metrics.jsonl"));
  int seen = 0;
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line);
    if (!j.contains("loss")) continue;
    ++seen;
    ASSERT_TRUE(j.contains("tflops") && j.contains("mfu")) << line;
    const double tflops = j["tflops"].get<double>(), tps = j["tokens_per_s"].get<double>();
    EXPECT_NEAR(tflops, per_token * tps / 1e12, 1e-12 * tflops + 1e-18) << line;
    EXPECT_NEAR(j["mfu"].get<double>(), tflops / 0.25, 1e-12) << line;
    EXPECT_GT(tflops, 0.0);
  }
  EXPECT_EQ(seen, 5);  // steps 1, 5, 10, 15, 20

  auto plain = run_command(test::qisa_bin() + " train " + (tmp / "mfu.yaml") + " --overwrite");
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_NE(plain.output.find("peak unknown for 'cpu'"), std::string::npos) << plain.output;
  EXPECT_EQ(plain.output.find("  MFU "), std::string::npos) << plain.output;
  for (std::istringstream again(test::read_file(dir + "/metrics.jsonl")); std::getline(again, text);) {
    auto j = nlohmann::json::parse(text);
    if (j.contains("loss")) {
      EXPECT_TRUE(j.contains("tflops") && !j.contains("mfu")) << text;
    }
  }
}

// train.device: cuda ends the run at start with one line on a machine without a GPU: a build
// without nvcc has no CUDA backend, one with it finds no usable device (no driver here).
// dist.comm: nccl needs train.device: cuda. Nothing is written for either.
TEST_F(CliEndToEnd, CudaDeviceAndNcclAreRefusedAtStartInOneLine) {
  const std::string dir = tmp / "run_refused", cfg = tmp / "refused.yaml";
  test::write_file(cfg, tiny_config(corpus(), dir));
  auto one_line = [](const test::CommandResult& r) {
    return std::count(r.output.begin(), r.output.end(), '\n') == 1 && r.output.rfind("qisa: error: ", 0) == 0;
  };
  for (const std::string extra : {" train.device=cuda", " train.device=cuda dist.comm=nccl"}) {
    SCOPED_TRACE(extra);
    auto r = run_command(test::qisa_bin() + " train " + cfg + extra);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_TRUE(one_line(r)) << r.output;
    for (const char* part : {"refused.yaml: train.device = cuda: ", "use the CPU backend: train.device: cpu"})
      EXPECT_NE(r.output.find(part), std::string::npos) << part << " in " << r.output;
    EXPECT_TRUE(r.output.find("this build has no CUDA backend") != std::string::npos ||
                r.output.find("no usable CUDA device") != std::string::npos)
        << r.output;
  }
  auto r = run_command(test::qisa_bin() + " train " + cfg + " dist.comm=nccl");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(one_line(r)) << r.output;
  EXPECT_NE(r.output.find("override 'dist.comm=nccl': dist.comm = nccl: nccl needs train.device: cuda "
                          "(train.device is cpu)"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir));
  // The commands that read a model file choose with --device (the corpus stands in for a model:
  // the backend is made before the file is read).
  r = run_command(test::qisa_bin() + " eval " + corpus() + " --data " + corpus() + " --device cuda");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(one_line(r)) << r.output;
  EXPECT_NE(r.output.find("--device cuda: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("use the CPU backend: --device cpu"), std::string::npos) << r.output;
  r = run_command(test::qisa_bin() + " sample " + corpus() + " --device gpu");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("cuda"), std::string::npos) << r.output;  // CLI11 lists the names
}

// Threads: train.threads / --threads, else OMP_NUM_THREADS (users, mpirun lines and Slurm
// scripts set it), else the cores; absurd counts end at start with the limit, not in libgomp.
TEST_F(CliEndToEnd, ThreadsHonourOmpNumThreadsAndHaveALimit) {
  const std::string cfg = tmp / "threads.yaml";
  std::string text = tiny_config(corpus(), tmp / "run_threads");
  text.erase(text.find("  threads: 1\n"), 13);  // no train.threads: the environment decides
  test::write_file(cfg, text);
  auto threads_of = [&](const std::string& env, const std::string& extra) {
    auto r = run_command("env " + env + " " + test::qisa_bin() + " bench step " + cfg + " --steps 1 --warmup 0" + extra);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return nlohmann::json::parse(r.output.substr(r.output.rfind("{\"")))["threads"].get<int>();
  };
  EXPECT_EQ(threads_of("OMP_NUM_THREADS=1", ""), 1);
  EXPECT_EQ(threads_of("OMP_NUM_THREADS=3,1", ""), 3);              // the outer level of a list
  EXPECT_EQ(threads_of("OMP_NUM_THREADS=1", " --threads 2"), 2);    // the flag wins
  EXPECT_EQ(threads_of("OMP_NUM_THREADS=3", " train.threads=1"), 1);  // and the config key
  auto r = run_command(test::qisa_bin() + " bench step " + cfg + " train.threads=100000 --steps 1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("threads.yaml: train.threads = 100000 is more than 4 x the"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("hint: use at most"), std::string::npos) << r.output;
  r = run_command("env OMP_NUM_THREADS=lots " + test::qisa_bin() + " train " + cfg);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("OMP_NUM_THREADS = 'lots' is not a positive thread count"), std::string::npos) << r.output;
  r = run_command(test::qisa_bin() + " eval " + corpus() + " --data " + corpus() + " --threads 100000");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--threads = 100000 is more than"), std::string::npos) << r.output;
}

// Every numeric option: a finite number in a range that means something, said in words.
TEST(Cli, NumericOptionsAreFiniteAndInRangeWithTheRangeInWords) {
  const std::string plan = test::qisa_bin() + " plan " + std::string(QISA_SOURCE_DIR) + "/configs/gpt2/gpt2_124m_csa.yaml" + " --vocab 50257";
  struct Case {
    std::string args, says;
  } cases[] = {
      {plan + " --gpu-mem nan", "--gpu-mem: 'nan' is not a finite number > 0 and <= 1048576"},
      {plan + " --headroom nan", "--headroom: 'nan' is not a finite number >= 0 and <= 1048576"},
      {plan + " --headroom inf", "'inf' is not a finite number"},
      {plan + " --gpus 0", "--gpus: '0' is not a whole number from 1 to 10000000"},
      {plan + " --gpus 2.5", "'2.5' is not a whole number"},
      {plan + " --vocab 1e300", "'1e300' is not a whole number from 1 to 1000000000"},
      {test::qisa_bin() + " sample /etc/hostname --temperature -1", "'-1' is not a finite number > 0"},
  };
  for (const Case& c : cases) {
    auto r = run_command(c.args);
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_NE(r.output.find(c.says), std::string::npos) << c.args << "\n" << r.output;
    EXPECT_EQ(r.output.find("1.797693"), std::string::npos) << r.output;
  }
  auto ok = run_command(plan + " --gpus 8e0 --headroom 0.5");  // 8e0 is a whole number
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
}

// launch --device: an unknown device is named as such (not "argument not expected"); a known
// one becomes train.device for every rank.
TEST(Cli, LaunchDeviceIsCheckedAndPassedOn) {
  const std::string cfg = std::string(QISA_SOURCE_DIR) + "/configs/paper/qisa_causal.yaml";
  auto bad = run_command(test::qisa_bin() + " launch --device tpu --dry-run -- " + cfg);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("--device: tpu not in {cpu,cuda}"), std::string::npos) << bad.output;
  auto ok = run_command(test::qisa_bin() + " launch --device cpu --procs 1 --threads 1 --mpirun --dry-run -- " + cfg);
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("train.device=cpu"), std::string::npos) << ok.output;
}

TEST(Cli, HelpOnEverySubcommand) {
  for (const char* sub : {"", " prepare", " train", " eval", " probe-leak", " probe-attention", " sample", " inspect", " launch", " bench",
                          " bench step", " info", " plan"}) {
    auto r = run_command(test::qisa_bin() + sub + " --help");
    EXPECT_EQ(r.exit_code, 0) << sub << ": " << r.output;
    EXPECT_NE(r.output.find("Usage"), std::string::npos) << sub << ": " << r.output;
  }
}

TEST(Cli, ConfigErrorIsOneLineNamingFileKeyAndValue) {
  test::TempDir tmp;
  const std::string cfg = tmp / "bad.yaml";
  test::write_file(cfg, "model:\n  n_embd: 16\n  n_head: 5\ndata:\n  corpus: nowhere.h5\n");
  auto r = run_command(test::qisa_bin() + " train " + cfg);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("bad.yaml"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("n_head"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("5"), std::string::npos) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
}

TEST(Cli, PrepareMissingInputIsOneLineAndLeavesNoFile) {
  test::TempDir tmp;
  auto r = run_command(test::qisa_bin() + " prepare --input " + (tmp / "nope.txt") + " --out " + (tmp / "c.h5"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("nope.txt"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(tmp / "c.h5"));
}

}  // namespace
}  // namespace qisa
