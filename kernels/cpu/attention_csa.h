// Classical causal self-attention (SPEC §1.1 csa), per (batch, head) block:
//   w_ij = (q_i . k_j) * scale, p_i = softmax_{j<=i}(w_i), p = dropout(p), out_i = sum_j p_ij v_j.
// Forward saves one float per row, lse [B,H,T]: lse_i = log sum_{j<=i} exp(w_ij) (the flash-
// attention statistic), never p. Backward recomputes the scores from q and k and p_ij =
// exp(w_ij - lse_i), and regenerates the dropout mask from the same Philox counters: the
// dropout element index of (b, h, i, j) is ((b*H + h)*T + i)*T + j + d.elem_offset.
// Memory: O(B*H*T) saved; the T x T block of one (b, h) lives only in per-thread scratch.
// Layout and summation order: attention_blocks.h.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/backend.h"
#include "kernels/cpu/attention_blocks.h"
#include "kernels/cpu/dropout.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/simd.h"

namespace qisa::cpu {

// out [N, ld_out]; lse [B,H,T]; q, k, v [N, ld_in]; head h at columns h*D.
template <typename F>
void csa_forward(F* out, int ld_out, F* lse, const F* q, const F* k, const F* v, int ld_in, int64_t B, int T,
                 int H, int D, F scale, const Dropout& d, Workspace& ws) {
  using namespace attn;
  check_heads("csa_forward", B, T, H, D, ld_in, "ld_in", ld_out, "ld_out");
  check_dropout(d);
  constexpr int L = W<F>;
  const int Tp = round_up(T, L), Dp = round_up(D, L);
  const bool direct = D == Dp;  // rows of D are whole packs: read and write them in place
  const int64_t DTp = static_cast<int64_t>(D) * Tp, TDp = static_cast<int64_t>(T) * Dp,
                TTp = static_cast<int64_t>(T) * Tp, TT = static_cast<int64_t>(T) * T;
  const int64_t per = round_up(static_cast<int>(DTp + 2 * TDp + TTp + TT), 16);  // 64-byte multiple
  F* scratch = ws.get<F>(0, static_cast<size_t>(max_threads() * per), "csa forward scratch (one [T, T] block per thread)");
  const bool drop = d.active();
  parallel_for(B * H, [&](int64_t bh) {
    const int64_t r0 = (bh / H) * T;  // first row of the block
    const int64_t col = (bh % H) * static_cast<int64_t>(D);
    const F sc = scale;  // a local: stores through F* could alias a captured F
    F* kT = scratch + thread_index() * per;  // [D][Tp]
    F* V = kT + DTp;                         // [T][Dp] (padded copy when !direct)
    F* S = V + TDp;                          // [T][Tp]: scores, then p, then dropped p
    F* Y = S + TTp;                          // [T][Dp]: out (when !direct)
    F* mult = Y + TDp;                       // [T][T]: this block's dropout multipliers
    transpose_pad(kT, k + r0 * ld_in + col, ld_in, T, D, Tp);
    const F* vb = v + r0 * ld_in + col;
    if (!direct) pad_rows(V, vb, ld_in, T, D, Dp);
    if (drop) dropout_multipliers(mult, TT, d, d.elem_offset + static_cast<uint64_t>(bh * TT));
    F* lseb = lse + bh * T;
    // rows i in [i0, i0 + L) need the packs p < np (those holding j <= i)
    for (int i0 = 0; i0 < T; i0 += L) {
      const int np = i0 / L + 1, rows = std::min(L, T - i0);
      rows_cols<F, false>(S + static_cast<int64_t>(i0) * Tp, q + (r0 + i0) * ld_in + col, ld_in, kT, Tp, D, rows, np);
      // In stages over the group's rows, so that the rows' max -> exp -> sum -> scale chains overlap.
      F mx[L], sum[L];
      for (int r = 0; r < rows; ++r) {
        F* sr = S + static_cast<int64_t>(i0 + r) * Tp;
        Pack<F> m = {};
        m += -std::numeric_limits<F>::infinity();
        for (int p = 0; p < np; ++p) {
          const Pack<F> x = pack_load(sr + p * L) * sc;
          pack_store(sr + p * L, x);
          m = pack_max<F>(m, pack_fill_from<F>(x, i0 + r + 1 - p * L, -std::numeric_limits<F>::infinity()));
        }
        mx[r] = pack_hmax<F>(m);  // over j <= i
      }
      for (int r = 0; r < rows; ++r) {
        F* sr = S + static_cast<int64_t>(i0 + r) * Tp;
        const F m = mx[r];
        for (int p = 0; p < np; ++p) {
          F* sp = sr + p * L;
#pragma omp simd
          for (int l = 0; l < L; ++l) sp[l] = exp_t<F>(sp[l] - m);
        }
        Pack<F> acc = {};
        for (int p = 0; p < np; ++p) {
          const Pack<F> e = pack_keep_below<F>(pack_load(sr + p * L), i0 + r + 1 - p * L);  // j <= i
          acc += e;
          pack_store(sr + p * L, e);
        }
        sum[r] = pack_sum<F>(acc);
      }
      for (int r = 0; r < rows; ++r) {
        const int i = i0 + r;
        F* sr = S + static_cast<int64_t>(i) * Tp;
        const F inv = F(1) / sum[r];
        for (int p = 0; p < np; ++p) pack_store(sr + p * L, pack_load(sr + p * L) * inv);
        for (int p = np; p < Tp / L; ++p) pack_store(sr + p * L, Pack<F>{});
        lseb[i] = mx[r] + std::log(sum[r]);
        if (drop) {
          const F* m = mult + static_cast<int64_t>(i) * T;
          for (int j = 0; j <= i; ++j) sr[j] *= m[j];
        }
      }
    }
    // out_r = sum_{j<=r} pd_rj v_j (row r of the dropped p)
    wsum_to<F, false, false, false>(out + r0 * ld_out + col, ld_out, Y, S, Tp, direct ? vb : V, direct ? ld_in : Dp,
                                    V, Dp, D, Dp, T);
  });
}

// dq, dk, dv [N, ld_in] += (mode; any may be null); dout [N, ld_out]; lse [B,H,T] as saved by forward.
template <typename F>
void csa_backward(F* dq, F* dk, F* dv, const F* dout, int ld_out, const F* lse, const F* q, const F* k, const F* v,
                  int ld_in, int64_t B, int T, int H, int D, F scale, const Dropout& d, Workspace& ws,
                  GradMode mode) {
  using namespace attn;
  check_heads("csa_backward", B, T, H, D, ld_in, "ld_in", ld_out, "ld_out");
  check_dropout(d);
  constexpr int L = W<F>;
  const int Tp = round_up(T, L), Dp = round_up(D, L);
  const bool direct = D == Dp;
  const int64_t DTp = static_cast<int64_t>(D) * Tp, TDp = static_cast<int64_t>(T) * Dp,
                TTp = static_cast<int64_t>(T) * Tp, TT = static_cast<int64_t>(T) * T;
  const int64_t per = round_up(static_cast<int>(2 * DTp + 4 * TDp + 2 * TTp + TT), 16);
  F* scratch = ws.get<F>(0, static_cast<size_t>(max_threads() * per), "csa backward scratch (one [T, T] block per thread)");
  const bool drop = d.active();
  parallel_for(B * H, [&](int64_t bh) {
    const int64_t r0 = (bh / H) * T;
    const int64_t col = (bh % H) * static_cast<int64_t>(D);
    const F sc = scale;
    F* vT = scratch + thread_index() * per;  // [D][Tp]
    F* kT = vT + DTp;                        // [D][Tp]
    F* Q = kT + DTp;                         // [T][Dp] padded copies (when !direct)
    F* K = Q + TDp;                          // [T][Dp]
    F* G = K + TDp;                          // [T][Dp]: dout
    F* Y = G + TDp;                          // [T][Dp]: dq, dk or dv (when !direct)
    F* PD = Y + TDp;                         // [T][Tp]: p, then dropped p
    F* GS = PD + TTp;                        // [T][Tp]: dL/d(dropped p), then dL/d(q_i . k_j)
    F* mult = GS + TTp;                      // [T][T]: the forward's dropout multipliers
    const F* qb = q + r0 * ld_in + col;
    const F* kb = k + r0 * ld_in + col;
    const F* vb = v + r0 * ld_in + col;
    const F* gb = dout + r0 * ld_out + col;
    transpose_pad(vT, vb, ld_in, T, D, Tp);
    transpose_pad(kT, kb, ld_in, T, D, Tp);
    if (!direct) {
      pad_rows(Q, qb, ld_in, T, D, Dp);
      pad_rows(K, kb, ld_in, T, D, Dp);
      pad_rows(G, gb, ld_out, T, D, Dp);
    }
    if (drop) dropout_multipliers(mult, TT, d, d.elem_offset + static_cast<uint64_t>(bh * TT));
    const F* lseb = lse + bh * T;
    for (int i0 = 0; i0 < T; i0 += L) {
      const int np = i0 / L + 1, rows = std::min(L, T - i0);
      // the scores again, as forward computed them: q_i . k_j
      rows_cols<F, false>(PD + static_cast<int64_t>(i0) * Tp, qb + i0 * ld_in, ld_in, kT, Tp, D, rows, np);
      // dL/d(dropped p_ij) = dout_i . v_j
      rows_cols<F, false>(GS + static_cast<int64_t>(i0) * Tp, gb + i0 * ld_out, ld_out, vT, Tp, D, rows, np);
      for (int i = i0; i < i0 + rows; ++i) {
        F* p = PD + static_cast<int64_t>(i) * Tp;
        F* g = GS + static_cast<int64_t>(i) * Tp;
        recompute_softmax_row(p, i, np, sc, lseb[i]);
        const F* m = mult + static_cast<int64_t>(i) * T;
        if (drop)  // dL/dp = dL/d(dropped p) * multiplier
          for (int j = 0; j <= i; ++j) g[j] *= m[j];
        Pack<F> acc = {};
        for (int pk = 0; pk < np; ++pk) acc += pack_load(p + pk * L) * pack_load(g + pk * L);
        const F s = pack_sum<F>(acc);
        // softmax backward, times the score scale: dL/d(q_i . k_j) = p_ij (dL/dp_ij - s) scale
        for (int pk = 0; pk < np; ++pk)
          pack_store(g + pk * L, pack_load(p + pk * L) * (pack_load(g + pk * L) - s) * sc);
        if (drop)
          for (int j = 0; j <= i; ++j) p[j] *= m[j];
      }
    }
    const F* Qr = direct ? qb : Q;
    const F* Kr = direct ? kb : K;
    const F* Gr = direct ? gb : G;
    const int64_t lqk = direct ? ld_in : Dp, lg = direct ? ld_out : Dp;
    if (dv)  // dv_r = sum_{i>=r} pd_ir dout_i: column r of the dropped p
      wsum_to<F, false, true>(mode, dv + r0 * ld_in + col, ld_in, Y, PD, Tp, Gr, lg, Gr, lg, D, Dp, T);
    if (dq)  // dq_r = sum_{j<=r} g_rj k_j: row r
      wsum_to<F, false, false>(mode, dq + r0 * ld_in + col, ld_in, Y, GS, Tp, Kr, lqk, Kr, lqk, D, Dp, T);
    if (dk)  // dk_r = sum_{i>=r} g_ir q_i: column r
      wsum_to<F, false, true>(mode, dk + r0 * ld_in + col, ld_in, Y, GS, Tp, Qr, lqk, Qr, lqk, D, Dp, T);
  });
}

}  // namespace qisa::cpu
