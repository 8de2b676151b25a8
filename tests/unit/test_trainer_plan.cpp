// The planner (trainer/plan.h): the activation bytes and parameter counts `qisa plan` prints are
// what a real GPT allocates (counted on a backend that wraps the CPU one); the memory lines,
// ZeRO-1 sharding, bf16 and the verdict. The FLOP model: test_trainer_flops.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "forwarding_backend.h"
#include "kernels/error.h"
#include "trainer/model.h"
#include "trainer/param_table.h"
#include "trainer/plan.h"

namespace qisa {
namespace {

// A Backend that forwards to the CPU backend and counts the bytes allocated (and still held).
class CountingBackend : public test::ForwardingBackend {
 public:
  int64_t live_bytes() const { return live_; }
  int64_t allocated_bytes() const { return total_; }

  std::string name() const override { return "counting:" + be_->name(); }
  void* alloc(size_t bytes) override {
    void* p = be_->alloc(bytes);
    sizes_[p] = bytes;
    live_ += static_cast<int64_t>(bytes);
    total_ += static_cast<int64_t>(bytes);
    return p;
  }
  void release(void* p) noexcept override {
    auto it = sizes_.find(p);
    if (it != sizes_.end()) live_ -= static_cast<int64_t>(it->second), sizes_.erase(it);
    be_->release(p);
  }
 private:
  std::map<void*, size_t> sizes_;
  int64_t live_ = 0, total_ = 0;
};

ModelConfig model(AttentionKind att, int C, int H, int L, int T, int64_t V) {
  ModelConfig m;
  m.vocab_size = V;
  m.block_size = T;
  m.n_embd = C;
  m.n_head = H;
  m.n_layer = L;
  m.attention = att;
  return m;
}

ModelConfig gpt2(AttentionKind att, int L, int H, int C) { return model(att, C, H, L, 1024, 50304); }

Config config_for(const ModelConfig& m, int64_t batch, int64_t micro, int zero) {
  Config c;
  c.model = m;
  c.data.corpus = "unused.h5";
  c.train.batch_size = batch;
  c.train.micro_batch_size = micro;
  c.dist.zero = zero;
  c.source = "test.yaml";
  return c;
}

// ------------------------------------------------------------------ the arena and the parameter count

TEST(Plan, ActivationBytesAndParamsAreWhatAGptAllocates) {
  struct Case {
    AttentionKind att;
    int C, H, L, T;
    int64_t V, micro, align;
  };
  const Case cases[] = {
      {AttentionKind::csa, 12, 3, 2, 8, 13, 1, 1},   {AttentionKind::csa, 16, 2, 3, 5, 70, 4, 4},
      {AttentionKind::qisa, 12, 3, 2, 8, 13, 2, 1},  {AttentionKind::qisa, 20, 4, 1, 7, 33, 3, 3},
      {AttentionKind::qisa_a, 8, 2, 2, 6, 11, 1, 2}, {AttentionKind::qisa_a, 16, 1, 3, 16, 64, 5, 1},
  };
  for (const auto& k : cases)
  for (const auto value : {QisaValue::per_head, QisaValue::shared})
  for (const auto rc : {Recompute::none, Recompute::blocks})
  for (const auto prec : {Precision::fp32, Precision::bf16}) {
    if (value == QisaValue::shared && k.att != AttentionKind::qisa) continue;
    ModelConfig m = model(k.att, k.C, k.H, k.L, k.T, k.V);
    m.qisa_value = value;
    SCOPED_TRACE(std::string(to_string(k.att)) + " C=" + std::to_string(k.C) + " micro=" + std::to_string(k.micro) +
                 " " + to_string(value) + (rc == Recompute::blocks ? " recompute blocks" : "") + " " +
                 to_string(prec));
    CountingBackend be;
    {
      GPT gpt(m, be, k.micro, k.align, rc, prec);
      const int64_t flat_bytes = gpt.flat_size() * static_cast<int64_t>(sizeof(float));
      // bf16: the GEMMs' weight copy beside the fp32 masters
      const int64_t copy_bytes = prec == Precision::bf16 ? gpt.flat_size() * 2 : 0;
      // the constructor allocates the flat params and grads (and the bf16 copy), and the arena: nothing else
      EXPECT_EQ(be.live_bytes(), 2 * flat_bytes + copy_bytes + activation_arena_bytes(m, k.micro, rc, prec));
      EXPECT_EQ(gpt.num_params(), ParamTable(m).total());

      // the planner's numbers for the same model, micro-batch and ZeRO alignment
      Config c = config_for(m, k.micro * k.align, k.micro, k.align > 1 ? 1 : 0);
      c.train.recompute = rc;
      c.model.vocab_size = 0;  // the plan pads the corpus's vocab itself
      PlanOptions opt;
      opt.precision = prec;
      opt.gpus = static_cast<int>(k.align);
      opt.device = find_device("h100");
      const Plan p = make_plan(c, k.V, opt);
      EXPECT_EQ(p.params, gpt.num_params());
      EXPECT_EQ(p.flat, gpt.flat_size());
      EXPECT_EQ(p.micro_batch, k.micro);
      double act = 0, weights = 0;
      for (const auto& l : p.memory) {
        if (l.name == "activations") act = l.bytes;
        if (l.name == "weights") weights = l.bytes;
      }
      EXPECT_EQ(act, static_cast<double>(activation_arena_bytes(m, k.micro, rc, prec)));

      // Pauli strings (init) are the only other model memory; the plan counts them with the weights.
      const int64_t before = be.live_bytes();
      gpt.init(1);
      EXPECT_EQ(weights, static_cast<double>(flat_bytes + copy_bytes + be.live_bytes() - before));
      // the arena is big enough for a forward and backward at max_batch (and allocates nothing more)
      std::vector<int32_t> x(static_cast<size_t>(k.micro * k.T)), y(x.size());
      for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<int32_t>(i % k.V), y[i] = static_cast<int32_t>((i + 1) % k.V);
      const int64_t held = be.live_bytes();
      gpt.forward(x.data(), y.data(), k.micro, k.T, StepContext{});
      gpt.backward(1.0f, GradMode::overwrite);
      EXPECT_EQ(be.live_bytes(), held);
    }
    EXPECT_EQ(be.live_bytes(), 0);
  }
}

TEST(Plan, ParamGroupsSumToTheTotal) {
  for (auto att : {AttentionKind::csa, AttentionKind::qisa, AttentionKind::qisa_a}) {
    Config c = config_for(model(att, 24, 4, 3, 10, 0), 8, 0, 0);
    PlanOptions opt;
    opt.device = find_device("h200");
    const Plan p = make_plan(c, 50, opt);
    int64_t sum = 0;
    for (const auto& [g, n] : p.param_groups) {
      EXPECT_GT(n, 0) << g;
      sum += n;
    }
    EXPECT_EQ(sum, p.params);
  }
  EXPECT_EQ(param_group("tok_emb.weight"), "embeddings");
  EXPECT_EQ(param_group("blocks.3.attn.v.weight"), "attention");
  EXPECT_EQ(param_group("blocks.0.mlp.fc.bias"), "mlp");
  EXPECT_EQ(param_group("blocks.0.ln2.weight"), "layernorm");
  EXPECT_EQ(param_group("ln_f.bias"), "layernorm");
  EXPECT_EQ(param_group("head.weight"), "head");
}

// GPT-2 124M shape with our model's parameters: separate head.weight and head.bias (not tied),
// no q/k/v biases for csa; vocab 50257 padded to 50304.
TEST(Plan, Gpt2SmallParameterCount) {
  const ModelConfig m = gpt2(AttentionKind::csa, 12, 12, 768);
  const int64_t C = 768, V = 50304, T = 1024, L = 12;
  const int64_t per_layer = 2 * C + 3 * C * C + (C * C + C) + 2 * C + (4 * C * C + 4 * C) + (4 * C * C + C);
  EXPECT_EQ(ParamTable(m).total(), V * C + T * C + L * per_layer + 2 * C + V * C + V);
  EXPECT_EQ(ParamTable(m).total(), 163'132'032);
}

// ------------------------------------------------------------------ memory lines and the verdict

double line(const Plan& p, const std::string& name) {
  for (const auto& l : p.memory)
    if (l.name == name) return l.bytes;
  return -1;
}

TEST(Plan, ZeroOneDividesTheOptimizerStateOverTheGpus) {
  const ModelConfig m = model(AttentionKind::qisa, 32, 4, 2, 16, 0);
  PlanOptions one;
  one.device = find_device("h100");
  const Plan p1 = make_plan(config_for(m, 64, 4, 1), 101, one);
  PlanOptions four = one;
  four.gpus = 4;
  const Plan p4 = make_plan(config_for(m, 64, 4, 1), 101, four);
  EXPECT_EQ(p4.flat % 4, 0);
  EXPECT_EQ(p4.shard, p4.flat / 4);
  EXPECT_EQ(p4.flat, (p1.params + 3) / 4 * 4);
  EXPECT_DOUBLE_EQ(line(p1, "optimizer"), 8.0 * p1.params);
  EXPECT_DOUBLE_EQ(line(p4, "optimizer"), 8.0 * p4.shard);
  EXPECT_DOUBLE_EQ(line(p4, "zero1_buffers"), 8.0 * p4.shard);
  EXPECT_DOUBLE_EQ(line(p4, "gradients"), 4.0 * p4.flat);  // the whole flat buffer on every GPU
  EXPECT_DOUBLE_EQ(line(p4, "activations"), line(p1, "activations"));  // same micro-batch
  // without ZeRO every GPU holds the whole state
  const Plan r4 = make_plan(config_for(m, 64, 4, 0), 101, four);
  EXPECT_DOUBLE_EQ(line(r4, "optimizer"), 8.0 * r4.params);
  EXPECT_EQ(line(r4, "zero1_buffers"), -1);
  // tokens per step and the micro-batches
  EXPECT_EQ(p4.tokens_per_step, 64 * 16);
  EXPECT_EQ(p4.local_batch, 16);
  EXPECT_EQ(p4.micro_steps, 4);
}

TEST(Plan, Bf16HalvesTheActivationsAndKeepsFp32MasterWeights) {
  const ModelConfig m = model(AttentionKind::csa, 32, 4, 2, 16, 0);
  PlanOptions fp;
  fp.device = find_device("h100");
  fp.gpus = 2;
  PlanOptions bf = fp;
  bf.precision = Precision::bf16;
  const Plan a = make_plan(config_for(m, 8, 2, 1), 64, fp), b = make_plan(config_for(m, 8, 2, 1), 64, bf);
  const double pauli = 0;  // csa
  EXPECT_DOUBLE_EQ(line(b, "weights"), 6.0 * b.flat + pauli);  // fp32 masters + bf16 copy
  EXPECT_DOUBLE_EQ(line(b, "gradients"), 4.0 * b.flat);
  EXPECT_DOUBLE_EQ(line(b, "optimizer"), 8.0 * b.shard);  // m + v
  EXPECT_DOUBLE_EQ(line(b, "zero1_buffers"), 8.0 * b.shard);
  // activations: half, except the fp32 statistics and losses and the int32 ids
  double fp32_elems = 0, all = 0;
  for (const auto& buf : b.arena) {
    all += static_cast<double>(buf.total());
    if (buf.is_int || buf.keeps_fp32) fp32_elems += static_cast<double>(buf.total());
  }
  EXPECT_DOUBLE_EQ(line(a, "activations"), 4.0 * all);
  EXPECT_DOUBLE_EQ(line(b, "activations"), 2.0 * (all - fp32_elems) + 4.0 * fp32_elems);
}

TEST(Plan, VerdictFlipsAtTheDeviceMemory) {
  const ModelConfig m = model(AttentionKind::qisa, 32, 4, 2, 16, 0);
  const Config c = config_for(m, 8, 0, 0);
  PlanOptions opt;
  opt.headroom_bytes = 1000;
  opt.device = DeviceSpec{"custom", "test", 0};
  const Plan probe = make_plan(c, 64, opt);
  const double need = probe.total_bytes + 1000;
  opt.device.memory_bytes = need;
  EXPECT_TRUE(make_plan(c, 64, opt).fits);
  opt.device.memory_bytes = need - 1;
  EXPECT_FALSE(make_plan(c, 64, opt).fits);
  double sum = 0;
  for (const auto& l : probe.memory) sum += l.bytes;
  EXPECT_DOUBLE_EQ(probe.total_bytes, sum);
}

TEST(Plan, ErrorsNameTheKeys) {
  const ModelConfig m = model(AttentionKind::csa, 16, 2, 1, 8, 0);
  PlanOptions opt;
  opt.device = find_device("h100");
  opt.gpus = 3;
  try {
    make_plan(config_for(m, 8, 0, 0), 64, opt);
    ADD_FAILURE() << "batch 8 over 3 GPUs was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.batch_size = 8"), std::string::npos) << e.what();
  }
  opt.gpus = 2;
  try {
    make_plan(config_for(m, 8, 8, 0), 64, opt);  // micro 8 > per-GPU 4: the trainer clamps it to 4
  } catch (const Error& e) {
    ADD_FAILURE() << e.what();
  }
  try {
    make_plan(config_for(m, 12, 4, 0), 64, opt);  // per-GPU 6, micro 4
    ADD_FAILURE() << "micro 4 of a per-GPU batch of 6 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.micro_batch_size = 4"), std::string::npos) << e.what();
  }
  EXPECT_THROW(find_device("h300"), Error);
}

}  // namespace
}  // namespace qisa
