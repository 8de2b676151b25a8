// Gaussian-kernel attention (SPEC §1.1 qisa), per (batch, head) block:
//   alpha_ij = exp(-|q_i - k_j|^2), p_i = softmax_{j<=i}(alpha_i)
//   causal: out_i = sum_{j<=i} p_ij v_j;   reference: out_j = sum_{i>=j} p_ij v_i (p transposed,
//   as the published code does).
// Forward saves one float per row, z [B,H,T]: the row normaliser z_i = sum_{j<=i} exp(alpha_ij -
// 1/2), never p. alpha lies in (0, 1], so the softmax needs no running maximum (no exponent can
// overflow; the constant shift by 1/2 centres the float polynomial's range and cancels in p).
// Backward recomputes alpha from q and k and p_ij = exp(alpha_ij - 1/2) / z_i. The reference
// mask sums over i >= j, so it needs every row's normaliser first: two passes over the rows
// of a (b, h) block (rows, then columns).
// Memory: O(B*H*T) saved; the T x T block of one (b, h) lives only in per-thread scratch.
// Layout and summation order: attention_blocks.h.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/cpu/attention_blocks.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/simd.h"
#include "kernels/error.h"

namespace qisa::cpu {

// out [N, ld_out]; z [B,H,T]; q, k [N, ld_qk]; v [N, ld_v]; head h at columns h*D.
template <typename F>
void gaussian_attention_forward(F* out, int ld_out, F* z, const F* q, const F* k, int ld_qk, const F* v, int ld_v,
                                int64_t B, int T, int H, int D, AttnMask mask, Workspace& ws) {
  using namespace attn;
  check_heads("gaussian_attention_forward", B, T, H, D, ld_qk, "ld_qk", ld_v, "ld_v");
  check_heads("gaussian_attention_forward", B, T, H, D, ld_out, "ld_out", ld_out, "ld_out");
  constexpr int L = W<F>;
  const int Tp = round_up(T, L), Dp = round_up(D, L);
  const bool direct = D == Dp;  // rows of D are whole packs: read and write them in place
  const int64_t DTp = static_cast<int64_t>(D) * Tp, TDp = static_cast<int64_t>(T) * Dp,
                TTp = static_cast<int64_t>(T) * Tp;
  const int64_t per = round_up(static_cast<int>(DTp + 2 * TDp + TTp), 16);  // 64-byte multiple
  F* scratch = ws.get<F>(0, static_cast<size_t>(max_threads() * per), "Gaussian attention forward scratch (one [T, T] block per thread)");
  const bool causal = mask == AttnMask::causal;
  parallel_for(B * H, [&](int64_t bh) {
    const int64_t r0 = (bh / H) * T;  // first row of the block
    const int64_t col = (bh % H) * static_cast<int64_t>(D);
    F* kT = scratch + thread_index() * per;  // [D][Tp]
    F* V = kT + DTp;                         // [T][Dp] (padded copy when !direct)
    F* S = V + TDp;                          // [T][Tp]: d2, then p
    F* Y = S + TTp;                          // [T][Dp]: out (when !direct)
    transpose_pad(kT, k + r0 * ld_qk + col, ld_qk, T, D, Tp);
    const F* vb = v + r0 * ld_v + col;
    if (!direct) pad_rows(V, vb, ld_v, T, D, Dp);
    F* zb = z + bh * T;
    // rows i in [i0, i0 + L) need the packs p < np (those holding j <= i)
    for (int i0 = 0; i0 < T; i0 += L) {
      const int np = i0 / L + 1, rows = std::min(L, T - i0);
      rows_cols<F, true>(S + static_cast<int64_t>(i0) * Tp, q + (r0 + i0) * ld_qk + col, ld_qk, kT, Tp, D, rows, np);
      // In stages over the group's rows (not row by row), so that the rows' exp -> sum ->
      // scale chains overlap. alpha is in (0, 1]: the softmax needs no max subtraction, and
      // exp_unit_shifted(alpha) = exp(alpha - 1/2) gives the same p.
      F sum[L];
      for (int r = 0; r < rows; ++r) {
        F* sr = S + static_cast<int64_t>(i0 + r) * Tp;
        for (int p = 0; p < np; ++p) {
          F* sp = sr + p * L;
#pragma omp simd
          for (int l = 0; l < L; ++l) sp[l] = exp_unit_shifted<F>(exp_t<F>(-sp[l]));
        }
      }
      for (int r = 0; r < rows; ++r) {
        F* sr = S + static_cast<int64_t>(i0 + r) * Tp;
        Pack<F> acc = {};
        for (int p = 0; p < np; ++p) {
          const Pack<F> e = pack_keep_below<F>(pack_load(sr + p * L), i0 + r + 1 - p * L);  // j <= i
          acc += e;
          pack_store(sr + p * L, e);
        }
        sum[r] = pack_sum<F>(acc);
      }
      for (int r = 0; r < rows; ++r) {
        F* sr = S + static_cast<int64_t>(i0 + r) * Tp;
        const F inv = F(1) / sum[r];
        for (int p = 0; p < np; ++p) pack_store(sr + p * L, pack_load(sr + p * L) * inv);
        for (int p = np; p < Tp / L; ++p) pack_store(sr + p * L, Pack<F>{});
        zb[i0 + r] = sum[r];
      }
    }
    // causal: out_r = sum_{j<=r} p_rj v_j (row r of p); reference: out_r = sum_{i>=r} p_ir v_i
    // (column r of p)
    const F* Vr = direct ? vb : V;
    const int64_t ldv = direct ? ld_v : Dp;
    F* ob = out + r0 * ld_out + col;
    if (causal)
      wsum_to<F, false, false, false>(ob, ld_out, Y, S, Tp, Vr, ldv, Vr, ldv, D, Dp, T);
    else
      wsum_to<F, false, true, false>(ob, ld_out, Y, S, Tp, Vr, ldv, Vr, ldv, D, Dp, T);
  });
}

// dq, dk [N, ld_qk] +=; dv [N, ld_v] += (mode; any may be null); dout [N, ld_out]; z [B,H,T] from forward.
template <typename F>
void gaussian_attention_backward(F* dq, F* dk, int ld_qk, F* dv, int ld_v, const F* dout, int ld_out, const F* z,
                                 const F* q, const F* k, const F* v, int64_t B, int T, int H, int D, AttnMask mask,
                                 Workspace& ws, GradMode mode) {
  using namespace attn;
  check_heads("gaussian_attention_backward", B, T, H, D, ld_qk, "ld_qk", ld_v, "ld_v");
  check_heads("gaussian_attention_backward", B, T, H, D, ld_out, "ld_out", ld_out, "ld_out");
  constexpr int L = W<F>;
  const int Tp = round_up(T, L), Dp = round_up(D, L);
  const bool direct = D == Dp;
  const int64_t DTp = static_cast<int64_t>(D) * Tp, TDp = static_cast<int64_t>(T) * Dp,
                TTp = static_cast<int64_t>(T) * Tp;
  const int64_t per = round_up(static_cast<int>(2 * DTp + 4 * TDp + 3 * TTp), 16);
  F* scratch = ws.get<F>(0, static_cast<size_t>(max_threads() * per), "Gaussian attention backward scratch (one [T, T] blocks per thread)");
  const bool causal = mask == AttnMask::causal;
  parallel_for(B * H, [&](int64_t bh) {
    const int64_t r0 = (bh / H) * T;
    const int64_t col = (bh % H) * static_cast<int64_t>(D);
    F* kT = scratch + thread_index() * per;  // [D][Tp]
    F* xT = kT + DTp;                        // [D][Tp]: v (causal) or dout (reference)
    F* Q = xT + DTp;                         // [T][Dp] padded copies (when !direct)
    F* K = Q + TDp;                          // [T][Dp]
    F* G = K + TDp;                          // [T][Dp]: dout
    F* P = G + TDp;                          // [T][Tp]: p
    F* dP = P + TTp;                         // [T][Tp]: dL/dp
    F* Wm = dP + TTp;                        // [T][Tp]: 2 dL/d(d2)
    F* Y = Wm + TTp;                         // [T][Dp]: dq, dk or dv (when !direct)
    const F* qb = q + r0 * ld_qk + col;
    const F* kb = k + r0 * ld_qk + col;
    const F* gb = dout + r0 * ld_out + col;
    const F* vb = v + r0 * ld_v + col;
    transpose_pad(kT, kb, ld_qk, T, D, Tp);
    if (causal)
      transpose_pad(xT, vb, ld_v, T, D, Tp);
    else
      transpose_pad(xT, gb, ld_out, T, D, Tp);
    if (!direct) {
      pad_rows(Q, qb, ld_qk, T, D, Dp);
      pad_rows(K, kb, ld_qk, T, D, Dp);
      pad_rows(G, gb, ld_out, T, D, Dp);
    }
    const F* zb = z + bh * T;
    for (int i0 = 0; i0 < T; i0 += L) {
      const int np = i0 / L + 1, rows = std::min(L, T - i0);
      const int64_t o = static_cast<int64_t>(i0) * Tp;
      // dL/dp_ij: causal dout_i . v_j (out_i = sum_j p_ij v_j); reference dout_j . v_i
      if (causal)
        rows_cols<F, false>(dP + o, gb + i0 * ld_out, ld_out, xT, Tp, D, rows, np);
      else
        rows_cols<F, false>(dP + o, vb + i0 * ld_v, ld_v, xT, Tp, D, rows, np);
      rows_cols<F, true>(Wm + o, qb + i0 * ld_qk, ld_qk, kT, Tp, D, rows, np);  // d2, as forward computed it
      for (int i = i0; i < i0 + rows; ++i) {
        F* p = P + static_cast<int64_t>(i) * Tp;
        F* w = Wm + static_cast<int64_t>(i) * Tp;
        const F* dp = dP + static_cast<int64_t>(i) * Tp;
        // alpha_ij = exp(-d2) (kept in w), p_ij = exp(alpha_ij - 1/2) / z_i for j <= i, 0 above:
        // the forward's p bit for bit (same d2, same operations)
        const F inv = F(1) / zb[i];
        Pack<F> acc = {};
        for (int pk = 0; pk < np; ++pk) {
          F* wp = w + pk * L;
          F* pp = p + pk * L;
#pragma omp simd
          for (int l = 0; l < L; ++l) {
            wp[l] = exp_t<F>(-wp[l]);
            pp[l] = exp_unit_shifted<F>(wp[l]);
          }
          const Pack<F> pv = pack_keep_below<F>(pack_load(pp), i + 1 - pk * L) * inv;
          pack_store(pp, pv);
          acc += pv * pack_load(dp + pk * L);
        }
        const F s = pack_sum<F>(acc);
        // softmax backward gives dL/dalpha; alpha = exp(-d2) gives dL/d(d2) = -alpha dL/dalpha;
        // d(d2)/dq_i = 2 (q_i - k_j) = -d(d2)/dk_j, so keep 2 dL/d(d2)
        for (int pk = 0; pk < np; ++pk) {
          F* wp = w + pk * L;
          const F* pp = p + pk * L;
          const F* gp = dp + pk * L;
#pragma omp simd
          for (int l = 0; l < L; ++l) wp[l] = F(2) * (-wp[l] * (pp[l] * (gp[l] - s)));
        }
      }
    }
    const F* Qr = direct ? qb : Q;
    const F* Kr = direct ? kb : K;
    const F* Gr = direct ? gb : G;
    const int64_t lqk = direct ? ld_qk : Dp, lg = direct ? ld_out : Dp;
    if (dq)  // dq_r = sum_{j<=r} w_rj (q_r - k_j): row r of w
      wsum_to<F, true, false>(mode, dq + r0 * ld_qk + col, ld_qk, Y, Wm, Tp, Kr, lqk, Qr, lqk, D, Dp, T);
    if (dk)  // dk_r = sum_{i>=r} w_ir (k_r - q_i): column r of w
      wsum_to<F, true, true>(mode, dk + r0 * ld_qk + col, ld_qk, Y, Wm, Tp, Qr, lqk, Kr, lqk, D, Dp, T);
    if (dv) {  // causal: dv_r = sum_{i>=r} p_ir dout_i; reference: dv_r = sum_{j<=r} p_rj dout_j
      F* dvb = dv + r0 * ld_v + col;
      if (causal)
        wsum_to<F, false, true>(mode, dvb, ld_v, Y, P, Tp, Gr, lg, Gr, lg, D, Dp, T);
      else
        wsum_to<F, false, false>(mode, dvb, ld_v, Y, P, Tp, Gr, lg, Gr, lg, D, Dp, T);
    }
  });
}

}  // namespace qisa::cpu
