// Training through a whole device backend against the CPU backend, shared by the emulated suite
// (tests/unit/test_cuda_emu_backend.cpp: the CUDA backend on the emulator) and the device suite
// (tests/gpu/test_gpu_backend.cpp: the same backend on a GPU). A tiny GPT (emulated blocks are real
// threads, so shapes stay small) trains through every op the model uses and the trainer's device
// paths: tokens and parameters uploaded, gradients reduced through download/upload, the loss read
// once a step, checkpoints written and read.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "io/config.h"
#include "io/corpus.h"
#include "kernels/backend.h"
#include "test_util.h"
#include "trainer/comm/collectives.h"
#include "trainer/comm/communicator.h"
#include "trainer/model.h"
#include "trainer/trainer.h"

namespace qisa::test::training_cases {

using MakeBackend = std::function<std::unique_ptr<Backend>()>;

inline Config tiny_config(const std::string& corpus, const std::string& attention, const std::string& train_extra = "") {
  Config c = parse_config("model:\n  block_size: 8\n  n_embd: 16\n  n_head: 2\n  n_layer: 1\n  dropout: 0.1\n"
                          "  attention: " + attention + "\n"
                          "data:\n  corpus: " + corpus + "\n"
                          "train:\n  batch_size: 2\n  micro_batch_size: 1\n  lr: 0.01\n  seed: 5\n  threads: 1\n" +
                              train_extra + "eval:\n  windows: 2\n",
                          "backend_training.yaml");
  check_against_corpus(c, read_corpus_info(c.data.corpus));
  return c;
}

struct Run {
  std::vector<double> losses;
  std::vector<float> params, grads;  // after the steps; grads: the last step's (clipped) gradients
};

inline Run train(const Config& cfg, Backend& be, int steps) {
  auto comm = make_communicator("none");
  auto coll = make_collectives(*comm, be);
  Trainer t(cfg, be, *comm, *coll);
  Run r;
  for (int i = 0; i < steps; ++i) r.losses.push_back(t.step().loss);
  r.params = t.model().params_host();
  r.grads = t.model().grads_host();
  return r;
}

// fp32, every attention: loss within 1e-5 relative; the step's gradients and the updated
// parameters within 1e-4 (max |diff| over max |value|): the kernels sum in other orders than the
// CPU, nothing more. AdamW's first step moves a parameter by lr * g / (|g| + eps), whatever |g|,
// so a gradient that is zero up to roundoff (QISA-A's last RY on a wire no Pauli string reads:
// 1e-11 on the CPU, 9e-10 here) would move by an arbitrary fraction of lr = 1e-2; train.eps: 1e-6
// keeps such noise below 1e-5 of a step, and leaves real gradients (1e-4 and up) unaffected.
inline void one_fp32_step_matches_cpu(const std::string& corpus, const MakeBackend& make) {
  for (const char* att : {"csa", "qisa", "qisa_a"}) {
    SCOPED_TRACE(att);
    const Config cfg = tiny_config(corpus, att, "  eps: 1.0e-6\n");
    auto cpu = make_cpu_backend(1);
    auto dev = make();
    const Run want = train(cfg, *cpu, 1), got = train(cfg, *dev, 1);
    EXPECT_NEAR(got.losses[0], want.losses[0], 1e-5 * std::abs(want.losses[0]));
    EXPECT_LE(max_rel_err(got.grads, want.grads), 1e-4);
    EXPECT_LE(max_rel_err(got.params, want.params), 1e-4);
    EXPECT_GT(max_rel_err(got.params, train(cfg, *cpu, 0).params), 1e-3);  // the step moved the parameters
  }
}

// bf16 (activations and GEMM operands bf16, fp32 masters): both backends round the same values
// to bf16, but after sums in another order a value near a rounding tie lands on the neighbouring
// bf16 and carries on from there. Stated tolerances: loss within 1% relative; parameters within
// 1e-2 of max |param| (one Adam step moves a parameter by about lr = 1e-2, so a gradient of the
// wrong sign shows as 2e-2).
inline void one_bf16_step_matches_cpu(const std::string& corpus, const MakeBackend& make) {
  for (const char* att : {"csa", "qisa"}) {
    SCOPED_TRACE(att);
    const Config cfg = tiny_config(corpus, att, "  precision: bf16\n");
    auto cpu = make_cpu_backend(1);
    auto dev = make();
    const Run want = train(cfg, *cpu, 1), got = train(cfg, *dev, 1);
    EXPECT_NEAR(got.losses[0], want.losses[0], 1e-2 * std::abs(want.losses[0]));
    EXPECT_LE(max_rel_err(got.params, want.params), 1e-2);
  }
}

// A checkpoint the backend wrote resumes on it bit for bit (dropout bits, AdamW moments, the data
// position restored).
inline void resume_is_bit_exact(const std::string& corpus, const std::string& ckpt, const MakeBackend& make) {
  const Config cfg = tiny_config(corpus, "qisa");
  auto dev = make();
  auto comm = make_communicator("none");
  auto coll = make_collectives(*comm, *dev);
  std::vector<float> straight;
  {
    Trainer a(cfg, *dev, *comm, *coll);
    a.step();
    ASSERT_TRUE(a.save_checkpoint(ckpt).empty());
    a.step();
    straight = a.model().params_host();
  }
  Trainer b(cfg, *dev, *comm, *coll);
  b.load_checkpoint(ckpt, nullptr);
  b.step();
  EXPECT_EQ(b.model().params_host(), straight);
}

}  // namespace qisa::test::training_cases
