// Spike detection (train.spike_factor, train.spike_warmup, train.on_spike): the detector on its
// own (reference, warm-up, what enters the reference, the restart after spikes in a row), and
// inside one process, with spikes forced by the faults train.grad:value=N and train.loss:value=N:
// a skipped spike leaves the parameters and AdamW moments bit for bit as they were and AdamW's
// step counter untouched, `warn` trains on, and a resume across spikes is exact because the
// detector's state travels in the checkpoint. Under mpirun: test_dist_faults.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <map>

#include "io/checkpoint.h"
#include "io/config.h"
#include "io/corpus.h"
#include "kernels/backend.h"
#include "test_util.h"
#include "trainer_fixture.h"
#include "trainer/comm/collectives.h"
#include "trainer/comm/communicator.h"
#include "trainer/spikes.h"
#include "trainer/trainer.h"

namespace qisa {
namespace {

TEST(SpikeDetector, JudgesAgainstTheAverageOfEarlierNonSpikeStepsAfterTheWarmUp) {
  SpikeDetector d(3.0, 3);
  // warm-up: three steps go in, nothing is judged, however large
  for (double loss : {2.0, 2.0, 50.0}) EXPECT_FALSE(d.observe(loss, 1.0).any());
  EXPECT_EQ(d.state().seen, 3);
  // the reference is the bias-corrected EMA: (0.98^2 * 2 + 0.98 * 2 + 50) * 0.02 / (1 - 0.98^3)
  const double want_loss = (0.98 * 0.98 * 2 + 0.98 * 2 + 50) * 0.02 / (1 - 0.98 * 0.98 * 0.98);
  Spike s = d.observe(2.0, 1.0);
  EXPECT_FALSE(s.any());
  EXPECT_NEAR(s.loss_ref, want_loss, 1e-12);
  EXPECT_NEAR(s.grad_norm_ref, 1.0, 1e-12);
  const SpikeState before = d.state();
  s = d.observe(1.0, 3.5);  // gradient norm 3.5 > 3 x ~1
  EXPECT_TRUE(s.grad_norm);
  EXPECT_FALSE(s.loss);
  EXPECT_NEAR(s.grad_norm_ref, 1.0, 1e-12);
  EXPECT_EQ(s.describe(1.0, 3.5, 3.0), "gradient norm 3.5 > 3 x reference 1");
  // a spike does not enter the reference; it only counts in a row
  EXPECT_EQ(d.state().loss_ema, before.loss_ema);
  EXPECT_EQ(d.state().grad_norm_ema, before.grad_norm_ema);
  EXPECT_EQ(d.state().seen, before.seen);
  EXPECT_EQ(d.state().in_a_row, 1);
  s = d.observe(100.0, 100.0);  // both
  EXPECT_TRUE(s.loss && s.grad_norm);
  // loss reference: (0.98^3 * 2 + 0.98^2 * 2 + 0.98 * 50 + 2) * 0.02 / (1 - 0.98^4) = 14.1187
  EXPECT_EQ(s.describe(100, 100, 3), "loss 100 > 3 x reference 14.12, gradient norm 100 > 3 x reference 1");
  EXPECT_EQ(d.state().in_a_row, 2);
  EXPECT_FALSE(d.observe(2.0, 1.0).any());  // back to normal: the run of spikes ends
  EXPECT_EQ(d.state().in_a_row, 0);
  EXPECT_EQ(d.state().seen, 5);
  EXPECT_FALSE(d.observe(34.0, 2.9).any());  // below 3 x 11.596 and 3 x 1: no spike
}

TEST(SpikeDetector, OffFindsNothingAndKeepsNoState) {
  SpikeDetector d(0.0, 1);
  for (double x : {1.0, 1.0, 1e9}) EXPECT_FALSE(d.observe(x, x).any());
  EXPECT_EQ(d.state(), SpikeState{});
}

// A level that moved for good: after kSpikeRestart spikes in a row the reference starts again
// (warm-up included) instead of flagging every step from then on.
TEST(SpikeDetector, RestartsAfterSpikesInARow) {
  SpikeDetector d(2.0, 2);
  d.observe(1.0, 1.0);
  d.observe(1.0, 1.0);
  for (int64_t i = 1; i < kSpikeRestart; ++i) {
    const Spike s = d.observe(5.0, 1.0);
    EXPECT_TRUE(s.loss);
    EXPECT_FALSE(s.restarted);
  }
  const Spike last = d.observe(5.0, 1.0);
  EXPECT_TRUE(last.loss);
  EXPECT_TRUE(last.restarted);
  EXPECT_EQ(d.state(), SpikeState{});
  EXPECT_FALSE(d.observe(5.0, 1.0).any());  // warm-up on the new level
  EXPECT_FALSE(d.observe(5.0, 1.0).any());
  EXPECT_FALSE(d.observe(5.0, 1.0).any());
  EXPECT_TRUE(d.observe(11.0, 1.0).loss);
}

using test::ScopedFault;

class Spikes : public test::CorpusSuite {
 protected:

  // Spikes are over 4 x the average of the steps before, detected from step 4 on.
  static Config config(const std::string& extra = "") {
    Config c = parse_config("model:\n  block_size: 8\n  n_embd: 8\n  n_head: 2\n  n_layer: 1\n  dropout: 0.1\n"
                            "data:\n  corpus: " + corpus() + "\n"
                            "train:\n  batch_size: 8\n  lr: 0.001\n  seed: 3\n  threads: 1\n"
                            "  spike_factor: 4\n  spike_warmup: 3\n" + extra +
                            "eval:\n  windows: 4\n",
                            "spikes.yaml");
    check_against_corpus(c, read_corpus_info(c.data.corpus));
    return c;
  }

  // Every dataset of a checkpoint: params, AdamW moments.
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

  // n steps, none of which may be a spike.
  static void quiet_steps(Trainer& t, int n) {
    for (int i = 0; i < n; ++i) {
      const StepStats s = t.step();
      ASSERT_FALSE(s.spike.any()) << "step " << s.step << ": " << s.spike.describe(s.loss, s.grad_norm, 4);
    }
  }

  std::unique_ptr<Backend> be_ = make_cpu_backend(1);
  std::unique_ptr<Communicator> comm_ = make_communicator("none");
  std::unique_ptr<Collectives> coll_ = make_collectives(*comm_, *be_);
};

TEST_F(Spikes, SkipLeavesParametersAndMomentsBitForBitAndCountsTheStep) {
  Trainer t(config("  on_spike: skip\n"), *be_, *comm_, *coll_);
  quiet_steps(t, 4);
  ASSERT_TRUE(t.save_checkpoint(dir() / "before.h5").empty());
  StepStats s;
  {
    ScopedFault f("train.grad@step=5:value=1000");
    s = t.step();
  }
  EXPECT_EQ(s.step, 5);
  EXPECT_TRUE(s.nonfinite.empty());
  EXPECT_FALSE(s.skipped);
  EXPECT_TRUE(s.spike.grad_norm);
  EXPECT_FALSE(s.spike.loss);
  EXPECT_GT(s.grad_norm, 999.0);
  EXPECT_LT(s.spike.grad_norm_ref, 10.0);
  EXPECT_TRUE(s.spike_skipped);
  EXPECT_EQ(s.spikes_total, 1);
  EXPECT_EQ(s.skipped_spikes_total, 1);
  EXPECT_EQ(t.steps_done(), 5);       // the batch is consumed
  EXPECT_EQ(t.optimizer_steps(), 4);  // but AdamW took no step
  ASSERT_TRUE(t.save_checkpoint(dir() / "after.h5").empty());
  EXPECT_EQ(tensors(dir() / "before.h5"), tensors(dir() / "after.h5"));
  const TrainState st = CheckpointReader(dir() / "after.h5").state();
  EXPECT_EQ(st.spikes, 1);
  EXPECT_EQ(st.skipped_spikes, 1);
  EXPECT_EQ(st.skipped_nonfinite, 0);
  EXPECT_EQ(st.spike_steps_seen, 4);
  EXPECT_EQ(st.spikes_in_a_row, 1);
  const StepStats next = t.step();  // training goes on
  EXPECT_FALSE(next.spike.any());
  EXPECT_EQ(next.spikes_total, 1);
  EXPECT_EQ(t.optimizer_steps(), 5);
  ASSERT_TRUE(t.save_checkpoint(dir() / "next.h5").empty());
  EXPECT_NE(tensors(dir() / "after.h5"), tensors(dir() / "next.h5"));  // a real update again
}

TEST_F(Spikes, ALossSpikeIsFoundAsWell) {
  Trainer t(config("  on_spike: skip\n"), *be_, *comm_, *coll_);
  quiet_steps(t, 4);
  const std::vector<float> p4 = t.model().params_host();
  ScopedFault f("train.loss@step=5:value=1000");
  const StepStats s = t.step();
  EXPECT_DOUBLE_EQ(s.loss, 1000.0);
  EXPECT_TRUE(s.spike.loss);
  EXPECT_FALSE(s.spike.grad_norm);  // the gradients are the true ones
  EXPECT_TRUE(s.spike_skipped);
  EXPECT_EQ(t.model().params_host(), p4);
}

TEST_F(Spikes, WarnTrainsOnAndCounts) {
  Trainer t(config(), *be_, *comm_, *coll_);  // on_spike: warn is the default
  quiet_steps(t, 4);
  const std::vector<float> p4 = t.model().params_host();
  StepStats s;
  {
    ScopedFault f("train.grad@step=5:value=1000");
    s = t.step();
  }
  EXPECT_TRUE(s.spike.grad_norm);
  EXPECT_FALSE(s.spike_skipped);
  EXPECT_EQ(s.spikes_total, 1);
  EXPECT_EQ(s.skipped_spikes_total, 0);
  EXPECT_EQ(t.optimizer_steps(), 5);
  EXPECT_NE(t.model().params_host(), p4);
}

// A resume from step 6 of a run whose steps 4 and 8 are spikes: the checkpoint carries the
// detector's reference, so the resumed run finds (and skips) step 8 as the straight run does; a
// fresh detector would still be warming up there and apply the huge gradient.
TEST_F(Spikes, ResumeAcrossSpikesIsExact) {
  const Config cfg = config("  on_spike: skip\n");
  const ScopedFault f("train.grad@step=4:value=1000,train.grad@step=8:value=1000");
  std::vector<float> straight;
  SpikeState state10;
  {
    Trainer a(cfg, *be_, *comm_, *coll_);
    for (int i = 0; i < 6; ++i) a.step();
    ASSERT_TRUE(a.save_checkpoint(dir() / "spikes6.h5").empty());
    for (int i = 0; i < 4; ++i) a.step();
    EXPECT_EQ(a.spikes(), 2);
    EXPECT_EQ(a.skipped_spikes(), 2);
    EXPECT_EQ(a.optimizer_steps(), 8);
    straight = a.model().params_host();
    state10 = a.spike_detector().state();
  }
  Trainer b(cfg, *be_, *comm_, *coll_);
  b.load_checkpoint(dir() / "spikes6.h5", nullptr);
  EXPECT_EQ(b.steps_done(), 6);
  EXPECT_EQ(b.spikes(), 1);
  EXPECT_EQ(b.optimizer_steps(), 5);
  for (int i = 0; i < 4; ++i) b.step();
  EXPECT_EQ(b.spikes(), 2);
  EXPECT_EQ(b.model().params_host(), straight);
  EXPECT_EQ(b.spike_detector().state(), state10);
}

}  // namespace
}  // namespace qisa
