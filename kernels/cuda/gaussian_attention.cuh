// Gaussian-kernel attention (SPEC §1.1 qisa; the CPU contract is Backend::gaussian_attention_* of
// kernels/backend.h, reference code kernels/cpu/gaussian_attention.h), per (batch b, head h), with
// the score a template parameter Sc (model.qisa_score; GaPaperScore, GaGaussScore below):
//   x_ij = Sc::x(|q_i - k_j|^2)   paper: alpha_ij = exp(-d2);   gaussian: -scale d2
//   e_ij = exp(x_ij - c_i) (j <= i, else 0),  z_i = sum_{j<=i} e_ij,  p_ij = e_ij / z_i
//   paper: c_i = 1/2 and z_i is saved;  gaussian: c_i = max_{j<=i} x_ij (a score pass over the key
//   tiles first) and c_i + log z_i is saved; a later kernel has p_ij = exp(x_ij - c_i) r_i with
//   (c_i, r_i) = (1/2, 1/z_i), resp. (saved, 1)
//   causal:    out_i = sum_{j<=i} p_ij v_j
//   reference: out_j = sum_{i>=j} p_ij v_i   (the published code's transposed matrix)
// The paper's alpha lies in (0, 1], so no row maximum: the fixed shift 1/2 keeps every e_ij in
// [exp(-1/2), exp(1/2)] and cancels in p. z [B,H,T] (fp32) is all the forward saves.
// St: storage of q, k, v, out and their gradients (float or bf16); arithmetic is fp32.
//
// Tiling (flash style; nothing of size T x T ever reaches global memory). Every kernel is one
// block of kGaThreads per (b, h, tile of kGaTile rows or columns); grid.x = B*H*tiles. Operand
// tiles [kGaTile][D] sit in shared memory (row stride kGaLd, odd: conflict-free), score tiles
// [kGaTile][kGaTile] too. Scores: thread t owns a = t/32 + 4m (m < 8), b = t%32 of the tile
// (a: the q side i, b: the k side j). Products: thread t owns output rows 4(t/16) .. +3 and
// columns d = t%16 + 16m (m < 4), accumulated in registers.
//
//   forward rows (causal: out and z; reference: z only), block = row tile I:
//     load q_I
//     for key tiles J = 0 .. I:  load k_J (v_J)    e_IJ;  z_I += row sums;  acc_I += e_IJ v_J
//     z_I stored; causal out_I = acc_I / z_I
//   forward cols (reference), block = column tile J, after the z kernel:
//     load k_J;  for row tiles I = J .. last: load q_I, v_I, 1/z_I   acc_J += p_IJ^T v_I
//     out_J = acc_J
//   backward: X = the operand indexed by j in dL/dp_ij = Z_i . X_j
//     (causal: Z = dout, X = v; reference: Z = v, X = dout)
//   backward rows, block = row tile I:
//     load q_I, Z_I, 1/z_I
//     pass 1: for J = 0 .. I: load k_J, X_J   y_I += p_IJ X_J
//             s_I = y_I . Z_I (= sum_j p_ij dL/dp_ij)  -> workspace;  reference: dv_I = y_I
//     pass 2 (dq): for J = 0 .. I: load k_J, X_J
//             w_ij = 2 x'_ij p_ij (Z_i . X_j - s_i);  dq_I += sum_j w_ij (q_i - k_j)
//   backward cols, block = column tile J, after the rows kernel:
//     load k_J, X_J;  for I = J .. last: load q_I, Z_I, 1/z_I, s_I
//             dk_J += sum_i w_ij (k_j - q_i);  causal: dv_J += sum_i p_ij dout_i
// w_ij is 2 dL/d(d2_ij): softmax backward gives dL/dx = p (dL/dp - s), x' = dx/d(d2) (paper:
// -alpha; gaussian: -scale) gives dL/d(d2) = x' dL/dx, and d(d2)/dq_i = 2 (q_i - k_j) = -d(d2)/dk_j.
// Each output element is written by one thread; every sum runs in one fixed order (d
// ascending; j, resp. i, ascending across the tiles), so results are bitwise reproducible.
// No atomics. Shapes: q, k rows of [N, ld_qk], v [N, ld_v], out/dout [N, ld_out], head h at
// columns h*D (N = B*T); z and the backward workspace s are [B,H,T].
#pragma once
#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/cuda/device.h"
#include "kernels/error.h"

// Full unrolling of the register-tile loops (nvcc; g++ for the emulator would warn on the pragma).
#if defined(__CUDACC__)
#define QISA_GA_UNROLL _Pragma("unroll")
#else
#define QISA_GA_UNROLL
#endif

namespace qisa::cuda::inline QISA_KERNEL_ABI {

inline constexpr int kGaThreads = 128;                      // per block (4 warps)
inline constexpr int kGaTile = 32;                          // rows (q side) = columns (k side) per tile
inline constexpr int kGaMaxD = 64;                          // head size limit (shared tiles fit 48 KiB)
inline constexpr int kGaLd = kGaMaxD + 1;                   // shared row stride of operand tiles
inline constexpr int kGaSLd = kGaTile + 1;                  // shared row stride of score tiles
inline constexpr int kGaScoreRowStep = kGaThreads / kWarp;  // 4: a score's rows a = t/32 + 4m
inline constexpr int kGaScores = kGaTile / kGaScoreRowStep; // 8 scores per thread
inline constexpr int kGaRows = 4;                           // product rows per thread
inline constexpr int kGaColGroups = kGaThreads / (kGaTile / kGaRows);  // 16 threads share a row group
inline constexpr int kGaCols = kGaMaxD / kGaColGroups;      // 4 product columns per thread
inline constexpr float kGaShift = 0.5f;                     // e = exp(alpha - kGaShift)
// Blocks per SM the kernels are built for (__launch_bounds__): at most 65536 / (128 * 4) = 128
// registers a thread. Without it ptxas capped the bf16 causal forward at 72 and spilled.
inline constexpr int kGaMinBlocks = 4;
static_assert(kGaTile == kWarp && kGaTile % kGaScoreRowStep == 0 && kGaMaxD % kGaColGroups == 0);

// The scores (model.qisa_score; kernels/backend.h AttnScore). x: the softmax's input from d2;
// dx: dx/d(d2) given x; kRowMax: the forward shifts each row by its maximum (else by kGaShift);
// saved / shift / mult: the row statistic z_i the forward saves, and p_ij = exp(x_ij - shift) mult
// from it in the kernels after.
struct GaPaperScore {
  static constexpr bool kRowMax = false;
  __device__ __forceinline__ float x(float d2) const { return expf(-d2); }
  __device__ __forceinline__ float dx(float x) const { return -x; }
  __device__ __forceinline__ float saved(float /*c*/, float zsum) const { return zsum; }
  __device__ __forceinline__ float shift(float /*z*/) const { return kGaShift; }
  __device__ __forceinline__ float mult(float z) const { return 1.0f / z; }
};
struct GaGaussScore {
  static constexpr bool kRowMax = true;
  float scale;  // > 0
  __device__ __forceinline__ float x(float d2) const { return -scale * d2; }
  __device__ __forceinline__ float dx(float /*x*/) const { return -scale; }
  __device__ __forceinline__ float saved(float c, float zsum) const { return c + logf(zsum); }
  __device__ __forceinline__ float shift(float z) const { return z; }
  __device__ __forceinline__ float mult(float /*z*/) const { return 1.0f; }
};

using GaAcc = float[kGaRows][kGaCols];

// The block's (b, h) head and tile: grid.x = B*H*tiles, tile index within its head.
struct GaBlock {
  int64_t row0;  // first row of the sequence b in [N, ...]
  int64_t col;   // h*D
  int64_t bh;    // b*H + h: the row of z and s
  int tile;
};
__device__ __forceinline__ GaBlock ga_block(int tiles, int H, int D, int T, bool heavy_last) {
  const int64_t bh = static_cast<int64_t>(blockIdx.x) / tiles;
  const int t = static_cast<int>(static_cast<int64_t>(blockIdx.x) % tiles);
  // Row-tiled kernels run their heaviest (last) tiles first; column-tiled ones are heaviest at 0.
  return {(bh / H) * T, (bh % H) * static_cast<int64_t>(D), bh, heavy_last ? tiles - 1 - t : t};
}

// dst[r][d] (stride kGaLd) = src row r0 + r, column d (head block src, row stride ld); 0 past T.
template <typename St>
__device__ __forceinline__ void ga_load_tile(float* dst, const St* src, int64_t ld, int r0, int T, int D) {
  for (int e = static_cast<int>(threadIdx.x); e < kGaTile * D; e += kGaThreads) {
    const int r = e / D, d = e - r * D;
    dst[r * kGaLd + d] = r0 + r < T ? load_f(src, static_cast<int64_t>(r0 + r) * ld + d) : 0.0f;
  }
}

// d2[m] = |A_a - B_b|^2 and (with kDot) dp[m] = Za_a . Xb_b for the thread's scores, d ascending.
template <bool kDot>
__device__ __forceinline__ void ga_scores(float (&d2)[kGaScores], float (&dp)[kGaScores], const float* A,
                                          const float* Bt, const float* Za, const float* Xb, int D) {
  const int b = static_cast<int>(threadIdx.x) % kWarp, a0 = static_cast<int>(threadIdx.x) / kWarp;
QISA_GA_UNROLL
  for (int m = 0; m < kGaScores; ++m) d2[m] = dp[m] = 0.0f;
  for (int d = 0; d < D; ++d) {
    const float y = Bt[b * kGaLd + d];
    const float x = kDot ? Xb[b * kGaLd + d] : 0.0f;
QISA_GA_UNROLL
    for (int m = 0; m < kGaScores; ++m) {
      const int a = a0 + m * kGaScoreRowStep;
      const float t = A[a * kGaLd + d] - y;
      d2[m] += t * t;
      if constexpr (kDot) dp[m] += Za[a * kGaLd + d] * x;
    }
  }
}

// Products into the thread's accumulator rows r (4(t/16) + rr) and columns d (t%16 + 16m):
//   row form    (kCol false): acc[r][d] += sum_c P[r][c] * f(X[c][d])
//   column form (kCol true):  acc[r][d] += sum_c P[c][r] * f(X[c][d])
// over c ascending in [0, kGaTile); f(x) = x, or x0[r][d] - x (kDiff, x0 the thread's own rows).
template <bool kCol, bool kDiff>
__device__ __forceinline__ void ga_wsum(GaAcc& acc, const float* P, const float* X, const GaAcc& x0) {
  const int r0 = static_cast<int>(threadIdx.x) / kGaColGroups * kGaRows, dg = static_cast<int>(threadIdx.x) % kGaColGroups;
  for (int c = 0; c < kGaTile; ++c) {
    float x[kGaCols];
QISA_GA_UNROLL
    for (int m = 0; m < kGaCols; ++m) x[m] = X[c * kGaLd + dg + m * kGaColGroups];
QISA_GA_UNROLL
    for (int rr = 0; rr < kGaRows; ++rr) {
      const float w = kCol ? P[c * kGaSLd + r0 + rr] : P[(r0 + rr) * kGaSLd + c];
QISA_GA_UNROLL
      for (int m = 0; m < kGaCols; ++m) acc[rr][m] += w * (kDiff ? x0[rr][m] - x[m] : x[m]);
    }
  }
}

__device__ __forceinline__ void ga_zero(GaAcc& acc) {
QISA_GA_UNROLL
  for (int rr = 0; rr < kGaRows; ++rr)
QISA_GA_UNROLL
    for (int m = 0; m < kGaCols; ++m) acc[rr][m] = 0.0f;
}

// The thread's rows of a shared tile (stride kGaLd) into registers.
__device__ __forceinline__ void ga_own_rows(GaAcc& x0, const float* X) {
  const int r0 = static_cast<int>(threadIdx.x) / kGaColGroups * kGaRows, dg = static_cast<int>(threadIdx.x) % kGaColGroups;
QISA_GA_UNROLL
  for (int rr = 0; rr < kGaRows; ++rr)
QISA_GA_UNROLL
    for (int m = 0; m < kGaCols; ++m) x0[rr][m] = X[(r0 + rr) * kGaLd + dg + m * kGaColGroups];
}

// Rows r0 + r (< T) of the head block dst (row stride ld): acc * scale[r] (scale null: 1), stored
// or added (add) to the old value.
template <typename St>
__device__ __forceinline__ void ga_store(St* dst, int64_t ld, int r0, int T, int D, const GaAcc& acc,
                                         const float* scale, bool add) {
  const int rb = static_cast<int>(threadIdx.x) / kGaColGroups * kGaRows, dg = static_cast<int>(threadIdx.x) % kGaColGroups;
QISA_GA_UNROLL
  for (int rr = 0; rr < kGaRows; ++rr) {
    const int r = r0 + rb + rr;
    const float s = scale ? scale[rb + rr] : 1.0f;
QISA_GA_UNROLL
    for (int m = 0; m < kGaCols; ++m) {
      const int d = dg + m * kGaColGroups;
      if (r < T && d < D) {
        const int64_t o = static_cast<int64_t>(r) * ld + d;
        const float v = acc[rr][m] * s;
        store_f(dst, o, add ? load_f(dst, o) + v : v);
      }
    }
  }
}

// e_ab = exp(x(d2) - c[a]) for j <= i < T (i = i0 + a, j = j0 + b), else 0, into S; times
// mult[a] when mult is given (p = e / z_i).
template <class Sc>
__device__ __forceinline__ void ga_store_e(float* S, const float (&d2)[kGaScores], int i0, int j0, int T, const Sc& sc,
                                           const float* c, const float* mult) {
  const int b = static_cast<int>(threadIdx.x) % kWarp, a0 = static_cast<int>(threadIdx.x) / kWarp;
QISA_GA_UNROLL
  for (int m = 0; m < kGaScores; ++m) {
    const int a = a0 + m * kGaScoreRowStep, i = i0 + a, j = j0 + b;
    float e = 0.0f;
    if (j <= i && i < T) {
      e = expf(sc.x(d2[m]) - c[a]);
      if (mult) e *= mult[a];
    }
    S[a * kGaSLd + b] = e;
  }
}

// The row statistics of a later kernel (the tile's rows i0 + t, t < kGaTile; 0 past T) from the
// saved z: C[t] = shift, R[t] = mult. Threads t < kGaTile.
template <class Sc>
__device__ __forceinline__ void ga_load_rows(float* C, float* R, const Sc& sc, const float* z, int64_t bh, int i0,
                                             int T) {
  const int t = static_cast<int>(threadIdx.x);
  if (t >= kGaTile) return;
  const bool in = i0 + t < T;
  const float zi = in ? z[bh * T + i0 + t] : 0.0f;
  C[t] = in ? sc.shift(zi) : 0.0f;
  R[t] = in ? sc.mult(zi) : 0.0f;
}

// ---- forward

// Row tiles: z for every row; with kOut (causal) also out. Shared: q, k, v tiles, e tile, the
// rows' shift c and 1/z.
template <typename St, bool kOut, class Sc>
__global__ void __launch_bounds__(kGaThreads, kGaMinBlocks)
    ga_forward_rows_kernel(St* out, int ld_out, float* z, const St* q, const St* k, int ld_qk, const St* v, int ld_v,
                           int T, int H, int D, int tiles, Sc sc) {
  QISA_SHARED(float, Qs, kGaTile * kGaLd);
  QISA_SHARED(float, Ks, kGaTile * kGaLd);
  QISA_SHARED(float, Vs, kOut ? kGaTile * kGaLd : 1);
  QISA_SHARED(float, Es, kGaTile * kGaSLd);
  QISA_SHARED(float, Cs, kGaTile);
  QISA_SHARED(float, Zinv, kGaTile);
  const GaBlock g = ga_block(tiles, H, D, T, true);
  const int i0 = g.tile * kGaTile, tid = static_cast<int>(threadIdx.x);
  const St* kb = k + g.row0 * ld_qk + g.col;
  const St* vb = v + g.row0 * ld_v + g.col;
  ga_load_tile(Qs, q + g.row0 * ld_qk + g.col, ld_qk, i0, T, D);
  float d2[kGaScores], dp[kGaScores];
  if constexpr (Sc::kRowMax) {  // c_i = max_{j<=i} x_ij: a score pass over the key tiles
    const int b = tid % kWarp, a0 = tid / kWarp;
    float mx[kGaScores];
QISA_GA_UNROLL
    for (int m = 0; m < kGaScores; ++m) mx[m] = -INFINITY;
    for (int j0 = 0; j0 <= i0; j0 += kGaTile) {
      QISA_SYNCTHREADS();  // the last tile's k is read (and q is loaded)
      ga_load_tile(Ks, kb, ld_qk, j0, T, D);
      QISA_SYNCTHREADS();  // k loaded
      ga_scores<false>(d2, dp, Qs, Ks, nullptr, nullptr, D);
QISA_GA_UNROLL
      for (int m = 0; m < kGaScores; ++m) {  // row a of the warp's: lanes b are the tile's columns
        const int i = i0 + a0 + m * kGaScoreRowStep, j = j0 + b;
        mx[m] = fmaxf(mx[m], warp_max(j <= i && i < T ? sc.x(d2[m]) : -INFINITY));
      }
    }
    if (b == 0)
QISA_GA_UNROLL
      for (int m = 0; m < kGaScores; ++m) Cs[a0 + m * kGaScoreRowStep] = mx[m];
  } else if (tid < kGaTile) {
    Cs[tid] = kGaShift;
  }
  float zsum = 0.0f;  // thread tid < kGaTile: row i0 + tid
  GaAcc acc;
  ga_zero(acc);
  for (int j0 = 0; j0 <= i0; j0 += kGaTile) {
    QISA_SYNCTHREADS();  // the last tile's k, v, e are read (and q, c are written)
    ga_load_tile(Ks, kb, ld_qk, j0, T, D);
    if (kOut) ga_load_tile(Vs, vb, ld_v, j0, T, D);
    QISA_SYNCTHREADS();  // k (v) loaded
    ga_scores<false>(d2, dp, Qs, Ks, nullptr, nullptr, D);
    ga_store_e(Es, d2, i0, j0, T, sc, Cs, nullptr);
    QISA_SYNCTHREADS();  // e complete
    if (tid < kGaTile)
      for (int b = 0; b < kGaTile; ++b) zsum += Es[tid * kGaSLd + b];
    if (kOut) ga_wsum<false, false>(acc, Es, Vs, acc);  // (x0 unused)
  }
  if (tid < kGaTile && i0 + tid < T) z[g.bh * T + i0 + tid] = sc.saved(Cs[tid], zsum);
  if (!kOut) return;
  if (tid < kGaTile) Zinv[tid] = 1.0f / zsum;
  QISA_SYNCTHREADS();  // 1/z complete
  ga_store(out + g.row0 * ld_out + g.col, ld_out, i0, T, D, acc, Zinv, false);
}

// Column tiles of the reference mask: out_j = sum_{i>=j} p_ij v_i. Shared: k, q, v tiles, p, the
// rows' shift and mult.
template <typename St, class Sc>
__global__ void __launch_bounds__(kGaThreads, kGaMinBlocks)
    ga_forward_cols_kernel(St* out, int ld_out, const float* z, const St* q, const St* k, int ld_qk, const St* v,
                           int ld_v, int T, int H, int D, int tiles, Sc sc) {
  QISA_SHARED(float, Ks, kGaTile * kGaLd);
  QISA_SHARED(float, Qs, kGaTile * kGaLd);
  QISA_SHARED(float, Vs, kGaTile * kGaLd);
  QISA_SHARED(float, Ps, kGaTile * kGaSLd);
  QISA_SHARED(float, Cs, kGaTile);
  QISA_SHARED(float, Zinv, kGaTile);
  const GaBlock g = ga_block(tiles, H, D, T, false);
  const int j0 = g.tile * kGaTile;
  const St* qb = q + g.row0 * ld_qk + g.col;
  const St* vb = v + g.row0 * ld_v + g.col;
  ga_load_tile(Ks, k + g.row0 * ld_qk + g.col, ld_qk, j0, T, D);
  GaAcc acc;
  ga_zero(acc);
  for (int i0 = j0; i0 < T; i0 += kGaTile) {
    QISA_SYNCTHREADS();  // the last tile's q, v, p are read (and k is loaded)
    ga_load_tile(Qs, qb, ld_qk, i0, T, D);
    ga_load_tile(Vs, vb, ld_v, i0, T, D);
    ga_load_rows(Cs, Zinv, sc, z, g.bh, i0, T);
    QISA_SYNCTHREADS();  // q, v, c, 1/z loaded
    float d2[kGaScores], dp[kGaScores];
    ga_scores<false>(d2, dp, Qs, Ks, nullptr, nullptr, D);
    ga_store_e(Ps, d2, i0, j0, T, sc, Cs, Zinv);
    QISA_SYNCTHREADS();  // p complete
    ga_wsum<true, false>(acc, Ps, Vs, acc);  // (x0 unused)
  }
  ga_store(out + g.row0 * ld_out + g.col, ld_out, j0, T, D, acc, nullptr, false);
}

// ---- backward

// w_ab = 2 x' p (dp - s_a) and p_ab for j <= i < T (else 0), from d2 and dp = Z_i . X_j, p =
// exp(x - c_a) mult_a: the CPU's expression order. W or P may be null (not wanted).
template <class Sc>
__device__ __forceinline__ void ga_store_wp(float* W, float* P, const float (&d2)[kGaScores],
                                            const float (&dp)[kGaScores], int i0, int j0, int T, const Sc& sc,
                                            const float* c, const float* mult, const float* s) {
  const int b = static_cast<int>(threadIdx.x) % kWarp, a0 = static_cast<int>(threadIdx.x) / kWarp;
QISA_GA_UNROLL
  for (int m = 0; m < kGaScores; ++m) {
    const int a = a0 + m * kGaScoreRowStep, i = i0 + a, j = j0 + b;
    float w = 0.0f, p = 0.0f;
    if (j <= i && i < T) {
      const float x = sc.x(d2[m]);
      p = expf(x - c[a]) * mult[a];
      if (W) w = 2.0f * (sc.dx(x) * (p * (dp[m] - s[a])));
    }
    if (W) W[a * kGaSLd + b] = w;
    if (P) P[a * kGaSLd + b] = p;
  }
}

// Row tiles: s (always), dq (dq non-null), the reference mask's dv (dv non-null).
// Zr: dout (causal) or v (reference), the operand of row i; Xc: v or dout, that of column j.
template <typename St, class Sc>
__global__ void __launch_bounds__(kGaThreads, kGaMinBlocks)
    ga_backward_rows_kernel(St* dq, int ld_qk, St* dv, int ld_v, bool add, float* s_out, const float* z,
                            const St* q, const St* k, const St* Zr, int ld_z, const St* Xc, int ld_x, int T, int H,
                            int D, int tiles, Sc sc) {
  QISA_SHARED(float, Qs, kGaTile * kGaLd);
  QISA_SHARED(float, Zs, kGaTile * kGaLd);
  QISA_SHARED(float, Ks, kGaTile * kGaLd);  // also y, for s
  QISA_SHARED(float, Xs, kGaTile * kGaLd);
  QISA_SHARED(float, Ps, kGaTile * kGaSLd);  // pass 1: p; pass 2: w
  QISA_SHARED(float, Cs, kGaTile);
  QISA_SHARED(float, Zinv, kGaTile);
  QISA_SHARED(float, Ss, kGaTile);
  const GaBlock g = ga_block(tiles, H, D, T, true);
  const int i0 = g.tile * kGaTile, tid = static_cast<int>(threadIdx.x);
  const St* kb = k + g.row0 * ld_qk + g.col;
  const St* xb = Xc + g.row0 * ld_x + g.col;
  ga_load_tile(Qs, q + g.row0 * ld_qk + g.col, ld_qk, i0, T, D);
  ga_load_tile(Zs, Zr + g.row0 * ld_z + g.col, ld_z, i0, T, D);
  ga_load_rows(Cs, Zinv, sc, z, g.bh, i0, T);
  GaAcc acc, own;
  ga_zero(acc);
  float d2[kGaScores], dp[kGaScores];
  for (int j0 = 0; j0 <= i0; j0 += kGaTile) {  // pass 1: y_i = sum_j p_ij X_j
    QISA_SYNCTHREADS();  // the last tile's k, X, p are read (and q, Z, 1/z are loaded)
    ga_load_tile(Ks, kb, ld_qk, j0, T, D);
    ga_load_tile(Xs, xb, ld_x, j0, T, D);
    QISA_SYNCTHREADS();  // k, X loaded
    ga_scores<false>(d2, dp, Qs, Ks, nullptr, nullptr, D);
    ga_store_e(Ps, d2, i0, j0, T, sc, Cs, Zinv);
    QISA_SYNCTHREADS();  // p complete
    ga_wsum<false, false>(acc, Ps, Xs, acc);  // (x0 unused)
  }
  {  // y into Ks: its last reads (the scores) came before the barrier "p complete"
    const int rb = tid / kGaColGroups * kGaRows, dg = tid % kGaColGroups;
QISA_GA_UNROLL
    for (int rr = 0; rr < kGaRows; ++rr)
QISA_GA_UNROLL
      for (int m = 0; m < kGaCols; ++m) Ks[(rb + rr) * kGaLd + dg + m * kGaColGroups] = acc[rr][m];
  }
  QISA_SYNCTHREADS();  // y complete
  if (tid < kGaTile) {
    float s = 0.0f;
    for (int d = 0; d < D; ++d) s += Ks[tid * kGaLd + d] * Zs[tid * kGaLd + d];
    Ss[tid] = s;
    if (i0 + tid < T) s_out[g.bh * T + i0 + tid] = s;
  }
  if (dv) ga_store(dv + g.row0 * ld_v + g.col, ld_v, i0, T, D, acc, nullptr, add);  // reference: dv_i = y_i
  if (!dq) return;  // the whole block: no barrier follows
  ga_own_rows(own, Qs);
  ga_zero(acc);
  for (int j0 = 0; j0 <= i0; j0 += kGaTile) {  // pass 2: dq_i = sum_j w_ij (q_i - k_j)
    QISA_SYNCTHREADS();  // the last tile's k, X, w (and y) are read; s is complete
    ga_load_tile(Ks, kb, ld_qk, j0, T, D);
    ga_load_tile(Xs, xb, ld_x, j0, T, D);
    QISA_SYNCTHREADS();  // k, X loaded
    ga_scores<true>(d2, dp, Qs, Ks, Zs, Xs, D);
    ga_store_wp(Ps, nullptr, d2, dp, i0, j0, T, sc, Cs, Zinv, Ss);
    QISA_SYNCTHREADS();  // w complete
    ga_wsum<false, true>(acc, Ps, Ks, own);
  }
  ga_store(dq + g.row0 * ld_qk + g.col, ld_qk, i0, T, D, acc, nullptr, add);
}

// Column tiles: dk (dk non-null), the causal mask's dv (dv non-null; then Zr is dout).
template <typename St, class Sc>
__global__ void __launch_bounds__(kGaThreads, kGaMinBlocks)
    ga_backward_cols_kernel(St* dk, int ld_qk, St* dv, int ld_v, bool add, const float* s_in, const float* z,
                            const St* q, const St* k, const St* Zr, int ld_z, const St* Xc, int ld_x, int T, int H,
                            int D, int tiles, Sc sc) {
  QISA_SHARED(float, Ks, kGaTile * kGaLd);
  QISA_SHARED(float, Xs, kGaTile * kGaLd);
  QISA_SHARED(float, Qs, kGaTile * kGaLd);
  QISA_SHARED(float, Zs, kGaTile * kGaLd);
  QISA_SHARED(float, Ws, kGaTile * kGaSLd);
  QISA_SHARED(float, Ps, kGaTile * kGaSLd);
  QISA_SHARED(float, Cs, kGaTile);
  QISA_SHARED(float, Zinv, kGaTile);
  QISA_SHARED(float, Ss, kGaTile);
  const GaBlock g = ga_block(tiles, H, D, T, false);
  const int j0 = g.tile * kGaTile, tid = static_cast<int>(threadIdx.x);
  const St* qb = q + g.row0 * ld_qk + g.col;
  const St* zb = Zr + g.row0 * ld_z + g.col;
  ga_load_tile(Ks, k + g.row0 * ld_qk + g.col, ld_qk, j0, T, D);
  ga_load_tile(Xs, Xc + g.row0 * ld_x + g.col, ld_x, j0, T, D);
  GaAcc acc_k, acc_v, own;
  ga_zero(acc_k);
  ga_zero(acc_v);
  QISA_SYNCTHREADS();  // k loaded
  ga_own_rows(own, Ks);
  for (int i0 = j0; i0 < T; i0 += kGaTile) {
    QISA_SYNCTHREADS();  // the last tile's q, Z, w, p, 1/z, s are read (and k, X are loaded)
    ga_load_tile(Qs, qb, ld_qk, i0, T, D);
    ga_load_tile(Zs, zb, ld_z, i0, T, D);
    ga_load_rows(Cs, Zinv, sc, z, g.bh, i0, T);
    if (tid < kGaTile) Ss[tid] = i0 + tid < T && dk ? s_in[g.bh * T + i0 + tid] : 0.0f;
    QISA_SYNCTHREADS();  // q, Z, c, 1/z, s loaded
    float d2[kGaScores], dp[kGaScores];
    if (dk)
      ga_scores<true>(d2, dp, Qs, Ks, Zs, Xs, D);
    else
      ga_scores<false>(d2, dp, Qs, Ks, nullptr, nullptr, D);
    ga_store_wp(dk ? Ws : nullptr, dv ? Ps : nullptr, d2, dp, i0, j0, T, sc, Cs, Zinv, Ss);
    QISA_SYNCTHREADS();  // w, p complete
    if (dk) ga_wsum<true, true>(acc_k, Ws, Qs, own);   // dk_j += w_ij (k_j - q_i)
    if (dv) ga_wsum<true, false>(acc_v, Ps, Zs, own);  // dv_j += p_ij dout_i (own unused)
  }
  if (dk) ga_store(dk + g.row0 * ld_qk + g.col, ld_qk, j0, T, D, acc_k, nullptr, add);
  if (dv) ga_store(dv + g.row0 * ld_v + g.col, ld_v, j0, T, D, acc_v, nullptr, add);
}

// ---- host side (enqueue on `stream`; device pointers)

inline int ga_check(const char* op, int64_t B, int T, int H, int D, int ld_qk, int ld_v, int ld_out) {
  QISA_CHECK(B >= 0 && T >= 1 && H >= 1 && D >= 1 && D <= kGaMaxD,
             std::string("cuda ") + op + " shape B=" + std::to_string(B) + " T=" + std::to_string(T) +
                 " H=" + std::to_string(H) + " D=" + std::to_string(D),
             "B >= 0, T >= 1, n_head >= 1, 1 <= head size <= " + std::to_string(kGaMaxD) +
                 " (the shared-memory tiles hold kGaMaxD columns)");
  const int64_t HD = static_cast<int64_t>(H) * D;
  QISA_CHECK(ld_qk >= HD && ld_v >= HD && ld_out >= HD,
             std::string("cuda ") + op + ": row strides ld_qk=" + std::to_string(ld_qk) + " ld_v=" +
                 std::to_string(ld_v) + " ld_out=" + std::to_string(ld_out) + " below H*D=" + std::to_string(HD),
             "a row stride covers every head's D columns");
  const int64_t tiles = ceil_div_i64(T, kGaTile);
  QISA_CHECK(B * H * tiles <= 0x7FFFFFFF,
             std::string("cuda ") + op + ": B*H*ceil(T/" + std::to_string(kGaTile) + ")=" +
                 std::to_string(B * H * tiles) + " blocks",
             "at most 2^31-1 blocks: split the batch");
  return static_cast<int>(tiles);
}

// fn(score policy) for the AttnScore: GaPaperScore or GaGaussScore{scale}.
template <class Fn>
void with_score(const char* op, AttnScore score, Fn&& fn) {
  if (score.kind == QisaScore::paper) return fn(GaPaperScore{});
  QISA_CHECK(score.scale > 0 && score.scale < INFINITY,
             std::string("cuda ") + op + ": gaussian score scale " + std::to_string(score.scale) + " is not > 0",
             "model.qisa_score_scale: 0 (1/sqrt(head size)) or a positive number");
  fn(GaGaussScore{score.scale});
}

// out [N, ld_out]; z [B,H,T]; q, k [N, ld_qk]; v [N, ld_v].
template <typename St>
void gaussian_attention_forward(St* out, int ld_out, float* z, const St* q, const St* k, int ld_qk, const St* v,
                                int ld_v, int64_t B, int T, int H, int D, AttnMask mask, AttnScore score,
                                cudaStream_t stream) {
  const int tiles = ga_check("gaussian_attention_forward", B, T, H, D, ld_qk, ld_v, ld_out);
  if (B == 0) return;
  const dim3 grid(static_cast<unsigned>(B * H * tiles));
  const bool causal = mask == AttnMask::causal;
  with_score("gaussian_attention_forward", score, [&](auto sc) {
    using Sc = decltype(sc);
    auto* rows = causal ? ga_forward_rows_kernel<St, true, Sc> : ga_forward_rows_kernel<St, false, Sc>;
    QISA_LAUNCH(rows, grid, dim3(kGaThreads), 0, stream, out, ld_out, z, q, k, ld_qk, v, ld_v, T, H, D, tiles, sc);
    if (causal) return;
    auto* cols = ga_forward_cols_kernel<St, Sc>;  // (a template argument list would split the macro's arguments)
    QISA_LAUNCH(cols, grid, dim3(kGaThreads), 0, stream, out, ld_out, z, q, k, ld_qk, v, ld_v, T, H, D, tiles, sc);
  });
}

// Floats of device workspace gaussian_attention_backward needs (s, one per row of z).
inline int64_t gaussian_attention_backward_workspace(int64_t B, int T, int H) { return B * H * T; }

// dq, dk [N, ld_qk] (=|+=, mode); dv [N, ld_v] (mode); any may be null. dout [N, ld_out];
// z [B,H,T] from the forward; work: gaussian_attention_backward_workspace(B, T, H) floats.
template <typename St>
void gaussian_attention_backward(St* dq, St* dk, int ld_qk, St* dv, int ld_v, const St* dout, int ld_out,
                                 const float* z, const St* q, const St* k, const St* v, int64_t B, int T, int H,
                                 int D, AttnMask mask, AttnScore score, GradMode mode, float* work,
                                 cudaStream_t stream) {
  const int tiles = ga_check("gaussian_attention_backward", B, T, H, D, ld_qk, ld_v, ld_out);
  if (B == 0) return;
  const bool causal = mask == AttnMask::causal, add = mode == GradMode::accumulate;
  // dL/dp_ij = Z_i . X_j
  const St* Zr = causal ? dout : v;
  const St* Xc = causal ? v : dout;
  const int ld_z = causal ? ld_out : ld_v, ld_x = causal ? ld_v : ld_out;
  const dim3 grid(static_cast<unsigned>(B * H * tiles));
  St* dv_rows = causal ? nullptr : dv;
  St* dv_cols = causal ? dv : nullptr;
  QISA_CHECK(work || !(dq || dk || dv_rows), "cuda gaussian_attention_backward: null workspace",
             "pass gaussian_attention_backward_workspace(B, T, H) floats of device memory");
  with_score("gaussian_attention_backward", score, [&](auto sc) {
    using Sc = decltype(sc);
    auto* rows = ga_backward_rows_kernel<St, Sc>;
    auto* cols = ga_backward_cols_kernel<St, Sc>;
    if (dq || dk || dv_rows)  // s is needed by dk
      QISA_LAUNCH(rows, grid, dim3(kGaThreads), 0, stream, dq, ld_qk, dv_rows, ld_v, add, work, z, q, k, Zr, ld_z, Xc,
                  ld_x, T, H, D, tiles, sc);
    if (dk || dv_cols)
      QISA_LAUNCH(cols, grid, dim3(kGaThreads), 0, stream, dk, ld_qk, dv_cols, ld_v, add, work, z, q, k, Zr, ld_z, Xc,
                  ld_x, T, H, D, tiles, sc);
  });
}

}  // namespace qisa::cuda
