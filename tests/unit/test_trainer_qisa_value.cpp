// model.qisa_value: shared (one C x C value map per block, u = a L^T once per token, every head
// measuring that same u with its own Pauli strings) against per_head (the paper's L_h per head):
// a shared model is exactly a per_head model whose L_h are all equal, its value gradient is the
// sum of the per-head ones, finite differences agree, the parameter count is csa's plus the q/k
// biases, it trains, it resumes exactly, and model files keep the key (older files: per_head).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "expect_error.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/corpus.h"
#include "io/model_file.h"
#include "kernels/backend.h"
#include "test_util.h"
#include "trainer_fixture.h"
#include "trainer/comm/collectives.h"
#include "trainer/comm/communicator.h"
#include "trainer/model.h"
#include "trainer/model_io.h"
#include "trainer/param_table.h"
#include "trainer/trainer.h"

namespace qisa {
namespace {

// Odd sizes: C = 24 (n = 5 qubits, 32 amplitudes, 8 of them padding), H = 3 heads of D = 8, T = 7.
ModelConfig model_cfg(QisaValue value, AttnMask mask, double dropout = 0.0) {
  ModelConfig m;
  m.vocab_size = 13;
  m.block_size = 7;
  m.n_embd = 24;
  m.n_head = 3;
  m.n_layer = 2;
  m.attention = AttentionKind::qisa;
  m.qisa_value = value;
  m.mask = mask;
  m.dropout = dropout;
  return m;
}

struct Batch {
  int64_t B = 3;
  int T = 7;
  std::vector<int32_t> x, y;
};
Batch make_batch(int64_t V) {
  Batch b;
  for (int64_t i = 0; i < b.B * b.T; ++i) {
    b.x.push_back(static_cast<int32_t>((i * 7 + 3) % V));
    b.y.push_back(static_cast<int32_t>((i * 5 + 1) % V));
  }
  return b;
}

std::vector<float> slice(const std::vector<float>& flat, const ParamEntry& e) {
  return std::vector<float>(flat.begin() + e.offset, flat.begin() + e.offset + e.numel);
}

bool is_value_weight(const std::string& name) {
  return name.size() > 14 && name.compare(name.size() - 14, 14, ".attn.v.weight") == 0;
}

// A per_head model and a shared one with L_h = L for every head h, every other parameter and
// every Pauli string equal. forward() then backward() of both on the same batch.
struct Pair {
  std::unique_ptr<Backend> be = make_cpu_backend(2);
  GPT per_head, shared;
  Pair(AttnMask mask, double dropout)
      : per_head(model_cfg(QisaValue::per_head, mask, dropout), *be, 3),
        shared(model_cfg(QisaValue::shared, mask, dropout), *be, 3) {
    shared.init(21);
    per_head.init(22);  // other values everywhere; overwritten below
    const std::vector<float> s = shared.params_host();
    std::vector<float> p = per_head.params_host();
    const int64_t H = per_head.config().n_head;
    for (const auto& e : shared.table().entries()) {
      const ParamEntry& pe = per_head.table().at(e.name);
      for (int64_t h = 0; h < (is_value_weight(e.name) ? H : 1); ++h)
        std::copy(s.begin() + e.offset, s.begin() + e.offset + e.numel, p.begin() + pe.offset + h * e.numel);
    }
    per_head.set_params_host(p);
    for (int l = 0; l < shared.config().n_layer; ++l) per_head.set_pauli(l, shared.pauli()[l]);
  }
};

TEST(QisaValueShared, EqualsPerHeadWithEqualMapsAndItsValueGradientIsTheSumOverHeads) {
  for (auto mask : {AttnMask::causal, AttnMask::reference})
    for (double dropout : {0.0, 0.15}) {
      SCOPED_TRACE(std::string(to_string(mask)) + " dropout " + std::to_string(dropout));
      Pair m(mask, dropout);
      const Batch b = make_batch(13);
      const StepContext ctx{dropout > 0, 7, 3, 0};
      const double loss_p = m.per_head.forward(b.x.data(), b.y.data(), b.B, b.T, ctx);
      const double loss_s = m.shared.forward(b.x.data(), b.y.data(), b.B, b.T, ctx);
      EXPECT_NEAR(loss_s, loss_p, 1e-6 * loss_p);
      EXPECT_LE(test::max_rel_err(m.shared.logits_host(), m.per_head.logits_host()), 1e-5);
      for (int l = 0; l < 2; ++l)
        EXPECT_LE(test::max_rel_err(m.shared.head_outputs_host(l), m.per_head.head_outputs_host(l)), 1e-5) << l;
      m.per_head.backward(1.0f / static_cast<float>(b.B * b.T), GradMode::overwrite);
      m.shared.backward(1.0f / static_cast<float>(b.B * b.T), GradMode::overwrite);
      const std::vector<float> gp = m.per_head.grads_host(), gs = m.shared.grads_host();
      int value_weights = 0;
      for (const auto& e : m.shared.table().entries()) {
        const ParamEntry& pe = m.per_head.table().at(e.name);
        std::vector<double> want(static_cast<size_t>(e.numel), 0.0);
        if (is_value_weight(e.name)) {  // dL/dL = sum_h dL/dL_h
          ++value_weights;
          ASSERT_EQ(e.shape, (std::vector<int64_t>{24, 24}));
          ASSERT_EQ(pe.shape, (std::vector<int64_t>{3, 24, 24}));
          for (int64_t h = 0; h < 3; ++h)
            for (int64_t i = 0; i < e.numel; ++i) want[i] += gp[pe.offset + h * e.numel + i];
          // and each head's part matters: no single head's gradient is the sum
          EXPECT_GT(test::max_rel_err(std::vector<float>(gp.begin() + pe.offset, gp.begin() + pe.offset + e.numel),
                                      want),
                    1e-2)
              << e.name;
        } else {
          for (int64_t i = 0; i < e.numel; ++i) want[i] = gp[pe.offset + i];
        }
        EXPECT_LE(test::max_rel_err(slice(gs, e), want), 1e-4) << e.name;
      }
      EXPECT_EQ(value_weights, 2);
    }
}

// Central differences of the float model's loss against backward, for every element of every
// block's shared value map (the float64 check of the same composition of kernels is
// GradCheck.SharedPauliValue in test_kernels_gradcheck.cpp). Float32 forward: h = 1e-2 keeps the
// rounding of the loss (~1e-7) small against the differences; gelu, not relu, so that no kink
// lies between p - h and p + h. Measured error 1.2e-4 .. 2.8e-4 (h = 3e-3: 3.4e-4, h = 1e-3:
// 1.1e-3, float noise); a head's part missing from the sum would be an error of order 1.
TEST(QisaValueShared, FiniteDifferenceGradientOfTheSharedValueWeights) {
  for (auto mask : {AttnMask::causal, AttnMask::reference}) {
    SCOPED_TRACE(to_string(mask));
    auto be = make_cpu_backend(1);
    ModelConfig m = model_cfg(QisaValue::shared, mask);
    m.activation = Activation::gelu;  // smooth: no relu kink between p - h and p + h
    GPT model(m, *be, 3);
    model.init(5);
    const Batch b = make_batch(13);
    model.forward(b.x.data(), b.y.data(), b.B, b.T, StepContext{});
    model.backward(1.0f / static_cast<float>(b.B * b.T), GradMode::overwrite);
    const std::vector<float> grads = model.grads_host();
    std::vector<float> p = model.params_host();
    for (int l = 0; l < 2; ++l) {
      const ParamEntry& e = model.table().at(block_param(l, "attn.v.weight"));
      std::vector<double> numeric(static_cast<size_t>(e.numel));
      const double h = 1e-2;
      for (int64_t i = 0; i < e.numel; ++i) {
        const float old = p[e.offset + i];
        p[e.offset + i] = static_cast<float>(old + h);
        model.set_params_host(p);
        const double lp = model.forward(b.x.data(), b.y.data(), b.B, b.T, StepContext{});
        p[e.offset + i] = static_cast<float>(old - h);
        model.set_params_host(p);
        const double lm = model.forward(b.x.data(), b.y.data(), b.B, b.T, StepContext{});
        p[e.offset + i] = old;
        numeric[i] = (lp - lm) / (2 * h);
      }
      model.set_params_host(p);
      double mx = 0;
      for (double v : numeric) mx = std::max(mx, std::abs(v));
      EXPECT_GT(mx, 1e-4) << e.name << ": the numeric gradient is ~0, the check would be vacuous";
      EXPECT_LT(test::max_rel_err(slice(grads, e), numeric), 2e-3) << e.name;
    }
  }
}

TEST(QisaValueShared, ParameterCountIsCsasPlusTheQkBiases) {
  for (int H : {1, 2, 3, 6}) {
    ModelConfig m = model_cfg(QisaValue::shared, AttnMask::causal);
    m.n_head = H;
    m.n_layer = 3;
    const int64_t C = m.n_embd, L = m.n_layer;
    ModelConfig csa = m, per_head = m;
    csa.attention = AttentionKind::csa;
    csa.qisa_value = QisaValue::per_head;
    per_head.qisa_value = QisaValue::per_head;
    EXPECT_EQ(ParamTable(m).total(), ParamTable(csa).total() + 2 * C * L) << "H " << H;
    EXPECT_EQ(ParamTable(per_head).total(), ParamTable(m).total() + (H - 1) * C * C * L) << "H " << H;
    EXPECT_EQ(ParamTable(m).at("blocks.2.attn.v.weight").shape, (std::vector<int64_t>{C, C}));
  }
  // only for attention qisa
  for (auto att : {AttentionKind::csa, AttentionKind::qisa_a}) {
    ModelConfig m = model_cfg(QisaValue::shared, AttnMask::causal);
    m.attention = att;
    test::expect_mentions(test::error_of([&] { ParamTable t(m); }), {"qisa_value", to_string(att)});
  }
}

// Training, resume and files go through a Trainer on a corpus of its own.
class QisaValueTraining : public test::CorpusSuite {
 protected:

  static Config config(const std::string& value, const std::string& extra = "") {
    Config c = parse_config("model:\n  block_size: 8\n  n_embd: 12\n  n_head: 3\n  n_layer: 2\n  dropout: 0.1\n"
                            "  attention: qisa\n  qisa_value: " + value + "\n"
                            "data:\n  corpus: " + corpus() + "\n"
                            "train:\n  batch_size: 8\n  lr: 0.01\n  seed: 3\n  threads: 1\n" + extra +
                            "eval:\n  windows: 4\n",
                            "shared.yaml");
    check_against_corpus(c, read_corpus_info(c.data.corpus));
    return c;
  }

  std::unique_ptr<Backend> be_ = make_cpu_backend(1);
  std::unique_ptr<Communicator> comm_ = make_communicator("none");
  std::unique_ptr<Collectives> coll_ = make_collectives(*comm_, *be_);
};

TEST_F(QisaValueTraining, AFewStepsLowerTheLoss) {
  Trainer t(config("shared"), *be_, *comm_, *coll_);
  EXPECT_EQ(t.model().table().at("blocks.0.attn.v.weight").shape, (std::vector<int64_t>{12, 12}));
  double first = 0, last = 0;
  for (int i = 0; i < 40; ++i) {
    const StepStats s = t.step();
    ASSERT_TRUE(std::isfinite(s.loss));
    if (i < 5) first += s.loss / 5;
    if (i >= 35) last += s.loss / 5;
  }
  EXPECT_LT(last, first * 0.8) << "first " << first << " last " << last;
}

TEST_F(QisaValueTraining, ResumeIsExactAndTheCheckpointKeepsTheKey) {
  const Config cfg = config("shared");
  std::vector<float> straight;
  {
    Trainer a(cfg, *be_, *comm_, *coll_);
    for (int i = 0; i < 3; ++i) a.step();
    ASSERT_TRUE(a.save_checkpoint(dir() / "shared3.h5").empty());
    for (int i = 0; i < 3; ++i) a.step();
    straight = a.model().params_host();
  }
  const Config saved = parse_config(CheckpointReader(dir() / "shared3.h5").config_yaml(), "ckpt");
  EXPECT_EQ(saved.model.qisa_value, QisaValue::shared);
  Trainer b(cfg, *be_, *comm_, *coll_);
  b.load_checkpoint(dir() / "shared3.h5", nullptr);
  for (int i = 0; i < 3; ++i) b.step();
  EXPECT_EQ(b.model().params_host(), straight);
  // a per_head run cannot resume from it: the key is named
  Trainer c(config("per_head"), *be_, *comm_, *coll_);
  test::expect_mentions(test::error_of([&] { c.load_checkpoint(dir() / "shared3.h5", nullptr); }),
                        {"model.qisa_value", "shared", "per_head"});
}

TEST_F(QisaValueTraining, ModelFilesKeepTheKeyAndOlderFilesArePerHead) {
  for (const char* value : {"shared", "per_head"}) {
    SCOPED_TRACE(value);
    const Config cfg = config(value);
    Trainer t(cfg, *be_, *comm_, *coll_);
    t.step();
    const std::string path = dir() / (std::string("final_") + value + ".h5");
    write_model_file(path, snapshot_model(t.model(), cfg.to_yaml(), 1, t.vocab()));
    LoadedModel m = load_model(path, *be_, 2);
    EXPECT_EQ(m.config.model.qisa_value, cfg.model.qisa_value);
    EXPECT_EQ(m.model->params_host(), t.model().params_host());
    EXPECT_EQ(m.model->pauli(), t.model().pauli());
  }
  // A file written before the key existed: its config has no qisa_value line.
  const Config cfg = config("per_head");
  std::string yaml = cfg.to_yaml();
  const size_t at = yaml.find("  qisa_value:");
  ASSERT_NE(at, std::string::npos);
  yaml.erase(at, yaml.find('\n', at) + 1 - at);
  ASSERT_EQ(yaml.find("qisa_value"), std::string::npos);
  Trainer t(cfg, *be_, *comm_, *coll_);
  const std::string path = dir() / "old.h5";
  write_model_file(path, snapshot_model(t.model(), yaml, 0, t.vocab()));
  LoadedModel m = load_model(path, *be_, 2);
  EXPECT_EQ(m.config.model.qisa_value, QisaValue::per_head);
  EXPECT_EQ(m.model->table().at("blocks.0.attn.v.weight").shape, (std::vector<int64_t>{3, 12, 12}));
  EXPECT_EQ(m.model->params_host(), t.model().params_host());
}

}  // namespace
}  // namespace qisa
