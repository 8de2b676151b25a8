// Classical causal self-attention (SPEC §1.1 csa), per (batch, head) block:
//   w_ij = (q_i . k_j) * scale, p_i = softmax_{j<=i}(w_i), p = dropout(p), out_i = sum_j p_ij v_j.
// Forward saves one float per row, lse [B,H,T]: lse_i = log sum_{j<=i} exp(w_ij) (the flash-
// attention statistic), never p. Backward recomputes the scores from q and k and p_ij =
// exp(w_ij - lse_i), and regenerates the dropout mask from the same Philox counters: the
// dropout element index of (b, h, i, j) is ((b*H + h)*T + i)*T + j + d.elem_offset.
// Memory: O(B*H*T) saved; per-thread scratch O(kRowTile*T + T*D): a (b, h) block runs in row
// tiles of kRowTile rows (a tile's scores and dropout multipliers only), with dk, dv summed
// across the tiles in [T][D] accumulators. Loop nest, layout and summation order:
// attention_blocks.h.
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
  const int Tp = round_up(T, L), Dp = round_up(D, L), Rt = std::min(T, kRowTile);
  const bool direct = D == Dp;  // rows of D are whole packs: read and write them in place
  const bool drop = d.active();
  const int64_t TT = static_cast<int64_t>(T) * T;
  ScratchLayout lay;
  const int64_t o_kT = lay.part(static_cast<int64_t>(D) * Tp),             // [D][Tp]: k^T
      o_V = lay.part(direct ? 0 : static_cast<int64_t>(T) * Dp),           // [T][Dp]: padded v
      o_S = lay.part(static_cast<int64_t>(Rt) * Tp),                       // [Rt][Tp]: the tile's scores, p
      o_Y = lay.part(direct ? 0 : static_cast<int64_t>(Rt) * Dp),          // [Rt][Dp]: the tile's out rows
      o_M = lay.part(drop ? static_cast<int64_t>(Rt) * T : 0);             // [Rt][T]: the tile's multipliers
  F* scratch = ws.get<F>(0, static_cast<size_t>(max_threads() * lay.per),
                         "csa forward scratch (per thread: k^T [D, T], one row tile's scores and dropout "
                         "multipliers [kRowTile, T], padded v [T, D])");
  parallel_for(B * H, [&](int64_t bh) {
    const int64_t r0 = (bh / H) * T;  // first row of the block
    const int64_t col = (bh % H) * static_cast<int64_t>(D);
    const F sc = scale;  // a local: stores through F* could alias a captured F
    F* base = scratch + thread_index() * lay.per;
    F* kT = base + o_kT;
    F* V = base + o_V;
    F* S = base + o_S;
    F* Y = base + o_Y;
    F* mult = base + o_M;
    transpose_pad(kT, k + r0 * ld_in + col, ld_in, T, D, Tp);
    const F* vb = v + r0 * ld_in + col;
    if (!direct) pad_rows(V, vb, ld_in, T, D, Dp);
    const F* Vr = direct ? vb : V;
    const int64_t ldv = direct ? ld_in : Dp;
    F* lseb = lse + bh * T;
    for (int t0 = 0; t0 < T; t0 += kRowTile) {
      const int t1 = std::min(T, t0 + kRowTile);
      if (drop)
        dropout_multipliers(mult, static_cast<int64_t>(t1 - t0) * T, d,
                            d.elem_offset + static_cast<uint64_t>(bh * TT + static_cast<int64_t>(t0) * T));
      // rows i in [i0, i0 + L) need the packs p < np (those holding j <= i)
      for (int i0 = t0; i0 < t1; i0 += L) {
        const int np = i0 / L + 1, rows = std::min(L, t1 - i0);
        F* Si = S + static_cast<int64_t>(i0 - t0) * Tp;  // row i0 of the tile
        rows_cols<F, false>(Si, q + (r0 + i0) * ld_in + col, ld_in, kT, Tp, D, rows, np);
        softmax_rows_lse<F>(Si, Tp, i0, rows, np, sc, lseb + i0);
        for (int r = 0; r < rows; ++r) {
          const int i = i0 + r;
          F* sr = Si + static_cast<int64_t>(r) * Tp;
          if (drop) {
            const F* m = mult + static_cast<int64_t>(i - t0) * T;
            for (int j = 0; j <= i; ++j) sr[j] *= m[j];
          }
        }
      }
      // out_r = sum_{j<=r} pd_rj v_j (row r of the dropped p), r in the tile
      wsum_rows_to<F, false, false>(out + r0 * ld_out + col, ld_out, Y, MatTile<F>{S, Tp, t0, t1}, Vr, ldv, Vr, ldv,
                                    D, Dp);
    }
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
  const int Tp = round_up(T, L), Dp = round_up(D, L), Rt = std::min(T, kRowTile);
  const bool direct = D == Dp;
  const bool drop = d.active();
  const int64_t TT = static_cast<int64_t>(T) * T, DTp = static_cast<int64_t>(D) * Tp,
                TDp = static_cast<int64_t>(T) * Dp, RTp = static_cast<int64_t>(Rt) * Tp;
  ScratchLayout lay;
  const int64_t o_vT = lay.part(DTp),                                  // [D][Tp]: v^T
      o_kT = lay.part(DTp),                                            // [D][Tp]: k^T
      o_Q = lay.part(direct ? 0 : TDp),                                // [T][Dp]: padded q, k, dout
      o_K = lay.part(direct ? 0 : TDp), o_G = lay.part(direct ? 0 : TDp),
      o_PD = lay.part(RTp),                                            // [Rt][Tp]: the tile's p, then dropped p
      o_GS = lay.part(RTp),                                            // [Rt][Tp]: dL/d(dropped p), then dL/d(q.k)
      o_M = lay.part(drop ? static_cast<int64_t>(Rt) * T : 0),         // [Rt][T]: the tile's multipliers
      o_Y = lay.part(direct ? 0 : static_cast<int64_t>(Rt) * Dp),      // [Rt][Dp]: the tile's dq rows
      o_dK = lay.part(dk ? TDp : 0),                                   // [T][Dp]: dk summed over the tiles
      o_dV = lay.part(dv ? TDp : 0);                                   // [T][Dp]: dv summed over the tiles
  F* scratch = ws.get<F>(0, static_cast<size_t>(max_threads() * lay.per),
                         "csa backward scratch (per thread: k^T and v^T [D, T], one row tile's p, dL/dp and dropout "
                         "multipliers [kRowTile, T], dk and dv accumulators [T, D], padded q, k, dout [T, D])");
  parallel_for(B * H, [&](int64_t bh) {
    const int64_t r0 = (bh / H) * T;
    const int64_t col = (bh % H) * static_cast<int64_t>(D);
    const F sc = scale;
    F* base = scratch + thread_index() * lay.per;
    F* vT = base + o_vT;
    F* kT = base + o_kT;
    F* Q = base + o_Q;
    F* K = base + o_K;
    F* G = base + o_G;
    F* PD = base + o_PD;
    F* GS = base + o_GS;
    F* mult = base + o_M;
    F* Y = base + o_Y;
    F* dK = base + o_dK;
    F* dV = base + o_dV;
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
    const F* Qr = direct ? qb : Q;
    const F* Kr = direct ? kb : K;
    const F* Gr = direct ? gb : G;
    const int64_t lqk = direct ? ld_in : Dp, lg = direct ? ld_out : Dp;
    const F* lseb = lse + bh * T;
    for (int t0 = 0; t0 < T; t0 += kRowTile) {
      const int t1 = std::min(T, t0 + kRowTile);
      if (drop)
        dropout_multipliers(mult, static_cast<int64_t>(t1 - t0) * T, d,
                            d.elem_offset + static_cast<uint64_t>(bh * TT + static_cast<int64_t>(t0) * T));
      for (int i0 = t0; i0 < t1; i0 += L) {
        const int np = i0 / L + 1, rows = std::min(L, t1 - i0);
        const int64_t o = static_cast<int64_t>(i0 - t0) * Tp;  // row i0 of the tile
        // the scores again, as forward computed them: q_i . k_j
        rows_cols<F, false>(PD + o, qb + i0 * ld_in, ld_in, kT, Tp, D, rows, np);
        // dL/d(dropped p_ij) = dout_i . v_j
        rows_cols<F, false>(GS + o, gb + i0 * ld_out, ld_out, vT, Tp, D, rows, np);
        for (int i = i0; i < i0 + rows; ++i) {
          F* p = PD + static_cast<int64_t>(i - t0) * Tp;
          F* g = GS + static_cast<int64_t>(i - t0) * Tp;
          recompute_softmax_row(p, i, np, sc, lseb[i]);
          const F* m = drop ? mult + static_cast<int64_t>(i - t0) * T : nullptr;
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
      const MatTile<F> pd{PD, Tp, t0, t1}, gs{GS, Tp, t0, t1};
      if (dv)  // dv_r = sum_{i>=r} pd_ir dout_i: column r of the dropped p
        wsum_cols_to<F, false>(mode, dv + r0 * ld_in + col, ld_in, dV, pd, T, Gr, lg, Gr, lg, D, Dp);
      if (dq)  // dq_r = sum_{j<=r} g_rj k_j: row r
        wsum_rows_to<F, false>(mode, dq + r0 * ld_in + col, ld_in, Y, gs, Kr, lqk, Kr, lqk, D, Dp);
      if (dk)  // dk_r = sum_{i>=r} g_ir q_i: column r
        wsum_cols_to<F, false>(mode, dk + r0 * ld_in + col, ld_in, dK, gs, T, Qr, lqk, Qr, lqk, D, Dp);
    }
  });
}

}  // namespace qisa::cpu
