// Building blocks of the attention kernels (csa, Gaussian). One work item is a (batch, head)
// block of T rows, run by one thread in its own scratch, in row tiles of kRowTile rows (the
// flash-attention scheme), so no T x T matrix ever exists: per-thread scratch is
// O(kRowTile*T + T*D), independent of B.
//
// Loop nest of every attention op (forward and backward):
//   for (b, h) in parallel:                              one thread, its scratch
//     operands indexed by j transposed to [D][Tp]; padded operand rows [T][Dp] if D % W != 0
//     for tile [t0, t1) = [0, kRowTile), [kRowTile, 2 kRowTile), ... (t1 = min(t0 + kRowTile, T)):
//       dropout multipliers of rows [t0, t1) (csa: Philox elements ((b*H+h)*T + i)*T + j + offset)
//       for row groups [i0, i0 + W) of the tile:          score rows [kRowTile][Tp], packs j <= i
//         scores (rows_cols), then p from the row statistic (forward: computes it, from the row
//         itself: the tile holds whole rows j <= i; backward: reads the saved one)
//       row sums    y_i  = sum_{j<=i} m_ij x_j, i in [t0, t1)   -> output rows i (wsum_rows_to)
//       column sums y_j += sum_{i in [t0,t1), i>=j} m_ij x_i     -> accumulator [T][Dp]; the
//                                                                  last tile writes the output
//                                                                  rows [0, T) (wsum_cols_to)
//     (the tile's score rows are dropped; outputs are stored or added with the op's GradMode)
// With T <= kRowTile there is one tile and the arithmetic is that of the untiled kernel.
//
//  - Score matrices are rows i of Tp = T rounded up to a Pack, j in SIMD lanes. Causal row i is
//    computed over the packs that hold j <= i (about half the block); lanes j > i are cleared
//    by a bit mask (so nothing of a later position, not even a NaN, reaches row i). The operand
//    indexed by j is transposed to [D][Tp] (row_cols); the one indexed by i is read as broadcast
//    scalars straight from its [N, ld] rows.
//  - products over j or i (out, dq, dk, dv) are rows of D in SIMD lanes, summed in registers
//    (wsum); the matrix entry is a broadcast scalar taken along a row of the tile, or down a
//    column (stride Tp) for the transposed products, so no matrix is ever transposed.
//    Operand and output rows are used in place when D is a whole number of Packs, else through
//    zero-padded copies of Dp = D rounded up.
// Every sum has one fixed order (d ascending; j, resp. i, ascending, a column sum carried across
// the tiles in its accumulator; row sums by pack_sum), independent of the thread count and the
// same order as without tiles.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "kernels/backend.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/simd.h"
#include "kernels/error.h"

namespace qisa::cpu {

inline void check_heads(const char* op, int64_t B, int T, int H, int D, int ld_a, const char* na, int ld_b,
                        const char* nb) {
  QISA_CHECK(B >= 0 && T >= 1 && H >= 1 && D >= 1,
             std::string(op) + " shape B=" + std::to_string(B) + " T=" + std::to_string(T) + " H=" +
                 std::to_string(H) + " D=" + std::to_string(D),
             "B >= 0 and T, n_head, head size >= 1");
  QISA_CHECK(ld_a >= H * D && ld_b >= H * D,
             std::string(op) + ": row strides " + na + "=" + std::to_string(ld_a) + ", " + nb + "=" +
                 std::to_string(ld_b) + " are below H*D=" + std::to_string(H * D),
             "a row stride covers every head's D columns");
}

namespace attn {

template <typename F>
inline constexpr int W = kPackLanes<F>;

// Rows of a (b, h) block per tile: a multiple of every pack width and of wsum's row groups (4),
// so a tile is whole row groups.
inline constexpr int kRowTile = 64;
static_assert(kRowTile % W<float> == 0 && kRowTile % W<double> == 0 && kRowTile % 4 == 0);

inline int round_up(int n, int w) { return (n + w - 1) / w * w; }

// One thread's scratch as consecutive parts, each a multiple of 16 elements (64 bytes): per is
// the elements a thread gets, part(n) the offset of the next n-element part (n may be 0).
struct ScratchLayout {
  int64_t per = 0;
  int64_t part(int64_t n) {
    const int64_t at = per;
    per += (n + 15) / 16 * 16;
    return at;
  }
};

// dst[t*Dp + d] = src[t*ld + d] for d < D; 0 for D <= d < Dp (operand rows when D is not a whole
// number of packs). Whole packs where they fit: the rows are read back as packs, and a pack
// load of several scalar stores cannot be forwarded from the store buffer.
template <typename F>
inline void pad_rows(F* dst, const F* src, int64_t ld, int T, int D, int Dp) {
  for (int t = 0; t < T; ++t) {
    F* o = dst + static_cast<int64_t>(t) * Dp;
    const F* s = src + t * ld;
    int d = 0;
    for (; d + W<F> <= D; d += W<F>) pack_store(o + d, pack_load(s + d));
    for (; d < D; ++d) o[d] = s[d];
    for (; d < Dp; ++d) o[d] = 0;
  }
}

// dst[d*Tp + j] = src[j*ld + d] (a T x D block transposed), 0 for T <= j < Tp: W x W blocks by
// register shuffles (for the same reason as above), scalar at the edges.
template <typename F>
inline void transpose_pad(F* dst, const F* src, int64_t ld, int T, int D, int Tp) {
  constexpr int L = W<F>;
  const int Tb = T / L * L, Db = D / L * L;
  for (int j0 = 0; j0 < Tb; j0 += L)
    for (int d0 = 0; d0 < Db; d0 += L)
      transpose_pack_block(dst + static_cast<int64_t>(d0) * Tp + j0, Tp, src + j0 * ld + d0, ld);
  if (Tb == T && Db == D && T == Tp) return;
  for (int d = 0; d < D; ++d) {
    F* row = dst + static_cast<int64_t>(d) * Tp;
    for (int j = d < Db ? Tb : 0; j < T; ++j) row[j] = src[j * ld + d];
    for (int j = T; j < Tp; ++j) row[j] = 0;
  }
}

// Rows r < R of a T x T matrix against columns, for the NP packs at out / BT:
//   out[r*Tp + p*W + l] = sum_d f(a[r*lda + d], BT[d*Tp + p*W + l]),  f = (a - b)^2 (kDiff) or a*b.
// R rows at once share the loads of BT and give R*NP independent sums (in registers).
template <typename F, bool kDiff, int R, int NP>
QISA_INLINE void row_cols_np(F* out, const F* a, int64_t lda, const F* BT, int64_t Tp, int D) {
  Pack<F> acc[R][NP] = {};
  for (int d = 0; d < D; ++d) {
    Pack<F> y[NP];
    for (int k = 0; k < NP; ++k) y[k] = pack_load(BT + d * Tp + k * W<F>);
    for (int r = 0; r < R; ++r) {
      const F x = a[r * lda + d];
      for (int k = 0; k < NP; ++k) {
        if constexpr (kDiff) {
          const Pack<F> t = x - y[k];
          acc[r][k] += t * t;
        } else {
          acc[r][k] += x * y[k];
        }
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int k = 0; k < NP; ++k) pack_store(out + r * Tp + k * W<F>, acc[r][k]);
}

// The same over packs [0, np) of R rows.
template <typename F, bool kDiff, int R>
inline void row_cols(F* out, const F* a, int64_t lda, const F* BT, int64_t Tp, int D, int np) {
  int p = 0;
  for (; p + 2 <= np; p += 2) row_cols_np<F, kDiff, R, 2>(out + p * W<F>, a, lda, BT + p * W<F>, Tp, D);
  if (p < np) row_cols_np<F, kDiff, R, 1>(out + p * W<F>, a, lda, BT + p * W<F>, Tp, D);
}

// The same for `rows` rows over packs [0, np): groups of 4 rows, then single rows.
template <typename F, bool kDiff>
inline void rows_cols(F* out, const F* a, int64_t lda, const F* BT, int64_t Tp, int D, int rows, int np) {
  int r = 0;
  for (; r + 4 <= rows; r += 4) row_cols<F, kDiff, 4>(out + r * Tp, a + r * lda, lda, BT, Tp, D, np);
  for (; r < rows; ++r) row_cols<F, kDiff, 1>(out + r * Tp, a + r * lda, lda, BT, Tp, D, np);
}

// Rows [i0, i1) of a T x T matrix (one row tile): row i at w + (i - i0)*Tp, lanes j <= i valid.
template <typename F>
struct MatTile {
  const F* w;
  int64_t Tp;
  int i0, i1;
};

// Products of a matrix tile m with operand rows X_c (X + c*ldx), for output rows r:
//   row form    (kColumn false): y_r = sum_{c=0}^{r} w_rc t_c,  r in [i0, i1) (the tile's rows)
//   column form (kColumn true):  y_r = part_r + sum_{c=max(r,i0)}^{i1-1} w_cr t_c,  r in [0, i1)
// with t_c = X_c, or t_c = x0_r - X_c (kDiff; x0_r = x0 + r*ld0). part_r (row r of `part`,
// stride ld_part) is the partial sum over the earlier tiles' c < i0, for r < i0 (nothing before
// the first tile: part unused when i0 == 0). Each y_r sums in c order, so a column sum carried
// across tiles is the sum over the whole block in the same order.
// R output rows at a time: the c range they all share runs once with each X_c load feeding R
// rows (R*NP independent sums in registers); the rest of each row's range runs before
// (column form) or after (row form) it, so the order stays c ascending. The NP packs at
// column d of y_r go to out(r, d + k*W, value).
template <typename F, bool kDiff, bool kColumn, int R, int NP, class Out>
QISA_INLINE void wsum_np(const MatTile<F>& m, const F* X, int64_t ldx, const F* x0, int64_t ld0, const F* part,
                         int64_t ld_part, int d, int r0, const Out& out) {
  constexpr int L = W<F>;
  const F* w = m.w;
  const int64_t Tp = m.Tp;
  const int i0 = m.i0, i1 = m.i1;
  Pack<F> acc[R][NP] = {}, xv[NP], base[R][NP];
  // Column form: a group lies wholly before the tile (rows < i0, carried: each row's sum goes on
  // from part over all of c in [i0, i1)) or wholly in it (rows >= i0: the triangle c >= r, as
  // without tiles), since i0 is a multiple of kRowTile and groups start at multiples of R.
  const bool carried = kColumn && r0 < i0;
  if constexpr (kColumn)
    if (carried)
      for (int rr = 0; rr < R; ++rr)
        for (int k = 0; k < NP; ++k) acc[rr][k] = pack_load(part + (r0 + rr) * ld_part + d + k * L);
  if constexpr (kDiff)
    for (int rr = 0; rr < R; ++rr)
      for (int k = 0; k < NP; ++k) base[rr][k] = pack_load(x0 + (r0 + rr) * ld0 + d + k * L);
  auto load = [&](int c) {
    for (int k = 0; k < NP; ++k) xv[k] = pack_load(X + c * ldx + d + k * L);
  };
  auto term = [&](Pack<F>* a, int r, int c) {
    const F wc = kColumn ? w[(c - i0) * Tp + r] : w[(r - i0) * Tp + c];
    for (int k = 0; k < NP; ++k) {
      if constexpr (kDiff)
        a[k] += wc * (base[r - r0][k] - xv[k]);
      else
        a[k] += wc * xv[k];
    }
  };
  // rows r0..r0+R-1 share c in [c_lo, c_hi); the rr loops are unrolled so acc stays in registers
  const int c_lo = kColumn ? (carried ? i0 : r0 + R - 1) : 0, c_hi = kColumn ? i1 : r0 + 1;
  if constexpr (kColumn) {
    if (!carried) {
#pragma GCC unroll 8
      for (int rr = 0; rr < R; ++rr)
        for (int c = r0 + rr; c < r0 + R - 1; ++c) load(c), term(acc[rr], r0 + rr, c);  // up to c_lo
    }
  }
  for (int c = c_lo; c < c_hi; ++c) {
    load(c);
#pragma GCC unroll 8
    for (int rr = 0; rr < R; ++rr) term(acc[rr], r0 + rr, c);
  }
  if constexpr (!kColumn) {
#pragma GCC unroll 8
    for (int rr = 0; rr < R; ++rr)
      for (int c = c_hi; c <= r0 + rr; ++c) load(c), term(acc[rr], r0 + rr, c);
  }
#pragma GCC unroll 8
  for (int rr = 0; rr < R; ++rr)
    for (int k = 0; k < NP; ++k) out(r0 + rr, d + k * L, acc[rr][k]);
}

// All output rows of the tile (row form [i0, i1), column form [0, i1)) over Dp columns: groups
// of 4 rows (2 with kDiff), then single rows; packs in pairs, then one. (x0 is unused without
// kDiff, part without kColumn.)
template <typename F, bool kDiff, bool kColumn, class Out>
inline void wsum(const MatTile<F>& m, const F* X, int64_t ldx, const F* x0, int64_t ld0, const F* part,
                 int64_t ld_part, int Dp, const Out& out) {
  constexpr int L = W<F>;
  constexpr int R = kDiff ? 2 : 4;  // kDiff holds the rows x0_r in registers too
  const int ra = kColumn ? 0 : m.i0, rb = m.i1;
  auto rows = [&]<int NP>(int d) {
    int r = ra;
    for (; r + R <= rb; r += R)
      wsum_np<F, kDiff, kColumn, R, NP>(m, X, ldx, x0, ld0, part, ld_part, d, r, out);
    for (; r < rb; ++r) wsum_np<F, kDiff, kColumn, 1, NP>(m, X, ldx, x0, ld0, part, ld_part, d, r, out);
  };
  int d = 0;
  for (; d + 2 * L <= Dp; d += 2 * L) rows.template operator()<2>(d);
  if (d < Dp) rows.template operator()<1>(d);
}

// Output rows of wsum: row r, columns d.. of dst (row r at dst + (r - r0)*ld), stored (or added
// with kAdd).
template <typename F, bool kAdd>
struct RowSink {
  F* dst;
  int64_t ld;
  int r0 = 0;
  QISA_INLINE void operator()(int r, int d, Pack<F> v) const {
    F* o = dst + (r - r0) * ld + d;
    pack_store(o, kAdd ? pack_load(o) + v : v);
  }
};

// dst[0..n) = src[0..n) (+= with kAdd): whole packs, then the rest (no library call per row).
template <typename F, bool kAdd>
QISA_INLINE void copy_row(F* dst, const F* src, int n) {
  int e = 0;
  for (; e + W<F> <= n; e += W<F>) {
    const Pack<F> x = pack_load(src + e);
    pack_store(dst + e, kAdd ? pack_load(dst + e) + x : x);
  }
  for (; e < n; ++e) dst[e] = kAdd ? dst[e] + src[e] : src[e];
}

// Row sums of the tile m into rows [i0, i1) of dst (stride ld; D columns; kAdd: +=). With D a
// whole number of packs straight into dst, else through the scratch Y [i1 - i0][Dp] (packs would
// spill past D).
template <typename F, bool kDiff, bool kAdd>
inline void wsum_rows_to(F* dst, int64_t ld, F* Y, const MatTile<F>& m, const F* X, int64_t ldx, const F* x0,
                         int64_t ld0, int D, int Dp) {
  if (D == Dp) {
    wsum<F, kDiff, false>(m, X, ldx, x0, ld0, nullptr, 0, Dp, RowSink<F, kAdd>{dst, ld});
  } else {
    wsum<F, kDiff, false>(m, X, ldx, x0, ld0, nullptr, 0, Dp, RowSink<F, false>{Y, Dp, m.i0});
    for (int r = m.i0; r < m.i1; ++r) copy_row<F, kAdd>(dst + r * ld, Y + static_cast<int64_t>(r - m.i0) * Dp, D);
  }
}

// Column sums of the tile m (tiles in ascending order, one call each): rows r < i1 of the
// accumulator A [T][Dp] hold the sums over c < i1 afterwards. The last tile (i1 == T) completes
// every row and writes rows [0, T) of dst instead (stride ld; D columns; kAdd: +=): straight
// when D is a whole number of packs, else through A. With one tile (T <= kRowTile) and D whole
// packs, A is not touched.
template <typename F, bool kDiff, bool kAdd>
inline void wsum_cols_to(F* dst, int64_t ld, F* A, const MatTile<F>& m, int T, const F* X, int64_t ldx,
                         const F* x0, int64_t ld0, int D, int Dp) {
  if (m.i1 == T && D == Dp) {
    wsum<F, kDiff, true>(m, X, ldx, x0, ld0, A, Dp, Dp, RowSink<F, kAdd>{dst, ld});
    return;
  }
  wsum<F, kDiff, true>(m, X, ldx, x0, ld0, A, Dp, Dp, RowSink<F, false>{A, Dp});
  if (m.i1 == T)
    for (int r = 0; r < T; ++r) copy_row<F, kAdd>(dst + r * ld, A + static_cast<int64_t>(r) * Dp, D);
}

// The same storing (GradMode::overwrite) or adding (GradMode::accumulate): a gradient's mode at
// run time.
template <typename F, bool kDiff>
inline void wsum_rows_to(GradMode mode, F* dst, int64_t ld, F* Y, const MatTile<F>& m, const F* X, int64_t ldx,
                         const F* x0, int64_t ld0, int D, int Dp) {
  if (mode == GradMode::accumulate)
    wsum_rows_to<F, kDiff, true>(dst, ld, Y, m, X, ldx, x0, ld0, D, Dp);
  else
    wsum_rows_to<F, kDiff, false>(dst, ld, Y, m, X, ldx, x0, ld0, D, Dp);
}
template <typename F, bool kDiff>
inline void wsum_cols_to(GradMode mode, F* dst, int64_t ld, F* A, const MatTile<F>& m, int T, const F* X,
                         int64_t ldx, const F* x0, int64_t ld0, int D, int Dp) {
  if (mode == GradMode::accumulate)
    wsum_cols_to<F, kDiff, true>(dst, ld, A, m, T, X, ldx, x0, ld0, D, Dp);
  else
    wsum_cols_to<F, kDiff, false>(dst, ld, A, m, T, X, ldx, x0, ld0, D, Dp);
}

// The last two stages of a softmax over the rows i0 .. i0 + rows - 1 of a group (rows <= W; row r
// at Si + r*ld, holding e_ij = exp(x_ij - shift)): the lanes j > i cleared, sum[r] = sum_{j<=i}
// e_ij, then every e_ij divided by it (p). In stages over the rows, as the callers' exp stage.
template <typename F>
inline void normalize_rows(F* Si, int64_t ld, int i0, int rows, int np, F* sum) {
  constexpr int L = W<F>;
  for (int r = 0; r < rows; ++r) {
    F* sr = Si + static_cast<int64_t>(r) * ld;
    Pack<F> acc = {};
    for (int p = 0; p < np; ++p) {
      const Pack<F> e = pack_keep_below<F>(pack_load(sr + p * L), i0 + r + 1 - p * L);  // j <= i
      acc += e;
      pack_store(sr + p * L, e);
    }
    sum[r] = pack_sum<F>(acc);
  }
  for (int r = 0; r < rows; ++r) {
    F* sr = Si + static_cast<int64_t>(r) * ld;
    const F inv = F(1) / sum[r];
    for (int p = 0; p < np; ++p) pack_store(sr + p * L, pack_load(sr + p * L) * inv);
  }
}

// Softmax of the rows i0 .. i0 + rows - 1 of a group (rows <= W; row r at Si + r*ld) over their
// visible columns j <= i: the raw scores become w = scale * score, then p = exp(w - max) / sum in
// place (0 for j > i), and lse[r] = max + log(sum) (the flash form: backward recomputes p from w
// and lse). In stages over the rows, so that the rows' max -> exp -> sum -> scale chains overlap.
template <typename F>
inline void softmax_rows_lse(F* Si, int64_t ld, int i0, int rows, int np, F scale, F* lse) {
  constexpr int L = W<F>;
  F mx[L], sum[L];
  for (int r = 0; r < rows; ++r) {
    F* sr = Si + static_cast<int64_t>(r) * ld;
    Pack<F> m = {};
    m += -std::numeric_limits<F>::infinity();
    for (int p = 0; p < np; ++p) {
      const Pack<F> x = pack_load(sr + p * L) * scale;
      pack_store(sr + p * L, x);
      m = pack_max<F>(m, pack_fill_from<F>(x, i0 + r + 1 - p * L, -std::numeric_limits<F>::infinity()));
    }
    mx[r] = pack_hmax<F>(m);  // over j <= i
  }
  for (int r = 0; r < rows; ++r) {
    F* sr = Si + static_cast<int64_t>(r) * ld;
    const F m = mx[r];
    for (int p = 0; p < np; ++p) {
      F* sp = sr + p * L;
#pragma omp simd
      for (int l = 0; l < L; ++l) sp[l] = exp_t<F>(sp[l] - m);
    }
  }
  normalize_rows<F>(Si, ld, i0, rows, np, sum);
  for (int r = 0; r < rows; ++r) lse[r] = mx[r] + std::log(sum[r]);
}

// Row i of softmax probabilities recomputed from the raw scores p[0..np*W) (q_i . k_j) and the
// row's saved log-sum-exp: p_ij = exp(scale * p[j] - lse) for j <= i, 0 for j > i (the lanes
// past i are cleared by a bit mask, so nothing of a later position reaches row i).
template <typename F>
inline void recompute_softmax_row(F* p, int i, int np, F scale, F lse) {
  constexpr int L = W<F>;
  for (int pk = 0; pk < np; ++pk) {
    F* pp = p + pk * L;
#pragma omp simd
    for (int l = 0; l < L; ++l) pp[l] = exp_t<F>(pp[l] * scale - lse);
    pack_store(pp, pack_keep_below<F>(pack_load(pp), i + 1 - pk * L));
  }
}

}  // namespace attn

}  // namespace qisa::cpu
