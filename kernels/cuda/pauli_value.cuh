// Pauli value layer (SPEC §1.2 fast path; CPU contract: kernels/cpu/pauli_value.h), per row n
// and head h, u = row n columns h*C .. h*C+C-1 of u (fp32), zero-padded to 2^n_qubits:
//   v[n, h*D + j] = s_j * sum_{b < C, b^f_j < C} u_b u_{b^f_j} (-1)^popc(b & m_j)
//   du[n, h*C + b] (=|+=) sum_j dv_j * 2 s_j (-1)^popc(b & m_j) u_{b^f_j}      (b^f_j < C)
// (f = flip, m = phase, s = sign of PauliTerm; s = 0 for odd y: no contribution.) The padded
// amplitudes are zero, so every sum runs over b < C with its partner b^f < C only.
//
// forward:  grid (row tiles of kPvRows, H), kPvThreads threads. The tile's u rows are staged in
//   shared memory [kPvRows][C] (coalesced loads); then warp w takes the (row, term) items
//   w, w + kPvWarps, ... of the tile's kPvRows * D: its lanes stride b (lane + 32k), so the reads
//   of u_b and u_{b^f} are both conflict-free (b -> b^f maps an aligned group of 32 onto one),
//   and warp_sum gives the item's v.
// backward: grid (row tiles, H), kPvThreads threads. Shared: the u tile [kPvRows][C], the dv tile
//   [kPvRows][D] (fp32) and the head's terms. Thread t takes the (row, b) items t, t + kPvThreads,
//   ... and sums its du_b over j = 0..D-1 in registers; one store (or add) per element.
// Work O(N H C D) for O(N H (C + D)) bytes; no atomics, no cross-block reductions.
// The terms are device memory, so the host cannot validate them (the backend validates the
// strings it uploads); any masks are safe here: a partner b^f >= C (unsigned) is skipped.
#pragma once
#include <bit>
#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/cuda/device.h"
#include "kernels/error.h"
#include "kernels/pauli.h"

namespace qisa::cuda::inline QISA_KERNEL_ABI {

inline constexpr int kPvThreads = 128;
inline constexpr int kPvWarps = kPvThreads / kWarp;
inline constexpr int kPvRows = 8;       // rows per block (tile)
inline constexpr int kPvMaxC = 1024;    // amplitudes per head: the u tile is 32 KiB at most
inline constexpr int kPvMaxD = 256;     // terms per head: backward's dv tile and terms, 10 KiB at most

// (-1)^popcount(b & phase) (the emulator has no __popc; std::popcount is the same count)
__device__ __forceinline__ float pauli_parity_sign(uint32_t b, uint32_t phase) {
#if defined(__CUDACC__)
  const int odd = __popc(b & phase) & 1;
#else
  const int odd = std::popcount(b & phase) & 1;
#endif
  return odd ? -1.0f : 1.0f;
}

// Stage rows n0 .. n0+rows-1, columns col0 .. col0+C-1 of u into tile [rows][C].
__device__ __forceinline__ void pv_stage_u(float* tile, const float* u, int64_t ld_u, int64_t n0, int rows,
                                           int64_t col0, int C) {
  for (int i = static_cast<int>(threadIdx.x); i < rows * C; i += kPvThreads) {
    const int r = i / C, b = i % C;
    tile[i] = u[(n0 + r) * ld_u + col0 + b];
  }
}

// Dynamic shared memory: [kPvRows][C] floats.
template <typename T>
__global__ void __launch_bounds__(kPvThreads)
    pauli_value_forward_kernel(T* v, int ld_v, const float* u, int ld_u, const PauliTerm* terms, int64_t N, int D,
                               int C) {
  QISA_DYNAMIC_SHARED(float, tile);
  const int h = static_cast<int>(blockIdx.y);
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kPvRows;
  const int rows = static_cast<int>(N - n0 < kPvRows ? N - n0 : kPvRows);
  pv_stage_u(tile, u, ld_u, n0, rows, static_cast<int64_t>(h) * C, C);
  QISA_SYNCTHREADS();  // the tile is complete
  const int lane = static_cast<int>(threadIdx.x) % kWarp, warp = static_cast<int>(threadIdx.x) / kWarp;
  for (int item = warp; item < rows * D; item += kPvWarps) {  // uniform per warp
    const int r = item / D, j = item % D;
    const PauliTerm t = terms[static_cast<int64_t>(h) * D + j];
    const float* ur = tile + r * C;
    float acc = 0.0f;
    if (t.sign != 0)
      for (int b = lane; b < C; b += kWarp) {
        const uint32_t p = static_cast<uint32_t>(b) ^ t.flip;  // unsigned: any mask stays in the row
        if (p < static_cast<uint32_t>(C)) acc += pauli_parity_sign(static_cast<uint32_t>(b), t.phase) * ur[b] * ur[p];
      }
    acc = warp_sum(acc);
    if (lane == 0) store_f(v + (n0 + r) * ld_v, static_cast<int64_t>(h) * D + j, static_cast<float>(t.sign) * acc);
  }
}

// Dynamic shared memory: [kPvRows][C] floats of u, [kPvRows][D] floats of dv, D terms.
template <typename T>
__global__ void __launch_bounds__(kPvThreads)
    pauli_value_backward_kernel(float* du, bool add, const T* dv, int ld_v, const float* u, int ld_u,
                                const PauliTerm* terms, int64_t N, int D, int C) {
  QISA_DYNAMIC_SHARED(float, tile);
  float* g = tile + kPvRows * C;                              // [kPvRows][D]
  PauliTerm* ht = reinterpret_cast<PauliTerm*>(g + kPvRows * D);  // [D]
  const int h = static_cast<int>(blockIdx.y);
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kPvRows;
  const int rows = static_cast<int>(N - n0 < kPvRows ? N - n0 : kPvRows);
  const int64_t col0 = static_cast<int64_t>(h) * C;
  pv_stage_u(tile, u, ld_u, n0, rows, col0, C);
  for (int i = static_cast<int>(threadIdx.x); i < rows * D; i += kPvThreads) {
    const int r = i / D, j = i % D;
    g[i] = load_f(dv + (n0 + r) * ld_v, static_cast<int64_t>(h) * D + j);
  }
  for (int j = static_cast<int>(threadIdx.x); j < D; j += kPvThreads) ht[j] = terms[static_cast<int64_t>(h) * D + j];
  QISA_SYNCTHREADS();  // u, dv and the terms are staged
  for (int i = static_cast<int>(threadIdx.x); i < rows * C; i += kPvThreads) {
    const int r = i / C, b = i % C;
    const float* ur = tile + r * C;
    const float* gr = g + r * D;
    float acc = 0.0f;
    for (int j = 0; j < D; ++j) {
      const PauliTerm t = ht[j];
      const uint32_t x = static_cast<uint32_t>(b) ^ t.flip;
      if (t.sign != 0 && x < static_cast<uint32_t>(C))
        acc += gr[j] * (static_cast<float>(t.sign) * pauli_parity_sign(static_cast<uint32_t>(b), t.phase)) * ur[x];
    }
    float* dst = du + (n0 + r) * ld_u + col0 + b;
    *dst = add ? *dst + 2.0f * acc : 2.0f * acc;
  }
}

// ---- host side (enqueue on `stream`; device pointers)

inline void check_pauli_value_args(const char* op, int64_t N, int H, int D, int C, int n_qubits, int ld_u, int ld_v) {
  QISA_CHECK(N >= 0 && ceil_div_i64(N, kPvRows) <= 0x7FFFFFFF && H >= 1 && H <= 65535 && D >= 1 && C >= 1,
             std::string("cuda ") + op + " shape N=" + std::to_string(N) + " H=" + std::to_string(H) +
                 " D=" + std::to_string(D) + " C=" + std::to_string(C),
             "0 <= N < 2^31 row tiles of " + std::to_string(kPvRows) +
                 ", 1 <= n_head <= 65535, head size and n_embd >= 1");
  QISA_CHECK(n_qubits >= 1 && n_qubits <= kMaxPauliQubits && static_cast<int64_t>(C) <= (int64_t{1} << n_qubits),
             std::string("cuda ") + op + ": C=" + std::to_string(C) + " amplitudes do not fit " +
                 std::to_string(n_qubits) + " qubits",
             "n_qubits = ceil(log2(n_embd)), so that C <= 2^n_qubits");
  QISA_CHECK(C <= kPvMaxC && D <= kPvMaxD,
             std::string("cuda ") + op + ": C=" + std::to_string(C) + " D=" + std::to_string(D),
             "the CUDA kernel stages a head's rows in shared memory: C <= " + std::to_string(kPvMaxC) +
                 " amplitudes and D <= " + std::to_string(kPvMaxD) + " terms per head");
  QISA_CHECK(static_cast<int64_t>(ld_u) >= static_cast<int64_t>(H) * C &&
                 static_cast<int64_t>(ld_v) >= static_cast<int64_t>(H) * D,
             std::string("cuda ") + op + ": row strides ld_u=" + std::to_string(ld_u) + " (needs >= " +
                 std::to_string(static_cast<int64_t>(H) * C) + "), ld_v=" + std::to_string(ld_v) + " (needs >= " +
                 std::to_string(static_cast<int64_t>(H) * D) + ")",
             "a row stride covers every head's columns");
}

inline dim3 pauli_value_grid(int64_t N, int H) {
  return dim3(static_cast<unsigned>(ceil_div_i64(N, kPvRows)), static_cast<unsigned>(H));
}

// v [N, ld_v] (head h at columns h*D); u [N, ld_u] fp32 (head h at columns h*C); terms [H*D].
template <typename T>
void pauli_value_forward(T* v, int ld_v, const float* u, int ld_u, const PauliTerm* terms, int64_t N, int H, int D,
                         int C, int n_qubits, cudaStream_t stream) {
  check_pauli_value_args("pauli_value_forward", N, H, D, C, n_qubits, ld_u, ld_v);
  if (N == 0) return;
  const size_t smem = sizeof(float) * kPvRows * static_cast<size_t>(C);
  QISA_LAUNCH(pauli_value_forward_kernel<T>, pauli_value_grid(N, H), dim3(kPvThreads), smem, stream, v, ld_v, u, ld_u,
              terms, N, D, C);
}

// du [N, ld_u] fp32 (=|+= by mode); dv [N, ld_v]; u [N, ld_u]; terms [H*D].
template <typename T>
void pauli_value_backward(float* du, int ld_u, const T* dv, int ld_v, const float* u, const PauliTerm* terms,
                          int64_t N, int H, int D, int C, int n_qubits, GradMode mode, cudaStream_t stream) {
  check_pauli_value_args("pauli_value_backward", N, H, D, C, n_qubits, ld_u, ld_v);
  if (N == 0) return;
  const size_t smem =
      sizeof(float) * kPvRows * static_cast<size_t>(C + D) + sizeof(PauliTerm) * static_cast<size_t>(D);
  QISA_LAUNCH(pauli_value_backward_kernel<T>, pauli_value_grid(N, H), dim3(kPvThreads), smem, stream, du,
              mode == GradMode::accumulate, dv, ld_v, u, ld_u, terms, N, D, C);
}

}  // namespace qisa::cuda
