// The kernel-vs-CPU cases of kernels/cuda/*.cuh, shared by the emulator suite
// (tests/unit/test_cuda_emu_kernels.cpp: the kernels on host memory through tests/cuda_emu) and
// the device suite (tests/gpu/test_gpu_kernels.cu: the same kernels, built by nvcc, on device
// memory). Each case is a template on a Runner R that owns where the kernels' buffers live:
//
//   typename R::template Buf<T>   a buffer the kernels can address; .data() -> T*, .size()
//   r.put(const std::vector<T>&)  -> Buf<T> holding a copy of the host values
//   r.get(const Buf<T>&)          -> std::vector<T>: the buffer's values once every launch is done
//   r.launched(what, file, line)  after each host wrapper call: the device runner checks
//                                 cudaGetLastError (the emulator's launch() throws by itself)
//
// Random inputs from a fresh seed (the test prints it on failure; pin it with QISA_TEST_SEED),
// sizes that are no power of two and leave partial blocks, outputs poisoned with NaN before
// overwrite calls, both GradModes, fp32 and bf16 storage.
//
// Tolerances (max|got - want| / max|want|, SPEC §4's measure):
//  - fp32 results: 1e-5 (layernorm and the softmax sums add in another order than the CPU's
//    pack-wise sums; exp is the CPU's exp_poly vs expf, each within ~2 ulp); AdamW, relu, embedding and
//    the flat ops are the same arithmetic, so they must agree bit for bit (dropout: see there);
//  - bf16 results: 8e-3, because an fp32 value that differs in its last bits may round to the
//    neighbouring bf16 (one bf16 ulp is 2^-8 = 3.9e-3 relative).
// On a GPU, nvcc may contract a*b+c into an FMA where g++ did not; the cases that demand bit
// equality with the CPU say so, and a device failure there is a finding, not noise.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/adamw.cuh"
#include "kernels/cuda/cross_entropy.cuh"
#include "kernels/cuda/dropout.cuh"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/layernorm.cuh"
#include "bf16_values.h"
#include "test_util.h"

// Call a host wrapper, then tell the runner it launched (device: cudaGetLastError).
#define QISA_KC_LAUNCH(r, ...)                      \
  do {                                              \
    __VA_ARGS__;                                    \
    (r).launched(#__VA_ARGS__, __FILE__, __LINE__); \
  } while (0)

namespace qisa::test::kernel_cases {

using qisa::bf16;
using qisa::GradMode;
using qisa::test::max_rel_err;

inline constexpr cudaStream_t kStream = nullptr;
using qisa::test::from_f;
using qisa::test::kModes;
using qisa::test::mode_name;
using qisa::test::to_f;
using qisa::test::widen;

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
inline bool any_nan(const std::vector<float>& v) {
  return std::any_of(v.begin(), v.end(), [](float x) { return std::isnan(x); });
}
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  // empty vectors may hold null data(), which memcmp must not see (UBSan: nonnull argument)
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

template <class T>
constexpr double kTol = std::is_same_v<T, float> ? 1e-5 : 8e-3;

// x + y * m and dy + g * m may be contracted into one FMA or not, depending on how the compiler
// treats the CPU's vectorised loop and the kernel (seen: bit-equal in the Release build, last-bit
// differences in the ThreadSanitizer build, 1e-7), so these get two fp32 ulps of max|want|
// (2.5e-7; bf16: one bf16 ulp, kTol). Products alone (overwrite) and copies stay bit for bit.
template <class T>
void expect_fma_close(const std::vector<T>& got, const std::vector<T>& want) {
  const double tol = std::is_same_v<T, float> ? 2.5e-7 : kTol<T>;
  EXPECT_LE(max_rel_err(widen(got), widen(want)), tol);
}

// ---- layernorm

template <class T, class R>
void layernorm_forward_matches_cpu(qisa::Backend& cpu, std::mt19937_64& rng, R& r) {
  for (auto [N, C] : {std::pair<int64_t, int>{37, 45}, {9, 130}, {3, 1}}) {
    SCOPED_TRACE("N " + std::to_string(N) + " C " + std::to_string(C));
    const auto in = random_t<T>(rng, N * C, -2, 3);
    const auto w = qisa::test::random_vector<float>(rng, C), b = qisa::test::random_vector<float>(rng, C);
    auto want = nans<T>(N * C);
    std::vector<float> want_mean(N, NAN), want_rstd(N, NAN);
    auto d_out = r.put(nans<T>(N * C));
    auto d_mean = r.put(std::vector<float>(N, NAN)), d_rstd = r.put(std::vector<float>(N, NAN));
    auto d_in = r.put(in);
    auto d_w = r.put(w), d_b = r.put(b);
    QISA_KC_LAUNCH(r, qisa::cuda::layernorm_forward(d_out.data(), d_mean.data(), d_rstd.data(), d_in.data(),
                                                    d_w.data(), d_b.data(), N, C, kStream));
    cpu.layernorm_forward(want.data(), want_mean.data(), want_rstd.data(), in.data(), w.data(), b.data(), N, C);
    const auto out = r.get(d_out);
    ASSERT_FALSE(any_nan(widen(out)));
    EXPECT_LE(max_rel_err(widen(out), widen(want)), kTol<T>);
    EXPECT_LE(max_rel_err(r.get(d_mean), want_mean), 1e-5);
    EXPECT_LE(max_rel_err(r.get(d_rstd), want_rstd), 1e-5);
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
  // din, dw, db (in/out) through the kernels of runner r; din empty: din == nullptr
  template <class R>
  void run(R& r, std::vector<T>& din, std::vector<float>& dw, std::vector<float>& db, GradMode dm,
           GradMode pm) const {
    auto d_part = r.put(std::vector<float>(qisa::cuda::layernorm_backward_workspace(N, C), NAN));
    auto d_din = r.put(din);
    auto d_dw = r.put(dw), d_db = r.put(db);
    auto d_dout = r.put(dout), d_in = r.put(in);
    auto d_w = r.put(w), d_mean = r.put(mean), d_rstd = r.put(rstd);
    QISA_KC_LAUNCH(r, qisa::cuda::layernorm_backward(din.empty() ? nullptr : d_din.data(), d_dw.data(), d_db.data(),
                                                     d_dout.data(), d_in.data(), d_w.data(), d_mean.data(),
                                                     d_rstd.data(), N, C, dm, pm, d_part.data(), kStream));
    din = r.get(d_din);
    dw = r.get(d_dw);
    db = r.get(d_db);
  }
};

template <class T, class R>
void layernorm_backward_matches_cpu_in_both_modes(qisa::Backend& cpu, std::mt19937_64& rng, R& r) {
  // C > kLnMaxC: rows too wide for the warps' shared slices (GPT-2 XL's 1600), the column kernel
  for (auto [N, C] : {std::pair<int64_t, int>{37, 45}, {70, 130}, {45, qisa::cuda::kLnMaxC + 65}}) {
    const LnBackwardCase<T> k(cpu, rng, N, C);
    for (GradMode dm : kModes)
      for (GradMode pm : kModes) {
        SCOPED_TRACE("N " + std::to_string(N) + " C " + std::to_string(C) + " din " + mode_name(dm) + " params " +
                     mode_name(pm));
        auto din = dm == GradMode::overwrite ? nans<T>(N * C) : random_t<T>(rng, N * C);
        auto dw = pm == GradMode::overwrite ? std::vector<float>(C, NAN) : qisa::test::random_vector<float>(rng, C);
        auto db = pm == GradMode::overwrite ? std::vector<float>(C, NAN) : qisa::test::random_vector<float>(rng, C);
        auto want_din = din;
        auto want_dw = dw, want_db = db;
        k.run(r, din, dw, db, dm, pm);
        cpu.layernorm_backward(want_din.data(), want_dw.data(), want_db.data(), k.dout.data(), k.in.data(),
                               k.w.data(), k.mean.data(), k.rstd.data(), N, C, dm, pm);
        ASSERT_FALSE(any_nan(widen(din)) || any_nan(dw) || any_nan(db));
        EXPECT_LE(max_rel_err(widen(din), widen(want_din)), kTol<T>);
        EXPECT_LE(max_rel_err(dw, want_dw), 1e-5);
        EXPECT_LE(max_rel_err(db, want_db), 1e-5);
      }
  }
}

template <class T, class R>
void layernorm_param_gradients_are_bitwise_reproducible(qisa::Backend& cpu, std::mt19937_64& rng, R& r) {
  const LnBackwardCase<T> k(cpu, rng, 101, 33);
  auto din = nans<T>(101 * 33);
  std::vector<float> dw1(33, NAN), db1(33, NAN), dw2(33, NAN), db2(33, NAN);
  k.run(r, din, dw1, db1, GradMode::overwrite, GradMode::overwrite);
  std::vector<T> no_din;  // din == nullptr: parameter gradients only
  k.run(r, no_din, dw2, db2, GradMode::overwrite, GradMode::overwrite);
  EXPECT_EQ(0, std::memcmp(dw1.data(), dw2.data(), 33 * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(db1.data(), db2.data(), 33 * sizeof(float)));
}

// ---- cross-entropy

template <class R>
void cross_entropy_target_outside_the_vocabulary_gives_nan(R& r) {
  const int V = 40;
  auto d_logits = r.put(std::vector<float>(2 * V, 0.5f));
  auto d_loss = r.put(std::vector<float>(2, 0.0f));
  auto d_targets = r.put(std::vector<int32_t>{3, V});  // row 1 is out of range
  QISA_KC_LAUNCH(r, qisa::cuda::cross_entropy_forward(d_loss.data(), d_logits.data(), d_targets.data(), 2, V, kStream));
  const auto loss = r.get(d_loss);
  EXPECT_NEAR(loss[0], std::log(40.0f), 1e-6);
  EXPECT_TRUE(std::isnan(loss[1]));
  QISA_KC_LAUNCH(r, qisa::cuda::cross_entropy_backward(d_logits.data(), d_logits.data(), d_targets.data(), 2, V, 1.0f,
                                                       kStream));
  const auto logits = r.get(d_logits);
  EXPECT_FLOAT_EQ(logits[3], 1.0f / 40 - 1.0f);
  EXPECT_TRUE(std::isnan(logits[V + 5]));
}

template <class T, class R>
void cross_entropy_forward_and_in_place_backward_match_cpu(qisa::Backend& cpu, std::mt19937_64& rng, R& r) {
  for (auto [N, V] : {std::pair<int64_t, int>{7, 1000}, {5, 77}, {2, 1}}) {
    SCOPED_TRACE("N " + std::to_string(N) + " V " + std::to_string(V));
    const auto logits = random_t<T>(rng, N * V, -4, 4);
    std::vector<int32_t> targets(N);
    for (auto& t : targets) t = static_cast<int32_t>(rng() % V);
    std::vector<float> want_loss(N, NAN);
    auto d_loss = r.put(std::vector<float>(N, NAN));
    auto d_logits = r.put(logits);
    auto d_targets = r.put(targets);
    QISA_KC_LAUNCH(r, qisa::cuda::cross_entropy_forward(d_loss.data(), d_logits.data(), d_targets.data(), N, V,
                                                        kStream));
    cpu.cross_entropy_forward(want_loss.data(), logits.data(), targets.data(), N, V);
    const auto loss = r.get(d_loss);
    ASSERT_FALSE(any_nan(loss));
    EXPECT_LE(max_rel_err(loss, want_loss), 1e-5);

    const float scale = 1.0f / 3.0f;
    auto want_d = logits;  // in place, as the trainer calls it
    auto d_d = r.put(logits);
    QISA_KC_LAUNCH(r, qisa::cuda::cross_entropy_backward(d_d.data(), d_d.data(), d_targets.data(), N, V, scale,
                                                         kStream));
    cpu.cross_entropy_backward(want_d.data(), want_d.data(), targets.data(), N, V, scale);
    const auto d = r.get(d_d);
    ASSERT_FALSE(any_nan(widen(d)));
    EXPECT_LE(max_rel_err(widen(d), widen(want_d)), kTol<T>);

    auto d_d2 = r.put(nans<T>(N * V));  // out of place into a poisoned buffer
    QISA_KC_LAUNCH(r, qisa::cuda::cross_entropy_backward(d_d2.data(), d_logits.data(), d_targets.data(), N, V, scale,
                                                         kStream));
    EXPECT_TRUE(same_bits(r.get(d_d2), d));
  }
}

// ---- residual add with dropout: the same Philox bits and the same arithmetic

template <class T, class R>
void dropout_add_matches_cpu(qisa::Backend& cpu, std::mt19937_64& rng, R& r) {
  const int64_t n = 1037;
  for (float p : {0.0f, 0.3f}) {
    qisa::Dropout d;
    d.p = p;
    d.seed = rng();
    d.step = 5;
    d.site = 3;
    d.elem_offset = 4 * 1000 + 3;  // not a whole Philox block: the first block is partial
    SCOPED_TRACE("p " + std::to_string(p));
    const auto x = random_t<T>(rng, n), y = random_t<T>(rng, n), dout = random_t<T>(rng, n);
    auto want = nans<T>(n);
    auto d_out = r.put(nans<T>(n));
    auto d_x = r.put(x), d_y = r.put(y), d_dout = r.put(dout);
    QISA_KC_LAUNCH(r, qisa::cuda::dropout_add_forward(d_out.data(), d_x.data(), d_y.data(), n, d, kStream));
    cpu.dropout_add_forward(want.data(), x.data(), y.data(), n, d);
    const auto out = r.get(d_out);
    expect_fma_close(out, want);
    int64_t dropped = 0;  // out == x exactly where y was dropped
    for (int64_t i = 0; i < n; ++i) dropped += std::memcmp(&out[i], &x[i], sizeof(T)) == 0;
    EXPECT_NEAR(static_cast<double>(dropped) / n, p, 0.06);  // 1037 draws: sd 0.014
    for (GradMode mode : kModes)
      for (bool with_dx : {true, false}) {
        SCOPED_TRACE(std::string(mode_name(mode)) + (with_dx ? " dx and dy" : " dy only"));
        const auto dx0 = mode == GradMode::overwrite ? nans<T>(n) : random_t<T>(rng, n);
        const auto dy0 = mode == GradMode::overwrite ? nans<T>(n) : random_t<T>(rng, n);
        auto want_dx = dx0, want_dy = dy0;
        auto d_dx = r.put(dx0), d_dy = r.put(dy0);
        QISA_KC_LAUNCH(r, qisa::cuda::dropout_add_backward(with_dx ? d_dx.data() : nullptr, d_dy.data(),
                                                           d_dout.data(), n, d, mode, kStream));
        cpu.dropout_add_backward(with_dx ? qisa::Act(want_dx.data()) : qisa::Act(nullptr), want_dy.data(),
                                 dout.data(), n, d, mode);
        const auto dx = r.get(d_dx), dy = r.get(d_dy);
        if (mode == GradMode::overwrite) EXPECT_TRUE(same_bits(dy, want_dy));
        else expect_fma_close(dy, want_dy);
        EXPECT_TRUE(same_bits(dx, want_dx));  // a copy or one addition (no product), or untouched when null
      }
  }
}

// ---- embedding: no products, and the backward sums run in the CPU's order: bit for bit

template <class T, class R>
void embedding_matches_cpu_bit_for_bit(qisa::Backend& cpu, std::mt19937_64& rng, R& r) {
  const int64_t B = 3;
  const int T_ = 7, C = 45, V = 11, max_t = 9;  // 21 tokens over 11 ids: rows collide
  std::vector<int32_t> idx(B * T_);
  for (auto& v : idx) v = static_cast<int32_t>(rng() % V);
  const auto tok = qisa::test::random_vector<float>(rng, V * C);
  const auto pos = qisa::test::random_vector<float>(rng, max_t * C);
  auto want = nans<T>(B * T_ * C);
  auto d_out = r.put(nans<T>(B * T_ * C));
  auto d_idx = r.put(idx);
  auto d_tok = r.put(tok), d_pos = r.put(pos);
  QISA_KC_LAUNCH(r, qisa::cuda::embedding_forward(d_out.data(), d_idx.data(), d_tok.data(), d_pos.data(), B, T_, C, V,
                                                  kStream));
  cpu.embedding_forward(want.data(), idx.data(), tok.data(), pos.data(), B, T_, C);
  EXPECT_TRUE(same_bits(r.get(d_out), want));
  const auto dout = random_t<T>(rng, B * T_ * C);
  auto d_dout = r.put(dout);
  for (GradMode mode : kModes)
    for (int which : {0, 1, 2}) {  // both, dtok only, dpos only
      SCOPED_TRACE(std::string(mode_name(mode)) + " case " + std::to_string(which));
      const auto dtok0 = mode == GradMode::overwrite ? std::vector<float>(V * C, NAN)
                                                     : qisa::test::random_vector<float>(rng, V * C);
      const auto dpos0 = mode == GradMode::overwrite ? std::vector<float>(max_t * C, NAN)
                                                     : qisa::test::random_vector<float>(rng, max_t * C);
      auto want_tok = dtok0, want_pos = dpos0;
      auto d_dtok = r.put(dtok0), d_dpos = r.put(dpos0);
      float* pt = which == 2 ? nullptr : d_dtok.data();
      float* pp = which == 1 ? nullptr : d_dpos.data();
      QISA_KC_LAUNCH(r, qisa::cuda::embedding_backward(pt, pp, d_dout.data(), d_idx.data(), B, T_, C, V, mode,
                                                       kStream));
      cpu.embedding_backward(which == 2 ? nullptr : want_tok.data(), which == 1 ? nullptr : want_pos.data(),
                             dout.data(), idx.data(), B, T_, C, V, mode);
      const auto dtok = r.get(d_dtok), dpos = r.get(d_dpos);
      // NaN == NaN bitwise too: rows t >= T of dpos stay untouched in both
      EXPECT_TRUE(same_bits(dtok, want_tok));
      EXPECT_TRUE(same_bits(dpos, want_pos));
      if (which != 1) {
        ASSERT_FALSE(any_nan(std::vector<float>(dpos.begin(), dpos.begin() + T_ * C)));
      }
      if (which != 2) {
        ASSERT_FALSE(any_nan(dtok));
      }
    }
}

// ---- flat-buffer ops

template <class R>
void convert_round_scale_match_cpu_bit_for_bit(qisa::Backend& cpu, std::mt19937_64& rng, R& r) {
  const int64_t n = 1037;
  auto f = qisa::test::random_vector<float>(rng, n, -3, 3);
  f[5] = NAN;
  f[6] = INFINITY;
  const auto h = random_t<bf16>(rng, n);
  auto d_f = r.put(f);
  auto d_h = r.put(h);
  auto want_h = nans<bf16>(n);
  auto d_to_h = r.put(nans<bf16>(n));
  QISA_KC_LAUNCH(r, qisa::cuda::convert(d_to_h.data(), d_f.data(), n, kStream));
  cpu.convert(want_h.data(), f.data(), n);
  EXPECT_TRUE(same_bits(r.get(d_to_h), want_h));
  std::vector<float> want_f(n, 0.0f);
  auto d_to_f = r.put(std::vector<float>(n, NAN));
  QISA_KC_LAUNCH(r, qisa::cuda::convert(d_to_f.data(), d_h.data(), n, kStream));
  cpu.convert(want_f.data(), h.data(), n);
  EXPECT_TRUE(same_bits(r.get(d_to_f), want_f));
  auto d_hh = r.put(nans<bf16>(n));
  QISA_KC_LAUNCH(r, qisa::cuda::convert(d_hh.data(), d_h.data(), n, kStream));
  EXPECT_TRUE(same_bits(r.get(d_hh), h));

  auto want_sr = nans<bf16>(n);
  auto d_sr = r.put(nans<bf16>(n));
  QISA_KC_LAUNCH(r, qisa::cuda::round_bf16_stochastic(d_sr.data(), d_f.data(), n, 77, 9, 12345, kStream));
  cpu.round_bf16_stochastic(want_sr.data(), f.data(), n, 77, 9, 12345);
  const auto sr = r.get(d_sr);
  EXPECT_TRUE(same_bits(sr, want_sr));
  EXPECT_FALSE(same_bits(sr, want_h)) << "stochastic rounding rounded every element to nearest";

  auto want_x = f;
  auto d_x = r.put(f);
  QISA_KC_LAUNCH(r, qisa::cuda::scale(d_x.data(), 0.37f, n, kStream));
  cpu.scale(want_x.data(), 0.37f, n);
  EXPECT_TRUE(same_bits(r.get(d_x), want_x));
}

template <class R>
void sum_squares_is_reproducible_and_matches_cpu(qisa::Backend& cpu, std::mt19937_64& rng, R& r) {
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{5003}}) {  // 5003: 20 partial blocks
    SCOPED_TRACE("n " + std::to_string(n));
    const auto x = qisa::test::random_vector<float>(rng, n, -2, 2);
    auto d_x = r.put(x);
    auto d_part = r.put(std::vector<double>(qisa::cuda::kSumSquaresWorkspace, NAN));
    auto d_got = r.put(std::vector<double>{NAN}), d_again = r.put(std::vector<double>{NAN});
    QISA_KC_LAUNCH(r, qisa::cuda::sum_squares(d_got.data(), d_x.data(), n, d_part.data(), kStream));
    QISA_KC_LAUNCH(r, qisa::cuda::sum_squares(d_again.data(), d_x.data(), n, d_part.data(), kStream));
    const double got = r.get(d_got)[0], again = r.get(d_again)[0];
    const double want = cpu.sum_squares(x.data(), n);
    EXPECT_EQ(0, std::memcmp(&got, &again, sizeof got));
    EXPECT_LE(std::abs(got - want), 1e-13 * std::max(want, 1.0)) << got << " vs " << want;  // another order of double sums
  }
}

// ---- AdamW (fp32 parameters and moments; no storage type)

template <class R>
void adamw_matches_cpu_bit_for_bit(qisa::Backend& cpu, std::mt19937_64& rng, R& r) {
  const int64_t n = 1037;
  const qisa::AdamWHyper hypers[] = {{3e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 1, 1.0f},
                                     {1e-2f, 0.3f, 0.95f, 1e-6f, 0.1f, 7, 0.5f}};  // lerp's other branch
  for (const auto& h : hypers) {
    SCOPED_TRACE("beta1 " + std::to_string(h.beta1) + " step " + std::to_string(h.step));
    auto wp = qisa::test::random_vector<float>(rng, n), g = qisa::test::random_vector<float>(rng, n, -0.1, 0.1);
    auto wm = qisa::test::random_vector<float>(rng, n, -0.01, 0.01), wv = qisa::test::random_vector<float>(rng, n, 0, 1e-3);
    auto d_p = r.put(wp), d_g = r.put(g), d_m = r.put(wm), d_v = r.put(wv);
    QISA_KC_LAUNCH(r, qisa::cuda::adamw_update(d_p.data(), d_g.data(), d_m.data(), d_v.data(), n, h, kStream));
    cpu.adamw_update(wp.data(), g.data(), wm.data(), wv.data(), n, h);
    const auto p = r.get(d_p), m = r.get(d_m), v = r.get(d_v);
    EXPECT_TRUE(same_bits(p, wp));
    EXPECT_TRUE(same_bits(m, wm));
    EXPECT_TRUE(same_bits(v, wv));
    EXPECT_LE(max_rel_err(p, wp), 0.0);  // names the size of a mismatch, if any
  }
}

// ---- activations

template <class T, class R>
void activations_match_cpu_in_both_modes(qisa::Backend& cpu, std::mt19937_64& rng, R& r) {
  const int64_t n = 1037;
  for (auto act : {qisa::Activation::relu, qisa::Activation::gelu}) {
    const bool relu = act == qisa::Activation::relu;
    // relu is exact; gelu differs by expf vs the CPU's exp_poly (a few ulp)
    const double tol = relu ? 0.0 : std::is_same_v<T, float> ? 2e-6 : kTol<T>;
    SCOPED_TRACE(relu ? "relu" : "gelu");
    const auto in = random_t<T>(rng, n, -5, 5), dout = random_t<T>(rng, n);
    auto want = nans<T>(n);
    auto d_out = r.put(nans<T>(n));
    auto d_in = r.put(in), d_dout = r.put(dout);
    QISA_KC_LAUNCH(r, qisa::cuda::activation_forward(d_out.data(), d_in.data(), n, act, kStream));
    cpu.activation_forward(want.data(), in.data(), n, act);
    const auto out = r.get(d_out);
    ASSERT_FALSE(any_nan(widen(out)));
    EXPECT_LE(max_rel_err(widen(out), widen(want)), tol);
    for (GradMode mode : kModes) {
      SCOPED_TRACE(mode_name(mode));
      const auto din0 = mode == GradMode::overwrite ? nans<T>(n) : random_t<T>(rng, n);
      auto want_din = din0;
      auto d_din = r.put(din0);
      QISA_KC_LAUNCH(r, qisa::cuda::activation_backward(d_din.data(), d_dout.data(), d_in.data(), n, act, mode,
                                                        kStream));
      cpu.activation_backward(want_din.data(), dout.data(), in.data(), n, act, mode);
      const auto din = r.get(d_din);
      ASSERT_FALSE(any_nan(widen(din)));
      EXPECT_LE(max_rel_err(widen(din), widen(want_din)), tol);
    }
  }
}

// ---- the runner of the emulator: buffers are host vectors, launches run on host threads

struct HostRunner {
  template <class T>
  using Buf = std::vector<T>;
  template <class T>
  std::vector<T> put(const std::vector<T>& v) const { return v; }
  template <class T>
  std::vector<T> get(const std::vector<T>& b) const { return b; }
  void launched(const char*, const char*, int) const {}  // emu::launch throws LaunchError itself
};

}  // namespace qisa::test::kernel_cases
