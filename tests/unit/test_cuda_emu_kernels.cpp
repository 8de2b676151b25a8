// The CUDA kernels of kernels/cuda/*.cuh, run through the CUDA emulator on the host, against the
// CPU backend (the reference). The cases and their tolerances are in tests/kernel_cases.h, shared
// with the device suite (tests/gpu/test_gpu_kernels.cu); here they run on host memory through
// HostRunner. What only the emulator can show stays here: the host wrappers' shape checks and
// that the reductions break without their barriers (qisa::emu::SkipBarriers).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernel_cases.h"
#include "kernel_cases_csa.h"
#include "kernels/error.h"

namespace {

namespace kc = qisa::test::kernel_cases;
using qisa::bf16;
using qisa::GradMode;
using kc::kStream;
using kc::nans;
using kc::random_t;

template <class T>
class CudaEmuKernels : public ::testing::Test {
 protected:
  std::unique_ptr<qisa::Backend> cpu = qisa::make_cpu_backend(1);
  uint64_t seed = qisa::test::fresh_seed();
  std::mt19937_64 rng{seed};
  kc::HostRunner host;
};
using StorageTypes = ::testing::Types<float, bf16>;
TYPED_TEST_SUITE(CudaEmuKernels, StorageTypes);

// The storage-type-free cases: the same fixture without a type.
class CudaEmuFlat : public CudaEmuKernels<float> {};
using CudaEmuAdamW = CudaEmuFlat;
using CudaEmuShapes = CudaEmuFlat;

// A typed case of kernel_cases.h, run on the emulator with the fixture's seed in the trace.
#define QISA_EMU_TYPED_CASE(Name, fn)                                                  \
  TYPED_TEST(CudaEmuKernels, Name) {                                                   \
    SCOPED_TRACE("seed " + std::to_string(this->seed));                                \
    kc::fn<TypeParam>(*this->cpu, this->rng, this->host);                              \
  }
#define QISA_EMU_CASE(Suite, Name, ...)                     \
  TEST_F(Suite, Name) {                                     \
    SCOPED_TRACE("seed " + std::to_string(seed));           \
    kc::__VA_ARGS__;                                        \
  }

QISA_EMU_TYPED_CASE(LayerNormForwardMatchesCpu, layernorm_forward_matches_cpu)
QISA_EMU_TYPED_CASE(LayerNormBackwardMatchesCpuInBothModes, layernorm_backward_matches_cpu_in_both_modes)
QISA_EMU_TYPED_CASE(LayerNormParamGradientsAreBitwiseReproducible, layernorm_param_gradients_are_bitwise_reproducible)
QISA_EMU_TYPED_CASE(CrossEntropyForwardAndInPlaceBackwardMatchCpu, cross_entropy_forward_and_in_place_backward_match_cpu)
QISA_EMU_TYPED_CASE(DropoutAddMatchesCpu, dropout_add_matches_cpu)
QISA_EMU_TYPED_CASE(EmbeddingMatchesCpuBitForBit, embedding_matches_cpu_bit_for_bit)
QISA_EMU_TYPED_CASE(ActivationsMatchCpuInBothModes, activations_match_cpu_in_both_modes)
QISA_EMU_TYPED_CASE(CsaForwardMatchesCpu, csa_forward_matches_cpu)
QISA_EMU_TYPED_CASE(CsaBackwardMatchesCpuInBothModes, csa_backward_matches_cpu_in_both_modes)
QISA_EMU_TYPED_CASE(CsaBackwardPartialGradientsMatchTheFullCall, csa_backward_partial_gradients_match_the_full_call)
QISA_EMU_CASE(CudaEmuShapes, CrossEntropyTargetOutsideTheVocabularyGivesNaN,
              cross_entropy_target_outside_the_vocabulary_gives_nan(host))
QISA_EMU_CASE(CudaEmuFlat, ConvertRoundScaleMatchCpuBitForBit, convert_round_scale_match_cpu_bit_for_bit(*cpu, rng, host))
QISA_EMU_CASE(CudaEmuFlat, SumSquaresIsReproducibleAndMatchesCpu,
              sum_squares_is_reproducible_and_matches_cpu(*cpu, rng, host))
QISA_EMU_CASE(CudaEmuAdamW, MatchesCpuBitForBit, adamw_matches_cpu_bit_for_bit(*cpu, rng, host))

// ---- what only the emulator shows

TEST_F(CudaEmuShapes, HostWrappersRejectWhatTheKernelsCannotDo) {
  std::vector<float> buf(8, 0.0f);
  float* p = buf.data();
  EXPECT_THROW(qisa::cuda::layernorm_forward(p, p, p, p, p, p, 1, 0, kStream), qisa::Error);
  EXPECT_THROW(qisa::cuda::layernorm_backward(p, p, p, p, p, p, p, p, 1, qisa::cuda::kLnMaxC + 1, GradMode::overwrite,
                                              GradMode::overwrite, p, kStream),
               qisa::Error);
  EXPECT_THROW(qisa::cuda::cross_entropy_forward(p, p, nullptr, 1, 0, kStream), qisa::Error);
  qisa::AdamWHyper h{1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, 1.0f};  // step 0: the count is 1-based
  EXPECT_THROW(qisa::cuda::adamw_update(p, p, p, p, 8, h, kStream), qisa::Error);
}

// Without its barrier the backward kernel reads the other warps' dw/db slices before they are
// written (the emulator's threads start in order, so early warps run ahead): NaN shared memory.
TYPED_TEST(CudaEmuKernels, LayerNormBackwardFailsWithoutItsBarrier) {
  using T = TypeParam;
  SCOPED_TRACE("seed " + std::to_string(this->seed));
  const int64_t N = 200;  // 7 blocks: each one may show the race
  const int C = 40;
  const kc::LnBackwardCase<T> k(*this->cpu, this->rng, N, C);
  auto din = nans<T>(N * C);
  std::vector<float> dw(C, NAN), db(C, NAN), dw_bad(C, NAN), db_bad(C, NAN);
  k.run(this->host, din, dw, db, GradMode::overwrite, GradMode::overwrite);
  ASSERT_FALSE(kc::any_nan(dw) || kc::any_nan(db));
  {
    qisa::emu::SkipBarriers skip(qisa::emu::kAllBarriers);
    k.run(this->host, din, dw_bad, db_bad, GradMode::overwrite, GradMode::overwrite);
  }
  EXPECT_TRUE(std::memcmp(dw.data(), dw_bad.data(), C * sizeof(float)) != 0 ||
              std::memcmp(db.data(), db_bad.data(), C * sizeof(float)) != 0)
      << "the kernel gave the right dw/db without its __syncthreads()";
}

TYPED_TEST(CudaEmuKernels, CrossEntropyFailsWithoutItsFirstBarrier) {
  using T = TypeParam;
  SCOPED_TRACE("seed " + std::to_string(this->seed));
  const int64_t N = 8;
  const int V = 999;
  const auto logits = random_t<T>(this->rng, N * V, -4, 4);
  std::vector<int32_t> targets(N, 7);
  std::vector<float> loss(N, NAN), bad(N, NAN);
  qisa::cuda::cross_entropy_forward(loss.data(), logits.data(), targets.data(), N, V, kStream);
  {
    qisa::emu::SkipBarriers skip(0);  // block_reduce's "partials are written" barrier
    qisa::cuda::cross_entropy_forward(bad.data(), logits.data(), targets.data(), N, V, kStream);
  }
  EXPECT_NE(0, std::memcmp(loss.data(), bad.data(), N * sizeof(float)))
      << "block_reduce gave the right answer without its first __syncthreads()";
}

// ---- classical causal self-attention: what only the emulator shows

TEST_F(CudaEmuShapes, CsaWrappersRejectWhatTheKernelsCannotDo) {
  std::vector<float> buf(8, 0.0f);
  float* p = buf.data();
  const qisa::Dropout d;
  const int big = qisa::cuda::kCsaMaxD + 1;
  EXPECT_THROW(qisa::cuda::csa_forward(p, big, p, p, p, p, big, 1, 1, 1, big, 1.0f, d, kStream), qisa::Error);
  EXPECT_THROW(qisa::cuda::csa_forward(p, 8, p, p, p, p, 7, 1, 1, 2, 4, 1.0f, d, kStream), qisa::Error);  // ld_in < H*D
  EXPECT_THROW(qisa::cuda::csa_forward(p, 4, p, p, p, p, 4, 1, 0, 1, 4, 1.0f, d, kStream), qisa::Error);  // T = 0
  EXPECT_THROW(qisa::cuda::csa_backward(p, p, p, p, 4, p, p, p, p, 4, 1, 1, 1, 4, 1.0f, qisa::Dropout{1.0f},
                                        GradMode::overwrite, p, kStream),
               qisa::Error);  // dropout p = 1
}

// Without their barriers the kernels read shared tiles before they are written (NaN-filled): the
// emulator starts thread k+1 only when thread k blocks, so thread 0 reads Q rows that the later
// threads have not loaded yet.
TYPED_TEST(CudaEmuKernels, CsaFailsWithoutItsBarriers) {
  using T = TypeParam;
  SCOPED_TRACE("seed " + std::to_string(this->seed));
  const kc::CsaCase<T> c(this->rng, {1, 37, 2, 16, true});
  auto out = nans<T>(c.N * c.ld_out), bad = out;
  std::vector<float> lse(2 * 37, NAN), bad_lse = lse;
  c.forward(this->host, out, lse, 0.0f);
  ASSERT_FALSE(kc::any_nan(lse));
  {
    qisa::emu::SkipBarriers skip(qisa::emu::kAllBarriers);  // thread 0 runs ahead until its first shuffle
    c.forward(this->host, bad, bad_lse, 0.0f);
  }
  EXPECT_FALSE(kc::same_bits(out, bad) && kc::same_bits(lse, bad_lse)) << "forward right without its barrier";
  auto g = c.grads(this->rng, GradMode::overwrite), g_bad = g;
  c.backward(this->host, g, lse, 0.0f, GradMode::overwrite);
  {
    qisa::emu::SkipBarriers skip(qisa::emu::kAllBarriers);
    c.backward(this->host, g_bad, lse, 0.0f, GradMode::overwrite);
  }
  EXPECT_FALSE(kc::same_bits(g[0], g_bad[0])) << "backward right without its barriers";
}

}  // namespace
