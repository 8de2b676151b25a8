// train.on_nonfinite inside one process (the fault train.grad poisons a gradient): a skipped
// step leaves the parameters and both AdamW moments bit for bit as they were, AdamW's bias
// correction does not count it, the count survives a checkpoint and a resume is exact across
// it; `stop` does not take the step at all. Under mpirun: test_dist_faults.cpp.
#include <gtest/gtest.h>

#include <algorithm>
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
#include "trainer/trainer.h"

namespace qisa {
namespace {

using test::ScopedFault;

class NonFinite : public test::CorpusSuite {
 protected:

  static Config config(const std::string& extra = "") {
    Config c = parse_config("model:\n  block_size: 8\n  n_embd: 8\n  n_head: 2\n  n_layer: 1\n  dropout: 0.1\n"
                            "data:\n  corpus: " + corpus() + "\n"
                            "train:\n  batch_size: 8\n  lr: 0.001\n  seed: 3\n  threads: 1\n" + extra +
                            "eval:\n  windows: 4\n",
                            "nonfinite.yaml");
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

  std::unique_ptr<Backend> be_ = make_cpu_backend(1);
  std::unique_ptr<Communicator> comm_ = make_communicator("none");
  std::unique_ptr<Collectives> coll_ = make_collectives(*comm_, *be_);
};

TEST_F(NonFinite, SkipLeavesParametersAndMomentsBitForBitAndCountsTheStep) {
  Trainer t(config("  on_nonfinite: skip\n"), *be_, *comm_, *coll_);
  t.step();
  t.step();
  ASSERT_TRUE(t.save_checkpoint(dir() / "before.h5").empty());
  StepStats s;
  {
    ScopedFault f("train.grad@step=3:nan");
    s = t.step();
  }
  EXPECT_EQ(s.step, 3);
  EXPECT_TRUE(s.skipped);
  EXPECT_EQ(s.nonfinite, "gradient norm = nan");
  EXPECT_EQ(s.skipped_total, 1);
  EXPECT_EQ(t.steps_done(), 3);      // the batch is consumed
  EXPECT_EQ(t.optimizer_steps(), 2);  // but AdamW took no step
  ASSERT_TRUE(t.save_checkpoint(dir() / "after.h5").empty());
  EXPECT_EQ(tensors(dir() / "before.h5"), tensors(dir() / "after.h5"));
  EXPECT_EQ(CheckpointReader(dir() / "after.h5").state().skipped_nonfinite, 1);
  const StepStats next = t.step();  // training goes on, finite
  EXPECT_TRUE(next.nonfinite.empty());
  EXPECT_TRUE(std::isfinite(next.loss));
  EXPECT_EQ(next.skipped_total, 1);
  ASSERT_TRUE(t.save_checkpoint(dir() / "next.h5").empty());
  EXPECT_NE(tensors(dir() / "after.h5"), tensors(dir() / "next.h5"));  // a real update again
}

// AdamW's bias correction at its first update makes every step lr * g / (|g| + eps): with no
// weight decay, parameters with a sizeable gradient move by lr. Counting a skipped step as
// AdamW's first would make that lr * sqrt(1 + beta2) / (1 + beta1) = 0.74 lr.
TEST_F(NonFinite, ASkippedFirstStepLeavesAdamWsFirstUpdateForTheNextStep) {
  Trainer t(config("  on_nonfinite: skip\n  weight_decay: 0.0\n"), *be_, *comm_, *coll_);
  const std::vector<float> p0 = t.model().params_host();
  {
    ScopedFault f("train.grad@step=1:inf");
    const StepStats s = t.step();
    ASSERT_TRUE(s.skipped);
    EXPECT_EQ(s.nonfinite, "gradient norm = inf");
  }
  EXPECT_EQ(t.model().params_host(), p0);
  t.step();
  EXPECT_EQ(t.optimizer_steps(), 1);
  const std::vector<float> p1 = t.model().params_host();
  double largest = 0;
  for (size_t i = 0; i < p0.size(); ++i) largest = std::max(largest, std::abs(static_cast<double>(p1[i]) - p0[i]));
  EXPECT_NEAR(largest, 1e-3, 2e-5);
}

// A resume from a checkpoint written after a skipped step continues exactly: the skip count
// (and with it AdamW's step counter) comes back from the checkpoint.
TEST_F(NonFinite, ResumeAcrossASkippedStepIsExact) {
  const Config cfg = config("  on_nonfinite: skip\n");
  std::vector<float> straight;
  {
    ScopedFault f("train.grad@step=2:nan");
    Trainer a(cfg, *be_, *comm_, *coll_);
    for (int i = 0; i < 3; ++i) a.step();
    ASSERT_TRUE(a.save_checkpoint(dir() / "skipped3.h5").empty());
    for (int i = 0; i < 3; ++i) a.step();
    EXPECT_EQ(a.skipped_nonfinite(), 1);
    straight = a.model().params_host();
  }
  Trainer b(cfg, *be_, *comm_, *coll_);
  b.load_checkpoint(dir() / "skipped3.h5", nullptr);
  EXPECT_EQ(b.steps_done(), 3);
  EXPECT_EQ(b.skipped_nonfinite(), 1);
  EXPECT_EQ(b.optimizer_steps(), 2);
  for (int i = 0; i < 3; ++i) b.step();
  EXPECT_EQ(b.model().params_host(), straight);
}

TEST_F(NonFinite, StopDoesNotTakeTheStep) {
  Trainer t(config(), *be_, *comm_, *coll_);  // on_nonfinite: stop is the default
  t.step();
  const std::vector<float> p1 = t.model().params_host();
  ScopedFault f("train.grad@step=2:nan");
  const StepStats s = t.step();
  EXPECT_EQ(s.step, 2);
  EXPECT_FALSE(s.skipped);
  EXPECT_EQ(s.nonfinite, "gradient norm = nan");
  EXPECT_EQ(t.steps_done(), 1);
  EXPECT_EQ(t.model().params_host(), p1);
}

}  // namespace
}  // namespace qisa
