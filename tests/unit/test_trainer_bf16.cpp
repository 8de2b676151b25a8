// train.precision bf16 end to end on the CPU backend: the model's arena holds bf16 activations
// and a bf16 weight copy beside the fp32 masters; a bf16 run trains like an fp32 one; it resumes
// bit for bit (stochastic rounding of the weight copy included); checkpoints hold the fp32
// masters, so an fp32 checkpoint continues in bf16 and back.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "expect_error.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/corpus.h"
#include "kernels/backend.h"
#include "kernels/bf16.h"
#include "test_util.h"
#include "trainer_fixture.h"
#include "trainer/comm/collectives.h"
#include "trainer/comm/communicator.h"
#include "trainer/model.h"
#include "trainer/trainer.h"

namespace qisa {
namespace {

class Bf16Training : public test::CorpusSuite {
 protected:
  static Config config(const std::string& attention, const std::string& train_extra) {
    Config c = parse_config("model:\n  block_size: 8\n  n_embd: 16\n  n_head: 2\n  n_layer: 2\n  dropout: 0.1\n"
                            "  attention: " + attention + "\n"
                            "data:\n  corpus: " + corpus() + "\n"
                            "train:\n  batch_size: 8\n  micro_batch_size: 4\n  lr: 0.01\n  seed: 5\n  threads: 2\n" +
                                train_extra + "eval:\n  windows: 4\n",
                            "bf16.yaml");
    check_against_corpus(c, read_corpus_info(c.data.corpus));
    return c;
  }
  std::vector<double> losses(const Config& cfg, int steps) {
    Trainer t(cfg, *be_, *comm_, *coll_);
    std::vector<double> l;
    for (int i = 0; i < steps; ++i) l.push_back(t.step().loss);
    return l;
  }

  std::unique_ptr<Backend> be_ = make_cpu_backend(2);
  std::unique_ptr<Communicator> comm_ = make_communicator("none");
  std::unique_ptr<Collectives> coll_ = make_collectives(*comm_, *be_);
};

double mean(const std::vector<double>& v, size_t from, size_t to) {
  double s = 0;
  for (size_t i = from; i < to; ++i) s += v[i];
  return s / static_cast<double>(to - from);
}

TEST_F(Bf16Training, TrainsLikeFp32ForEveryAttention) {
  for (const char* att : {"csa", "qisa", "qisa_a"}) {
    SCOPED_TRACE(att);
    const auto f = losses(config(att, "  precision: fp32\n"), 40);
    const auto b = losses(config(att, "  precision: bf16\n"), 40);
    // the first step sees the same weights up to bf16 rounding: the same loss within 1%
    EXPECT_NEAR(b[0], f[0], 0.01 * f[0]);
    EXPECT_NE(b[0], f[0]);  // and it did run in bf16
    // both learn, and end within 3% of each other (mean of the last 5 steps)
    EXPECT_LT(mean(b, 35, 40), 0.8 * mean(b, 0, 5));
    EXPECT_NEAR(mean(b, 35, 40), mean(f, 35, 40), 0.03 * mean(f, 35, 40));
  }
}

TEST_F(Bf16Training, ResumeIsBitExactWithEitherRounding) {
  for (const char* rounding : {"nearest", "stochastic"}) {
    SCOPED_TRACE(rounding);
    const Config cfg = config("qisa", std::string("  precision: bf16\n  bf16_rounding: ") + rounding + "\n");
    const std::string ckpt = dir() / (std::string("bf16_") + rounding + ".h5");
    std::vector<float> straight;
    {
      Trainer a(cfg, *be_, *comm_, *coll_);
      for (int i = 0; i < 3; ++i) a.step();
      ASSERT_TRUE(a.save_checkpoint(ckpt).empty());
      for (int i = 0; i < 3; ++i) a.step();
      straight = a.model().params_host();
    }
    Trainer b(cfg, *be_, *comm_, *coll_);
    b.load_checkpoint(ckpt, nullptr);
    for (int i = 0; i < 3; ++i) b.step();
    EXPECT_EQ(b.model().params_host(), straight);
  }
  // the rounding is used: the two runs differ
  EXPECT_NE(losses(config("qisa", "  precision: bf16\n  bf16_rounding: nearest\n"), 4).back(),
            losses(config("qisa", "  precision: bf16\n  bf16_rounding: stochastic\n"), 4).back());
}

TEST_F(Bf16Training, CheckpointsHoldFp32MastersSoPrecisionCanChangeAtAResume) {
  const Config f32 = config("csa", "  precision: fp32\n"), b16 = config("csa", "  precision: bf16\n");
  const std::string a_path = dir() / "fp32_3.h5", b_path = dir() / "bf16_6.h5";
  std::vector<float> straight;
  {
    Trainer a(f32, *be_, *comm_, *coll_);
    for (int i = 0; i < 3; ++i) a.step();
    ASSERT_TRUE(a.save_checkpoint(a_path).empty());
    for (int i = 0; i < 6; ++i) a.step();
    straight = a.model().params_host();
  }
  {  // fp32 -> bf16: the switch is said, and the saved parameters are the masters, not bf16 values
    Trainer b(b16, *be_, *comm_, *coll_);
    std::string warned;
    b.load_checkpoint(a_path, [&](const std::string& w) { warned += w + "\n"; });
    test::expect_mentions(warned, {"train.precision", "bf16", "fp32"});
    for (int i = 0; i < 3; ++i) b.step();
    ASSERT_TRUE(b.save_checkpoint(b_path).empty());
    const auto masters = b.model().params_host();
    std::vector<float> saved(masters.size());
    CheckpointReader r(b_path);
    int64_t off = 0;
    for (const auto& e : b.model().table().entries()) {
      r.read_piece("params", e.name, 0, saved.data() + off, e.numel);
      off += e.numel;
    }
    EXPECT_EQ(saved, masters);
    size_t not_bf16 = 0;
    for (float x : masters) not_bf16 += bf16_to_float(float_to_bf16(x)) != x;
    EXPECT_GT(not_bf16, masters.size() / 2);
  }
  // bf16 -> fp32: continues, and lands near the run that stayed fp32
  Trainer c(f32, *be_, *comm_, *coll_);
  c.load_checkpoint(b_path, nullptr);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(std::isfinite(c.step().loss));
  const auto p = c.model().params_host();
  double num = 0, den = 0;
  for (size_t i = 0; i < p.size(); ++i) num += std::pow(p[i] - straight[i], 2), den += std::pow(straight[i], 2);
  EXPECT_LT(std::sqrt(num / den), 0.02) << "relative distance to the fp32 run";
  EXPECT_GT(num, 0.0);
}

// The bf16 model's logits and head outputs come back to the host as floats, and its forward
// agrees with the fp32 model's on the same weights within bf16 accuracy.
TEST(Bf16Model, ForwardAgreesWithFp32AndResultsReadBackAsFloats) {
  ModelConfig m;
  m.vocab_size = 23;
  m.block_size = 9;
  m.n_embd = 24;
  m.n_head = 3;
  m.n_layer = 2;
  m.attention = AttentionKind::qisa;
  auto be = make_cpu_backend(2);
  GPT f(m, *be, 2), b(m, *be, 2, 1, Recompute::none, Precision::bf16);
  f.init(3);
  b.init(3);
  EXPECT_EQ(b.params_host(), f.params_host());  // the masters are the same fp32 values
  std::vector<int32_t> x(18), y(18);
  for (int i = 0; i < 18; ++i) x[i] = (i * 5 + 1) % 23, y[i] = (i * 7 + 2) % 23;
  const double lf = f.forward(x.data(), y.data(), 2, 9, StepContext{});
  const double lb = b.forward(x.data(), y.data(), 2, 9, StepContext{});
  EXPECT_NEAR(lb, lf, 0.01 * lf);
  const auto gf = f.logits_host(), gb = b.logits_host();
  ASSERT_EQ(gb.size(), gf.size());
  EXPECT_LT(test::max_rel_err(std::vector<double>(gb.begin(), gb.end()), std::vector<double>(gf.begin(), gf.end())),
            0.05);
  for (float v : gb) ASSERT_EQ(bf16_to_float(float_to_bf16(v)), v);  // stored in bf16
  const auto hb = b.head_outputs_host(1);
  EXPECT_EQ(hb.size(), f.head_outputs_host(1).size());
  // the bf16 arena is smaller: every activation in 2 bytes, statistics and losses in 4
  EXPECT_LT(b.activation_bytes(), f.activation_bytes() * 0.6);
  EXPECT_EQ(b.activation_bytes(), GPT::activation_bytes(m, 2, Recompute::none, Precision::bf16));
}

}  // namespace
}  // namespace qisa
