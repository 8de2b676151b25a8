// Classical causal self-attention (SPEC §1.1 csa), one work item per (batch, head):
//   w_ij = (q_i . k_j) * scale, p_i = softmax_{j<=i}(w_i), p = dropout(p), out_i = sum_j p_ij v_j.
// att keeps p BEFORE dropout (0 above the diagonal); dropout element index inside att is
// ((b*H + h)*T + i)*T + j + d.elem_offset, and backward recomputes the mask from it.
//
// Loop shapes: a (b, h) block is T x T. Score matrices are
// built with the feature index d outermost and every row updated in turn, and products like
// out_i = sum_j p_ij v_j run j outermost, so consecutive updates of one accumulator are a
// whole row apart (no store-to-load latency chain) and the innermost loops are contiguous
// SIMD loops. Every entry is still summed in a fixed order (d ascending, j ascending).
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/cpu/dropout.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/parallel.h"
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

// Scratch matrices have rows of Tp = T rounded up to kBlk entries (zero padded), and the hot
// loops run over whole blocks of kBlk: a compile-time trip count compiles to straight SIMD
// code without per-loop setup, which dominates at T = 16.
inline constexpr int kBlk = 16;
inline int padded(int T) { return (T + kBlk - 1) / kBlk * kBlk; }

// Causal row i is computed over j < span(i) = i+1 rounded up to kBlk (<= Tp); entries
// j > i of a span are computed and then masked (or multiplied by p = 0).
inline int span(int i) { return (i / kBlk + 1) * kBlk; }

// M[i*Tp + j] = 1 for j <= i, else 0: causal rows are masked by multiplying with a row of
// this table. (A select on j <= i would let GCC split the loop at j = i+1 (-fsplit-loops),
// bringing the ragged lengths back.)
template <typename F>
inline const F* lower_ones(Workspace& ws, int slot, int T, int Tp) {
  F* M = ws.get<F>(slot, static_cast<size_t>(T) * Tp);
  for (int i = 0; i < T; ++i)
    for (int j = 0; j < Tp; ++j) M[static_cast<int64_t>(i) * Tp + j] = j <= i ? F(1) : F(0);
  return M;
}

// dst[d*Tp + j] = src[j*ld + d] for a T x D block; columns T..Tp-1 are zero.
template <typename F>
inline void transpose(F* dst, const F* src, int64_t ld, int T, int D, int Tp) {
  for (int dd = 0; dd < D; ++dd) {
    F* row = dst + static_cast<int64_t>(dd) * Tp;
    for (int j = 0; j < T; ++j) row[j] = src[j * ld + dd];
    for (int j = T; j < Tp; ++j) row[j] = 0;
  }
}

// dst[i*Tp + j] = src[i*T + j] (an att block), zero for j >= T.
template <typename F>
inline void pad_rows(F* dst, const F* src, int T, int Tp) {
  for (int i = 0; i < T; ++i) {
    for (int j = 0; j < T; ++j) dst[static_cast<int64_t>(i) * Tp + j] = src[static_cast<int64_t>(i) * T + j];
    for (int j = T; j < Tp; ++j) dst[static_cast<int64_t>(i) * Tp + j] = 0;
  }
}

// S[i*Tp + j] = sum_d a_i[d] * bT[d*Tp + j] for j < span(i); a_i = a + i*lda.
template <typename F>
inline void dots(F* S, const F* a, int64_t lda, const F* bT, int T, int D, int Tp) {
  for (int i = 0; i < T; ++i)
    for (int j = 0; j < span(i); ++j) S[static_cast<int64_t>(i) * Tp + j] = 0;
  for (int dd = 0; dd < D; ++dd) {
    const F* br = bT + static_cast<int64_t>(dd) * Tp;
    for (int i = 0; i < T; ++i) {
      const F x = a[i * lda + dd];
      F* s = S + static_cast<int64_t>(i) * Tp;
      for (int j0 = 0; j0 < span(i); j0 += kBlk) {
#pragma omp simd
        for (int l = 0; l < kBlk; ++l) s[j0 + l] += x * br[j0 + l];
      }
    }
  }
}

// S[i*Tp + j] = sum_d (a_i[d] - bT[d*Tp + j])^2 for j < span(i).
template <typename F>
inline void sqdists(F* S, const F* a, int64_t lda, const F* bT, int T, int D, int Tp) {
  for (int i = 0; i < T; ++i)
    for (int j = 0; j < span(i); ++j) S[static_cast<int64_t>(i) * Tp + j] = 0;
  for (int dd = 0; dd < D; ++dd) {
    const F* br = bT + static_cast<int64_t>(dd) * Tp;
    for (int i = 0; i < T; ++i) {
      const F x = a[i * lda + dd];
      F* s = S + static_cast<int64_t>(i) * Tp;
      for (int j0 = 0; j0 < span(i); j0 += kBlk) {
#pragma omp simd
        for (int l = 0; l < kBlk; ++l) s[j0 + l] += (x - br[j0 + l]) * (x - br[j0 + l]);
      }
    }
  }
}

// y[0..D) += p * x[0..D): whole blocks, then the rest
template <typename F>
QISA_INLINE void axpy(F* y, F p, const F* x, int D) {
  int d0 = 0;
  for (; d0 + kBlk <= D; d0 += kBlk) {
#pragma omp simd
    for (int l = 0; l < kBlk; ++l) y[d0 + l] += p * x[d0 + l];
  }
  for (; d0 < D; ++d0) y[d0] += p * x[d0];
}

// Y[r*D + :] = sum over c of P(r, c) * x_c, P(r, c) = M[r*Tp + c] (transposed: M[c*Tp + r]),
// over c <= r (lower: causal out_i = sum_{j<=i} p_ij v_j) or c >= r (transposed: reference
// out_j = sum_{i>=j} p_ij v_i). c runs outermost; each Y row sums in c order.
template <typename F>
inline void lower_times(F* Y, const F* M, int Tp, const F* x, int64_t ldx, int T, int D, bool transposed) {
  for (int64_t e = 0; e < static_cast<int64_t>(T) * D; ++e) Y[e] = 0;
  for (int c = 0; c < T; ++c) {
    const F* xc = x + c * ldx;
    if (transposed) {
      for (int r = 0; r <= c; ++r) axpy(Y + static_cast<int64_t>(r) * D, M[static_cast<int64_t>(c) * Tp + r], xc, D);
    } else {
      for (int r = c; r < T; ++r) axpy(Y + static_cast<int64_t>(r) * D, M[static_cast<int64_t>(r) * Tp + c], xc, D);
    }
  }
}

// dst rows (stride ld) += Y [T][D]
template <typename F>
inline void add_rows(F* dst, int64_t ld, const F* Y, int T, int D) {
  for (int r = 0; r < T; ++r) axpy(dst + r * ld, F(1), Y + static_cast<int64_t>(r) * D, D);
}

template <typename F>
inline void copy_rows(F* dst, int64_t ld, const F* Y, int T, int D) {
  for (int r = 0; r < T; ++r)
    for (int dd = 0; dd < D; ++dd) dst[r * ld + dd] = Y[static_cast<int64_t>(r) * D + dd];
}

}  // namespace attn

// out [N, ld_out]; att [B,H,T,T]; q, k, v [N, ld_in]; head h at columns h*D.
template <typename F>
void csa_forward(F* out, int ld_out, F* att, const F* q, const F* k, const F* v, int ld_in, int64_t B, int T,
                 int H, int D, F scale, const Dropout& d, Workspace& ws) {
  check_heads("csa_forward", B, T, H, D, ld_in, "ld_in", ld_out, "ld_out");
  check_dropout(d);
  const int Tp = attn::padded(T);
  const int64_t TT = static_cast<int64_t>(T) * Tp, TD = static_cast<int64_t>(T) * D;
  const int64_t per = static_cast<int64_t>(D) * Tp + TT + static_cast<int64_t>(T) * T + TD;
  F* scratch = ws.get<F>(0, static_cast<size_t>(max_threads() * per));
  const F* ones = attn::lower_ones<F>(ws, 1, T, Tp);
  parallel_for(B * H, [&](int64_t bh) {
    const int64_t b = bh / H;
    const int h = static_cast<int>(bh % H);
    const F sc = scale;  // a local: stores through F* could alias a captured F
    F* kT = scratch + thread_index() * per;
    F* S = kT + static_cast<int64_t>(D) * Tp;  // scores, then probabilities after dropout
    F* mult = S + TT;  // [T][T] dropout multipliers of this block (contiguous global indices)
    F* Y = mult + static_cast<int64_t>(T) * T;
    const int64_t r0 = b * T;  // first row of this sequence
    const int64_t col = static_cast<int64_t>(h) * D;
    attn::transpose(kT, k + r0 * ld_in + col, ld_in, T, D, Tp);
    attn::dots(S, q + r0 * ld_in + col, ld_in, kT, T, D, Tp);
    F* attb = att + bh * T * T;
    if (d.active()) dropout_multipliers(mult, static_cast<int64_t>(T) * T, d, d.elem_offset + static_cast<uint64_t>(bh * T * T));
    for (int i = 0; i < T; ++i) {
      F* s = S + static_cast<int64_t>(i) * Tp;
      const F* on = ones + static_cast<int64_t>(i) * Tp;
      const int jn = attn::span(i);
      F mx = s[0] * sc;
      for (int j = 1; j <= i; ++j) mx = std::max(mx, s[j] * sc);
      F sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int j = 0; j < jn; ++j) {
        s[j] = exp_t<F>(s[j] * sc - mx) * on[j];
        sum += s[j];
      }
#pragma omp simd
      for (int j = 0; j < jn; ++j) s[j] = s[j] / sum;
      F* a = attb + static_cast<int64_t>(i) * T;
      for (int j = 0; j < std::min(jn, T); ++j) a[j] = s[j];
      for (int j = jn; j < T; ++j) a[j] = 0;
      if (d.active()) {
        const F* m = mult + static_cast<int64_t>(i) * T;
        for (int j = 0; j <= i; ++j) s[j] *= m[j];
      }
    }
    attn::lower_times(Y, S, Tp, v + r0 * ld_in + col, ld_in, T, D, false);
    attn::copy_rows(out + r0 * ld_out + col, ld_out, Y, T, D);
  });
}

// dq, dk, dv [N, ld_in] += (any may be null); dout [N, ld_out]; att as saved by forward.
template <typename F>
void csa_backward(F* dq, F* dk, F* dv, const F* dout, int ld_out, const F* att, const F* q, const F* k, const F* v,
                  int ld_in, int64_t B, int T, int H, int D, F scale, const Dropout& d, Workspace& ws) {
  check_heads("csa_backward", B, T, H, D, ld_in, "ld_in", ld_out, "ld_out");
  check_dropout(d);
  const int Tp = attn::padded(T);
  const int64_t TT = static_cast<int64_t>(T) * Tp, TD = static_cast<int64_t>(T) * D;
  const int64_t per = static_cast<int64_t>(D) * Tp + 3 * TT + TD;
  F* scratch = ws.get<F>(0, static_cast<size_t>(max_threads() * per));
  F* block_mult = ws.get<F>(1, static_cast<size_t>(max_threads()) * T * T);
  const F* ones = attn::lower_ones<F>(ws, 2, T, Tp);
  parallel_for(B * H, [&](int64_t bh) {
    const int64_t b = bh / H;
    const int h = static_cast<int>(bh % H);
    const F sc = scale;  // a local: stores through F* could alias a captured F
    F* vT = scratch + thread_index() * per;
    F* bm = block_mult + static_cast<int64_t>(thread_index()) * T * T;
    F* G = vT + static_cast<int64_t>(D) * Tp;  // dL/d(dropped p), then dL/d(score)
    F* PD = G + TT;                            // p, then dropped p
    F* mult = PD + TT;
    F* Y = mult + TT;
    const int64_t r0 = b * T;
    const int64_t col = static_cast<int64_t>(h) * D;
    const F* attb = att + bh * T * T;
    const F* go = dout + r0 * ld_out + col;
    attn::transpose(vT, v + r0 * ld_in + col, ld_in, T, D, Tp);
    attn::dots(G, go, ld_out, vT, T, D, Tp);  // dout_i . v_j
    attn::pad_rows(PD, attb, T, Tp);
    // the forward's dropout multipliers for the whole block, in rows of Tp (entries past the
    // diagonal are bits of masked elements: they meet p = 0 and add nothing)
    if (d.active()) {
      dropout_multipliers(bm, static_cast<int64_t>(T) * T, d, d.elem_offset + static_cast<uint64_t>(bh * T * T));
      attn::pad_rows(mult, bm, T, Tp);
    }
    for (int i = 0; i < T; ++i) {
      const F* m = (d.active() ? mult : ones) + static_cast<int64_t>(i) * Tp;
      F* pd = PD + static_cast<int64_t>(i) * Tp;  // p, then dropped p
      F* g = G + static_cast<int64_t>(i) * Tp;
      const int jn = attn::span(i);
      F s = 0;
#pragma omp simd reduction(+ : s)
      for (int j = 0; j < jn; ++j) {
        g[j] *= m[j];
        s += pd[j] * g[j];
      }
#pragma omp simd
      for (int j = 0; j < jn; ++j) {
        g[j] = pd[j] * (g[j] - s) * sc;
        pd[j] *= m[j];
      }
    }
    if (dv) {  // dv_j += sum_{i>=j} pd_ij dout_i
      attn::lower_times(Y, PD, Tp, go, ld_out, T, D, true);
      attn::add_rows(dv + r0 * ld_in + col, ld_in, Y, T, D);
    }
    if (dq) {  // dq_i += sum_{j<=i} g_ij k_j
      attn::lower_times(Y, G, Tp, k + r0 * ld_in + col, ld_in, T, D, false);
      attn::add_rows(dq + r0 * ld_in + col, ld_in, Y, T, D);
    }
    if (dk) {  // dk_j += sum_{i>=j} g_ij q_i
      attn::lower_times(Y, G, Tp, q + r0 * ld_in + col, ld_in, T, D, true);
      attn::add_rows(dk + r0 * ld_in + col, ld_in, Y, T, D);
    }
  });
}

}  // namespace qisa::cpu
