// LayerNorm over the last dimension (SPEC §1): eps 1e-5, biased variance as PyTorch, affine.
//
// Rows whose C is a whole number of Packs (up to kLnMaxPacks of them; C = 16 in the paper
// models) take a register path: a row is NP packs, its sums are pack-wise sums closed by one
// pack_sum, and backward's dw/db partials stay in registers across the rows of a work item.
// Other C take the plain per-element loops. Either way each row is computed on its own, and
// dw/db sum a partial per fixed chunk of rows, combined in chunk order.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/simd.h"
#include "kernels/error.h"

namespace qisa::cpu {

inline constexpr double kLayerNormEps = 1e-5;
inline constexpr int64_t kLayerNormRows = 256;  // rows per work item (and per dw/db partial)
inline constexpr int kLnMaxPacks = 8;           // register path for C = 1..8 packs

namespace ln_detail {

// Forward rows [n0, n1) of C = NP packs, in blocks of W rows: first every row's mean and
// variance, then the W reciprocal square roots as one pack (instead of W scalar sqrt + div
// latency chains), then the outputs.
template <typename F, int NP>
void forward_packs(F* out, F* mean, F* rstd, const F* in, const F* w, const F* b, int64_t n0, int64_t n1) {
  constexpr int L = kPackLanes<F>;
  constexpr int64_t C = NP * L;
  const F inv_c = F(1) / static_cast<F>(C), eps = static_cast<F>(kLayerNormEps);
  Pack<F> wv[NP], bv[NP];
  for (int k = 0; k < NP; ++k) wv[k] = pack_load(w + k * L), bv[k] = pack_load(b + k * L);
  for (int64_t m0 = n0; m0 < n1; m0 += L) {
    const int rows = static_cast<int>(std::min<int64_t>(L, n1 - m0));
    F mu[L] = {}, var[L] = {};
    for (int r = 0; r < rows; ++r) {
      const F* x = in + (m0 + r) * C;
      Pack<F> s = {}, v = {};
      for (int k = 0; k < NP; ++k) s += pack_load(x + k * L);
      mu[r] = pack_sum<F>(s) * inv_c;
      for (int k = 0; k < NP; ++k) {  // two-pass variance: no cancellation
        const Pack<F> d = pack_load(x + k * L) - mu[r];
        v += d * d;
      }
      var[r] = pack_sum<F>(v);
    }
    F rs[L];
    pack_store(rs, F(1) / pack_sqrt<F>(pack_load(var) * inv_c + eps));
    for (int r = 0; r < rows; ++r) {
      const F* x = in + (m0 + r) * C;
      for (int k = 0; k < NP; ++k)
        pack_store(out + (m0 + r) * C + k * L, (pack_load(x + k * L) - mu[r]) * rs[r] * wv[k] + bv[k]);
      mean[m0 + r] = mu[r];
      rstd[m0 + r] = rs[r];
    }
  }
}

// Backward rows [n0, n1) of C = NP packs; pw, pb [C] = this item's dw, db partial.
template <typename F, int NP>
void backward_packs(F* din, bool din_add, F* pw, F* pb, const F* dout, const F* in, const F* w, const F* mean,
                    const F* rstd, int64_t n0, int64_t n1) {
  constexpr int L = kPackLanes<F>;
  constexpr int64_t C = NP * L;
  const F inv_c = F(1) / static_cast<F>(C);
  Pack<F> wv[NP], aw[NP] = {}, ab[NP] = {};
  for (int k = 0; k < NP; ++k) wv[k] = pack_load(w + k * L);
  for (int64_t n = n0; n < n1; ++n) {
    const F mu = mean[n], rs = rstd[n];
    Pack<F> g[NP], xh[NP], gw[NP], s1 = {}, s2 = {};
    for (int k = 0; k < NP; ++k) {
      g[k] = pack_load(dout + n * C + k * L);
      xh[k] = (pack_load(in + n * C + k * L) - mu) * rs;
      gw[k] = g[k] * wv[k];
      s1 += gw[k];
      s2 += gw[k] * xh[k];
      aw[k] += g[k] * xh[k];
      ab[k] += g[k];
    }
    const F sg = pack_sum<F>(s1) * inv_c, sgx = pack_sum<F>(s2) * inv_c;
    if (din)
      for (int k = 0; k < NP; ++k) {
        F* d = din + n * C + k * L;
        const Pack<F> v = rs * (gw[k] - sg - xh[k] * sgx);
        pack_store(d, din_add ? pack_load(d) + v : v);
      }
  }
  for (int k = 0; k < NP; ++k) pack_store(pw + k * L, aw[k]), pack_store(pb + k * L, ab[k]);
}

// f.template operator()<NP>() for NP = C / pack lanes in 1..kLnMaxPacks; false if C has no such NP.
template <typename F, class Fn>
bool with_packs(int C, Fn&& f) {
  constexpr int L = kPackLanes<F>;
  if (C % L != 0) return false;
  switch (C / L) {
    case 1: f.template operator()<1>(); return true;
    case 2: f.template operator()<2>(); return true;
    case 3: f.template operator()<3>(); return true;
    case 4: f.template operator()<4>(); return true;
    case 5: f.template operator()<5>(); return true;
    case 6: f.template operator()<6>(); return true;
    case 7: f.template operator()<7>(); return true;
    case 8: f.template operator()<8>(); return true;
    default: return false;
  }
}

}  // namespace ln_detail

// out [N,C]; mean, rstd [N] (saved for backward); in [N,C]; w, b [C]
template <typename F>
void layernorm_forward(F* out, F* mean, F* rstd, const F* in, const F* w, const F* b, int64_t N, int C) {
  QISA_CHECK(N >= 0 && C >= 1, "layernorm shape N=" + std::to_string(N) + " C=" + std::to_string(C), "N >= 0, C >= 1");
  const F inv_c = F(1) / static_cast<F>(C);
  const F eps = static_cast<F>(kLayerNormEps);
  parallel_chunks(N, kLayerNormRows, [&](int64_t, int64_t n0, int64_t n1) {
    if (ln_detail::with_packs<F>(C, [&]<int NP>() {
          ln_detail::forward_packs<F, NP>(out, mean, rstd, in, w, b, n0, n1);
        }))
      return;
    for (int64_t n = n0; n < n1; ++n) {
      const F* x = in + n * C;
      F s = 0;
#pragma omp simd reduction(+ : s)
      for (int c = 0; c < C; ++c) s += x[c];
      const F mu = s * inv_c;
      F v = 0;  // two-pass variance: no cancellation
#pragma omp simd reduction(+ : v)
      for (int c = 0; c < C; ++c) v += (x[c] - mu) * (x[c] - mu);
      const F rs = F(1) / std::sqrt(v * inv_c + eps);
      F* o = out + n * C;
#pragma omp simd
      for (int c = 0; c < C; ++c) o[c] = (x[c] - mu) * rs * w[c] + b[c];
      mean[n] = mu;
      rstd[n] = rs;
    }
  });
}

// din [N,C] += (din_mode); dw, db [C] += (param_mode; any may be null). dw/db: a partial per
// fixed chunk of rows, combined in chunk order.
template <typename F>
void layernorm_backward(F* din, F* dw, F* db, const F* dout, const F* in, const F* w, const F* mean,
                        const F* rstd, int64_t N, int C, Workspace& ws, GradMode din_mode, GradMode param_mode) {
  const bool din_add = din_mode == GradMode::accumulate, param_add = param_mode == GradMode::accumulate;
  QISA_CHECK(N >= 0 && C >= 1, "layernorm shape N=" + std::to_string(N) + " C=" + std::to_string(C), "N >= 0, C >= 1");
  const int64_t items = ceil_div(N, kLayerNormRows);
  // [items][dw C | db C]
  F* part = ws.get<F>(0, static_cast<size_t>(items) * 2 * C, "layernorm backward partial sums");
  const F inv_c = F(1) / static_cast<F>(C);
  parallel_chunks(N, kLayerNormRows, [&](int64_t it, int64_t n0, int64_t n1) {
    F* pw = part + it * 2 * C;
    F* pb = pw + C;
    if (ln_detail::with_packs<F>(C, [&]<int NP>() {
          ln_detail::backward_packs<F, NP>(din, din_add, pw, pb, dout, in, w, mean, rstd, n0, n1);
        }))
      return;
    for (int c = 0; c < C; ++c) pw[c] = pb[c] = 0;
    for (int64_t n = n0; n < n1; ++n) {
      const F* x = in + n * C;
      const F* g = dout + n * C;
      const F mu = mean[n], rs = rstd[n];
      F sg = 0, sgx = 0;
#pragma omp simd reduction(+ : sg, sgx)
      for (int c = 0; c < C; ++c) {
        const F gw = g[c] * w[c];
        sg += gw;
        sgx += gw * ((x[c] - mu) * rs);
      }
      sg *= inv_c;
      sgx *= inv_c;
      if (din) {
        F* d = din + n * C;
        if (din_add) {  // two loops, not a test per element: both must vectorise
#pragma omp simd
          for (int c = 0; c < C; ++c) d[c] += rs * (g[c] * w[c] - sg - ((x[c] - mu) * rs) * sgx);
        } else {
#pragma omp simd
          for (int c = 0; c < C; ++c) d[c] = rs * (g[c] * w[c] - sg - ((x[c] - mu) * rs) * sgx);
        }
      }
#pragma omp simd
      for (int c = 0; c < C; ++c) {
        pw[c] += g[c] * ((x[c] - mu) * rs);
        pb[c] += g[c];
      }
    }
  });
  for (int c = 0; c < C; ++c) {
    F sw = 0, sb = 0;
    for (int64_t it = 0; it < items; ++it) {
      sw += part[it * 2 * C + c];
      sb += part[it * 2 * C + C + c];
    }
    if (dw) dw[c] = param_add ? dw[c] + sw : sw;
    if (db) db[c] = param_add ? db[c] + sb : sb;
  }
}

}  // namespace qisa::cpu
