// Gaussian-kernel attention (SPEC §1.1 qisa), per (batch, head) block, with d2_ij = |q_i - k_j|^2:
//   score paper:    alpha_ij = exp(-d2_ij), p_i = softmax_{j<=i}(alpha_i)
//   score gaussian: p_i = softmax_{j<=i}(-scale d2_i)   (model.qisa_score; z holds the row's
//   log-sum-exp instead, from a softmax with the row maximum, as csa's lse)
//   causal: out_i = sum_{j<=i} p_ij v_j;   reference: out_j = sum_{i>=j} p_ij v_i (p transposed,
//   as the published code does).
// Forward saves one float per row, z [B,H,T]: the row normaliser z_i = sum_{j<=i} exp(alpha_ij -
// 1/2), never p. alpha lies in (0, 1], so the softmax needs no running maximum (no exponent can
// overflow; the constant shift by 1/2 centres the float polynomial's range and cancels in p).
// Backward recomputes alpha from q and k and p_ij = exp(alpha_ij - 1/2) / z_i.
// A (b, h) block runs in row tiles of kRowTile rows. The reference mask's out_j sums p_ij v_i
// over i >= j, so p_ij needs row i's normaliser before column j can use it; a row tile holds
// whole rows (every j <= i), so the tile computes z_i and at once adds its rows' terms to the
// column sums: one pass over the tiles on the CPU, the column sums carried in a [T][D]
// accumulator. (A kernel tiled by output column j, as a GPU one may be, needs two passes:
// every z_i first, then the column sums.) Backward: dq row sums per tile; dk (and dv for the
// causal mask) column sums carried across the tiles; the reference mask's dv_i = sum_{j<=i}
// p_ij dout_j is a row sum.
// Memory: O(B*H*T) saved; per-thread scratch O(kRowTile*T + T*D). Loop nest, layout and
// summation order: attention_blocks.h.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/cpu/attention_blocks.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/simd.h"
#include "kernels/error.h"

namespace qisa::cpu {

// A gaussian score's scale is finite and > 0 (the config checks model.qisa_score_scale too).
inline void check_score(const char* op, AttnScore score) {
  QISA_CHECK(score.kind == QisaScore::paper || (std::isfinite(score.scale) && score.scale > 0),
             std::string(op) + ": gaussian score scale " + std::to_string(score.scale) + " is not > 0",
             "model.qisa_score_scale: 0 (1/sqrt(head size)) or a positive number");
}

// The paper's score for the rows i0 .. i0 + rows - 1 of a group (row r at Si + r*ld, holding
// d2): p_ij = exp(alpha_ij - 1/2) / z_i with alpha = exp(-d2), 0 for j > i; z[r] = the row sum.
// In stages over the group's rows (not row by row), so that the rows' exp -> sum -> scale chains
// overlap. alpha is in (0, 1]: the softmax needs no max subtraction, and exp_unit_shifted(alpha) =
// exp(alpha - 1/2) gives the same p.
template <typename F>
inline void paper_softmax_rows(F* Si, int64_t ld, int i0, int rows, int np, F* z) {
  using namespace attn;
  constexpr int L = W<F>;
  for (int r = 0; r < rows; ++r) {
    F* sr = Si + static_cast<int64_t>(r) * ld;
    for (int p = 0; p < np; ++p) {
      F* sp = sr + p * L;
#pragma omp simd
      for (int l = 0; l < L; ++l) sp[l] = exp_unit_shifted<F>(exp_t<F>(-sp[l]));
    }
  }
  normalize_rows<F>(Si, ld, i0, rows, np, z);  // z_i: the row sum
}

// out [N, ld_out]; z [B,H,T]; q, k [N, ld_qk]; v [N, ld_v]; head h at columns h*D.
template <typename F>
void gaussian_attention_forward(F* out, int ld_out, F* z, const F* q, const F* k, int ld_qk, const F* v, int ld_v,
                                int64_t B, int T, int H, int D, AttnMask mask, AttnScore score, Workspace& ws) {
  using namespace attn;
  check_heads("gaussian_attention_forward", B, T, H, D, ld_qk, "ld_qk", ld_v, "ld_v");
  check_heads("gaussian_attention_forward", B, T, H, D, ld_out, "ld_out", ld_out, "ld_out");
  check_score("gaussian_attention_forward", score);
  constexpr int L = W<F>;
  const int Tp = round_up(T, L), Dp = round_up(D, L), Rt = std::min(T, kRowTile);
  const bool direct = D == Dp;  // rows of D are whole packs: read and write them in place
  const bool causal = mask == AttnMask::causal;
  const int64_t TDp = static_cast<int64_t>(T) * Dp;
  ScratchLayout lay;
  const int64_t o_kT = lay.part(static_cast<int64_t>(D) * Tp),  // [D][Tp]: k^T
      o_V = lay.part(direct ? 0 : TDp),                         // [T][Dp]: padded v
      o_S = lay.part(static_cast<int64_t>(Rt) * Tp),            // [Rt][Tp]: the tile's d2, then p
      // causal: [Rt][Dp], the tile's out rows (when !direct); reference: [T][Dp], out summed over the tiles
      o_Y = lay.part(causal ? (direct ? 0 : static_cast<int64_t>(Rt) * Dp) : TDp);
  F* scratch = ws.get<F>(0, static_cast<size_t>(max_threads() * lay.per),
                         causal ? "Gaussian attention forward scratch (per thread: k^T [D, T], one row tile's p "
                                  "[kRowTile, T], padded v [T, D])"
                                : "Gaussian attention forward scratch (per thread: k^T [D, T], one row tile's p "
                                  "[kRowTile, T], padded v and the out accumulator [T, D])");
  parallel_for(B * H, [&](int64_t bh) {
    const int64_t r0 = (bh / H) * T;  // first row of the block
    const int64_t col = (bh % H) * static_cast<int64_t>(D);
    F* base = scratch + thread_index() * lay.per;
    F* kT = base + o_kT;
    F* V = base + o_V;
    F* S = base + o_S;
    F* Y = base + o_Y;
    transpose_pad(kT, k + r0 * ld_qk + col, ld_qk, T, D, Tp);
    const F* vb = v + r0 * ld_v + col;
    if (!direct) pad_rows(V, vb, ld_v, T, D, Dp);
    const F* Vr = direct ? vb : V;
    const int64_t ldv = direct ? ld_v : Dp;
    F* ob = out + r0 * ld_out + col;
    F* zb = z + bh * T;
    for (int t0 = 0; t0 < T; t0 += kRowTile) {
      const int t1 = std::min(T, t0 + kRowTile);
      // rows i in [i0, i0 + L) need the packs p < np (those holding j <= i)
      for (int i0 = t0; i0 < t1; i0 += L) {
        const int np = i0 / L + 1, rows = std::min(L, t1 - i0);
        F* Si = S + static_cast<int64_t>(i0 - t0) * Tp;  // row i0 of the tile
        rows_cols<F, true>(Si, q + (r0 + i0) * ld_qk + col, ld_qk, kT, Tp, D, rows, np);
        if (score.kind == QisaScore::gaussian)
          softmax_rows_lse<F>(Si, Tp, i0, rows, np, F(-score.scale), zb + i0);
        else
          paper_softmax_rows<F>(Si, Tp, i0, rows, np, zb + i0);
      }
      // causal: out_r = sum_{j<=r} p_rj v_j (row r of p, r in the tile); reference: out_r =
      // sum_{i>=r} p_ir v_i (column r of p, carried across the tiles)
      const MatTile<F> pt{S, Tp, t0, t1};
      if (causal)
        wsum_rows_to<F, false, false>(ob, ld_out, Y, pt, Vr, ldv, Vr, ldv, D, Dp);
      else
        wsum_cols_to<F, false, false>(ob, ld_out, Y, pt, T, Vr, ldv, Vr, ldv, D, Dp);
    }
  });
}

// Backward of one row i of the score (np packs; w holds d2 on entry): p_ij (into p) as forward
// computed it, then w_ij = 2 dL/d(d2_ij) from dp_ij = dL/dp_ij. Softmax backward gives dL/dx_ij =
// p_ij (dp_ij - s_i), s_i = sum_j p_ij dp_ij, for the softmax's input x; d(d2)/dq_i = 2 (q_i - k_j)
// = -d(d2)/dk_j, so the caller sums w_ij (q_i - k_j) into dq_i and w_ij (k_j - q_i) into dk_j.
// paper: x = alpha = exp(-d2) (kept in w), dx/d(d2) = -alpha; p_ij = exp(alpha_ij - 1/2) / z_i,
// the forward's p bit for bit (same d2, same operations).
template <typename F>
inline void paper_score_grad_row(F* w, F* p, const F* dp, int i, int np, F z) {
  using namespace attn;
  constexpr int L = W<F>;
  const F inv = F(1) / z;
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
  for (int pk = 0; pk < np; ++pk) {
    F* wp = w + pk * L;
    const F* pp = p + pk * L;
    const F* gp = dp + pk * L;
#pragma omp simd
    for (int l = 0; l < L; ++l) wp[l] = F(2) * (-wp[l] * (pp[l] * (gp[l] - s)));
  }
}
// gaussian: x = -scale d2, dx/d(d2) = -scale; p_ij = exp(-scale d2_ij - lse_i) (lse_i saved in z).
template <typename F>
inline void gaussian_score_grad_row(F* w, F* p, const F* dp, int i, int np, F scale, F lse) {
  using namespace attn;
  constexpr int L = W<F>;
  std::copy_n(w, static_cast<size_t>(np) * L, p);
  recompute_softmax_row(p, i, np, -scale, lse);
  Pack<F> acc = {};
  for (int pk = 0; pk < np; ++pk) acc += pack_load(p + pk * L) * pack_load(dp + pk * L);
  const F s = pack_sum<F>(acc);
  for (int pk = 0; pk < np; ++pk) {
    F* wp = w + pk * L;
    const F* pp = p + pk * L;
    const F* gp = dp + pk * L;
#pragma omp simd
    for (int l = 0; l < L; ++l) wp[l] = F(-2) * scale * (pp[l] * (gp[l] - s));
  }
}

// dq, dk [N, ld_qk] +=; dv [N, ld_v] += (mode; any may be null); dout [N, ld_out]; z [B,H,T] from forward.
template <typename F>
void gaussian_attention_backward(F* dq, F* dk, int ld_qk, F* dv, int ld_v, const F* dout, int ld_out, const F* z,
                                 const F* q, const F* k, const F* v, int64_t B, int T, int H, int D, AttnMask mask,
                                 AttnScore score, Workspace& ws, GradMode mode) {
  using namespace attn;
  check_heads("gaussian_attention_backward", B, T, H, D, ld_qk, "ld_qk", ld_v, "ld_v");
  check_heads("gaussian_attention_backward", B, T, H, D, ld_out, "ld_out", ld_out, "ld_out");
  check_score("gaussian_attention_backward", score);
  constexpr int L = W<F>;
  const int Tp = round_up(T, L), Dp = round_up(D, L), Rt = std::min(T, kRowTile);
  const bool direct = D == Dp;
  const bool causal = mask == AttnMask::causal;
  const int64_t DTp = static_cast<int64_t>(D) * Tp, TDp = static_cast<int64_t>(T) * Dp,
                RTp = static_cast<int64_t>(Rt) * Tp;
  ScratchLayout lay;
  const int64_t o_kT = lay.part(DTp),                                 // [D][Tp]: k^T
      o_xT = lay.part(DTp),                                           // [D][Tp]: v^T (causal) or dout^T (reference)
      o_Q = lay.part(direct ? 0 : TDp),                               // [T][Dp]: padded q, k, dout
      o_K = lay.part(direct ? 0 : TDp), o_G = lay.part(direct ? 0 : TDp),
      o_P = lay.part(RTp),                                            // [Rt][Tp]: the tile's p
      o_dP = lay.part(RTp),                                           // [Rt][Tp]: dL/dp
      o_W = lay.part(RTp),                                            // [Rt][Tp]: 2 dL/d(d2)
      o_Y = lay.part(direct ? 0 : static_cast<int64_t>(Rt) * Dp),     // [Rt][Dp]: the tile's dq (dv) rows
      o_dK = lay.part(dk ? TDp : 0),                                  // [T][Dp]: dk summed over the tiles
      o_dV = lay.part(dv && causal ? TDp : 0);                        // [T][Dp]: dv summed over the tiles
  F* scratch = ws.get<F>(0, static_cast<size_t>(max_threads() * lay.per),
                         "Gaussian attention backward scratch (per thread: k^T and v^T or dout^T [D, T], one row "
                         "tile's p, dL/dp, dL/d(d2) [kRowTile, T], dk (and dv) accumulators [T, D], padded q, k, "
                         "dout [T, D])");
  parallel_for(B * H, [&](int64_t bh) {
    const int64_t r0 = (bh / H) * T;
    const int64_t col = (bh % H) * static_cast<int64_t>(D);
    F* base = scratch + thread_index() * lay.per;
    F* kT = base + o_kT;
    F* xT = base + o_xT;
    F* Q = base + o_Q;
    F* K = base + o_K;
    F* G = base + o_G;
    F* P = base + o_P;
    F* dP = base + o_dP;
    F* Wm = base + o_W;
    F* Y = base + o_Y;
    F* dK = base + o_dK;
    F* dV = base + o_dV;
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
    const F* Qr = direct ? qb : Q;
    const F* Kr = direct ? kb : K;
    const F* Gr = direct ? gb : G;
    const int64_t lqk = direct ? ld_qk : Dp, lg = direct ? ld_out : Dp;
    const F* zb = z + bh * T;
    for (int t0 = 0; t0 < T; t0 += kRowTile) {
      const int t1 = std::min(T, t0 + kRowTile);
      for (int i0 = t0; i0 < t1; i0 += L) {
        const int np = i0 / L + 1, rows = std::min(L, t1 - i0);
        const int64_t o = static_cast<int64_t>(i0 - t0) * Tp;  // row i0 of the tile
        // dL/dp_ij: causal dout_i . v_j (out_i = sum_j p_ij v_j); reference dout_j . v_i
        if (causal)
          rows_cols<F, false>(dP + o, gb + i0 * ld_out, ld_out, xT, Tp, D, rows, np);
        else
          rows_cols<F, false>(dP + o, vb + i0 * ld_v, ld_v, xT, Tp, D, rows, np);
        rows_cols<F, true>(Wm + o, qb + i0 * ld_qk, ld_qk, kT, Tp, D, rows, np);  // d2, as forward computed it
        for (int i = i0; i < i0 + rows; ++i) {
          F* p = P + static_cast<int64_t>(i - t0) * Tp;
          F* w = Wm + static_cast<int64_t>(i - t0) * Tp;
          const F* dp = dP + static_cast<int64_t>(i - t0) * Tp;
          if (score.kind == QisaScore::gaussian)
            gaussian_score_grad_row<F>(w, p, dp, i, np, F(score.scale), zb[i]);
          else
            paper_score_grad_row<F>(w, p, dp, i, np, zb[i]);
        }
      }
      const MatTile<F> wt{Wm, Tp, t0, t1}, pt{P, Tp, t0, t1};
      if (dq)  // dq_r = sum_{j<=r} w_rj (q_r - k_j): row r of w
        wsum_rows_to<F, true>(mode, dq + r0 * ld_qk + col, ld_qk, Y, wt, Kr, lqk, Qr, lqk, D, Dp);
      if (dk)  // dk_r = sum_{i>=r} w_ir (k_r - q_i): column r of w
        wsum_cols_to<F, true>(mode, dk + r0 * ld_qk + col, ld_qk, dK, wt, T, Qr, lqk, Kr, lqk, D, Dp);
      if (dv) {  // causal: dv_r = sum_{i>=r} p_ir dout_i; reference: dv_r = sum_{j<=r} p_rj dout_j
        F* dvb = dv + r0 * ld_v + col;
        if (causal)
          wsum_cols_to<F, false>(mode, dvb, ld_v, dV, pt, T, Gr, lg, Gr, lg, D, Dp);
        else
          wsum_rows_to<F, false>(mode, dvb, ld_v, Y, pt, Gr, lg, Gr, lg, D, Dp);
      }
    }
  });
}

}  // namespace qisa::cpu
