// The whole GPT against the golden files of SPEC §4 (computed in float64 from the SPEC):
// logits, loss, head outputs, every gradient, AdamW semantics, and two full training steps.
#include <gtest/gtest.h>

#include <limits>

#include <cmath>
#include <map>

#include "io/hdf5.h"
#include "test_util.h"
#include "trainer/model.h"
#include "trainer/model_io.h"
#include "trainer/optimizer.h"

namespace qisa {
namespace {

struct Golden {
  std::string path;
  ModelConfig cfg;
  TrainConfig adamw;
  ModelFile state;                    // params + pauli as a model file would hold them
  std::vector<int32_t> x, y;
  int64_t B = 0;
  int T = 0;
};

Golden load_golden(const std::string& file) {
  Golden g;
  g.path = test::golden(file);
  h5::File f(g.path, h5::File::Mode::read);
  auto& c = g.cfg;
  c.vocab_size = f.attr_int("/config", "vocab_size");
  c.block_size = static_cast<int>(f.attr_int("/config", "block_size"));
  c.n_embd = static_cast<int>(f.attr_int("/config", "n_embd"));
  c.n_head = static_cast<int>(f.attr_int("/config", "n_head"));
  c.n_layer = static_cast<int>(f.attr_int("/config", "n_layer"));
  c.dropout = f.attr_double("/config", "dropout");
  const std::string att = f.attr_string("/config", "attention");
  c.attention = att == "csa" ? AttentionKind::csa : att == "qisa" ? AttentionKind::qisa : AttentionKind::qisa_a;
  c.mask = f.attr_string("/config", "mask") == "reference" ? AttnMask::reference : AttnMask::causal;
  c.activation = f.attr_string("/config", "activation") == "gelu" ? Activation::gelu : Activation::relu;
  g.adamw.lr = f.attr_double("/adamw", "lr");
  g.adamw.beta1 = f.attr_double("/adamw", "beta1");
  g.adamw.beta2 = f.attr_double("/adamw", "beta2");
  g.adamw.eps = f.attr_double("/adamw", "eps");
  g.adamw.weight_decay = f.attr_double("/adamw", "weight_decay");
  g.adamw.grad_clip = 0;
  for (const auto& name : f.list("/params")) {
    std::vector<hsize_t> dims;
    NamedTensor t{name, {}, f.read<float>("/params/" + name, &dims)};
    t.shape.assign(dims.begin(), dims.end());
    g.state.params.push_back(std::move(t));
  }
  if (f.exists("/pauli"))
    for (const auto& name : f.list("/pauli")) {
      std::vector<hsize_t> dims;
      NamedStrings s{name, {}, f.read_strings("/pauli/" + name, &dims)};
      s.shape.assign(dims.begin(), dims.end());
      g.state.pauli.push_back(std::move(s));
    }
  std::vector<hsize_t> dims;
  g.x = f.read<int32_t>("/batch/x", &dims);
  g.y = f.read<int32_t>("/batch/y");
  g.B = static_cast<int64_t>(dims[0]);
  g.T = static_cast<int>(dims[1]);
  return g;
}

// The golden tensor `dataset` against our host vector `got` by the SPEC §4 measure.
double rel_err(const h5::File& f, const std::string& dataset, const std::vector<float>& got) {
  const std::vector<double> want = f.read<double>(dataset);
  EXPECT_EQ(want.size(), got.size()) << dataset;
  if (want.size() != got.size()) return 1e30;
  return test::max_rel_err(got, want);
}

std::vector<float> slice(const std::vector<float>& flat, const ParamEntry& e) {
  return std::vector<float>(flat.begin() + e.offset, flat.begin() + e.offset + e.numel);
}

class GptGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(GptGolden, ParameterNamesAndShapesMatchTheSpecTable) {
  Golden g = load_golden(GetParam());
  ParamTable table(g.cfg);
  std::map<std::string, std::vector<int64_t>> golden_shapes;
  for (const auto& t : g.state.params) golden_shapes[t.name] = t.shape;
  ASSERT_EQ(table.entries().size(), golden_shapes.size());
  for (const auto& e : table.entries()) {
    ASSERT_TRUE(golden_shapes.count(e.name)) << e.name;
    EXPECT_EQ(golden_shapes[e.name], e.shape) << e.name;
  }
}

TEST_P(GptGolden, ForwardLogitsLossAndHeads) {
  Golden g = load_golden(GetParam());
  auto be = make_cpu_backend(2);
  GPT model(g.cfg, *be, g.B);
  load_model_state(model, g.state, g.path);
  const double loss = model.forward(g.x.data(), g.y.data(), g.B, g.T, StepContext{});
  h5::File f(g.path, h5::File::Mode::read);
  const double want_loss = f.read<double>("/expected/loss")[0];
  EXPECT_LE(std::abs(loss - want_loss) / std::abs(want_loss), 1e-5) << "loss " << loss << " want " << want_loss;
  EXPECT_LE(rel_err(f, "/expected/logits", model.logits_host()), 1e-5);
  for (int l = 0; l < g.cfg.n_layer; ++l)
    EXPECT_LE(rel_err(f, "/expected/heads/" + std::to_string(l), model.head_outputs_host(l)), 1e-5) << "block " << l;
}

TEST_P(GptGolden, EveryGradient) {
  Golden g = load_golden(GetParam());
  auto be = make_cpu_backend(2);
  GPT model(g.cfg, *be, g.B);
  load_model_state(model, g.state, g.path);
  // Overwrite mode never reads the gradients: NaN-poisoned, every one must still be written.
  const std::vector<float> poison(static_cast<size_t>(model.flat_size()), std::numeric_limits<float>::quiet_NaN());
  be->upload(model.grads(), poison.data(), poison.size() * sizeof(float));
  model.forward(g.x.data(), g.y.data(), g.B, g.T, StepContext{});
  model.backward(1.0f / static_cast<float>(g.B * g.T), GradMode::overwrite);
  const std::vector<float> grads = model.grads_host();
  h5::File f(g.path, h5::File::Mode::read);
  for (const auto& e : model.table().entries())
    EXPECT_LE(rel_err(f, "/expected/grad/" + e.name, slice(grads, e)), 1e-4) << e.name;
}

TEST_P(GptGolden, AdamWSemanticsOnGoldenGradients) {
  Golden g = load_golden(GetParam());
  auto be = make_cpu_backend(2);
  GPT model(g.cfg, *be, g.B);
  load_model_state(model, g.state, g.path);
  h5::File f(g.path, h5::File::Mode::read);
  std::vector<float> grads(static_cast<size_t>(model.num_params()));
  for (const auto& e : model.table().entries()) {
    const std::vector<float> gr = f.read<float>("/expected/grad/" + e.name);  // rounded to float32
    std::copy(gr.begin(), gr.end(), grads.begin() + e.offset);
  }
  be->upload(model.grads(), grads.data(), grads.size() * sizeof(float));
  AdamW opt(*be, model.num_params());
  opt.update(model.params(), model.grads(), 1, g.adamw.lr, g.adamw, 1.0f);
  const std::vector<float> p = model.params_host();
  for (const auto& e : model.table().entries())
    EXPECT_LE(rel_err(f, "/expected/step1/" + e.name, slice(p, e)), 1e-5) << e.name;
}

TEST_P(GptGolden, TwoTrainingSteps) {
  Golden g = load_golden(GetParam());
  auto be = make_cpu_backend(2);
  GPT model(g.cfg, *be, g.B);
  load_model_state(model, g.state, g.path);
  AdamW opt(*be, model.num_params());
  h5::File f(g.path, h5::File::Mode::read);
  for (int k = 1; k <= 2; ++k) {
    model.forward(g.x.data(), g.y.data(), g.B, g.T, StepContext{});
    model.backward(1.0f / static_cast<float>(g.B * g.T), GradMode::overwrite);
    opt.update(model.params(), model.grads(), k, g.adamw.lr, g.adamw, 1.0f);
    const std::vector<float> p = model.params_host();
    for (const auto& e : model.table().entries()) {
      const std::vector<double> want = f.read<double>("/expected/step" + std::to_string(k) + "/" + e.name);
      double max_want = 0;
      for (double w : want) max_want = std::max(max_want, std::abs(w));
      const double tol = 1e-4 * max_want + 0.25 * k * g.adamw.lr;  // SPEC §4
      const std::vector<float> got = slice(p, e);
      double worst = 0;
      for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::abs(got[i] - want[i]));
      EXPECT_LE(worst, tol) << "step " << k << " " << e.name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllGoldenModels, GptGolden,
                         ::testing::Values("gpt_csa_causal.h5", "gpt_qisa_causal.h5", "gpt_qisa_reference.h5",
                                           "gpt_qisa_a_causal.h5"),
                         [](const auto& info) {
                           std::string n = info.param;
                           return n.substr(0, n.size() - 3);
                         });

}  // namespace
}  // namespace qisa
