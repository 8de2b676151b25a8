// The kernel-vs-CPU cases of kernels/cuda/gaussian_attention.cuh (Gaussian-kernel attention,
// forward and backward, causal and reference masks), on the Runner concept of kernel_cases.h,
// with its tolerances: fp32 1e-5 of max|want|, bf16 8e-3 (both measured per tensor over the
// heads' columns only; the columns between H*D and a wider row stride must stay untouched).
// Shapes: T in {1, 7, 37, 70} (one, partial and several tiles of kGaTile = 32), D in {4, 16, 64},
// B*H > 1, strided heads (ld > H*D).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernel_cases.h"
#include "kernels/cuda/gaussian_attention.cuh"

namespace qisa::test::kernel_cases {

using qisa::AttnMask;

struct GaShape {
  int64_t B;
  int T, H, D;
  int pad_qk, pad_v, pad_out;  // ld = H*D + pad
  int ld_qk() const { return H * D + pad_qk; }
  int ld_v() const { return H * D + pad_v; }
  int ld_out() const { return H * D + pad_out; }
  int64_t N() const { return B * T; }
  std::string name() const {
    return "B " + std::to_string(B) + " T " + std::to_string(T) + " H " + std::to_string(H) + " D " +
           std::to_string(D) + " ld_qk " + std::to_string(ld_qk()) + " ld_v " + std::to_string(ld_v()) + " ld_out " +
           std::to_string(ld_out());
  }
};
inline const GaShape kGaShapes[] = {{2, 1, 3, 4, 0, 0, 0},
                                    {2, 7, 3, 16, 5, 3, 0},
                                    {1, 37, 2, 64, 0, 7, 2},
                                    {1, 70, 1, 16, 3, 0, 1}};
inline const char* mask_name(AttnMask m) { return m == AttnMask::causal ? "causal" : "reference"; }

// The heads' columns [0, H*D) of the N rows of a [N, ld] buffer, widened to float.
template <class T>
std::vector<float> head_cols(const std::vector<T>& a, int64_t N, int ld, int W) {
  std::vector<float> r;
  r.reserve(N * W);
  for (int64_t n = 0; n < N; ++n)
    for (int c = 0; c < W; ++c) r.push_back(to_f(a[n * ld + c]));
  return r;
}
// True when the columns [W, ld) of every row have the same bits in a and b (untouched).
template <class T>
bool same_padding(const std::vector<T>& a, const std::vector<T>& b, int64_t N, int ld, int W) {
  for (int64_t n = 0; n < N; ++n)
    if (std::memcmp(&a[n * ld + W], &b[n * ld + W], sizeof(T) * (ld - W)) != 0) return false;
  return true;
}

template <class T>
struct GaInputs {
  GaShape s;
  std::vector<T> q, k, v, dout;
  explicit GaInputs(const GaShape& sh) : s(sh) {}
  GaInputs(std::mt19937_64& rng, const GaShape& sh) : s(sh) {
    // |q - k|^2 of order 1, so alpha spreads over (0, 1] instead of vanishing for large D
    const double a = 1.2 / std::sqrt(static_cast<double>(sh.D));
    q = random_t<T>(rng, sh.N() * sh.ld_qk(), -a, a);
    k = random_t<T>(rng, sh.N() * sh.ld_qk(), -a, a);
    v = random_t<T>(rng, sh.N() * sh.ld_v());
    dout = random_t<T>(rng, sh.N() * sh.ld_out());
  }
};

template <class T, class R>
void gaussian_forward_run(R& r, const GaInputs<T>& in, AttnMask mask, std::vector<T>& out, std::vector<float>& z,
                          qisa::AttnScore score = {}) {
  const GaShape& s = in.s;
  auto d_out = r.put(out);
  auto d_z = r.put(z);
  auto d_q = r.put(in.q), d_k = r.put(in.k), d_v = r.put(in.v);
  QISA_KC_LAUNCH(r, qisa::cuda::gaussian_attention_forward(d_out.data(), s.ld_out(), d_z.data(), d_q.data(),
                                                           d_k.data(), s.ld_qk(), d_v.data(), s.ld_v(), s.B, s.T,
                                                           s.H, s.D, mask, score, kStream));
  out = r.get(d_out);
  z = r.get(d_z);
}

// The scores the cases run: the paper's on every shape; the gaussian one (model.qisa_score; a
// scale other than the default) on the shapes of T >= 7, where its row maximum matters.
inline const qisa::AttnScore kGaussScore{qisa::QisaScore::gaussian, 1.7f};
inline std::vector<qisa::AttnScore> scores_for(const GaShape& s) {
  if (s.T < 7) return {qisa::AttnScore{}};
  return {qisa::AttnScore{}, kGaussScore};
}
inline std::string score_name(qisa::AttnScore sc) {
  return sc.kind == qisa::QisaScore::paper ? "paper score" : "gaussian score " + std::to_string(sc.scale);
}

template <class T, class R>
void gaussian_attention_forward_matches_cpu(qisa::Backend& cpu, std::mt19937_64& rng, R& r) {
  for (const GaShape& s : kGaShapes)
    for (AttnMask mask : {AttnMask::causal, AttnMask::reference})
      for (qisa::AttnScore score : scores_for(s)) {
      SCOPED_TRACE(s.name() + " " + mask_name(mask) + " " + score_name(score));
      const GaInputs<T> in(rng, s);
      const int W = s.H * s.D;
      const int64_t N = s.N();
      auto out = nans<T>(N * s.ld_out()), want = out;
      std::vector<float> z(s.B * s.H * s.T, NAN), want_z = z;
      gaussian_forward_run(r, in, mask, out, z, score);
      cpu.gaussian_attention_forward(want.data(), s.ld_out(), want_z.data(), in.q.data(), in.k.data(), s.ld_qk(),
                                     in.v.data(), s.ld_v(), s.B, s.T, s.H, s.D, mask, score);
      const auto got = head_cols(out, N, s.ld_out(), W);
      ASSERT_FALSE(any_nan(got) || any_nan(z));
      EXPECT_LE(max_rel_err(got, head_cols(want, N, s.ld_out(), W)), kTol<T>);
      EXPECT_LE(max_rel_err(z, want_z), 1e-5);
      EXPECT_TRUE(same_padding(out, want, N, s.ld_out(), W));
    }
}

// Gradients (dq, dk, dv; an empty vector: a null pointer) through the kernels of runner r.
template <class T, class R>
void gaussian_backward_run(R& r, const GaInputs<T>& in, const std::vector<float>& z, AttnMask mask, GradMode mode,
                           std::vector<T>& dq, std::vector<T>& dk, std::vector<T>& dv, qisa::AttnScore score = {}) {
  const GaShape& s = in.s;
  auto d_work = r.put(std::vector<float>(qisa::cuda::gaussian_attention_backward_workspace(s.B, s.T, s.H), NAN));
  auto d_dq = r.put(dq), d_dk = r.put(dk), d_dv = r.put(dv);
  auto d_q = r.put(in.q), d_k = r.put(in.k), d_v = r.put(in.v), d_g = r.put(in.dout);
  auto d_z = r.put(z);
  auto ptr = [](const std::vector<T>& h, auto& d) { return h.empty() ? nullptr : d.data(); };
  QISA_KC_LAUNCH(r, qisa::cuda::gaussian_attention_backward(ptr(dq, d_dq), ptr(dk, d_dk), s.ld_qk(), ptr(dv, d_dv),
                                                            s.ld_v(), d_g.data(), s.ld_out(), d_z.data(), d_q.data(),
                                                            d_k.data(), d_v.data(), s.B, s.T, s.H, s.D, mask, score, mode,
                                                            d_work.data(), kStream));
  if (!dq.empty()) dq = r.get(d_dq);
  if (!dk.empty()) dk = r.get(d_dk);
  if (!dv.empty()) dv = r.get(d_dv);
}

template <class T>
void expect_grad_close(const char* what, const std::vector<T>& got, const std::vector<T>& want, int64_t N, int ld,
                       int W) {
  SCOPED_TRACE(what);
  const auto g = head_cols(got, N, ld, W), w = head_cols(want, N, ld, W);
  ASSERT_FALSE(any_nan(g));
  double max_want = 0, max_got = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    max_want = std::max(max_want, std::fabs(static_cast<double>(w[i])));
    max_got = std::max(max_got, std::fabs(static_cast<double>(g[i])));
  }
  // dq, dk of a one-token sequence (T = 1, overwrite) are 0 exactly (a softmax over one key has
  // no gradient): both sides give rounding noise (seen: 1e-8 vs 0), which the relative measure
  // would divide by ~0. There an absolute bound.
  if (max_want <= 1e-6)
    EXPECT_LE(max_got, 1e-6);
  else
    EXPECT_LE(max_rel_err(g, w), kTol<T>);
  EXPECT_TRUE(same_padding(got, want, N, ld, W));
}

template <class T, class R>
void gaussian_attention_backward_matches_cpu(qisa::Backend& cpu, std::mt19937_64& rng, R& r, AttnMask mask) {
  for (const GaShape& s : kGaShapes) {
    for (qisa::AttnScore score : scores_for(s)) {
      const GaInputs<T> in(rng, s);
      const int W = s.H * s.D;
      const int64_t N = s.N();
      std::vector<T> out(N * s.ld_out());
      std::vector<float> z(s.B * s.H * s.T);
      cpu.gaussian_attention_forward(out.data(), s.ld_out(), z.data(), in.q.data(), in.k.data(), s.ld_qk(),
                                     in.v.data(), s.ld_v(), s.B, s.T, s.H, s.D, mask, score);
      for (GradMode mode : kModes) {
        SCOPED_TRACE(s.name() + " " + mask_name(mask) + " " + mode_name(mode) + " " + score_name(score));
        auto fresh = [&](int ld) {
          return mode == GradMode::overwrite ? nans<T>(N * ld) : random_t<T>(rng, N * ld);
        };
        auto dq = fresh(s.ld_qk()), dk = fresh(s.ld_qk()), dv = fresh(s.ld_v());
        const std::vector<T> start[3] = {dq, dk, dv};
        auto want_dq = dq, want_dk = dk, want_dv = dv;
        gaussian_backward_run(r, in, z, mask, mode, dq, dk, dv, score);
        cpu.gaussian_attention_backward(want_dq.data(), want_dk.data(), s.ld_qk(), want_dv.data(), s.ld_v(),
                                        in.dout.data(), s.ld_out(), z.data(), in.q.data(), in.k.data(), in.v.data(),
                                        s.B, s.T, s.H, s.D, mask, score, mode);
        expect_grad_close("dq", dq, want_dq, N, s.ld_qk(), W);
        expect_grad_close("dk", dk, want_dk, N, s.ld_qk(), W);
        expect_grad_close("dv", dv, want_dv, N, s.ld_v(), W);
        // each gradient alone (the others null pointers): the same bits, the padding untouched
        // (overwrite, T = 37 only: two tiles, padded v and out; to keep the emulated work small)
        const std::vector<T>* all[3] = {&dq, &dk, &dv};
        std::vector<T> none;
        for (int which = 0; which < 3 && mode == GradMode::overwrite && s.T == 37; ++which) {
          auto one = start[which];
          gaussian_backward_run(r, in, z, mask, mode, which == 0 ? one : none, which == 1 ? one : none,
                                which == 2 ? one : none, score);
          EXPECT_TRUE(same_bits(one, *all[which])) << "gradient " << which << " alone";
        }
      }
    }
  }
}
template <class T, class R>
void gaussian_attention_causal_backward_matches_cpu_in_both_modes(qisa::Backend& cpu, std::mt19937_64& rng, R& r) {
  gaussian_attention_backward_matches_cpu<T>(cpu, rng, r, AttnMask::causal);
}
template <class T, class R>
void gaussian_attention_reference_backward_matches_cpu_in_both_modes(qisa::Backend& cpu, std::mt19937_64& rng, R& r) {
  gaussian_attention_backward_matches_cpu<T>(cpu, rng, r, AttnMask::reference);
}

// The golden file tests/golden/gaussian_attention.h5 (float64 reference; one head, [B, T, D]),
// read by the suite that links the HDF5 layer. SPEC §4 tolerances: forward 1e-5, gradients 1e-4.
struct GaGolden {
  int64_t B;
  int T, D;
  std::vector<float> q, k, v, grad_out;
  struct Mask {
    AttnMask mask;
    std::vector<double> out, grad_q, grad_k, grad_v;
  };
  std::vector<Mask> masks;
};

template <class R>
void gaussian_attention_matches_golden(const GaGolden& g, R& r) {
  const GaShape s{g.B, g.T, 1, g.D, 0, 0, 0};
  GaInputs<float> in(s);
  in.q = g.q, in.k = g.k, in.v = g.v, in.dout = g.grad_out;
  const int64_t n = s.N() * s.D;
  for (const auto& m : g.masks) {
    SCOPED_TRACE(mask_name(m.mask));
    auto out = nans<float>(n);
    std::vector<float> z(s.B * s.T, NAN);
    gaussian_forward_run(r, in, m.mask, out, z);
    ASSERT_FALSE(any_nan(out) || any_nan(z));
    EXPECT_LT(max_rel_err(out, m.out), 1e-5);
    for (GradMode mode : kModes) {  // accumulate onto zeros: the same gradients
      SCOPED_TRACE(mode_name(mode));
      auto dq = mode == GradMode::overwrite ? nans<float>(n) : std::vector<float>(n, 0.0f);
      auto dk = dq, dv = dq;
      gaussian_backward_run(r, in, z, m.mask, mode, dq, dk, dv);
      ASSERT_FALSE(any_nan(dq) || any_nan(dk) || any_nan(dv));
      EXPECT_LT(max_rel_err(dq, m.grad_q), 1e-4);
      EXPECT_LT(max_rel_err(dk, m.grad_k), 1e-4);
      EXPECT_LT(max_rel_err(dv, m.grad_v), 1e-4);
    }
  }
}

}  // namespace qisa::test::kernel_cases
