// The kernel-vs-CPU cases of kernels/cuda/attention_csa.cuh (classical causal self-attention),
// shared by the emulator suite and the device suite like tests/kernel_cases.h (same Runner
// concept, same tolerances: fp32 1e-5 and bf16 8e-3 of max|want|). Shapes: T not a multiple of
// either tile (1, 5, 7, 37, 70), D in {4, 16, 33, 64, 128} (every register bucket, an odd D),
// B*H > 1; q, k, v either packed in one [N, 3*H*D] buffer as the model's qkv projection writes
// them, or separate with a row stride past H*D (whose extra columns must stay untouched).
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernel_cases.h"
#include "kernels/cuda/attention_csa.cuh"

namespace qisa::test::kernel_cases {

struct CsaShape {
  int64_t B;
  int T, H, D;
  bool packed;  // q, k, v in one [N, 3*H*D] buffer (ld_in = 3*H*D), else three buffers with ld_in = H*D + 5
  std::string name() const {
    return "B " + std::to_string(B) + " T " + std::to_string(T) + " H " + std::to_string(H) + " D " +
           std::to_string(D) + (packed ? " packed qkv" : " strided");
  }
};
inline const CsaShape kCsaShapes[] = {
    {2, 7, 3, 4, true}, {2, 37, 2, 16, true}, {1, 70, 1, 64, false}, {1, 1, 1, 16, false},
    {2, 37, 1, 33, true}, {1, 5, 1, 128, false},
};

// One problem: the q, k, v rows (host values), dout, and the CPU forward's lse.
template <class T>
struct CsaCase {
  CsaShape s;
  int64_t N;
  int W, ld_in, ld_out;
  int64_t ko, vo;  // offsets of k and v in qkv (packed) or 0
  float scale;
  std::vector<T> q, k, v, dout;  // packed: q holds qkv, k and v are empty

  CsaCase(std::mt19937_64& rng, const CsaShape& sh)
      : s(sh), N(sh.B * sh.T), W(sh.H * sh.D), ld_in(sh.packed ? 3 * W : W + 5), ld_out(W + 3),
        ko(sh.packed ? W : 0), vo(sh.packed ? 2 * W : 0), scale(1.0f / std::sqrt(static_cast<float>(sh.D))) {
    q = random_t<T>(rng, N * ld_in, -2, 2);
    if (!s.packed) k = random_t<T>(rng, N * ld_in, -2, 2), v = random_t<T>(rng, N * ld_in, -2, 2);
    dout = random_t<T>(rng, N * ld_out);
  }
  const T* kp() const { return s.packed ? q.data() + ko : k.data(); }
  const T* vp() const { return s.packed ? q.data() + vo : v.data(); }
  qisa::Dropout dropout(float p) const { return {p, 0x5eedULL, 7, 3, 1000}; }

  void cpu_forward(qisa::Backend& cpu, std::vector<T>& out, std::vector<float>& lse, float p) const {
    cpu.csa_forward(out.data(), ld_out, lse.data(), q.data(), kp(), vp(), ld_in, s.B, s.T, s.H, s.D, scale,
                    dropout(p));
  }
  // out [N, ld_out] and lse through the kernels of runner r
  template <class R>
  void forward(R& r, std::vector<T>& out, std::vector<float>& lse, float p) const {
    auto d_out = r.put(out);
    auto d_lse = r.put(lse);
    auto d_q = r.put(q), d_k = r.put(k), d_v = r.put(v);
    const T* kd = s.packed ? d_q.data() + ko : d_k.data();
    const T* vd = s.packed ? d_q.data() + vo : d_v.data();
    QISA_KC_LAUNCH(r, qisa::cuda::csa_forward(d_out.data(), ld_out, d_lse.data(), d_q.data(), kd, vd, ld_in, s.B, s.T,
                                              s.H, s.D, scale, dropout(p), kStream));
    out = r.get(d_out);
    lse = r.get(d_lse);
  }
  // dqkv: packed, one [N, ld_in] buffer with dq, dk, dv at q's, k's, v's columns; else three
  // buffers g[0..2]. An empty vector of `want` leaves that gradient null.
  template <class R>
  void backward(R& r, std::vector<std::vector<T>>& g, const std::vector<float>& lse, float p, GradMode mode,
                const std::vector<bool>& want = {true, true, true}) const {
    auto d_lse = r.put(lse);
    auto d_ws = r.put(std::vector<float>(qisa::cuda::csa_backward_workspace(s.B, s.T, s.H), NAN));
    auto d_dout = r.put(dout);
    auto d_q = r.put(q), d_k = r.put(k), d_v = r.put(v);
    const T* kd = s.packed ? d_q.data() + ko : d_k.data();
    const T* vd = s.packed ? d_q.data() + vo : d_v.data();
    auto d_g0 = r.put(g[0]), d_g1 = r.put(g[1]), d_g2 = r.put(g[2]);
    T* gq = d_g0.data();
    T* gk = s.packed ? d_g0.data() + ko : d_g1.data();
    T* gv = s.packed ? d_g0.data() + vo : d_g2.data();
    QISA_KC_LAUNCH(r, qisa::cuda::csa_backward(want[0] ? gq : nullptr, want[1] ? gk : nullptr, want[2] ? gv : nullptr,
                                               d_dout.data(), ld_out, d_lse.data(), d_q.data(), kd, vd, ld_in, s.B,
                                               s.T, s.H, s.D, scale, dropout(p), mode, d_ws.data(), kStream));
    g[0] = r.get(d_g0);
    g[1] = r.get(d_g1);
    g[2] = r.get(d_g2);
  }
  void cpu_backward(qisa::Backend& cpu, std::vector<std::vector<T>>& g, const std::vector<float>& lse, float p,
                    GradMode mode) const {
    T* gq = g[0].data();
    T* gk = s.packed ? g[0].data() + ko : g[1].data();
    T* gv = s.packed ? g[0].data() + vo : g[2].data();
    cpu.csa_backward(gq, gk, gv, dout.data(), ld_out, lse.data(), q.data(), kp(), vp(), ld_in, s.B, s.T, s.H, s.D,
                     scale, dropout(p), mode);
  }
  // Gradient buffers: NaN (overwrite) or random (accumulate).
  std::vector<std::vector<T>> grads(std::mt19937_64& rng, GradMode mode) const {
    std::vector<std::vector<T>> g(3);
    for (int b = 0; b < (s.packed ? 1 : 3); ++b)
      g[b] = mode == GradMode::overwrite ? nans<T>(N * ld_in) : random_t<T>(rng, N * ld_in);
    return g;
  }
};

// The head columns [0, w) of rows [N, ld] (what the op writes) and the rest (what it must leave).
template <class T>
std::vector<float> csa_cols(const std::vector<T>& x, int64_t N, int ld, int c0, int c1) {
  std::vector<float> r;
  for (int64_t n = 0; n < N; ++n)
    for (int c = c0; c < c1; ++c) r.push_back(to_f(x[n * ld + c]));
  return r;
}
template <class T>
void expect_csa_close(const std::vector<T>& got, const std::vector<T>& want, int64_t N, int ld, int w,
                      const char* what) {
  SCOPED_TRACE(what);
  const auto g = csa_cols(got, N, ld, 0, w);
  ASSERT_FALSE(any_nan(g));
  EXPECT_LE(max_rel_err(g, csa_cols(want, N, ld, 0, w)), kTol<T>);
  EXPECT_TRUE(same_bits(csa_cols(got, N, ld, w, ld), csa_cols(want, N, ld, w, ld)))  // NaN stays NaN
      << "columns past the heads were written";
}

template <class T, class R>
void csa_forward_matches_cpu(qisa::Backend& cpu, std::mt19937_64& rng, R& r) {
  for (const CsaShape& sh : kCsaShapes)
    for (float p : {0.0f, 0.1f}) {
      SCOPED_TRACE(sh.name() + " dropout " + std::to_string(p));
      const CsaCase<T> c(rng, sh);
      auto out = nans<T>(c.N * c.ld_out), want = out;
      std::vector<float> lse(sh.B * sh.H * sh.T, NAN), want_lse = lse;
      c.forward(r, out, lse, p);
      c.cpu_forward(cpu, want, want_lse, p);
      expect_csa_close(out, want, c.N, c.ld_out, c.W, "out");
      ASSERT_FALSE(any_nan(lse));
      EXPECT_LE(max_rel_err(lse, want_lse), 1e-5);
    }
}

// Each shape runs without dropout in one mode and with dropout in the other (alternating), so
// the shapes cover all four combinations while the emulated work stays small.
template <class T, class R>
void csa_backward_matches_cpu_in_both_modes(qisa::Backend& cpu, std::mt19937_64& rng, R& r) {
  int si = 0;
  for (const CsaShape& sh : kCsaShapes) {
    ++si;
    for (float p : {0.0f, 0.1f}) {
      const CsaCase<T> c(rng, sh);
      auto out = nans<T>(c.N * c.ld_out);
      std::vector<float> lse(sh.B * sh.H * sh.T, NAN);
      c.cpu_forward(cpu, out, lse, p);
      {
        const GradMode mode = kModes[(si + (p > 0.0f ? 1 : 0)) % 2];
        SCOPED_TRACE(sh.name() + " dropout " + std::to_string(p) + " " + mode_name(mode));
        auto g = c.grads(rng, mode), want = g;
        c.backward(r, g, lse, p, mode);
        c.cpu_backward(cpu, want, lse, p, mode);
        if (sh.packed) {
          expect_csa_close(g[0], want[0], c.N, c.ld_in, c.ld_in, "dqkv");
        } else {
          expect_csa_close(g[0], want[0], c.N, c.ld_in, c.W, "dq");
          expect_csa_close(g[1], want[1], c.N, c.ld_in, c.W, "dk");
          expect_csa_close(g[2], want[2], c.N, c.ld_in, c.W, "dv");
        }
      }
    }
  }
}

// A null gradient is not written, and the others come out bit for bit as in the full call.
template <class T, class R>
void csa_backward_partial_gradients_match_the_full_call(qisa::Backend&, std::mt19937_64& rng, R& r) {
  const CsaCase<T> c(rng, {2, 21, 1, 16, false});
  std::vector<float> lse(2 * 21, NAN);
  auto out = nans<T>(c.N * c.ld_out);
  c.forward(r, out, lse, 0.1f);
  auto full = c.grads(rng, GradMode::overwrite);
  c.backward(r, full, lse, 0.1f, GradMode::overwrite);
  for (const std::vector<bool>& want : {std::vector<bool>{true, false, false}, {false, true, true}, {false, true, false}}) {
    auto g = c.grads(rng, GradMode::overwrite);
    c.backward(r, g, lse, 0.1f, GradMode::overwrite, want);
    for (int b = 0; b < 3; ++b)
      EXPECT_TRUE(want[b] ? same_bits(g[b], full[b]) : same_bits(g[b], nans<T>(c.N * c.ld_in))) << "gradient " << b;
  }
}

}  // namespace qisa::test::kernel_cases
