// train.recompute: blocks (GPT built with Recompute::blocks): forward keeps only each block's
// input, backward recomputes a block's forward just before its backward. Checked: loss, logits
// and every gradient BIT-identical to Recompute::none for every attention kind (qisa per_head
// and shared), both masks, with dropout; the activation arena measurably smaller and growing by
// one [N, C] buffer per block; the static arena size equal to what a model allocates; and a
// short training run (micro-batched, with dropout) ending in the same parameters bit for bit.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "expect_error.h"
#include "io/config.h"
#include "io/corpus.h"
#include "kernels/backend.h"
#include "test_util.h"
#include "trainer_fixture.h"
#include "trainer/comm/collectives.h"
#include "trainer/comm/communicator.h"
#include "trainer/model.h"
#include "trainer/trainer.h"

namespace qisa {
namespace {

struct Variant {
  AttentionKind attention;
  QisaValue value;
  const char* name;
};
const Variant kVariants[] = {{AttentionKind::csa, QisaValue::per_head, "csa"},
                             {AttentionKind::qisa, QisaValue::per_head, "qisa_per_head"},
                             {AttentionKind::qisa, QisaValue::shared, "qisa_shared"},
                             {AttentionKind::qisa_a, QisaValue::per_head, "qisa_a"}};

ModelConfig model_cfg(const Variant& v, AttnMask mask, int L, double dropout) {
  ModelConfig m;
  m.vocab_size = 13;
  m.block_size = 7;
  m.n_embd = 24;
  m.n_head = 3;
  m.n_layer = L;
  m.attention = v.attention;
  m.qisa_value = v.value;
  m.mask = mask;
  m.dropout = dropout;
  m.activation = Activation::gelu;
  return m;
}

// Two micro-batches of 3 sequences into one gradient (the second at seq_offset 3, as the trainer
// does), with dropout on: the losses, the last logits and the gradients.
struct Result {
  std::vector<double> losses;
  std::vector<float> logits, grads, heads_last;
};
Result run(const ModelConfig& m, Recompute recompute) {
  auto be = make_cpu_backend(1);
  GPT model(m, *be, 3, 1, recompute);
  model.init(17);
  const int T = m.block_size;
  std::vector<int32_t> x(6 * T), y(6 * T);
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = static_cast<int32_t>((i * 7 + 3) % m.vocab_size);
    y[i] = static_cast<int32_t>((i * 5 + 1) % m.vocab_size);
  }
  Result r;
  for (int64_t m0 = 0; m0 < 6; m0 += 3) {
    const StepContext ctx{true, 99, 4, m0};
    r.losses.push_back(model.forward(x.data() + m0 * T, y.data() + m0 * T, 3, T, ctx));
    r.logits = model.logits_host();
    r.heads_last = model.head_outputs_host(m.n_layer - 1);  // the last block's: held in both modes
    model.backward(1.0f / static_cast<float>(6 * T), m0 == 0 ? GradMode::overwrite : GradMode::accumulate);
  }
  r.grads = model.grads_host();
  return r;
}

TEST(Recompute, LossLogitsAndGradientsAreBitIdentical) {
  for (const Variant& v : kVariants)
    for (auto mask : {AttnMask::causal, AttnMask::reference}) {
      SCOPED_TRACE(std::string(v.name) + " " + to_string(mask));
      const ModelConfig m = model_cfg(v, mask, 3, 0.2);
      const Result full = run(m, Recompute::none), re = run(m, Recompute::blocks);
      EXPECT_EQ(re.losses, full.losses);
      EXPECT_EQ(re.logits, full.logits);
      EXPECT_EQ(re.heads_last, full.heads_last);
      EXPECT_EQ(re.grads, full.grads);
      // dropout was on: the comparison covers the recomputed masks
      EXPECT_NE(run(model_cfg(v, mask, 3, 0.0), Recompute::blocks).grads, re.grads);
    }
}

TEST(Recompute, OnlyTheHeldBlocksHeadOutputsCanBeRead) {
  auto be = make_cpu_backend(1);
  const ModelConfig m = model_cfg(kVariants[1], AttnMask::causal, 3, 0.0);
  GPT model(m, *be, 2, 1, Recompute::blocks);
  model.init(1);
  std::vector<int32_t> x(2 * 7, 1);
  model.forward(x.data(), x.data(), 2, 7, StepContext{});
  EXPECT_NO_THROW(model.head_outputs_host(2));
  test::expect_mentions(test::error_of([&] { model.head_outputs_host(0); }), {"block 0", "recompute", "block 2"});
  model.backward(1.0f, GradMode::overwrite);  // recomputes blocks 1 and 0: block 0 is held afterwards
  EXPECT_NO_THROW(model.head_outputs_host(0));
}

// The arena: without recompute every block keeps its activations, with it only its input
// x_in [N, C] grows with the depth; the static count equals what a model allocates.
TEST(Recompute, ActivationArenaShrinks) {
  auto be = make_cpu_backend(1);
  const int64_t max_batch = 4;
  for (const Variant& v : kVariants) {
    SCOPED_TRACE(v.name);
    auto bytes = [&](int L, Recompute r) {
      const ModelConfig m = model_cfg(v, AttnMask::causal, L, 0.1);
      const int64_t fixed = GPT::activation_bytes(m, max_batch, r);
      GPT model(m, *be, max_batch, 1, r);
      EXPECT_EQ(model.activation_bytes(), fixed) << "L " << L;
      return fixed;
    };
    const int64_t NC = max_batch * 7 * 24 * static_cast<int64_t>(sizeof(float));  // one [N, C] buffer
    const int64_t block = bytes(2, Recompute::none) - bytes(1, Recompute::none) - NC;  // one block's saved rest
    EXPECT_GT(block, 10 * NC);
    EXPECT_EQ(bytes(1, Recompute::blocks), bytes(1, Recompute::none));  // one block: nothing to save
    for (int L : {4, 6, 12}) {
      SCOPED_TRACE("L " + std::to_string(L));
      const int64_t none = bytes(L, Recompute::none), re = bytes(L, Recompute::blocks);
      EXPECT_EQ(none - re, (L - 1) * block);                     // L Blocks -> 1 Block
      EXPECT_EQ(re - bytes(L - 1, Recompute::blocks), NC);        // per block: only x_in
      EXPECT_EQ(none - bytes(L - 1, Recompute::none), NC + block);
      // these shapes give 0.44-0.45 (L = 4), 0.33-0.34 (L = 6), 0.20-0.21 (L = 12) of the full arena
      const double ratio = static_cast<double>(re) / static_cast<double>(none);
      EXPECT_LT(ratio, L == 4 ? 0.5 : L == 6 ? 0.4 : 0.25) << re << " / " << none;
    }
  }
  // the breakdown names the buffers and sums to the total
  const ModelConfig m = model_cfg(kVariants[2], AttnMask::causal, 6, 0.0);
  int64_t sum = 0;
  for (const auto& it : GPT::activation_arena(m, max_batch, Recompute::blocks)) {
    sum += it.bytes;
    if (it.name == "x_in") {
      EXPECT_EQ(it.copies, 6);
    } else if (it.name == "fc_pre") {
      EXPECT_EQ(it.copies, 1);
    } else if (it.name == "u") {
      EXPECT_EQ(it.bytes, max_batch * 7 * 24 * 4);  // shared: [N, C]
    }
  }
  EXPECT_EQ(sum, GPT::activation_bytes(m, max_batch, Recompute::blocks));
}

// A short run through the Trainer (micro-batches, dropout) with train.recompute none and blocks:
// the same parameters, bit for bit.
class RecomputeTraining : public test::CorpusSuite {};

Config training_config(const std::string& corpus, const std::string& att, const std::string& value,
                       const std::string& recompute) {
  Config c = parse_config("model:\n  block_size: 8\n  n_embd: 12\n  n_head: 3\n  n_layer: 3\n  dropout: 0.1\n"
                          "  attention: " + att + "\n  qisa_value: " + value + "\n"
                          "data:\n  corpus: " + corpus + "\n"
                          "train:\n  batch_size: 8\n  micro_batch_size: 4\n  lr: 0.01\n  seed: 3\n"
                          "  recompute: " + recompute + "\n"
                          "eval:\n  windows: 4\n",
                          "recompute.yaml");
  check_against_corpus(c, read_corpus_info(c.data.corpus));
  return c;
}

TEST_F(RecomputeTraining, ShortRunEndsInTheSameParameters) {
  auto be = make_cpu_backend(1);
  auto comm = make_communicator("none");
  auto coll = make_collectives(*comm, *be);
  for (const char* att : {"csa", "qisa", "qisa_a"})
    for (const char* value : {"per_head", "shared"}) {
      if (std::string(value) == "shared" && std::string(att) != "qisa") continue;
      SCOPED_TRACE(std::string(att) + " " + value);
      std::vector<float> params[2];
      std::vector<double> losses[2];
      for (int r = 0; r < 2; ++r) {
        Trainer t(training_config(corpus(), att, value, r ? "blocks" : "none"), *be, *comm, *coll);
        EXPECT_EQ(t.model().recompute(), r ? Recompute::blocks : Recompute::none);
        for (int i = 0; i < 5; ++i) losses[r].push_back(t.step().loss);
        params[r] = t.model().params_host();
      }
      EXPECT_EQ(losses[1], losses[0]);
      EXPECT_EQ(params[1], params[0]);
    }
}

// A checkpoint written without recomputation resumes with it (and the other way round): the
// same parameters as a straight run, and no warning (the key changes memory and time only).
TEST_F(RecomputeTraining, ResumingWithTheOtherSettingIsExactAndSilent) {
  auto be = make_cpu_backend(1);
  auto comm = make_communicator("none");
  auto coll = make_collectives(*comm, *be);
  for (int first = 0; first < 2; ++first) {
    const std::string a = first ? "blocks" : "none", b = first ? "none" : "blocks";
    SCOPED_TRACE(a + " then " + b);
    const std::string data = corpus(), ckpt = dir() / ("ckpt_" + a + ".h5");
    std::vector<float> straight;
    {
      Trainer t(training_config(data, "qisa", "shared", a), *be, *comm, *coll);
      for (int i = 0; i < 2; ++i) t.step();
      ASSERT_TRUE(t.save_checkpoint(ckpt).empty());
      for (int i = 0; i < 3; ++i) t.step();
      straight = t.model().params_host();
    }
    Trainer t(training_config(data, "qisa", "shared", b), *be, *comm, *coll);
    std::vector<std::string> warnings;
    t.load_checkpoint(ckpt, [&](const std::string& w) { warnings.push_back(w); });
    EXPECT_TRUE(warnings.empty()) << warnings.front();
    for (int i = 0; i < 3; ++i) t.step();
    EXPECT_EQ(t.model().params_host(), straight);
  }
}

}  // namespace
}  // namespace qisa
