// The CUDA kernels of kernels/cuda/*.cuh, run through the CUDA emulator on the host, against the
// CPU backend (the reference). The cases and their tolerances are in tests/kernel_cases.h, shared
// with the device suite (tests/gpu/test_gpu_kernels.cu); here they run on host memory through
// HostRunner. What only the emulator can show stays here: the host wrappers' shape checks and
// that the reductions break without their barriers (qisa::emu::SkipBarriers).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "io/hdf5.h"
#include "kernel_cases.h"
#include "kernel_cases_gaussian.h"
#include "kernel_cases_value.h"
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
QISA_EMU_TYPED_CASE(GaussianAttentionForwardMatchesCpu, gaussian_attention_forward_matches_cpu)
QISA_EMU_TYPED_CASE(GaussianAttentionCausalBackwardMatchesCpuInBothModes,
                    gaussian_attention_causal_backward_matches_cpu_in_both_modes)
QISA_EMU_TYPED_CASE(GaussianAttentionReferenceBackwardMatchesCpuInBothModes,
                    gaussian_attention_reference_backward_matches_cpu_in_both_modes)
QISA_EMU_TYPED_CASE(CsaForwardMatchesCpu, csa_forward_matches_cpu)
QISA_EMU_TYPED_CASE(CsaBackwardMatchesCpuInBothModes, csa_backward_matches_cpu_in_both_modes)
QISA_EMU_TYPED_CASE(CsaBackwardPartialGradientsMatchTheFullCall, csa_backward_partial_gradients_match_the_full_call)
QISA_EMU_CASE(CudaEmuShapes, CrossEntropyTargetOutsideTheVocabularyGivesNaN,
              cross_entropy_target_outside_the_vocabulary_gives_nan(host))
QISA_EMU_CASE(CudaEmuFlat, ConvertRoundScaleMatchCpuBitForBit, convert_round_scale_match_cpu_bit_for_bit(*cpu, rng, host))
QISA_EMU_CASE(CudaEmuFlat, SumSquaresIsReproducibleAndMatchesCpu,
              sum_squares_is_reproducible_and_matches_cpu(*cpu, rng, host))
QISA_EMU_CASE(CudaEmuAdamW, MatchesCpuBitForBit, adamw_matches_cpu_bit_for_bit(*cpu, rng, host))
QISA_EMU_TYPED_CASE(PauliValueForwardMatchesCpu, pauli_value_forward_matches_cpu)
QISA_EMU_TYPED_CASE(PauliValueBackwardMatchesCpuInBothModes, pauli_value_backward_matches_cpu_in_both_modes)
QISA_EMU_CASE(CudaEmuFlat, PauliValueMatchesGolden, pauli_value_matches_golden(host))
QISA_EMU_TYPED_CASE(QisaAForwardMatchesCpu, qisa_a_forward_matches_cpu)
QISA_EMU_TYPED_CASE(QisaABackwardMatchesCpuInBothModes, qisa_a_backward_matches_cpu_in_both_modes)
QISA_EMU_CASE(CudaEmuFlat, QisaAAngleGradientsAreBitwiseReproducible,
              qisa_a_angle_gradients_are_bitwise_reproducible(rng, host))
QISA_EMU_CASE(CudaEmuFlat, QisaAMatchesGolden, qisa_a_matches_golden(host))

// ---- what only the emulator shows

TEST_F(CudaEmuShapes, HostWrappersRejectWhatTheKernelsCannotDo) {
  std::vector<float> buf(8, 0.0f);
  float* p = buf.data();
  EXPECT_THROW(qisa::cuda::layernorm_forward(p, p, p, p, p, p, 1, 0, kStream), qisa::Error);
  EXPECT_THROW(qisa::cuda::layernorm_backward(p, p, p, p, p, p, p, p, 1, 0, GradMode::overwrite,
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
// ---- Gaussian attention: the golden file (emulator suite only: it reads HDF5, which the device
// suite does not link), the wrapper checks, and the barriers.

kc::GaGolden load_gaussian_golden() {
  qisa::h5::File f(qisa::test::golden("gaussian_attention.h5"), qisa::h5::File::Mode::read);
  std::vector<hsize_t> dims;
  auto to_float = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  kc::GaGolden g;
  g.q = to_float(f.read<double>("/q", &dims));
  g.k = to_float(f.read<double>("/k"));
  g.v = to_float(f.read<double>("/v"));
  g.grad_out = to_float(f.read<double>("/grad_out"));
  EXPECT_EQ(dims.size(), 3u);
  g.B = static_cast<int64_t>(dims.at(0));
  g.T = static_cast<int>(dims.at(1));
  g.D = static_cast<int>(dims.at(2));
  for (auto mask : {qisa::AttnMask::causal, qisa::AttnMask::reference}) {
    const std::string n = mask == qisa::AttnMask::causal ? "/causal" : "/reference";
    g.masks.push_back({mask, f.read<double>(n + "/out"), f.read<double>(n + "/grad_q"), f.read<double>(n + "/grad_k"),
                       f.read<double>(n + "/grad_v")});
  }
  return g;
}

TEST_F(CudaEmuFlat, GaussianAttentionMatchesGoldenFile) {
  const kc::GaGolden g = load_gaussian_golden();
  ASSERT_EQ(g.q.size(), static_cast<size_t>(g.B * g.T * g.D));
  kc::gaussian_attention_matches_golden(g, host);
}

TEST_F(CudaEmuShapes, GaussianAttentionWrappersRejectWhatTheKernelsCannotDo) {
  std::vector<float> buf(64, 0.0f);
  float* p = buf.data();
  const auto causal = qisa::AttnMask::causal;
  const int big = qisa::cuda::kGaMaxD + 1;
  const qisa::AttnScore paper{};
  EXPECT_THROW(
      qisa::cuda::gaussian_attention_forward(p, big, p, p, p, big, p, big, 1, 1, 1, big, causal, paper, kStream),
      qisa::Error);
  EXPECT_THROW(qisa::cuda::gaussian_attention_forward(p, 8, p, p, p, 7, p, 8, 1, 2, 2, 4, causal, paper, kStream),
               qisa::Error);  // ld_qk 7 < H*D
  EXPECT_THROW(qisa::cuda::gaussian_attention_backward(p, p, 8, p, 8, p, 8, p, p, p, p, 1, 0, 2, 4, causal, paper,
                                                       GradMode::overwrite, p, kStream),
               qisa::Error);  // T 0
  EXPECT_THROW(qisa::cuda::gaussian_attention_backward(p, p, 8, p, 8, p, 8, p, p, p, p, 1, 2, 2, 4, causal, paper,
                                                       GradMode::overwrite, nullptr, kStream),
               qisa::Error);  // no workspace for s
  EXPECT_THROW(qisa::cuda::gaussian_attention_forward(p, 8, p, p, p, 8, p, 8, 1, 2, 2, 4, causal,
                                                      qisa::AttnScore{qisa::QisaScore::gaussian, 0.0f}, kStream),
               qisa::Error);  // a gaussian score needs a scale > 0
}

// Without their barriers the tiles are read before they are loaded (NaN shared memory) or
// overwritten while another warp still reads them: forward and backward, both masks.
TYPED_TEST(CudaEmuKernels, GaussianAttentionFailsWithoutItsBarriers) {
  using T = TypeParam;
  SCOPED_TRACE("seed " + std::to_string(this->seed));
  const kc::GaShape s{1, 37, 2, 16, 0, 0, 0};
  const kc::GaInputs<T> in(this->rng, s);
  const int64_t n = s.N() * s.ld_out();
  for (auto mask : {qisa::AttnMask::causal, qisa::AttnMask::reference}) {
    SCOPED_TRACE(kc::mask_name(mask));
    auto out = nans<T>(n), bad = out;
    std::vector<float> z(s.B * s.H * s.T, NAN), z_bad = z;
    kc::gaussian_forward_run(this->host, in, mask, out, z);
    ASSERT_FALSE(kc::any_nan(kc::widen(out)));
    {
      qisa::emu::SkipBarriers skip(qisa::emu::kAllBarriers);
      kc::gaussian_forward_run(this->host, in, mask, bad, z_bad);
    }
    EXPECT_FALSE(kc::same_bits(out, bad) && kc::same_bits(z, z_bad)) << "the forward was right without barriers";
    auto dq = nans<T>(n), dk = dq, dv = dq;
    auto dq_bad = dq, dk_bad = dq, dv_bad = dq;
    kc::gaussian_backward_run(this->host, in, z, mask, GradMode::overwrite, dq, dk, dv);
    {
      qisa::emu::SkipBarriers skip(qisa::emu::kAllBarriers);
      kc::gaussian_backward_run(this->host, in, z, mask, GradMode::overwrite, dq_bad, dk_bad, dv_bad);
    }
    EXPECT_FALSE(kc::same_bits(dq, dq_bad) && kc::same_bits(dk, dk_bad) && kc::same_bits(dv, dv_bad))
        << "the backward was right without barriers";
  }
}

TEST_F(CudaEmuShapes, ValueLayerWrappersRejectWhatTheKernelsCannotDo) {
  std::vector<float> buf(64, 0.0f);
  std::vector<double> part(64, 0.0);
  float* p = buf.data();
  const qisa::PauliTerm* t = nullptr;
  const auto ow = GradMode::overwrite;
  // C = 9 amplitudes do not fit 3 qubits; ld_u < H*C; C over the shared-memory tile
  EXPECT_THROW(qisa::cuda::pauli_value_forward(p, 4, p, 9, t, 1, 1, 4, 9, 3, kStream), qisa::Error);
  EXPECT_THROW(qisa::cuda::pauli_value_forward(p, 8, p, 9, t, 1, 2, 4, 5, 3, kStream), qisa::Error);
  EXPECT_THROW(qisa::cuda::pauli_value_backward(p, 2000, p, 4, p, t, 1, 1, 4, qisa::cuda::kPvMaxC + 1, 11, ow, kStream),
               qisa::Error);
  // more qubits than the statevector kernels hold; ld_v < H*D; zero heads
  const int big = qisa::cuda::kQaMaxQubits + 1;
  EXPECT_THROW(qisa::cuda::qisa_a_forward(p, 4, p, 8, p, p, p, t, 1, 1, 4, 8, big, kStream), qisa::Error);
  EXPECT_THROW(qisa::cuda::qisa_a_forward(p, 7, p, 8, p, p, p, t, 1, 2, 4, 8, 3, kStream), qisa::Error);
  EXPECT_THROW(
      qisa::cuda::qisa_a_backward(p, 8, p, p, p, p, 4, p, p, p, p, t, 1, 0, 4, 8, 3, ow, ow, part.data(), kStream),
      qisa::Error);
}

// Without the barrier after staging, the kernels read what later threads have not staged yet (the
// emulator starts thread k+1 only when thread k blocks or returns): forward, thread 0 reads u_32
// of row 0 (C = 40) for the diagonal term ZIIIII before thread 32 exists (NaN); backward, threads
// 0..D-1 read the terms and dv of threads after them (NaN bytes), so du misses terms.
TEST_F(CudaEmuFlat, PauliValueFailsWithoutItsBarrier) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  const kc::ValueShape s{19, 2, 3, 40, 6, 0.0};
  const auto terms = qisa::pack_paulis({"ZIIIII", "IXIIZI", "IIYYII", "IIIIIZ", "XIIIIX", "ZZZZZZ"}, 6);
  const auto u = qisa::test::random_vector<float>(rng, s.N * s.H * s.C);
  const auto dv = qisa::test::random_vector<float>(rng, s.N * s.H * s.D);
  std::vector<float> v, du, v_bad, du_bad;
  kc::pauli_value_run(host, u, dv, terms, s, v, du);
  ASSERT_FALSE(kc::any_nan(v) || kc::any_nan(du));
  {
    qisa::emu::SkipBarriers skip(qisa::emu::kAllBarriers);
    kc::pauli_value_run(host, u, dv, terms, s, v_bad, du_bad);
  }
  EXPECT_FALSE(kc::same_bits(v, v_bad)) << "the forward kernel gave the right v without its __syncthreads()";
  EXPECT_FALSE(kc::same_bits(du, du_bad)) << "the backward kernel gave the right du without its __syncthreads()";
}

// Without its barriers the statevector kernels apply a gate while other threads still write the
// amplitudes of the gate before, and read the staged row before it is staged (shared memory is
// NaN-filled at block start; thread k+1 starts only when thread k blocks): forward and backward.
TYPED_TEST(CudaEmuKernels, QisaAFailsWithoutItsBarriers) {
  using T = TypeParam;
  SCOPED_TRACE("seed " + std::to_string(this->seed));
  const kc::ValueShape s{5, 2, 4, 13, 4, 0.3};
  const kc::QisaACase<T> k(this->rng, s);
  const int HD = s.H * s.D;
  const size_t angles = static_cast<size_t>(s.H) * s.n;
  const auto v = k.forward(this->host);
  const auto vf = kc::widen(v);
  for (int64_t i = 0; i < s.N; ++i)  // every value written (the column past H*D is padding)
    ASSERT_FALSE(std::any_of(vf.begin() + i * k.ld_v, vf.begin() + i * k.ld_v + HD, [](float x) { return std::isnan(x); }));
  std::vector<T> v_bad;
  {
    qisa::emu::SkipBarriers skip(qisa::emu::kAllBarriers);
    v_bad = k.forward(this->host);
  }
  EXPECT_FALSE(kc::same_bits(v, v_bad)) << "the forward kernel gave the right v without its barriers";
  typename kc::QisaACase<T>::Grads start{nans<T>(s.N * k.ld_x), std::vector<float>(angles, NAN),
                                         std::vector<float>(angles, NAN), std::vector<float>(angles, NAN)};
  const auto g = k.backward(this->host, start, GradMode::overwrite, GradMode::overwrite);
  ASSERT_FALSE(kc::any_nan(g.drx) || kc::any_nan(g.dry) || kc::any_nan(g.dry2));
  typename kc::QisaACase<T>::Grads g_bad;
  {
    qisa::emu::SkipBarriers skip(qisa::emu::kAllBarriers);
    g_bad = k.backward(this->host, start, GradMode::overwrite, GradMode::overwrite);
  }
  EXPECT_FALSE(kc::same_bits(g.dx, g_bad.dx) && kc::same_bits(g.drx, g_bad.drx) && kc::same_bits(g.dry, g_bad.dry) &&
               kc::same_bits(g.dry2, g_bad.dry2))
      << "the backward kernel gave the right gradients without its barriers";
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
