// Classical causal self-attention (SPEC §1.1 csa; CPU contract: kernels/cpu/attention_csa.h and
// backend.h csa_forward / csa_backward), flash-attention style: tiles of q rows and k/v rows in
// shared memory, never B x H x T x T in global memory. Per (b, h) block of T rows:
//   w_ij = (q_i . k_j) * scale,  p_ij = softmax_{j<=i}(w_i),  pd_ij = p_ij * m_ij (dropout),
//   out_i = sum_j pd_ij v_j,  lse_i = log sum_{j<=i} exp(w_ij)  (no dropout in lse).
// m_ij = kept ? 1/(1-p) : 0 from philox bits of element ((b*H + h)*T + i)*T + j + d.elem_offset,
// the CPU's bits (kernels/cuda/dropout.cuh dropout_mult).
//
// forward: grid (B*H, q tiles), block kCsaThreads; a block owns kCsaFwdTile q rows (Qs) and runs
//   for each k tile kt <= qt (kCsaFwdTile keys; K and V take turns in one buffer KVs):
//     KVs = K tile;  Ss[a][b] = scale * Q_a . K_b      (thread: key b = tid % 32, 8 rows a)
//     row owners (kCsaFwdRowThreads threads per row, 8 contiguous keys each, shuffles):
//       mt = max_{j<=i} Ss;  m' = max(m, mt);  e_ij = exp(w_ij - m');  l = l e^(m-m') + sum e
//       Ss = e * mult;  acc *= e^(m-m')
//     KVs = V tile;  acc[i][c] += sum_j Ss[i][j] V[j][c]   (thread: its row, columns c = sub + 4 e)
//   out_i = acc_i / l,  lse_i = m + log l.  Online softmax with a running max (scores are
//   unbounded); e_ij is exp(w - m'), so nothing overflows.
// backward: delta_i = sum_j pd_ij dpd_ij with dpd_ij = dout_i . v_j (= dout_i . out_i; out is
//   not an argument), then ds_ij = p_ij (m_ij dpd_ij - delta_i) * scale, exactly the CPU's math.
//   kernel rows, grid (B*H, q tiles of kCsaBwdTile), Q and dO tiles resident:
//     pass 1: for kt <= qt: K, V tiles; S, dP for the thread's 2 entries; delta += pd * dpd
//             (16-lane shuffles per row) -> delta [B,H,T] workspace
//     pass 2 (dq wanted): for kt <= qt: S, dP again, dSs = ds; dq_i += sum_j dSs_ij k_j
//   kernel cols, grid (B*H, k tiles of kCsaBwdTile), K and V tiles resident, after rows:
//     for qt >= kt: Q, dO tiles, lse, delta; Ps = pd, dSs = ds (the thread's 2 entries);
//       dv_j += sum_i Ps_ij dout_i;  dk_j += sum_i dSs_ij q_i   (thread: key row j, columns sub + 8 e)
//   Every output element is summed by one thread in a fixed order: no atomics, reproducible.
// Shared tiles are fp32 [rows][D | 1] (an odd stride: a warp walking a column hits 32 banks).
// Storage T = float | bf16 for q, k, v, out, dout, dq, dk, dv (arithmetic fp32; lse, delta fp32).
// D <= kCsaMaxD (the kernels keep a row's accumulators in registers: D buckets 32, 64, 128).
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/dropout.cuh"
#include "kernels/error.h"
#include "kernels/philox.h"

// Loop unrolling for nvcc (register arrays indexed by the loop variable stay in registers); g++
// (the emulator) decides for itself.
#if defined(__CUDACC__)
#define QISA_CSA_UNROLL _Pragma("unroll")
#define QISA_CSA_UNROLL_NONE _Pragma("unroll 1")
#else
#define QISA_CSA_UNROLL
#define QISA_CSA_UNROLL_NONE
#endif

namespace qisa::cuda::inline QISA_KERNEL_ABI {

inline constexpr int kCsaThreads = 128;
inline constexpr int kCsaFwdTile = 32;  // q rows and k rows per forward tile
inline constexpr int kCsaBwdTile = 16;  // q rows and k rows per backward tile (4 resident tiles fit 48 KiB)
inline constexpr int kCsaMaxD = 128;
inline constexpr int kCsaFwdRowThreads = kCsaThreads / kCsaFwdTile;  // threads sharing a row's softmax: 4
inline constexpr int kCsaBwdRowThreads = kCsaThreads / kCsaBwdTile;  // threads sharing a row's dq (or dk/dv): 8

__host__ __device__ __forceinline__ int csa_ld(int D) { return D | 1; }

// Shared floats of each kernel (D columns per tile row).
__host__ __device__ __forceinline__ int64_t csa_fwd_smem_floats(int D) {
  return 2 * int64_t{kCsaFwdTile} * csa_ld(D) + int64_t{kCsaFwdTile} * (kCsaFwdTile + 1);
}
__host__ __device__ __forceinline__ int64_t csa_bwd_smem_floats(int D) {
  return 4 * int64_t{kCsaBwdTile} * csa_ld(D) + 2 * int64_t{kCsaBwdTile} * (kCsaBwdTile + 1) + 2 * kCsaBwdTile;
}

// s[r][c] = src[(row0 + r) * lds + c] for r < rows, c < D (0 past T). src: row 0 of the (b, h) block.
template <typename T>
__device__ __forceinline__ void csa_load_tile(float* s, int ld, const T* src, int64_t lds, int row0, int rows, int Tn,
                                              int D) {
  for (int e = static_cast<int>(threadIdx.x); e < rows * D; e += kCsaThreads) {
    const int r = e / D, c = e - r * D;
    s[r * ld + c] = row0 + r < Tn ? load_f(src, static_cast<int64_t>(row0 + r) * lds + c) : 0.0f;
  }
}

__device__ __forceinline__ uint32_t csa_word(const Philox4& r, int w) {
  return w == 0 ? r.v[0] : w == 1 ? r.v[1] : w == 2 ? r.v[2] : r.v[3];
}

// x[c] *= m(e0 + c) for N consecutive dropout elements: element c is word (f + c) % 4 of Philox
// block e0/4 + (f + c)/4, f = e0 % 4 (one Philox call per block, not per element).
template <int N>
__device__ __forceinline__ void csa_drop_run(float (&x)[N], uint64_t e0, const Dropout& d, float scale) {
  const uint64_t b0 = e0 >> 2;
  const int f = static_cast<int>(e0 & 3), nblk = (f + N + 3) / 4;
  QISA_CSA_UNROLL_NONE
  for (int nb = 0; nb < nblk; ++nb) {
    const uint64_t blk = b0 + static_cast<uint64_t>(nb);
    const Philox4 r = philox4x32(static_cast<uint32_t>(blk), static_cast<uint32_t>(blk >> 32), d.step, d.site, d.seed);
    QISA_CSA_UNROLL
    for (int c = 0; c < N; ++c)
      if ((f + c) >> 2 == nb) x[c] *= dropout_mult(csa_word(r, (f + c) & 3), d.p, scale);
  }
}

// The dropout multiplier of one element (1 without dropout).
__device__ __forceinline__ float csa_mult(uint64_t e, const Dropout& d, float scale) {
  if (!(d.p > 0.0f)) return 1.0f;
  const uint64_t blk = e >> 2;
  const Philox4 r = philox4x32(static_cast<uint32_t>(blk), static_cast<uint32_t>(blk >> 32), d.step, d.site, d.seed);
  return dropout_mult(csa_word(r, static_cast<int>(e & 3)), d.p, scale);
}

// ---- forward

// Ss[a][b] = scale * Qs_a . KVs_b for a tile; thread: key b = tid % BK, rows a = tid / BK + step*e.
template <int BQ, int BK>
__device__ __forceinline__ void csa_scores(float* Ss, const float* Qs, const float* Ks, int ld, int D, float scale) {
  constexpr int kStep = kCsaThreads / BK, kPer = BQ * BK / kCsaThreads;
  const int b = static_cast<int>(threadIdx.x) % BK, a0 = static_cast<int>(threadIdx.x) / BK;
  float s[kPer] = {};
  for (int c = 0; c < D; ++c) {
    const float kv = Ks[b * ld + c];
QISA_CSA_UNROLL
    for (int e = 0; e < kPer; ++e) s[e] += Qs[(a0 + kStep * e) * ld + c] * kv;
  }
QISA_CSA_UNROLL
  for (int e = 0; e < kPer; ++e) Ss[(a0 + kStep * e) * (BK + 1) + b] = s[e] * scale;
}

template <typename T, int kMaxD>
__global__ void __launch_bounds__(kCsaThreads)
    csa_forward_kernel(T* out, int ld_out, float* lse, const T* q, const T* k, const T* v, int ld_in, int Tn, int H,
                       int D, float scale, Dropout d, float drop_scale) {
  constexpr int BQ = kCsaFwdTile, BK = kCsaFwdTile, RT = kCsaFwdRowThreads, CPT = BK / RT, DPT = kMaxD / RT;
  QISA_DYNAMIC_SHARED(float, smem);
  const int ld = csa_ld(D);
  float* Qs = smem;
  float* KVs = Qs + BQ * ld;
  float* Ss = KVs + BK * ld;  // [BQ][BK + 1]
  const int64_t bh = blockIdx.x, row0 = (bh / H) * Tn, col = (bh % H) * static_cast<int64_t>(D);
  const int qt = static_cast<int>(gridDim.y - 1 - blockIdx.y);  // the longest rows first
  const int i0 = qt * BQ, tid = static_cast<int>(threadIdx.x);
  const int r = tid / RT, sub = tid % RT, i = i0 + r;
  csa_load_tile(Qs, ld, q + row0 * ld_in + col, ld_in, i0, BQ, Tn, D);
  const bool drop = d.p > 0.0f;
  const uint64_t erow = d.elem_offset + static_cast<uint64_t>((bh * Tn + i) * Tn);
  float m = -INFINITY, l = 0.0f, acc[DPT] = {};
  for (int kt = 0; kt <= qt; ++kt) {
    const int j0 = kt * BK;
    QISA_SYNCTHREADS();  // the last tile's V and Ss are read (and Qs written, on the first)
    csa_load_tile(KVs, ld, k + row0 * ld_in + col, ld_in, j0, BK, Tn, D);
    QISA_SYNCTHREADS();  // K is in
    csa_scores<BQ, BK>(Ss, Qs, KVs, ld, D, scale);
    QISA_SYNCTHREADS();  // every score of the tile is in
    float* srow = Ss + r * (BK + 1) + sub * CPT;
    const int jc = j0 + sub * CPT;  // this thread's first key
    float x[CPT], mt = -INFINITY;
QISA_CSA_UNROLL
    for (int c = 0; c < CPT; ++c) {
      x[c] = jc + c <= i && jc + c < Tn ? srow[c] : -INFINITY;
      mt = fmaxf(mt, x[c]);
    }
    for (int o = 1; o < RT; o *= 2) mt = fmaxf(mt, __shfl_xor_sync(kFullMask, mt, o));
    const float mn = fmaxf(m, mt);
    const float base = mn == -INFINITY ? 0.0f : mn;  // a padding row past T may have no key yet
    const float alpha = expf(m - base);
    float ls = 0.0f;
QISA_CSA_UNROLL
    for (int c = 0; c < CPT; ++c) {
      x[c] = expf(x[c] - base);
      ls += x[c];
    }
    for (int o = 1; o < RT; o *= 2) ls += __shfl_xor_sync(kFullMask, ls, o);
    l = l * alpha + ls;
    m = mn;
    if (drop && i < Tn) csa_drop_run<CPT>(x, erow + static_cast<uint64_t>(jc), d, drop_scale);
QISA_CSA_UNROLL
    for (int c = 0; c < CPT; ++c) srow[c] = x[c];
QISA_CSA_UNROLL
    for (int e = 0; e < DPT; ++e) acc[e] *= alpha;
    QISA_SYNCTHREADS();  // K is no longer read; the row's pd is in Ss
    csa_load_tile(KVs, ld, v + row0 * ld_in + col, ld_in, j0, BK, Tn, D);
    QISA_SYNCTHREADS();  // V is in
    const float* prow = Ss + r * (BK + 1);
    const int jlast = i < Tn ? i + 1 : Tn;  // keys j <= i, j < T
    const int jn = jlast - j0 < BK ? jlast - j0 : BK;
    for (int j = 0; j < jn; ++j) {
      const float p = prow[j];
      const float* vr = KVs + j * ld + sub;
QISA_CSA_UNROLL
      for (int e = 0; e < DPT; ++e)
        if (sub + RT * e < D) acc[e] += p * vr[RT * e];
    }
  }
  if (i >= Tn) return;  // no barrier follows
  T* o = out + (row0 + i) * ld_out + col;
  const float inv = 1.0f / l;
QISA_CSA_UNROLL
  for (int e = 0; e < DPT; ++e)
    if (sub + RT * e < D) store_f(o, sub + RT * e, acc[e] * inv);
  if (sub == 0) lse[bh * Tn + i] = m + logf(l);
}

// ---- backward

// The thread's two entries of a backward tile (q rows a = tid / 16 + 8 e, key b = tid % 16):
// s = Qs_a . Ks_b, g = Gs_a . Vs_b (dL/d pd).
__device__ __forceinline__ void csa_bwd_dots(float (&s)[2], float (&g)[2], const float* Qs, const float* Gs,
                                             const float* Ks, const float* Vs, int ld, int D) {
  constexpr int kStep = kCsaThreads / kCsaBwdTile;
  const int b = static_cast<int>(threadIdx.x) % kCsaBwdTile, a = static_cast<int>(threadIdx.x) / kCsaBwdTile;
  s[0] = s[1] = g[0] = g[1] = 0.0f;
  for (int c = 0; c < D; ++c) {
    const float kv = Ks[b * ld + c], vv = Vs[b * ld + c];
QISA_CSA_UNROLL
    for (int e = 0; e < 2; ++e) {
      s[e] += Qs[(a + kStep * e) * ld + c] * kv;
      g[e] += Gs[(a + kStep * e) * ld + c] * vv;
    }
  }
}

// p (softmax, masked to j <= i < T) and the dropout multiplier mu of entry (i, j).
struct CsaEntry {
  float p, mu;
};
__device__ __forceinline__ CsaEntry csa_entry(float s, float scale, float lse_i, int i, int j, int Tn, int64_t bh,
                                              const Dropout& d, float drop_scale) {
  if (j > i || i >= Tn) return {0.0f, 0.0f};
  const uint64_t e = d.elem_offset + static_cast<uint64_t>((bh * Tn + i) * Tn + j);
  return {expf(s * scale - lse_i), csa_mult(e, d, drop_scale)};
}

// dq (or nothing, dq null) and delta [B,H,T] for one q tile. Shared: Qs, Gs (dout), Ks, Vs
// [16][ld], dSs [16][17], Ls (lse), Dl (delta) [16].
template <typename T, int kMaxD>
__global__ void __launch_bounds__(kCsaThreads)
    csa_backward_rows_kernel(T* dq, bool add, float* delta, const T* dout, int ld_out, const float* lse, const T* q,
                             const T* k, const T* v, int ld_in, int Tn, int H, int D, float scale, Dropout d,
                             float drop_scale) {
  constexpr int BT = kCsaBwdTile, kStep = kCsaThreads / BT, RT = kCsaBwdRowThreads, DPT = kMaxD / RT;
  QISA_DYNAMIC_SHARED(float, smem);
  const int ld = csa_ld(D);
  float *Qs = smem, *Gs = Qs + BT * ld, *Ks = Gs + BT * ld, *Vs = Ks + BT * ld, *dSs = Vs + BT * ld;
  float *Ls = dSs + BT * (BT + 1), *Dl = Ls + BT;
  const int64_t bh = blockIdx.x, row0 = (bh / H) * Tn, col = (bh % H) * static_cast<int64_t>(D);
  const int qt = static_cast<int>(gridDim.y - 1 - blockIdx.y), i0 = qt * BT, tid = static_cast<int>(threadIdx.x);
  const int b = tid % BT, a = tid / BT;
  const T* kb = k + row0 * ld_in + col;
  const T* vb = v + row0 * ld_in + col;
  csa_load_tile(Qs, ld, q + row0 * ld_in + col, ld_in, i0, BT, Tn, D);
  csa_load_tile(Gs, ld, dout + row0 * ld_out + col, ld_out, i0, BT, Tn, D);
  if (tid < BT) Ls[tid] = i0 + tid < Tn ? lse[bh * Tn + i0 + tid] : 0.0f;
  float dl[2] = {0.0f, 0.0f};
QISA_CSA_UNROLL
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 1 && !dq) break;  // uniform over the block
    float acc[DPT] = {};
    for (int kt = 0; kt <= qt; ++kt) {
      const int j0 = kt * BT;
      QISA_SYNCTHREADS();  // the last tile's K, V, dSs are read (Qs, Gs, Ls, Dl written, on the first)
      csa_load_tile(Ks, ld, kb, ld_in, j0, BT, Tn, D);
      csa_load_tile(Vs, ld, vb, ld_in, j0, BT, Tn, D);
      QISA_SYNCTHREADS();  // K, V are in
      float s[2], g[2];
      csa_bwd_dots(s, g, Qs, Gs, Ks, Vs, ld, D);
QISA_CSA_UNROLL
      for (int e = 0; e < 2; ++e) {
        const int ai = a + kStep * e;
        const CsaEntry pe = csa_entry(s[e], scale, Ls[ai], i0 + ai, j0 + b, Tn, bh, d, drop_scale);
        if (pass == 0)
          dl[e] += pe.p * pe.mu * g[e];
        else
          dSs[ai * (BT + 1) + b] = pe.p * (pe.mu * g[e] - Dl[ai]) * scale;
      }
      if (pass == 0) continue;
      QISA_SYNCTHREADS();  // dSs is in
      const int r = tid / RT, sub = tid % RT;
      const float* dsr = dSs + r * (BT + 1);
      for (int j = 0; j < BT; ++j) {
        const float w = dsr[j];
        const float* kr = Ks + j * ld + sub;
QISA_CSA_UNROLL
        for (int e = 0; e < DPT; ++e)
          if (sub + RT * e < D) acc[e] += w * kr[RT * e];
      }
    }
    if (pass == 0) {
QISA_CSA_UNROLL
      for (int e = 0; e < 2; ++e) {
        for (int o = 1; o < BT; o *= 2) dl[e] += __shfl_xor_sync(kFullMask, dl[e], o);  // the row's 16 lanes
        const int ai = a + kStep * e;
        if (b == 0) {
          Dl[ai] = dl[e];
          if (i0 + ai < Tn) delta[bh * Tn + i0 + ai] = dl[e];
        }
      }
      continue;  // pass 1's first barrier publishes Dl
    }
    const int r = tid / RT, sub = tid % RT;
    if (i0 + r >= Tn) break;  // no barrier follows
    T* o = dq + (row0 + i0 + r) * ld_in + col;
QISA_CSA_UNROLL
    for (int e = 0; e < DPT; ++e) {
      const int c = sub + RT * e;
      if (c < D) store_f(o, c, add ? load_f(o, c) + acc[e] : acc[e]);
    }
  }
}

// dk, dv (either may be null) for one k tile. Shared: Ks, Vs, Qs, Gs [16][ld], Ps, dSs [16][17],
// Ls, Dl [16].
template <typename T, int kMaxD>
__global__ void __launch_bounds__(kCsaThreads)
    csa_backward_cols_kernel(T* dk, T* dv, bool add, const float* delta, const T* dout, int ld_out, const float* lse,
                             const T* q, const T* k, const T* v, int ld_in, int Tn, int H, int D, float scale,
                             Dropout d, float drop_scale) {
  constexpr int BT = kCsaBwdTile, kStep = kCsaThreads / BT, RT = kCsaBwdRowThreads, DPT = kMaxD / RT;
  QISA_DYNAMIC_SHARED(float, smem);
  const int ld = csa_ld(D);
  float *Ks = smem, *Vs = Ks + BT * ld, *Qs = Vs + BT * ld, *Gs = Qs + BT * ld, *Ps = Gs + BT * ld;
  float *dSs = Ps + BT * (BT + 1), *Ls = dSs + BT * (BT + 1), *Dl = Ls + BT;
  const int64_t bh = blockIdx.x, row0 = (bh / H) * Tn, col = (bh % H) * static_cast<int64_t>(D);
  const int kt = static_cast<int>(blockIdx.y), j0 = kt * BT, tid = static_cast<int>(threadIdx.x);
  const int b = tid % BT, a = tid / BT, r = tid / RT, sub = tid % RT;
  const T* qb = q + row0 * ld_in + col;
  const T* gb = dout + row0 * ld_out + col;
  csa_load_tile(Ks, ld, k + row0 * ld_in + col, ld_in, j0, BT, Tn, D);
  csa_load_tile(Vs, ld, v + row0 * ld_in + col, ld_in, j0, BT, Tn, D);
  float ak[DPT] = {}, av[DPT] = {};
  const int tiles = static_cast<int>(gridDim.y);
  for (int qt = kt; qt < tiles; ++qt) {
    const int i0 = qt * BT;
    QISA_SYNCTHREADS();  // the last tile's Q, dO, Ps, dSs are read (K, V written, on the first)
    csa_load_tile(Qs, ld, qb, ld_in, i0, BT, Tn, D);
    csa_load_tile(Gs, ld, gb, ld_out, i0, BT, Tn, D);
    if (tid < BT) {
      Ls[tid] = i0 + tid < Tn ? lse[bh * Tn + i0 + tid] : 0.0f;
      Dl[tid] = i0 + tid < Tn ? delta[bh * Tn + i0 + tid] : 0.0f;
    }
    QISA_SYNCTHREADS();  // Q, dO, lse, delta are in
    float s[2], g[2];
    csa_bwd_dots(s, g, Qs, Gs, Ks, Vs, ld, D);
QISA_CSA_UNROLL
    for (int e = 0; e < 2; ++e) {
      const int ai = a + kStep * e;
      const CsaEntry pe = csa_entry(s[e], scale, Ls[ai], i0 + ai, j0 + b, Tn, bh, d, drop_scale);
      Ps[ai * (BT + 1) + b] = pe.p * pe.mu;
      dSs[ai * (BT + 1) + b] = pe.p * (pe.mu * g[e] - Dl[ai]) * scale;
    }
    QISA_SYNCTHREADS();  // Ps, dSs are in
    for (int ii = 0; ii < BT; ++ii) {
      const float pw = Ps[ii * (BT + 1) + r], sw = dSs[ii * (BT + 1) + r];
      const float* gr = Gs + ii * ld + sub;
      const float* qr = Qs + ii * ld + sub;
QISA_CSA_UNROLL
      for (int e = 0; e < DPT; ++e)
        if (sub + RT * e < D) {
          av[e] += pw * gr[RT * e];
          ak[e] += sw * qr[RT * e];
        }
    }
  }
  if (j0 + r >= Tn) return;  // no barrier follows
  const int64_t ro = (row0 + j0 + r) * ld_in + col;
QISA_CSA_UNROLL
  for (int e = 0; e < DPT; ++e) {
    const int c = sub + RT * e;
    if (c >= D) continue;
    if (dk) store_f(dk + ro, c, add ? load_f(dk + ro, c) + ak[e] : ak[e]);
    if (dv) store_f(dv + ro, c, add ? load_f(dv + ro, c) + av[e] : av[e]);
  }
}

// ---- host side (enqueue on `stream`; device pointers)

inline void check_csa_shape(const char* op, int64_t B, int Tn, int H, int D, int ld_in, int ld_out) {
  QISA_CHECK(B >= 0 && Tn >= 1 && H >= 1 && D >= 1 && D <= kCsaMaxD,
             std::string(op) + " shape B=" + std::to_string(B) + " T=" + std::to_string(Tn) + " H=" +
                 std::to_string(H) + " D=" + std::to_string(D),
             "B >= 0, T >= 1, H >= 1, 1 <= head size D <= " + std::to_string(kCsaMaxD) +
                 " (the cuda kernels hold a row's D accumulators in registers)");
  QISA_CHECK(int64_t{ld_in} >= int64_t{H} * D && int64_t{ld_out} >= int64_t{H} * D,
             std::string(op) + ": row strides ld_in=" + std::to_string(ld_in) + ", ld_out=" + std::to_string(ld_out) +
                 " are below H*D=" + std::to_string(int64_t{H} * D),
             "a row stride covers every head's D columns");
  QISA_CHECK(B * H <= 0x7FFFFFFF && (Tn + kCsaBwdTile - 1) / kCsaBwdTile <= 65535,
             std::string(op) + ": B*H=" + std::to_string(B * H) + ", T=" + std::to_string(Tn),
             "B*H < 2^31 blocks and T <= 65535*16 rows (grid limits)");
}

// Runs f.template operator()<kMaxD>() for the smallest register bucket that holds D.
template <class F>
void csa_dispatch_d(int D, F&& f) {
  if (D <= 32)
    f.template operator()<32>();
  else if (D <= 64)
    f.template operator()<64>();
  else
    f.template operator()<kCsaMaxD>();
}

template <typename T>
void csa_forward(T* out, int ld_out, float* lse, const T* q, const T* k, const T* v, int ld_in, int64_t B, int Tn,
                 int H, int D, float scale, const Dropout& d, cudaStream_t stream) {
  check_csa_shape("cuda csa_forward", B, Tn, H, D, ld_in, ld_out);
  const float drop_scale = dropout_scale_checked(d);
  if (B == 0) return;
  const dim3 grid(static_cast<unsigned>(B * H), static_cast<unsigned>(ceil_div_i64(Tn, kCsaFwdTile)));
  const size_t smem = sizeof(float) * static_cast<size_t>(csa_fwd_smem_floats(D));
  csa_dispatch_d(D, [&]<int kMaxD>() {
    auto* kernel = csa_forward_kernel<T, kMaxD>;
    QISA_LAUNCH(kernel, grid, dim3(kCsaThreads), smem, stream, out, ld_out, lse, q, k, v, ld_in, Tn, H, D, scale, d,
                drop_scale);
  });
}

// Floats of device workspace csa_backward needs (the rows' delta).
inline int64_t csa_backward_workspace(int64_t B, int Tn, int H) { return B * H * Tn; }

// dq, dk, dv (=|+=, any may be null) [N, ld_in]; delta: csa_backward_workspace(B, T, H) floats.
template <typename T>
void csa_backward(T* dq, T* dk, T* dv, const T* dout, int ld_out, const float* lse, const T* q, const T* k,
                  const T* v, int ld_in, int64_t B, int Tn, int H, int D, float scale, const Dropout& d,
                  GradMode mode, float* delta, cudaStream_t stream) {
  check_csa_shape("cuda csa_backward", B, Tn, H, D, ld_in, ld_out);
  const float drop_scale = dropout_scale_checked(d);
  if (B == 0 || (!dq && !dk && !dv)) return;
  const bool add = mode == GradMode::accumulate;
  const dim3 grid(static_cast<unsigned>(B * H), static_cast<unsigned>(ceil_div_i64(Tn, kCsaBwdTile)));
  const size_t smem = sizeof(float) * static_cast<size_t>(csa_bwd_smem_floats(D));
  csa_dispatch_d(D, [&]<int kMaxD>() {
    auto* rows = csa_backward_rows_kernel<T, kMaxD>;
    QISA_LAUNCH(rows, grid, dim3(kCsaThreads), smem, stream, dq, add, delta, dout, ld_out, lse, q, k, v, ld_in, Tn, H,
                D, scale, d, drop_scale);
    if (!dk && !dv) return;
    auto* cols = csa_backward_cols_kernel<T, kMaxD>;
    QISA_LAUNCH(cols, grid, dim3(kCsaThreads), smem, stream, dk, dv, add, delta, dout, ld_out, lse, q, k, v, ld_in,
                Tn, H, D, scale, d, drop_scale);
  });
}

}  // namespace qisa::cuda
