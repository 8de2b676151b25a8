// The whole GPT against the golden files of SPEC §4 (computed in float64 from the SPEC), on any
// backend: the CPU backend (tests/unit/test_gpt_golden.cpp), the CUDA backend on the emulator
// (tests/unit/test_cuda_emu_backend.cpp) and on a GPU (tests/gpu/test_gpu_backend.cpp). Logits,
// loss, head outputs, every gradient, AdamW semantics, two full training steps.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "io/hdf5.h"
#include "test_util.h"
#include "trainer/model.h"
#include "trainer/model_io.h"
#include "trainer/optimizer.h"

namespace qisa::test::gpt_golden {

// The golden model files (tests/golden/).
inline constexpr const char* kModels[] = {"gpt_csa_causal.h5", "gpt_qisa_causal.h5", "gpt_qisa_reference.h5",
                                          "gpt_qisa_a_causal.h5"};
// "gpt_csa_causal" for a test name
inline std::string model_name(const std::string& file) { return file.substr(0, file.size() - 3); }

struct Golden {
  std::string path;
  ModelConfig cfg;
  TrainConfig adamw;
  ModelFile state;                    // params + pauli as a model file would hold them
  std::vector<int32_t> x, y;
  int64_t B = 0;
  int T = 0;
};

inline Golden load_golden(const std::string& file) {
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
inline double rel_err(const h5::File& f, const std::string& dataset, const std::vector<float>& got) {
  const std::vector<double> want = f.read<double>(dataset);
  EXPECT_EQ(want.size(), got.size()) << dataset;
  if (want.size() != got.size()) return 1e30;
  return test::max_rel_err(got, want);
}

inline std::vector<float> slice(const std::vector<float>& flat, const ParamEntry& e) {
  return std::vector<float>(flat.begin() + e.offset, flat.begin() + e.offset + e.numel);
}

// The loss, logits and head outputs of `model`, just run forward on g's batch, against the file.
inline void expect_forward_matches(const GPT& model, const Golden& g, double loss) {
  h5::File f(g.path, h5::File::Mode::read);
  const double want_loss = f.read<double>("/expected/loss")[0];
  EXPECT_LE(std::abs(loss - want_loss) / std::abs(want_loss), 1e-5) << "loss " << loss << " want " << want_loss;
  EXPECT_LE(rel_err(f, "/expected/logits", model.logits_host()), 1e-5);
  for (int l = 0; l < g.cfg.n_layer; ++l)
    EXPECT_LE(rel_err(f, "/expected/heads/" + std::to_string(l), model.head_outputs_host(l)), 1e-5) << "block " << l;
}

inline void forward_logits_loss_and_heads(Backend& be, const std::string& file) {
  const Golden g = load_golden(file);
  GPT model(g.cfg, be, g.B);
  load_model_state(model, g.state, g.path);
  expect_forward_matches(model, g, model.forward(g.x.data(), g.y.data(), g.B, g.T, StepContext{}));
}

// check_forward: the forward's results too (one forward for both, where forwards are slow).
inline void every_gradient(Backend& be, const std::string& file, bool check_forward = false) {
  const Golden g = load_golden(file);
  GPT model(g.cfg, be, g.B);
  load_model_state(model, g.state, g.path);
  // Overwrite mode never reads the gradients: NaN-poisoned, every one must still be written.
  const std::vector<float> poison(static_cast<size_t>(model.flat_size()), std::numeric_limits<float>::quiet_NaN());
  be.upload(model.grads(), poison.data(), poison.size() * sizeof(float));
  const double loss = model.forward(g.x.data(), g.y.data(), g.B, g.T, StepContext{});
  if (check_forward) expect_forward_matches(model, g, loss);
  model.backward(1.0f / static_cast<float>(g.B * g.T), GradMode::overwrite);
  const std::vector<float> grads = model.grads_host();
  h5::File f(g.path, h5::File::Mode::read);
  for (const auto& e : model.table().entries())
    EXPECT_LE(rel_err(f, "/expected/grad/" + e.name, slice(grads, e)), 1e-4) << e.name;
}

inline void adamw_semantics_on_golden_gradients(Backend& be, const std::string& file) {
  const Golden g = load_golden(file);
  GPT model(g.cfg, be, g.B);
  load_model_state(model, g.state, g.path);
  h5::File f(g.path, h5::File::Mode::read);
  std::vector<float> grads(static_cast<size_t>(model.num_params()));
  for (const auto& e : model.table().entries()) {
    const std::vector<float> gr = f.read<float>("/expected/grad/" + e.name);  // rounded to float32
    std::copy(gr.begin(), gr.end(), grads.begin() + e.offset);
  }
  be.upload(model.grads(), grads.data(), grads.size() * sizeof(float));
  AdamW opt(be, model.num_params());
  opt.update(model.params(), model.grads(), 1, g.adamw.lr, g.adamw, 1.0f);
  const std::vector<float> p = model.params_host();
  for (const auto& e : model.table().entries())
    EXPECT_LE(rel_err(f, "/expected/step1/" + e.name, slice(p, e)), 1e-5) << e.name;
}

inline void two_training_steps(Backend& be, const std::string& file) {
  const Golden g = load_golden(file);
  GPT model(g.cfg, be, g.B);
  load_model_state(model, g.state, g.path);
  AdamW opt(be, model.num_params());
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

}  // namespace qisa::test::gpt_golden
