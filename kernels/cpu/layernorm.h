// LayerNorm over the last dimension (SPEC §1): eps 1e-5, biased variance as PyTorch, affine.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/cpu/parallel.h"
#include "kernels/error.h"

namespace qisa::cpu {

inline constexpr double kLayerNormEps = 1e-5;
inline constexpr int64_t kLayerNormRows = 256;  // rows per work item (and per dw/db partial)

// out [N,C]; mean, rstd [N] (saved for backward); in [N,C]; w, b [C]
template <typename F>
void layernorm_forward(F* out, F* mean, F* rstd, const F* in, const F* w, const F* b, int64_t N, int C) {
  QISA_CHECK(N >= 0 && C >= 1, "layernorm shape N=" + std::to_string(N) + " C=" + std::to_string(C), "N >= 0, C >= 1");
  const F inv_c = F(1) / static_cast<F>(C);
  const F eps = static_cast<F>(kLayerNormEps);
  parallel_chunks(N, kLayerNormRows, [&](int64_t, int64_t n0, int64_t n1) {
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

// din [N,C] += ; dw, db [C] += (any may be null). dw/db: a partial per fixed chunk of rows,
// combined in chunk order.
template <typename F>
void layernorm_backward(F* din, F* dw, F* db, const F* dout, const F* in, const F* w, const F* mean,
                        const F* rstd, int64_t N, int C, Workspace& ws) {
  QISA_CHECK(N >= 0 && C >= 1, "layernorm shape N=" + std::to_string(N) + " C=" + std::to_string(C), "N >= 0, C >= 1");
  const int64_t items = ceil_div(N, kLayerNormRows);
  F* part = ws.get<F>(0, static_cast<size_t>(items) * 2 * C);  // [items][dw C | db C]
  const F inv_c = F(1) / static_cast<F>(C);
  parallel_chunks(N, kLayerNormRows, [&](int64_t it, int64_t n0, int64_t n1) {
    F* pw = part + it * 2 * C;
    F* pb = pw + C;
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
#pragma omp simd
        for (int c = 0; c < C; ++c) d[c] += rs * (g[c] * w[c] - sg - ((x[c] - mu) * rs) * sgx);
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
    if (dw) dw[c] += sw;
    if (db) db[c] += sb;
  }
}

}  // namespace qisa::cpu
