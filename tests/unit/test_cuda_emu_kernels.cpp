// The CUDA kernels of kernels/cuda/*.cuh, run through the CUDA emulator on the host, against the
// CPU backend (the reference): random inputs from a fresh seed (printed on failure; pin it with
// QISA_TEST_SEED), sizes that are no power of two and leave partial blocks, outputs poisoned
// with NaN before overwrite calls, both GradModes, fp32 and bf16 storage.
//
// Tolerances (max|got - want| / max|want|, SPEC §4's measure):
//  - fp32 results: 1e-5 (layernorm and the softmax sums add in another order than the CPU's
//    pack-wise sums; exp is the CPU's exp_poly vs expf, each within ~2 ulp); AdamW, relu, embedding and
//    the flat ops are the same arithmetic, so they must agree bit for bit (dropout: see there);
//  - bf16 results: 8e-3, because an fp32 value that differs in its last bits may round to the
//    neighbouring bf16 (one bf16 ulp is 2^-8 = 3.9e-3 relative).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <type_traits>
#include <vector>

#include "kernels/backend.h"
#include "kernels/error.h"
#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/adamw.cuh"
#include "kernels/cuda/cross_entropy.cuh"
#include "kernels/cuda/dropout.cuh"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/layernorm.cuh"
#include "test_util.h"

namespace {

using qisa::bf16;
using qisa::GradMode;
using qisa::test::max_rel_err;

template <class T>
T from_f(float x) {
  if constexpr (std::is_same_v<T, float>) return x;
  else return qisa::float_to_bf16(x);
}
template <class T>
float to_f(T x) {
  if constexpr (std::is_same_v<T, float>) return x;
  else return qisa::bf16_to_float(x);
}
template <class T>
std::vector<float> widen(const std::vector<T>& v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = to_f(v[i]);
  return r;
}
template <class T>
std::vector<T> random_t(std::mt19937_64& rng, size_t n, double lo = -1.0, double hi = 1.0) {
  std::vector<T> r(n);
  const auto f = qisa::test::random_vector<float>(rng, n, lo, hi);
  for (size_t i = 0; i < n; ++i) r[i] = from_f<T>(f[i]);
  return r;
}
template <class T>
std::vector<T> nans(size_t n) {
  return std::vector<T>(n, from_f<T>(NAN));
}
bool any_nan(const std::vector<float>& v) {
  for (float x : v)
    if (std::isnan(x)) return true;
  return false;
}

template <class T>
constexpr double kTol = std::is_same_v<T, float> ? 1e-5 : 8e-3;

template <class T>
class CudaEmuKernels : public ::testing::Test {
 protected:
  std::unique_ptr<qisa::Backend> cpu = qisa::make_cpu_backend(1);
  uint64_t seed = qisa::test::fresh_seed();
  std::mt19937_64 rng{seed};
};
using StorageTypes = ::testing::Types<float, bf16>;
TYPED_TEST_SUITE(CudaEmuKernels, StorageTypes);

constexpr cudaStream_t kStream = nullptr;
const GradMode kModes[] = {GradMode::overwrite, GradMode::accumulate};
const char* mode_name(GradMode m) { return m == GradMode::overwrite ? "overwrite" : "accumulate"; }

// ---- layernorm

TYPED_TEST(CudaEmuKernels, LayerNormForwardMatchesCpu) {
  using T = TypeParam;
  SCOPED_TRACE("seed " + std::to_string(this->seed));
  for (auto [N, C] : {std::pair<int64_t, int>{37, 45}, {9, 130}, {3, 1}}) {
    SCOPED_TRACE("N " + std::to_string(N) + " C " + std::to_string(C));
    const auto in = random_t<T>(this->rng, N * C, -2, 3);
    const auto w = qisa::test::random_vector<float>(this->rng, C), b = qisa::test::random_vector<float>(this->rng, C);
    auto out = nans<T>(N * C), want = nans<T>(N * C);
    std::vector<float> mean(N, NAN), rstd(N, NAN), want_mean(N, NAN), want_rstd(N, NAN);
    qisa::cuda::layernorm_forward(out.data(), mean.data(), rstd.data(), in.data(), w.data(), b.data(), N, C, kStream);
    this->cpu->layernorm_forward(want.data(), want_mean.data(), want_rstd.data(), in.data(), w.data(), b.data(), N, C);
    ASSERT_FALSE(any_nan(widen(out)));
    EXPECT_LE(max_rel_err(widen(out), widen(want)), kTol<T>);
    EXPECT_LE(max_rel_err(mean, want_mean), 1e-5);
    EXPECT_LE(max_rel_err(rstd, want_rstd), 1e-5);
  }
}

template <class T>
struct LnBackwardCase {
  int64_t N;
  int C;
  std::vector<T> in, dout;
  std::vector<float> w, b, mean, rstd;
  LnBackwardCase(qisa::Backend& cpu, std::mt19937_64& rng, int64_t n, int c)
      : N(n), C(c), in(random_t<T>(rng, n * c, -2, 3)), dout(random_t<T>(rng, n * c)),
        w(qisa::test::random_vector<float>(rng, c)), b(qisa::test::random_vector<float>(rng, c)), mean(n), rstd(n) {
    std::vector<T> out(n * c);
    cpu.layernorm_forward(out.data(), mean.data(), rstd.data(), in.data(), w.data(), b.data(), n, c);
  }
  // din, dw, db through the emulated kernels
  // din empty: din == nullptr
  void run_emu(std::vector<T>& din, std::vector<float>& dw, std::vector<float>& db, GradMode dm, GradMode pm) const {
    std::vector<float> part(qisa::cuda::layernorm_backward_workspace(N, C), NAN);
    qisa::cuda::layernorm_backward(din.empty() ? nullptr : din.data(), dw.data(), db.data(), dout.data(), in.data(), w.data(), mean.data(),
                                   rstd.data(), N, C, dm, pm, part.data(), kStream);
  }
};

TYPED_TEST(CudaEmuKernels, LayerNormBackwardMatchesCpuInBothModes) {
  using T = TypeParam;
  SCOPED_TRACE("seed " + std::to_string(this->seed));
  for (auto [N, C] : {std::pair<int64_t, int>{37, 45}, {70, 130}}) {
    const LnBackwardCase<T> k(*this->cpu, this->rng, N, C);
    for (GradMode dm : kModes)
      for (GradMode pm : kModes) {
        SCOPED_TRACE("N " + std::to_string(N) + " C " + std::to_string(C) + " din " + mode_name(dm) + " params " +
                     mode_name(pm));
        auto din = dm == GradMode::overwrite ? nans<T>(N * C) : random_t<T>(this->rng, N * C);
        auto dw = pm == GradMode::overwrite ? std::vector<float>(C, NAN) : qisa::test::random_vector<float>(this->rng, C);
        auto db = pm == GradMode::overwrite ? std::vector<float>(C, NAN) : qisa::test::random_vector<float>(this->rng, C);
        auto want_din = din;
        auto want_dw = dw, want_db = db;
        k.run_emu(din, dw, db, dm, pm);
        this->cpu->layernorm_backward(want_din.data(), want_dw.data(), want_db.data(), k.dout.data(), k.in.data(),
                                      k.w.data(), k.mean.data(), k.rstd.data(), N, C, dm, pm);
        ASSERT_FALSE(any_nan(widen(din)) || any_nan(dw) || any_nan(db));
        EXPECT_LE(max_rel_err(widen(din), widen(want_din)), kTol<T>);
        EXPECT_LE(max_rel_err(dw, want_dw), 1e-5);
        EXPECT_LE(max_rel_err(db, want_db), 1e-5);
      }
  }
}

TYPED_TEST(CudaEmuKernels, LayerNormParamGradientsAreBitwiseReproducible) {
  using T = TypeParam;
  SCOPED_TRACE("seed " + std::to_string(this->seed));
  const LnBackwardCase<T> k(*this->cpu, this->rng, 101, 33);
  auto din = nans<T>(101 * 33);
  std::vector<float> dw1(33, NAN), db1(33, NAN), dw2(33, NAN), db2(33, NAN);
  k.run_emu(din, dw1, db1, GradMode::overwrite, GradMode::overwrite);
  std::vector<T> no_din;  // din == nullptr: parameter gradients only
  k.run_emu(no_din, dw2, db2, GradMode::overwrite, GradMode::overwrite);
  EXPECT_EQ(0, std::memcmp(dw1.data(), dw2.data(), 33 * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(db1.data(), db2.data(), 33 * sizeof(float)));
}

TEST(CudaEmuShapes, HostWrappersRejectWhatTheKernelsCannotDo) {
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

TEST(CudaEmuShapes, CrossEntropyTargetOutsideTheVocabularyGivesNaN) {
  const int V = 40;
  std::vector<float> logits(2 * V, 0.5f), loss(2, 0.0f);
  const std::vector<int32_t> targets = {3, V};  // row 1 is out of range
  qisa::cuda::cross_entropy_forward(loss.data(), logits.data(), targets.data(), 2, V, kStream);
  EXPECT_NEAR(loss[0], std::log(40.0f), 1e-6);
  EXPECT_TRUE(std::isnan(loss[1]));
  qisa::cuda::cross_entropy_backward(logits.data(), logits.data(), targets.data(), 2, V, 1.0f, kStream);
  EXPECT_FLOAT_EQ(logits[3], 1.0f / 40 - 1.0f);
  EXPECT_TRUE(std::isnan(logits[V + 5]));
}

// Without its barrier the backward kernel reads the other warps' dw/db slices before they are
// written (the emulator's threads start in order, so early warps run ahead): NaN shared memory.
TYPED_TEST(CudaEmuKernels, LayerNormBackwardFailsWithoutItsBarrier) {
  using T = TypeParam;
  SCOPED_TRACE("seed " + std::to_string(this->seed));
  const int64_t N = 200;  // 7 blocks: each one may show the race
  const int C = 40;
  const LnBackwardCase<T> k(*this->cpu, this->rng, N, C);
  auto din = nans<T>(N * C);
  std::vector<float> dw(C, NAN), db(C, NAN), dw_bad(C, NAN), db_bad(C, NAN);
  k.run_emu(din, dw, db, GradMode::overwrite, GradMode::overwrite);
  ASSERT_FALSE(any_nan(dw) || any_nan(db));
  {
    qisa::emu::SkipBarriers skip(qisa::emu::kAllBarriers);
    k.run_emu(din, dw_bad, db_bad, GradMode::overwrite, GradMode::overwrite);
  }
  EXPECT_TRUE(std::memcmp(dw.data(), dw_bad.data(), C * sizeof(float)) != 0 ||
              std::memcmp(db.data(), db_bad.data(), C * sizeof(float)) != 0)
      << "the kernel gave the right dw/db without its __syncthreads()";
}

// ---- cross-entropy

TYPED_TEST(CudaEmuKernels, CrossEntropyForwardAndInPlaceBackwardMatchCpu) {
  using T = TypeParam;
  SCOPED_TRACE("seed " + std::to_string(this->seed));
  for (auto [N, V] : {std::pair<int64_t, int>{7, 1000}, {5, 77}, {2, 1}}) {
    SCOPED_TRACE("N " + std::to_string(N) + " V " + std::to_string(V));
    const auto logits = random_t<T>(this->rng, N * V, -4, 4);
    std::vector<int32_t> targets(N);
    for (auto& t : targets) t = static_cast<int32_t>(this->rng() % V);
    std::vector<float> loss(N, NAN), want_loss(N, NAN);
    qisa::cuda::cross_entropy_forward(loss.data(), logits.data(), targets.data(), N, V, kStream);
    this->cpu->cross_entropy_forward(want_loss.data(), logits.data(), targets.data(), N, V);
    ASSERT_FALSE(any_nan(loss));
    EXPECT_LE(max_rel_err(loss, want_loss), 1e-5);

    const float scale = 1.0f / 3.0f;
    auto d = logits, want_d = logits;  // in place, as the trainer calls it
    qisa::cuda::cross_entropy_backward(d.data(), d.data(), targets.data(), N, V, scale, kStream);
    this->cpu->cross_entropy_backward(want_d.data(), want_d.data(), targets.data(), N, V, scale);
    ASSERT_FALSE(any_nan(widen(d)));
    EXPECT_LE(max_rel_err(widen(d), widen(want_d)), kTol<T>);

    auto d2 = nans<T>(N * V);  // out of place into a poisoned buffer
    qisa::cuda::cross_entropy_backward(d2.data(), logits.data(), targets.data(), N, V, scale, kStream);
    EXPECT_EQ(0, std::memcmp(d2.data(), d.data(), d.size() * sizeof(T)));
  }
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

// ---- residual add with dropout: the same Philox bits and the same arithmetic

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}
// x + y * m and dy + g * m may be contracted into one FMA or not, depending on how the compiler
// treats the CPU's vectorised loop and the kernel (seen: bit-equal in the Release build, last-bit
// differences in the ThreadSanitizer build, 1e-7), so these get two fp32 ulps of max|want|
// (2.5e-7; bf16: one bf16 ulp, kTol). Products alone (overwrite) and copies stay bit for bit.
template <class T>
void expect_fma_close(const std::vector<T>& got, const std::vector<T>& want) {
  const double tol = std::is_same_v<T, float> ? 2.5e-7 : kTol<T>;
  EXPECT_LE(max_rel_err(widen(got), widen(want)), tol);
}

TYPED_TEST(CudaEmuKernels, DropoutAddMatchesCpu) {
  using T = TypeParam;
  SCOPED_TRACE("seed " + std::to_string(this->seed));
  const int64_t n = 1037;
  for (float p : {0.0f, 0.3f}) {
    qisa::Dropout d;
    d.p = p;
    d.seed = this->rng();
    d.step = 5;
    d.site = 3;
    d.elem_offset = 4 * 1000 + 3;  // not a whole Philox block: the first block is partial
    SCOPED_TRACE("p " + std::to_string(p));
    const auto x = random_t<T>(this->rng, n), y = random_t<T>(this->rng, n), dout = random_t<T>(this->rng, n);
    auto out = nans<T>(n), want = nans<T>(n);
    qisa::cuda::dropout_add_forward(out.data(), x.data(), y.data(), n, d, kStream);
    this->cpu->dropout_add_forward(want.data(), x.data(), y.data(), n, d);
    expect_fma_close(out, want);
    int64_t dropped = 0;  // out == x exactly where y was dropped
    for (int64_t i = 0; i < n; ++i) dropped += std::memcmp(&out[i], &x[i], sizeof(T)) == 0;
    EXPECT_NEAR(static_cast<double>(dropped) / n, p, 0.06);  // 1037 draws: sd 0.014
    for (GradMode mode : kModes)
      for (bool with_dx : {true, false}) {
        SCOPED_TRACE(std::string(mode_name(mode)) + (with_dx ? " dx and dy" : " dy only"));
        auto dx = mode == GradMode::overwrite ? nans<T>(n) : random_t<T>(this->rng, n);
        auto dy = mode == GradMode::overwrite ? nans<T>(n) : random_t<T>(this->rng, n);
        auto want_dx = dx, want_dy = dy;
        qisa::cuda::dropout_add_backward(with_dx ? dx.data() : nullptr, dy.data(), dout.data(), n, d, mode, kStream);
        this->cpu->dropout_add_backward(with_dx ? qisa::Act(want_dx.data()) : qisa::Act(nullptr), want_dy.data(),
                                        dout.data(), n, d, mode);
        if (mode == GradMode::overwrite) EXPECT_TRUE(same_bits(dy, want_dy));
        else expect_fma_close(dy, want_dy);
        EXPECT_TRUE(same_bits(dx, want_dx));  // a copy or one addition (no product), or untouched when null
      }
  }
}

// ---- embedding: no products, and the backward sums run in the CPU's order: bit for bit

TYPED_TEST(CudaEmuKernels, EmbeddingMatchesCpuBitForBit) {
  using T = TypeParam;
  SCOPED_TRACE("seed " + std::to_string(this->seed));
  const int64_t B = 3;
  const int T_ = 7, C = 45, V = 11, max_t = 9;  // 21 tokens over 11 ids: rows collide
  std::vector<int32_t> idx(B * T_);
  for (auto& v : idx) v = static_cast<int32_t>(this->rng() % V);
  const auto tok = qisa::test::random_vector<float>(this->rng, V * C);
  const auto pos = qisa::test::random_vector<float>(this->rng, max_t * C);
  auto out = nans<T>(B * T_ * C), want = nans<T>(B * T_ * C);
  qisa::cuda::embedding_forward(out.data(), idx.data(), tok.data(), pos.data(), B, T_, C, V, kStream);
  this->cpu->embedding_forward(want.data(), idx.data(), tok.data(), pos.data(), B, T_, C);
  EXPECT_EQ(0, std::memcmp(out.data(), want.data(), out.size() * sizeof(T)));
  const auto dout = random_t<T>(this->rng, B * T_ * C);
  for (GradMode mode : kModes)
    for (int which : {0, 1, 2}) {  // both, dtok only, dpos only
      SCOPED_TRACE(std::string(mode_name(mode)) + " case " + std::to_string(which));
      auto dtok = mode == GradMode::overwrite ? std::vector<float>(V * C, NAN)
                                              : qisa::test::random_vector<float>(this->rng, V * C);
      auto dpos = mode == GradMode::overwrite ? std::vector<float>(max_t * C, NAN)
                                              : qisa::test::random_vector<float>(this->rng, max_t * C);
      auto want_tok = dtok, want_pos = dpos;
      float* pt = which == 2 ? nullptr : dtok.data();
      float* pp = which == 1 ? nullptr : dpos.data();
      qisa::cuda::embedding_backward(pt, pp, dout.data(), idx.data(), B, T_, C, V, mode, kStream);
      this->cpu->embedding_backward(which == 2 ? nullptr : want_tok.data(), which == 1 ? nullptr : want_pos.data(),
                                    dout.data(), idx.data(), B, T_, C, V, mode);
      // NaN == NaN bitwise too: rows t >= T of dpos stay untouched in both
      EXPECT_EQ(0, std::memcmp(dtok.data(), want_tok.data(), dtok.size() * sizeof(float)));
      EXPECT_EQ(0, std::memcmp(dpos.data(), want_pos.data(), dpos.size() * sizeof(float)));
      if (which != 1) {
        ASSERT_FALSE(any_nan(std::vector<float>(dpos.begin(), dpos.begin() + T_ * C)));
      }
      if (which != 2) {
        ASSERT_FALSE(any_nan(dtok));
      }
    }
}

// ---- flat-buffer ops

TEST(CudaEmuFlat, ConvertRoundScaleMatchCpuBitForBit) {
  const uint64_t seed = qisa::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto cpu = qisa::make_cpu_backend(1);
  const int64_t n = 1037;
  auto f = qisa::test::random_vector<float>(rng, n, -3, 3);
  f[5] = NAN;
  f[6] = INFINITY;
  const auto h = random_t<bf16>(rng, n);
  auto to_h = nans<bf16>(n), want_h = nans<bf16>(n);
  qisa::cuda::convert(to_h.data(), f.data(), n, kStream);
  cpu->convert(want_h.data(), f.data(), n);
  EXPECT_TRUE(same_bits(to_h, want_h));
  std::vector<float> to_f(n, NAN), want_f(n, 0.0f);
  qisa::cuda::convert(to_f.data(), h.data(), n, kStream);
  cpu->convert(want_f.data(), h.data(), n);
  EXPECT_TRUE(same_bits(to_f, want_f));
  auto hh = nans<bf16>(n);
  qisa::cuda::convert(hh.data(), h.data(), n, kStream);
  EXPECT_TRUE(same_bits(hh, h));

  auto sr = nans<bf16>(n), want_sr = nans<bf16>(n);
  qisa::cuda::round_bf16_stochastic(sr.data(), f.data(), n, 77, 9, 12345, kStream);
  cpu->round_bf16_stochastic(want_sr.data(), f.data(), n, 77, 9, 12345);
  EXPECT_TRUE(same_bits(sr, want_sr));
  EXPECT_FALSE(same_bits(sr, want_h)) << "stochastic rounding rounded every element to nearest";

  auto x = f, want_x = f;
  qisa::cuda::scale(x.data(), 0.37f, n, kStream);
  cpu->scale(want_x.data(), 0.37f, n);
  EXPECT_TRUE(same_bits(x, want_x));
}

TEST(CudaEmuFlat, SumSquaresIsReproducibleAndMatchesCpu) {
  const uint64_t seed = qisa::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto cpu = qisa::make_cpu_backend(1);
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{5003}}) {  // 5003: 20 partial blocks
    SCOPED_TRACE("n " + std::to_string(n));
    const auto x = qisa::test::random_vector<float>(rng, n, -2, 2);
    std::vector<double> part(qisa::cuda::kSumSquaresWorkspace, NAN);
    double got = NAN, again = NAN;
    qisa::cuda::sum_squares(&got, x.data(), n, part.data(), kStream);
    qisa::cuda::sum_squares(&again, x.data(), n, part.data(), kStream);
    const double want = cpu->sum_squares(x.data(), n);
    EXPECT_EQ(0, std::memcmp(&got, &again, sizeof got));
    EXPECT_LE(std::abs(got - want), 1e-13 * std::max(want, 1.0)) << got << " vs " << want;  // another order of double sums
  }
}

// ---- AdamW (fp32 parameters and moments; no storage type)

TEST(CudaEmuAdamW, MatchesCpuBitForBit) {
  const uint64_t seed = qisa::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto cpu = qisa::make_cpu_backend(1);
  const int64_t n = 1037;
  const qisa::AdamWHyper hypers[] = {{3e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 1, 1.0f},
                                     {1e-2f, 0.3f, 0.95f, 1e-6f, 0.1f, 7, 0.5f}};  // lerp's other branch
  for (const auto& h : hypers) {
    SCOPED_TRACE("beta1 " + std::to_string(h.beta1) + " step " + std::to_string(h.step));
    auto p = qisa::test::random_vector<float>(rng, n), g = qisa::test::random_vector<float>(rng, n, -0.1, 0.1);
    auto m = qisa::test::random_vector<float>(rng, n, -0.01, 0.01), v = qisa::test::random_vector<float>(rng, n, 0, 1e-3);
    auto wp = p, wm = m, wv = v;
    qisa::cuda::adamw_update(p.data(), g.data(), m.data(), v.data(), n, h, kStream);
    cpu->adamw_update(wp.data(), g.data(), wm.data(), wv.data(), n, h);
    EXPECT_EQ(0, std::memcmp(p.data(), wp.data(), n * sizeof(float)));
    EXPECT_EQ(0, std::memcmp(m.data(), wm.data(), n * sizeof(float)));
    EXPECT_EQ(0, std::memcmp(v.data(), wv.data(), n * sizeof(float)));
    EXPECT_LE(max_rel_err(p, wp), 0.0);  // names the size of a mismatch, if any
  }
}

// ---- activations

TYPED_TEST(CudaEmuKernels, ActivationsMatchCpuInBothModes) {
  using T = TypeParam;
  SCOPED_TRACE("seed " + std::to_string(this->seed));
  const int64_t n = 1037;
  for (auto act : {qisa::Activation::relu, qisa::Activation::gelu}) {
    const bool relu = act == qisa::Activation::relu;
    // relu is exact; gelu differs by expf vs the CPU's exp_poly (a few ulp)
    const double tol = relu ? 0.0 : std::is_same_v<T, float> ? 2e-6 : kTol<T>;
    SCOPED_TRACE(relu ? "relu" : "gelu");
    const auto in = random_t<T>(this->rng, n, -5, 5), dout = random_t<T>(this->rng, n);
    auto out = nans<T>(n), want = nans<T>(n);
    qisa::cuda::activation_forward(out.data(), in.data(), n, act, kStream);
    this->cpu->activation_forward(want.data(), in.data(), n, act);
    ASSERT_FALSE(any_nan(widen(out)));
    EXPECT_LE(max_rel_err(widen(out), widen(want)), tol);
    for (GradMode mode : kModes) {
      SCOPED_TRACE(mode_name(mode));
      auto din = mode == GradMode::overwrite ? nans<T>(n) : random_t<T>(this->rng, n);
      auto want_din = din;
      qisa::cuda::activation_backward(din.data(), dout.data(), in.data(), n, act, mode, kStream);
      this->cpu->activation_backward(want_din.data(), dout.data(), in.data(), n, act, mode);
      ASSERT_FALSE(any_nan(widen(din)));
      EXPECT_LE(max_rel_err(widen(din), widen(want_din)), tol);
    }
  }
}

}  // namespace
