// Faults that a run must survive or end cleanly, through the qisa executable, with no
// launcher (np 0) and under mpirun (np 2): a checkpoint write failing with ENOSPC (injected,
// and a real full disk) under checkpoint.on_error warn and stop; a NaN/Inf gradient under
// train.on_nonfinite skip and stop; a corpus with bad token ids under mpirun. Every decision
// is collective: no rank hangs, the job ends or goes on as one. (Kill -9 of a random rank:
// test_dist_kill.cpp; load errors at one rank: test_e2e_load_errors.cpp.)
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "io/checkpoint.h"
#include "io/hdf5.h"
#include "io/model_file.h"
#include "test_util.h"

namespace qisa {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::run_command;

std::string mpirun(int np) {
  return "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " + std::string(QISA_MPIEXEC) +
         " --oversubscribe --bind-to none -np " + std::to_string(np) + " ";
}

bool contains(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

class DistFaults : public ::testing::Test {
 public:  // the helpers below are shared with the check_* functions
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    test::write_file(*dir_ / "text.txt", test::make_training_text(2000));
    auto r = run_command(test::qisa_bin() + " prepare --input " + (*dir_ / "text.txt") + " --out " + corpus());
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string corpus() { return *dir_ / "corpus.h5"; }

  // A tiny model, 60 steps, a checkpoint every 20 steps, a metrics line every step.
  static std::string config(const std::string& name, const std::string& extra = "") {
    const std::string path = *dir_ / (name + ".yaml");
    test::write_file(path, "model:\n  block_size: 8\n  n_embd: 8\n  n_head: 2\n  n_layer: 1\n  dropout: 0.1\n"
                           "data:\n  corpus: " + corpus() + "\n"
                           "train:\n  batch_size: 8\n  steps: 60\n  lr: 0.01\n  seed: 5\n  threads: 1\n"
                           "eval:\n  every: 0\n  windows: 10\n"
                           "log:\n  every: 1\n  dir: " + (*dir_ / name) + "\n"
                           "checkpoint:\n  every_steps: 20\n  keep_last: 5\n" + extra);
    return path;
  }
  static std::string run_dir(const std::string& name) { return *dir_ / name; }
  static std::string ckpt(const std::string& name, int64_t step) {
    return CheckpointStore(run_dir(name) + "/checkpoints", 1).path_for(step);
  }

  // `timeout` turns a hang into exit status 124.
  static test::CommandResult train(int np, const std::string& cfg, const std::string& args = "",
                                   const std::string& env = "") {
    const std::string launch = np == 0 ? "" : mpirun(np);
    return run_command(env + " timeout 120 " + launch + test::qisa_bin() + " train --quiet " + cfg + " " + args);
  }

  static std::vector<json> metrics(const std::string& name) {
    std::vector<json> out;
    std::ifstream in(run_dir(name) + "/metrics.jsonl");
    for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
    return out;
  }
  static std::vector<float> final_params(const std::string& name) {
    std::vector<float> flat;
    for (const auto& t : read_model_file(run_dir(name) + "/final.h5").params)
      flat.insert(flat.end(), t.data.begin(), t.data.end());
    return flat;
  }
  static bool temporaries_left(const std::string& dir) {
    for (const auto& e : fs::directory_iterator(dir))
      if (contains(e.path().filename().string(), ".tmp-")) return true;
    return false;
  }
  static int inspect(const std::string& path) { return run_command(test::qisa_bin() + " inspect " + path).exit_code; }
  // Every float of a checkpoint: parameters and AdamW moments.
  static std::map<std::string, std::vector<float>> tensors(const std::string& path) {
    CheckpointReader r(path);
    std::map<std::string, std::vector<float>> out;
    for (const char* g : {"params", "optim/m", "optim/v"})
      for (const auto& t : r.tensors(g)) {
        std::vector<float> v(static_cast<size_t>(t.numel()));
        r.read_piece(g, t.name, 0, v.data(), t.numel());
        out[std::string(g) + "/" + t.name] = std::move(v);
      }
    return out;
  }

  static test::TempDir* dir_;
};
test::TempDir* DistFaults::dir_ = nullptr;

// ---------------------------------------------------------------- a checkpoint write fails

// ENOSPC while rank 0 writes the parameters of checkpoint 40. With ZeRO-1 at np 2 rank 1 still
// sends its AdamW shard pieces to rank 0 after the failure: the gather must run to its end.
void check_enospc(int np, const std::string& mode) {
  SCOPED_TRACE("np " + std::to_string(np) + ", checkpoint.on_error = " + mode);
  const std::string name = "enospc_" + mode + std::to_string(np);
  const std::string cfg = DistFaults::config(name, np == 2 ? "dist:\n  zero: 1\n" : "");
  const std::string failed = DistFaults::ckpt(name, 40), previous = DistFaults::ckpt(name, 20);
  const std::string straight = name + "_straight";
  auto s = DistFaults::train(np, DistFaults::config(straight, np == 2 ? "dist:\n  zero: 1\n" : ""));
  ASSERT_EQ(s.exit_code, 0) << s.output;
  auto r = DistFaults::train(np, cfg, "checkpoint.on_error=" + mode, "QISA_FAULT='checkpoint.piece@step=40:enospc'");
  EXPECT_NE(r.exit_code, 124) << "hung: " << r.output;
  const std::string what = "cannot write checkpoint '" + failed + "' at step 40: ";
  EXPECT_EQ(count(r.output, what), 1u) << r.output;  // printed once, by rank 0
  EXPECT_TRUE(contains(r.output, "No space left on device")) << r.output;
  EXPECT_TRUE(contains(r.output, "the newest checkpoint is '" + previous + "'")) << r.output;
  EXPECT_FALSE(fs::exists(failed));
  EXPECT_FALSE(DistFaults::temporaries_left(DistFaults::run_dir(name) + "/checkpoints"));
  EXPECT_EQ(DistFaults::inspect(previous), 0);
  bool logged = false;
  for (const auto& j : DistFaults::metrics(name))
    logged |= j.contains("checkpoint_failed") && j["checkpoint_failed"] == failed && j["step"] == 40 &&
              contains(j["error"].get<std::string>(), "No space left on device");
  EXPECT_TRUE(logged) << "no metrics line records the failed write";
  if (mode == "warn") {
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(contains(r.output, "warning: " + what)) << r.output;
    EXPECT_TRUE(fs::exists(DistFaults::run_dir(name) + "/final.h5"));
    // Later checkpoints are written again, whole: the gather after the failure left no piece
    // behind for the next one to pick up.
    EXPECT_EQ(DistFaults::inspect(DistFaults::ckpt(name, 60)), 0);
    EXPECT_TRUE(DistFaults::tensors(DistFaults::ckpt(name, 60)) == DistFaults::tensors(DistFaults::ckpt(straight, 60)))
        << "checkpoint 60 differs from the unfaulted run's";
    auto more = DistFaults::train(np, cfg, "train.steps=70");
    EXPECT_EQ(more.exit_code, 0) << more.output;
    EXPECT_TRUE(contains(more.output, "resumed from " + DistFaults::ckpt(name, 60) + " at step 60")) << more.output;
  } else {
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_TRUE(contains(r.output, "qisa: error: " + what)) << r.output;
    EXPECT_TRUE(contains(r.output, "hint: free disk space")) << r.output;
    EXPECT_EQ(CheckpointStore(DistFaults::run_dir(name) + "/checkpoints", 1).newest_valid(nullptr), previous);
    auto resumed = DistFaults::train(np, cfg);  // the disk has room again
    ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
    EXPECT_TRUE(contains(resumed.output, "resumed from " + previous + " at step 20")) << resumed.output;
    EXPECT_EQ(DistFaults::final_params(name), DistFaults::final_params(straight));
  }
}

TEST_F(DistFaults, CheckpointWriteFailsWithEnospcWarnOneRank) { check_enospc(0, "warn"); }
TEST_F(DistFaults, CheckpointWriteFailsWithEnospcStopOneRank) { check_enospc(0, "stop"); }
TEST_F(DistFaults, CheckpointWriteFailsWithEnospcWarnTwoRanks) { check_enospc(2, "warn"); }
TEST_F(DistFaults, CheckpointWriteFailsWithEnospcStopTwoRanks) { check_enospc(2, "stop"); }

// A real full disk: checkpoints go to a small tmpfs, which the test fills after checkpoint 20
// (the run sleeps at step 30) and empties again after checkpoint 40 failed (it sleeps at step
// 50). The run warns, goes on, and writes checkpoint 60 once there is room.
TEST_F(DistFaults, ARealFullDiskWarnsAndTheRunWritesCheckpointsAgainOnceThereIsRoom) {
  const std::string disk = *dir_ / "small_disk";
  fs::create_directories(disk);
  const std::string why = test::mount_private_tmpfs(disk, "1m");
  if (!why.empty()) GTEST_SKIP() << "no tmpfs of our own: " << why;
  const std::string cfg = config("fulldisk", "  dir: " + disk + "\n  on_error: warn\n");
  const std::string log = *dir_ / "fulldisk.out";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setenv("QISA_FAULT", "train.step@step=30:sleep=3000,train.step@step=50:sleep=3000", 1);
    const std::string cmd = test::qisa_bin() + " train --quiet " + cfg + " > " + log + " 2>&1";
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  auto wait_for = [](const std::function<bool()>& ok) {
    for (int i = 0; i < 3000 && !ok(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return ok();
  };
  const std::string ck20 = disk + "/ckpt_00000020.h5", ck40 = disk + "/ckpt_00000040.h5";
  ASSERT_TRUE(wait_for([&] { return fs::exists(ck20); }));
  const std::string filler = test::fill_disk(disk);
  EXPECT_LT(test::free_bytes(disk), 4096u);
  ASSERT_TRUE(wait_for([&] { return contains(test::read_file(run_dir("fulldisk") + "/metrics.jsonl"), "checkpoint_failed"); }));
  fs::remove(filler);
  int status = 0;
  waitpid(pid, &status, 0);
  const std::string out = test::read_file(log);
  ASSERT_TRUE(WIFEXITED(status)) << out;
  EXPECT_EQ(WEXITSTATUS(status), 0) << out;
  EXPECT_TRUE(contains(out, "warning: cannot write checkpoint '" + ck40 + "' at step 40: ")) << out;
  EXPECT_TRUE(contains(out, "No space left on device")) << out;
  EXPECT_FALSE(fs::exists(ck40));
  EXPECT_FALSE(temporaries_left(disk));
  EXPECT_EQ(inspect(ck20), 0);
  EXPECT_EQ(inspect(disk + "/ckpt_00000060.h5"), 0) << out;
}

// Killed before its first checkpoint: nothing to resume, but the run directory holds this very
// run (the same resolved config, no final.h5), so the same command starts it again. Another
// config is still refused: log.dir then holds a different run.
TEST_F(DistFaults, ARunKilledBeforeItsFirstCheckpointStartsAgain) {
  const std::string cfg = config("early_kill");
  auto killed = train(0, cfg, "", "QISA_FAULT='train.step@step=5:kill'");
  EXPECT_NE(killed.exit_code, 0) << killed.output;
  EXPECT_TRUE(fs::exists(run_dir("early_kill") + "/metrics.jsonl"));
  auto other = train(0, cfg, "train.lr=0.02");
  EXPECT_NE(other.exit_code, 0) << other.output;
  EXPECT_TRUE(contains(other.output, "already holds a run (metrics.jsonl) and no checkpoint to resume")) << other.output;
  auto again = train(0, cfg);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_TRUE(contains(again.output, "holds this run, stopped before its first checkpoint: starting it again"))
      << again.output;
  auto straight = train(0, config("early_kill_straight"));
  ASSERT_EQ(straight.exit_code, 0) << straight.output;
  EXPECT_EQ(final_params("early_kill"), final_params("early_kill_straight"));
  int64_t lines = 0;
  for (const auto& j : metrics("early_kill")) lines += j.contains("loss");
  EXPECT_EQ(lines, 60);  // the killed attempt's lines are gone
}

// ---------------------------------------------------------------- a NaN or Inf gradient

struct SkipRun {
  std::vector<float> params;
  std::map<int64_t, double> loss;
};

SkipRun check_skip(int np, const std::string& fault, const std::string& name) {
  SCOPED_TRACE(name);
  auto r = DistFaults::train(np, DistFaults::config(name), "train.on_nonfinite=skip", "QISA_FAULT='" + fault + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(count(r.output, "warning: step 33: gradient norm = "), 1u) << r.output;
  EXPECT_TRUE(contains(r.output, "its update is skipped")) << r.output;
  SkipRun out;
  int skipped_lines = 0;
  for (const auto& j : DistFaults::metrics(name)) {
    if (j.contains("nonfinite")) {
      ++skipped_lines;
      EXPECT_EQ(j["step"], 33);
      EXPECT_EQ(j["skipped_nonfinite"], 1);
    }
    if (j.contains("loss")) {
      out.loss[j["step"].get<int64_t>()] = j["loss"].get<double>();
      EXPECT_EQ(j["skipped_nonfinite"], j["step"].get<int64_t>() < 33 ? 0 : 1) << j.dump();
    }
  }
  EXPECT_EQ(skipped_lines, 1);
  EXPECT_EQ(out.loss.size(), 59u);  // every step but the skipped one
  EXPECT_TRUE(std::isfinite(out.loss.rbegin()->second));
  EXPECT_EQ(CheckpointReader(DistFaults::ckpt(name, 60)).state().skipped_nonfinite, 1);
  out.params = DistFaults::final_params(name);
  for (float p : out.params) EXPECT_TRUE(std::isfinite(p));
  return out;
}

// A NaN in rank 1's gradients only: after the all-reduce every rank sees it and skips, so
// the parameters stay the same on both (a rank that applied it would turn every later step's
// gradients into NaN: the count would not stay 1). Poisoning rank 0 instead gives the same
// bits, and one rank the same curve.
TEST_F(DistFaults, NonFiniteGradientOnOneRankIsSkippedByAllRanks) {
  const SkipRun on_rank1 = check_skip(2, "train.grad@rank=1@step=33:nan", "skip_rank1");
  const SkipRun on_rank0 = check_skip(2, "train.grad@rank=0@step=33:inf", "skip_rank0");
  const SkipRun one_rank = check_skip(0, "train.grad@step=33:nan", "skip_np1");
  EXPECT_EQ(on_rank1.params, on_rank0.params);
  ASSERT_EQ(one_rank.loss.size(), on_rank1.loss.size());
  for (const auto& [step, loss] : one_rank.loss) EXPECT_NEAR(on_rank1.loss.at(step), loss, 1e-5 * loss) << step;
  // The count survives a resume (from checkpoint 60).
  auto more = train(2, config("skip_rank1"), "train.steps=65 train.on_nonfinite=skip");
  ASSERT_EQ(more.exit_code, 0) << more.output;
  EXPECT_TRUE(contains(more.output, "resumed from " + ckpt("skip_rank1", 60) + " at step 60")) << more.output;
  int64_t last_step = 0;
  for (const auto& j : metrics("skip_rank1"))
    if (j.contains("loss")) {
      last_step = j["step"].get<int64_t>();
      EXPECT_EQ(j["skipped_nonfinite"], j["step"].get<int64_t>() < 33 ? 0 : 1) << j.dump();
    }
  EXPECT_EQ(last_step, 65);
}

// stop: the state before the bad step is checkpointed (step 32), the job exits non-zero with
// one line naming the step; the rerun resumes there and ends where an unfaulted run ends.
void check_stop(int np, const std::string& fault) {
  SCOPED_TRACE("np " + std::to_string(np));
  const std::string name = "stop" + std::to_string(np);
  const std::string cfg = DistFaults::config(name);
  auto r = DistFaults::train(np, cfg, "", "QISA_FAULT='" + fault + "'");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.exit_code, 124) << "hung: " << r.output;
  EXPECT_EQ(count(r.output, "qisa: error: step 33: gradient norm = nan after the gradient all-reduce; "), 1u)
      << r.output;
  for (const char* hint : {"train.lr", "train.grad_clip", "train.on_nonfinite=skip"})
    EXPECT_TRUE(contains(r.output, hint)) << r.output;
  const std::string good = DistFaults::ckpt(name, 32);
  EXPECT_TRUE(contains(r.output, "the state before it (step 32) is checkpointed in '" + good + "'")) << r.output;
  CheckpointStore store(DistFaults::run_dir(name) + "/checkpoints", 1);
  EXPECT_EQ(store.newest_valid(nullptr), good);
  EXPECT_EQ(CheckpointReader(good).state().step, 32);
  EXPECT_FALSE(fs::exists(DistFaults::run_dir(name) + "/final.h5"));
  auto resumed = DistFaults::train(np, cfg);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_TRUE(contains(resumed.output, "resumed from " + good + " at step 32")) << resumed.output;
  auto straight = DistFaults::train(np, DistFaults::config(name + "_straight"));
  ASSERT_EQ(straight.exit_code, 0) << straight.output;
  EXPECT_EQ(DistFaults::final_params(name), DistFaults::final_params(name + "_straight"));
}

TEST_F(DistFaults, NonFiniteGradientStopsOneRank) { check_stop(0, "train.grad@step=33:nan"); }
TEST_F(DistFaults, NonFiniteGradientOnRankOneStopsTwoRanks) { check_stop(2, "train.grad@rank=1@step=33:nan"); }

// ---------------------------------------------------------------- a loss or gradient-norm spike

// step -> loss of the metrics lines that have one
std::map<int64_t, double> losses(const std::string& name) {
  std::map<int64_t, double> out;
  for (const auto& j : DistFaults::metrics(name))
    if (j.contains("loss")) out[j["step"].get<int64_t>()] = j["loss"].get<double>();
  return out;
}

// A huge gradient on rank 1 only, at steps 30 and 45: after the all-reduce every rank sees the
// same norm, judges it against the same reference and skips the update. A SIGTERM at step 40
// and a resume to 60 give the straight run's parameters and loss curve bit for bit: the
// detector's reference comes back from checkpoint 40, so step 45 is judged alike.
TEST_F(DistFaults, GradientSpikesAreSkippedByAllRanksAndResumeAcrossThemIsExact) {
  const std::string keys = "train.spike_factor=4 train.on_spike=skip";
  const std::string spikes = "train.grad@rank=1@step=30:value=1000,train.grad@rank=1@step=45:value=1000";
  auto a = train(2, config("spike_straight"), keys, "QISA_FAULT='" + spikes + "'");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_EQ(count(a.output, ": spike: "), 2u) << a.output;  // printed once, by rank 0, for each
  EXPECT_EQ(count(a.output, "warning: step 30: spike: gradient norm "), 1u) << a.output;
  EXPECT_TRUE(contains(a.output, "its update is skipped (train.on_spike = skip; 2 spikes so far)")) << a.output;
  int spike_lines = 0;
  for (const auto& j : metrics("spike_straight")) {
    const int64_t step = j["step"].get<int64_t>();
    if (j.contains("spike")) {
      ++spike_lines;
      EXPECT_TRUE(step == 30 || step == 45) << j.dump();
      EXPECT_GT(j["spike"]["grad_norm"]["value"].get<double>(), 999.0) << j.dump();
      EXPECT_LT(j["spike"]["grad_norm"]["reference"].get<double>(), 10.0) << j.dump();
      EXPECT_FALSE(j["spike"].contains("loss")) << j.dump();
      EXPECT_EQ(j["skipped"], true);
      EXPECT_EQ(j["spikes"], step == 30 ? 1 : 2);
      EXPECT_EQ(j["skipped_spikes"], step == 30 ? 1 : 2);
    }
    if (j.contains("loss")) {
      EXPECT_EQ(j["spikes"], step < 30 ? 0 : step < 45 ? 1 : 2) << j.dump();
    }
  }
  EXPECT_EQ(spike_lines, 2);
  const auto straight = losses("spike_straight");
  EXPECT_EQ(straight.size(), 58u);  // no loss line for a skipped step
  EXPECT_FALSE(straight.count(30) || straight.count(45));
  const TrainState st = CheckpointReader(ckpt("spike_straight", 60)).state();
  EXPECT_EQ(st.spikes, 2);
  EXPECT_EQ(st.skipped_spikes, 2);
  auto insp = run_command(test::qisa_bin() + " inspect --json " + ckpt("spike_straight", 60));
  ASSERT_EQ(insp.exit_code, 0) << insp.output;
  const auto ij = nlohmann::json::parse(insp.output);
  EXPECT_EQ(ij["spikes"], 2);
  EXPECT_EQ(ij["skipped_spikes"], 2);
  EXPECT_EQ(ij["skipped_nonfinite"], 0);
  auto human = run_command(test::qisa_bin() + " inspect " + ckpt("spike_straight", 60));
  EXPECT_TRUE(contains(human.output, "skipped steps  0 non-finite (train.on_nonfinite), 2 of 2 spikes")) << human.output;

  auto b = train(2, config("spike_resumed"), keys, "QISA_FAULT='" + spikes + ",train.step@rank=0@step=40:signal=15'");
  ASSERT_EQ(b.exit_code, 0) << b.output;
  EXPECT_TRUE(contains(b.output, "stopped by SIGTERM after step 40")) << b.output;
  auto c = train(2, config("spike_resumed"), keys, "QISA_FAULT='" + spikes + "'");
  ASSERT_EQ(c.exit_code, 0) << c.output;
  EXPECT_TRUE(contains(c.output, "resumed from " + ckpt("spike_resumed", 40) + " at step 40")) << c.output;
  EXPECT_TRUE(contains(c.output, "warning: step 45: spike: gradient norm ")) << c.output;
  EXPECT_EQ(final_params("spike_resumed"), final_params("spike_straight"));
  EXPECT_EQ(losses("spike_resumed"), straight);
}

// on_spike = warn (the default): a loss spike (train.loss:value=1000 on the one rank) is
// reported and counted, and the step trains on.
TEST_F(DistFaults, ALossSpikeUnderWarnIsReportedAndTrainedOn) {
  auto r = train(0, config("spike_warn"), "train.spike_factor=4", "QISA_FAULT='train.loss@step=30:value=1000'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(count(r.output, ": spike: "), 1u) << r.output;
  EXPECT_TRUE(contains(r.output, "warning: step 30: spike: loss 1000 > 4 x reference ")) << r.output;
  EXPECT_TRUE(contains(r.output, "; trained on (train.on_spike = warn; 1 spike so far)")) << r.output;
  const auto l = losses("spike_warn");
  EXPECT_EQ(l.size(), 60u);
  EXPECT_EQ(l.at(30), 1000.0);
  for (const auto& j : metrics("spike_warn"))
    if (j.contains("spike")) {
      EXPECT_EQ(j["step"], 30);
      EXPECT_EQ(j["skipped"], false);
      EXPECT_EQ(j["spike"]["loss"]["value"], 1000.0);
    }
  const TrainState st = CheckpointReader(ckpt("spike_warn", 60)).state();
  EXPECT_EQ(st.spikes, 1);
  EXPECT_EQ(st.skipped_spikes, 0);
}

// ---------------------------------------------------------------- a bad corpus under mpirun

TEST_F(DistFaults, BadTokenIdsEndTheJobAtStartOnEveryRank) {
  const std::string bad = *dir_ / "bad_ids.h5";
  fs::copy_file(corpus(), bad, fs::copy_options::overwrite_existing);
  {
    h5::File f(bad, h5::File::Mode::read_write);
    ASSERT_GE(H5Adelete(f.id(), "vocab_size"), 0);  // one id fewer than the vocabulary holds
    const int64_t v = f.attr_int("/train/tokens", "max_id");
    f.set_attr("/", "vocab_size", v);
    std::vector<std::string> vocab = f.read_strings("/tokenizer/vocab");
    vocab.resize(static_cast<size_t>(v));
    ASSERT_GE(H5Ldelete(f.id(), "/tokenizer/vocab", H5P_DEFAULT), 0);
    f.write_strings("/tokenizer/vocab", vocab, {static_cast<hsize_t>(v)});
    f.close();
  }
  auto r = train(2, config("bad_ids"), "data.corpus=" + bad);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.exit_code, 124) << "hung: " << r.output;
  EXPECT_TRUE(contains(r.output, "data.corpus = '" + bad + "': corpus '" + bad + "': /train/tokens holds token ids up to"))
      << r.output;
  EXPECT_FALSE(fs::exists(run_dir("bad_ids")));
}

}  // namespace
}  // namespace qisa
