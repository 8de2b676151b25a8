// Gaussian-kernel attention (SPEC §1.1 qisa), per (batch, head) block:
//   alpha_ij = exp(-|q_i - k_j|^2), p_i = softmax_{j<=i}(alpha_i)
//   causal: out_i = sum_{j<=i} p_ij v_j;   reference: out_j = sum_{i>=j} p_ij v_i (p transposed,
//   as the published code does).
// Backward recomputes alpha from q and k (att keeps only p).
//
// Layout: a work item takes kSeqLanes (b, h) blocks and gathers each operand as
// X[t][d][lane], so every formula below is written per pair (i, j) with the innermost loop
// running across blocks in SIMD lanes: the SIMD loops have a fixed length (no ragged causal
// rows, no masks), and each sum has one fixed order (d ascending; j, resp. i, ascending).
// Scratch per thread: 7 [T][D][lanes] blocks (backward), so it scales with T*D, not T^2.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/cpu/attention_csa.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/parallel.h"
#include "kernels/error.h"

namespace qisa::cpu {

inline constexpr int kSeqLanes = 8;  // (b, h) blocks per work item

namespace lanes {

constexpr int L = kSeqLanes;

// The blocks of work item `item`: lane l is block bh = item*L + l (l < count).
struct Blocks {
  int count;
  int64_t row0[L];  // first row (b*T) of the block
  int64_t col0[L];  // first column (h*D)
  int64_t bh[L];
};

inline Blocks blocks(int64_t item, int64_t BH, int H, int T, int D) {
  Blocks k{};
  k.count = static_cast<int>(std::min<int64_t>(L, BH - item * L));
  for (int l = 0; l < k.count; ++l) {
    const int64_t bh = item * L + l;
    k.bh[l] = bh;
    k.row0[l] = (bh / H) * T;
    k.col0[l] = (bh % H) * static_cast<int64_t>(D);
  }
  return k;
}

// X[(t*D + d)*L + l] = src[(row0_l + t)*ld + col0_l + d]; unused lanes are zero.
template <typename F>
inline void gather(F* X, const F* src, int64_t ld, const Blocks& k, int T, int D) {
  for (int t = 0; t < T; ++t) {
    F* x = X + static_cast<int64_t>(t) * D * L;
    for (int l = 0; l < k.count; ++l) {
      const F* row = src + (k.row0[l] + t) * ld + k.col0[l];
      for (int dd = 0; dd < D; ++dd) x[dd * L + l] = row[dd];
    }
    for (int l = k.count; l < L; ++l)
      for (int dd = 0; dd < D; ++dd) x[dd * L + l] = 0;
  }
}

// dst[(row0_l + t)*ld + col0_l + d] (+)= X[(t*D + d)*L + l] for the used lanes.
template <typename F>
inline void scatter(F* dst, int64_t ld, const F* X, const Blocks& k, int T, int D, bool accumulate) {
  for (int l = 0; l < k.count; ++l)
    for (int t = 0; t < T; ++t) {
      F* row = dst + (k.row0[l] + t) * ld + k.col0[l];
      const F* x = X + static_cast<int64_t>(t) * D * L + l;
      if (accumulate)
        for (int dd = 0; dd < D; ++dd) row[dd] += x[static_cast<int64_t>(dd) * L];
      else
        for (int dd = 0; dd < D; ++dd) row[dd] = x[static_cast<int64_t>(dd) * L];
    }
}

// d2[l] = |Q_i - K_j|^2 per lane (Q_i, K_j: [D][L] rows of the gathered blocks). The sums
// run in a local array (kept in registers), not through d2: accumulating through memory
// would chain every step on a store-to-load round trip.
template <typename F>
QISA_INLINE void sqdist(F* d2, const F* Qi, const F* Kj, int D) {
  F acc[L] = {};
  for (int dd = 0; dd < D; ++dd) {
#pragma omp simd
    for (int l = 0; l < L; ++l) {
      const F t = Qi[dd * L + l] - Kj[dd * L + l];
      acc[l] += t * t;
    }
  }
#pragma omp simd
  for (int l = 0; l < L; ++l) d2[l] = acc[l];
}

// dot[l] = A . B per lane
template <typename F>
QISA_INLINE void dot(F* out, const F* A, const F* Bv, int D) {
  F acc[L] = {};
  for (int dd = 0; dd < D; ++dd) {
#pragma omp simd
    for (int l = 0; l < L; ++l) acc[l] += A[dd * L + l] * Bv[dd * L + l];
  }
#pragma omp simd
  for (int l = 0; l < L; ++l) out[l] = acc[l];
}

}  // namespace lanes

// out [N, ld_out]; att [B,H,T,T]; q, k [N, ld_qk]; v [N, ld_v]; head h at columns h*D.
template <typename F>
void gaussian_attention_forward(F* out, int ld_out, F* att, const F* q, const F* k, int ld_qk, const F* v, int ld_v,
                                int64_t B, int T, int H, int D, AttnMask mask, Workspace& ws) {
  check_heads("gaussian_attention_forward", B, T, H, D, ld_qk, "ld_qk", ld_v, "ld_v");
  check_heads("gaussian_attention_forward", B, T, H, D, ld_out, "ld_out", ld_out, "ld_out");
  constexpr int L = kSeqLanes;
  const int64_t DL = static_cast<int64_t>(D) * L, TD = T * DL;
  const int64_t per = 4 * TD + static_cast<int64_t>(T) * L + L;
  F* scratch = ws.get<F>(0, static_cast<size_t>(max_threads() * per));
  const int64_t BH = B * H;
  const bool causal = mask == AttnMask::causal;
  parallel_for(ceil_div(BH, L), [&](int64_t item) {
    const lanes::Blocks kb = lanes::blocks(item, BH, H, T, D);
    F* Q = scratch + thread_index() * per;
    F* K = Q + TD;
    F* V = K + TD;
    F* O = V + TD;
    F* Pi = O + TD;  // [j][L]: p_ij of the current row i
    F* sum = Pi + static_cast<int64_t>(T) * L;
    lanes::gather(Q, q, ld_qk, kb, T, D);
    lanes::gather(K, k, ld_qk, kb, T, D);
    lanes::gather(V, v, ld_v, kb, T, D);
    for (int64_t e = 0; e < TD; ++e) O[e] = 0;
    for (int i = 0; i < T; ++i) {
      const F* Qi = Q + i * DL;
#pragma omp simd
      for (int l = 0; l < L; ++l) sum[l] = 0;
      for (int j = 0; j <= i; ++j) {
        F* e = Pi + static_cast<int64_t>(j) * L;
        lanes::sqdist(e, Qi, K + j * DL, D);
        // alpha in (0, 1], so exp(alpha) <= e: the softmax needs no max subtraction
#pragma omp simd
        for (int l = 0; l < L; ++l) {
          e[l] = exp_t<F>(exp_t<F>(-e[l]));
          sum[l] += e[l];
        }
      }
      for (int j = 0; j <= i; ++j) {
#pragma omp simd
        for (int l = 0; l < L; ++l) Pi[j * L + l] /= sum[l];
      }
      for (int l = 0; l < kb.count; ++l) {
        F* a = att + (kb.bh[l] * T + i) * T;
        for (int j = 0; j <= i; ++j) a[j] = Pi[j * L + l];
        for (int j = i + 1; j < T; ++j) a[j] = 0;
      }
      // causal: O_i = sum_{j<=i} p_ij V_j (j ascending); reference: O_j += p_ij V_i, so O_j
      // sums over i >= j in ascending order
      for (int j = 0; j <= i; ++j) {
        const F* p = Pi + static_cast<int64_t>(j) * L;
        F* Or = O + (causal ? i : j) * DL;
        const F* X = V + (causal ? j : i) * DL;
        for (int dd = 0; dd < D; ++dd) {
#pragma omp simd
          for (int l = 0; l < L; ++l) Or[dd * L + l] += p[l] * X[dd * L + l];
        }
      }
    }
    lanes::scatter(out, ld_out, O, kb, T, D, false);
  });
}

// dq, dk [N, ld_qk] +=; dv [N, ld_v] += (any may be null); dout [N, ld_out]; att from forward.
template <typename F>
void gaussian_attention_backward(F* dq, F* dk, int ld_qk, F* dv, int ld_v, const F* dout, int ld_out, const F* att,
                                 const F* q, const F* k, const F* v, int64_t B, int T, int H, int D, AttnMask mask,
                                 Workspace& ws) {
  check_heads("gaussian_attention_backward", B, T, H, D, ld_qk, "ld_qk", ld_v, "ld_v");
  check_heads("gaussian_attention_backward", B, T, H, D, ld_out, "ld_out", ld_out, "ld_out");
  constexpr int L = kSeqLanes;
  const int64_t TD = static_cast<int64_t>(T) * D * L;
  const int64_t per = 7 * TD + 4 * static_cast<int64_t>(T) * L + L;
  F* scratch = ws.get<F>(0, static_cast<size_t>(max_threads() * per));
  const int64_t BH = B * H;
  const bool causal = mask == AttnMask::causal;
  parallel_for(ceil_div(BH, L), [&](int64_t item) {
    const lanes::Blocks kb = lanes::blocks(item, BH, H, T, D);
    F* Q = scratch + thread_index() * per;
    F* K = Q + TD;
    F* V = K + TD;
    F* G = V + TD;  // dout
    F* dQ = G + TD;
    F* dK = dQ + TD;
    F* dV = dK + TD;
    F* Pi = dV + TD;                         // [j][L]: p_ij of the current row i
    F* dP = Pi + static_cast<int64_t>(T) * L;  // [j][L]: dL/dp_ij
    F* W = dP + static_cast<int64_t>(T) * L;  // [j][L]: dL/d|q_i - k_j|^2
    F* d2 = W + static_cast<int64_t>(T) * L;
    F* s = d2 + T * L;
    lanes::gather(Q, q, ld_qk, kb, T, D);
    lanes::gather(K, k, ld_qk, kb, T, D);
    lanes::gather(V, v, ld_v, kb, T, D);
    lanes::gather(G, dout, ld_out, kb, T, D);
    for (int64_t e = 0; e < 3 * TD; ++e) dQ[e] = 0;  // dQ, dK, dV are adjacent
    const int64_t DL = static_cast<int64_t>(D) * L;
    for (int i = 0; i < T; ++i) {
      const F* Qi = Q + i * DL;
      for (int l = 0; l < L; ++l) {  // row i of every block's p (unused lanes: 0)
        const F* a = l < kb.count ? att + (kb.bh[l] * T + i) * T : nullptr;
        for (int j = 0; j <= i; ++j) Pi[j * L + l] = a ? a[j] : F(0);
      }
#pragma omp simd
      for (int l = 0; l < L; ++l) s[l] = 0;
      for (int j = 0; j <= i; ++j) {
        // dL/dp_ij: causal dout_i . v_j (out_i = sum_j p_ij v_j); reference dout_j . v_i
        const F* a = causal ? G + i * DL : G + j * DL;
        const F* b = causal ? V + j * DL : V + i * DL;
        F* g = dP + j * L;
        lanes::dot(g, a, b, D);
#pragma omp simd
        for (int l = 0; l < L; ++l) s[l] += Pi[j * L + l] * g[l];
      }
      for (int j = 0; j <= i; ++j) {
        // softmax backward gives dL/dalpha; alpha = exp(-d2) gives dL/d(d2) = -alpha dL/dalpha
        lanes::sqdist(d2, Qi, K + j * DL, D);
        F* w = W + j * L;
#pragma omp simd
        for (int l = 0; l < L; ++l) w[l] = -exp_t<F>(-d2[l]) * (Pi[j * L + l] * (dP[j * L + l] - s[l]));
        // d(d2)/dq_i = 2 (q_i - k_j) = -d(d2)/dk_j
        const F* Kj = K + j * DL;
        F* dQi = dQ + i * DL;
        F* dKj = dK + j * DL;
        for (int dd = 0; dd < D; ++dd) {
#pragma omp simd
          for (int l = 0; l < L; ++l) {
            const F t = F(2) * w[l] * (Qi[dd * L + l] - Kj[dd * L + l]);
            dQi[dd * L + l] += t;
            dKj[dd * L + l] -= t;
          }
        }
        // causal: dv_j += p_ij dout_i; reference: dv_i += p_ij dout_j
        F* dVr = causal ? dV + j * DL : dV + i * DL;
        const F* Gr = causal ? G + i * DL : G + j * DL;
        for (int dd = 0; dd < D; ++dd) {
#pragma omp simd
          for (int l = 0; l < L; ++l) dVr[dd * L + l] += Pi[j * L + l] * Gr[dd * L + l];
        }
      }
    }
    if (dq) lanes::scatter(dq, ld_qk, dQ, kb, T, D, true);
    if (dk) lanes::scatter(dk, ld_qk, dK, kb, T, D, true);
    if (dv) lanes::scatter(dv, ld_v, dV, kb, T, D, true);
  });
}

}  // namespace qisa::cpu
