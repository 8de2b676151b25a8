// QISA-A circuit value (SPEC §1.1 qisa_a; CPU contract: kernels/cpu/qisa_a.h), per row n and head h:
//   psi = pad(x_n / |x_n|); on each wire w: RX(rx[h,w]) then RY(ry[h,w]);
//   CNOT(w, (w+1) mod n) for w = 0..n-1 (none for n = 1); RY(ry2[h,w]) on each wire;
//   v[n, h*D + j] = <psi|P_hj|psi> = s4 * sum_b (-1)^popc(b&m) (y odd ? Im : Re)(conj(psi_b) psi_{b^f})
// (s4 = +1 for y%4 in {0,1}, -1 for {2,3}: the pair formula of kernels/cpu/pauli_value.h, summed
// over every b instead of pairs b <= b^f; both halves of a pair give the same summand.)
// Qubit 0 is the most significant bit of the amplitude index; the state is fp32 (re, im apart).
//
// Blocks have qa_block_threads(n) = clamp(2^n / 2, 32, kQaThreads) threads: one per amplitude pair.
// Each block first puts cos, sin of its heads' half angles in shared memory (qa_half_angles).
// forward: one block per (row, head), grid (N, H). Shared: re, im [2^n], the angle table.
//   |x|^2 by block_reduce; the gates in place, one barrier each (thread t takes the amplitude
//   pairs t, t + threads, ...); then warp w takes terms w, w + warps, ..., its lanes stride b.
// backward (the adjoint method, as the CPU): one block per tile of kQaRows rows, grid (tiles).
//   For each row of the tile (in order), for each head h (in order):
//     recompute phi (forward gates); lam_k = dL/dphi_k (thread per amplitude k, sum over terms);
//     walk the gates backwards: phi <- G^dagger phi, dtheta += Re<lam|dG/dtheta|phi>,
//     lam <- G^dagger lam (dG/dtheta = G(theta + pi)/2 for RX, RY; CNOT is its own inverse);
//     lam is then dL/dpsi0, and dL/dx = (lam - psi0 (psi0 . lam)) / |x| (psi0 real) is added to the
//     row's gx [C] in shared memory (head order). dx (=|+=) gx once, after the last head.
//   Each rotation's dtheta: per-thread sum over its pairs, warp_sum, and lane 0 adds it to its
//   warp's slot wpart[h][angle][warp] (double, rows in order). At the end the block sums its warps
//   in order into part[block][h][angle]; a second kernel sums the blocks in block order into
//   drx, dry, dry2 (=|+=). No float atomics: the angle gradients are reproducible for a given N.
// Shapes: x [N, ld_x] (C columns, shared by all heads); v, dv [N, ld_v] (head h at columns h*D);
// rx, ry, ry2, drx, dry, dry2 [H, n]; terms [H*D]; part qisa_a_backward_workspace(N, H, n) doubles.
// An all-zero row gives psi = 0: v = 0 and zero gradients (the CPU's choice).
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/pauli_value.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/error.h"
#include "kernels/pauli.h"

namespace qisa::cuda::inline QISA_KERNEL_ABI {

inline constexpr int kQaThreads = 128;  // the most threads of a block (2^n / 2 pairs, 32 at least)
inline constexpr int kQaWarps = kQaThreads / kWarp;
inline constexpr int kQaRows = 8;         // rows per backward block (per angle-gradient partial)
inline constexpr int kQaMaxQubits = 10;   // backward's re, im, lam (4 x 2^n floats) are 16 KiB
inline constexpr int kQaSharedLimit = 48 * 1024;  // dynamic shared memory without an opt-in
inline constexpr int kQaReduceThreads = 128;

// Gate g (0 .. qa_gate_count(n)-1) of head h, in circuit order.
struct QaGate {
  int kind;    // 0 RX, 1 RY, 2 CNOT
  int stride;  // RX/RY: bit of the wire; CNOT: control bit
  int tbit;    // CNOT: target bit
  int slot;    // RX/RY: angle slot (rx w, ry n+w, ry2 2n+w)
  float c, s;  // cos, sin of half the angle (computed in double, as the CPU does)
};

__host__ __device__ __forceinline__ int qa_gate_count(int n) { return n > 1 ? 4 * n : 3 * n; }

__device__ __forceinline__ int qa_nt() { return static_cast<int>(blockDim.x); }  // threads of the block

// Threads of a block for n qubits: one per amplitude pair of a gate, 32 .. kQaThreads.
inline int qa_block_threads(int n) {
  const int pairs = 1 << (n - 1);
  return pairs < kWarp ? kWarp : (pairs > kQaThreads ? kQaThreads : pairs);
}

// cs[2k], cs[2k+1] = cos, sin of half of angle k = h*3n + slot of the heads [h0, h0 + heads) (slot: rx w,
// ry n+w, ry2 2n+w), in double as the CPU computes them, once per block into shared memory: the
// gate loops then carry no trigonometry (whose slow path would take registers from them).
__device__ __forceinline__ void qa_half_angles(float* cs, int h0, int heads, int n, const float* rx, const float* ry,
                                               const float* ry2) {
  for (int k = static_cast<int>(threadIdx.x); k < heads * 3 * n; k += static_cast<int>(blockDim.x)) {
    const int h = h0 + k / (3 * n), slot = k % (3 * n), w = slot % n;
    const float* a = slot < n ? rx : (slot < 2 * n ? ry : ry2);
    const double half = 0.5 * static_cast<double>(a[h * n + w]);
    cs[2 * k] = static_cast<float>(cos(half));
    cs[2 * k + 1] = static_cast<float>(sin(half));
  }
}

// Gate g (circuit order) of a head whose half-angle table (qa_half_angles) is cs [3n][2].
__device__ __forceinline__ QaGate qa_gate(int g, int n, const float* cs) {
  QaGate G{0, 0, 0, -1, 0.0f, 0.0f};
  if (g < 2 * n) {  // RX(w), RY(w) pairs
    const int w = g / 2;
    G.kind = g % 2;
    G.stride = 1 << (n - 1 - w);
    G.slot = G.kind == 0 ? w : n + w;
  } else if (n > 1 && g < 3 * n) {  // CNOT(w, w+1 mod n)
    const int w = g - 2 * n;
    G.kind = 2;
    G.stride = 1 << (n - 1 - w);
    G.tbit = 1 << (n - 1 - (w + 1) % n);
    return G;
  } else {  // RY2(w)
    const int w = g - (n > 1 ? 3 * n : 2 * n);
    G.kind = 1;
    G.stride = 1 << (n - 1 - w);
    G.slot = 2 * n + w;
  }
  G.c = cs[2 * G.slot];
  G.s = cs[2 * G.slot + 1];
  return G;
}

// Pair i (of 2^n / 2) of a gate on bit `stride`: a0 has that bit clear, a1 = a0 + stride.
__device__ __forceinline__ int qa_pair_low(int i, int stride) {
  return ((i & ~(stride - 1)) << 1) | (i & (stride - 1));
}

// Apply gate G to the state (re, im) [amps]; no barrier (the caller's).
__device__ __forceinline__ void qa_apply(float* re, float* im, int amps, const QaGate& G) {
  const int stride = G.kind == 2 ? G.tbit : G.stride;
  for (int i = static_cast<int>(threadIdx.x); i < amps / 2; i += qa_nt()) {
    const int a0 = qa_pair_low(i, stride), a1 = a0 + stride;
    const float x0 = re[a0], y0 = im[a0], x1 = re[a1], y1 = im[a1];
    if (G.kind == 2) {  // swap the pair where the control bit is set
      if (a0 & G.stride) {
        re[a0] = x1, im[a0] = y1, re[a1] = x0, im[a1] = y0;
      }
    } else if (G.kind == 0) {  // RX = [[c, -is], [-is, c]]
      re[a0] = G.c * x0 + G.s * y1, im[a0] = G.c * y0 - G.s * x1;
      re[a1] = G.c * x1 + G.s * y0, im[a1] = G.c * y1 - G.s * x0;
    } else {  // RY = [[c, -s], [s, c]]
      re[a0] = G.c * x0 - G.s * x1, im[a0] = G.c * y0 - G.s * y1;
      re[a1] = G.s * x0 + G.c * x1, im[a1] = G.s * y0 + G.c * y1;
    }
  }
}

// |x_n|^2 by block_reduce, and 1/|x_n| (0 for a zero row). Every thread of the block calls it.
template <typename T>
__device__ __forceinline__ float qa_inv_norm(const T* xr, int C) {
  float s = 0.0f;
  for (int b = static_cast<int>(threadIdx.x); b < C; b += qa_nt()) {
    const float v = load_f(xr, b);
    s += v * v;
  }
  s = block_reduce(s, SumOp{});
  return s > 0.0f ? 1.0f / sqrtf(s) : 0.0f;
}

// psi0 = pad(x / |x|) into (re, im), then every gate of head h (the state after the circuit).
template <typename T>
__device__ void qa_simulate(float* re, float* im, const T* xr, float inv, int C, int n, const float* cs) {
  const int amps = 1 << n;
  for (int a = static_cast<int>(threadIdx.x); a < amps; a += qa_nt()) {
    re[a] = a < C ? load_f(xr, a) * inv : 0.0f;
    im[a] = 0.0f;
  }
  QISA_SYNCTHREADS();  // psi0 is written
  const int ngates = qa_gate_count(n);
  for (int g = 0; g < ngates; ++g) {
    qa_apply(re, im, amps, qa_gate(g, n, cs));
    QISA_SYNCTHREADS();  // gate g is applied before gate g+1 reads
  }
}

// Dynamic shared memory: re, im [2^n] floats, the head's half-angle table [3n][2].
template <typename T>
__global__ void __launch_bounds__(kQaThreads)
    qisa_a_forward_kernel(T* v, int ld_v, const T* x, int ld_x, const float* rx, const float* ry, const float* ry2,
                          const PauliTerm* terms, int D, int C, int n) {
  QISA_DYNAMIC_SHARED(float, re);
  const int amps = 1 << n;
  float* im = re + amps;
  float* cs = im + amps;
  const int64_t row = blockIdx.x;
  const int h = static_cast<int>(blockIdx.y);
  const T* xr = x + row * ld_x;
  qa_half_angles(cs, h, 1, n, rx, ry, ry2);  // read after qa_inv_norm's barriers
  qa_simulate(re, im, xr, qa_inv_norm(xr, C), C, n, cs);
  const int lane = static_cast<int>(threadIdx.x) % kWarp, warp = static_cast<int>(threadIdx.x) / kWarp;
  for (int j = warp; j < D; j += qa_nt() / kWarp) {
    const PauliTerm t = terms[static_cast<int64_t>(h) * D + j];
    const bool odd = t.y_count % 2 != 0;
    float acc = 0.0f;
    for (int b = lane; b < amps; b += kWarp) {
      const uint32_t p = static_cast<uint32_t>(b) ^ t.flip;
      if (p >= static_cast<uint32_t>(amps)) continue;  // only for masks wider than n qubits
      const float z = odd ? re[b] * im[p] - im[b] * re[p] : re[b] * re[p] + im[b] * im[p];
      acc += pauli_parity_sign(static_cast<uint32_t>(b), t.phase) * z;
    }
    acc = warp_sum(acc);
    const float s4 = (t.y_count % 4 == 0 || t.y_count % 4 == 1) ? 1.0f : -1.0f;
    if (lane == 0) store_f(v + row * ld_v, static_cast<int64_t>(h) * D + j, s4 * acc);
  }
}

// lam = dL/dphi of head h (real and imaginary parts as independent reals), g = dv of the head [D]:
//   even y: lr_k += 2 s4 g sigma(k) re_{k^f}, li_k += 2 s4 g sigma(k) im_{k^f}
//   odd y:  lr_k += 2 s4 g sigma(k) im_{k^f}, li_k -= 2 s4 g sigma(k) re_{k^f}
__device__ __forceinline__ void qa_lambda(float* lr, float* li, const float* re, const float* im, const float* g,
                                          const PauliTerm* ht, int D, int amps) {
  for (int k = static_cast<int>(threadIdx.x); k < amps; k += qa_nt()) {
    float ar = 0.0f, ai = 0.0f;
    for (int j = 0; j < D; ++j) {
      const PauliTerm t = ht[j];
      const uint32_t p = static_cast<uint32_t>(k) ^ t.flip;
      if (p >= static_cast<uint32_t>(amps)) continue;
      const float s4 = (t.y_count % 4 == 0 || t.y_count % 4 == 1) ? 1.0f : -1.0f;
      const float w = g[j] * s4 * pauli_parity_sign(static_cast<uint32_t>(k), t.phase);
      if (t.y_count % 2 != 0) {
        ar += w * im[p];
        ai -= w * re[p];
      } else {
        ar += w * re[p];
        ai += w * im[p];
      }
    }
    lr[k] = 2.0f * ar;
    li[k] = 2.0f * ai;
  }
}

// One adjoint step over rotation G: (re, im) after -> before, (lr, li) after -> before; returns this
// thread's part of dL/dtheta = Re<lam|dG/dtheta|phi_before> (its pairs).
__device__ __forceinline__ float qa_adjoint_rotation(float* re, float* im, float* lr, float* li, int amps,
                                                     const QaGate& G) {
  const float c = G.c, s = G.s;
  float acc = 0.0f;
  for (int i = static_cast<int>(threadIdx.x); i < amps / 2; i += qa_nt()) {
    const int a0 = qa_pair_low(i, G.stride), a1 = a0 + G.stride;
    const float r0 = re[a0], i0 = im[a0], r1 = re[a1], i1 = im[a1];
    const float p0 = lr[a0], q0 = li[a0], p1 = lr[a1], q1 = li[a1];
    float x0, y0, x1, y1;
    if (G.kind == 0) {
      // undo RX: RX(-theta) = [[c, is], [is, c]]; dRX/dtheta = 0.5 [[-s, -ic], [-ic, -s]]
      x0 = c * r0 - s * i1, y0 = c * i0 + s * r1, x1 = c * r1 - s * i0, y1 = c * i1 + s * r0;
      acc += -s * (p0 * x0 + q0 * y0 + p1 * x1 + q1 * y1) + c * (p0 * y1 - q0 * x1 + p1 * y0 - q1 * x0);
      lr[a0] = c * p0 - s * q1, li[a0] = c * q0 + s * p1, lr[a1] = c * p1 - s * q0, li[a1] = c * q1 + s * p0;
    } else {
      // undo RY: RY(-theta) = [[c, s], [-s, c]]; dRY/dtheta = 0.5 [[-s, -c], [c, -s]]
      x0 = c * r0 + s * r1, y0 = c * i0 + s * i1, x1 = c * r1 - s * r0, y1 = c * i1 - s * i0;
      acc += -s * (p0 * x0 + q0 * y0 + p1 * x1 + q1 * y1) + c * (p1 * x0 + q1 * y0 - p0 * x1 - q0 * y1);
      lr[a0] = c * p0 + s * p1, li[a0] = c * q0 + s * q1, lr[a1] = c * p1 - s * p0, li[a1] = c * q1 - s * q0;
    }
    re[a0] = x0, im[a0] = y0, re[a1] = x1, im[a1] = y1;
  }
  return 0.5f * acc;
}

// Bytes of dynamic shared memory of the backward kernel, and its layout:
//   re, im, lr, li [2^n] | gx [C] | g [D] | cs [H][3n][2] | (8-byte aligned) wpart [H][3n][kQaWarps] doubles
inline int64_t qa_backward_smem_bytes(int H, int D, int C, int n) {
  const int64_t floats = 4 * (int64_t{1} << n) + C + D + int64_t{6} * H * n;
  return (floats + 1) / 2 * 8 + int64_t{8} * H * 3 * n * kQaWarps;
}

template <typename T>
__global__ void __launch_bounds__(kQaThreads)
    qisa_a_backward_rows_kernel(T* dx, bool dx_add, int ld_x, double* part, const T* dv, int ld_v, const T* x,
                                const float* rx, const float* ry, const float* ry2, const PauliTerm* terms, int64_t N,
                                int H, int D, int C, int n) {
  QISA_DYNAMIC_SHARED(float, re);
  const int amps = 1 << n, nang = 3 * n, ngates = qa_gate_count(n);
  float* im = re + amps;
  float* lr = im + amps;
  float* li = lr + amps;
  float* gx = li + amps;
  float* g = gx + C;
  float* cs = g + D;
  double* wpart = reinterpret_cast<double*>(re + (4 * amps + C + D + 6 * H * n + 1) / 2 * 2);
  const int lane = static_cast<int>(threadIdx.x) % kWarp, warp = static_cast<int>(threadIdx.x) / kWarp;
  for (int i = static_cast<int>(threadIdx.x); i < H * nang * kQaWarps; i += qa_nt()) wpart[i] = 0.0;
  qa_half_angles(cs, 0, H, n, rx, ry, ry2);
  // (the zeros and the table are ordered before their first use by qa_inv_norm's barriers)
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kQaRows;
  for (int64_t row = n0; row < n0 + kQaRows && row < N; ++row) {
    const T* xr = x + row * ld_x;
    const float inv = qa_inv_norm(xr, C);
    for (int h = 0; h < H; ++h) {
      for (int j = static_cast<int>(threadIdx.x); j < D; j += qa_nt())
        g[j] = load_f(dv + row * ld_v, static_cast<int64_t>(h) * D + j);
      const float* hcs = cs + 6 * h * n;
      qa_simulate(re, im, xr, inv, C, n, hcs);  // its barriers order g's stores too
      qa_lambda(lr, li, re, im, g, terms + static_cast<int64_t>(h) * D, D, amps);
      QISA_SYNCTHREADS();  // lam is complete
      for (int gi = ngates - 1; gi >= 0; --gi) {
        const QaGate G = qa_gate(gi, n, hcs);
        if (G.kind == 2) {
          qa_apply(re, im, amps, G);
          qa_apply(lr, li, amps, G);
        } else {
          const float d = warp_sum(qa_adjoint_rotation(re, im, lr, li, amps, G));
          if (lane == 0) wpart[(h * nang + G.slot) * kQaWarps + warp] += static_cast<double>(d);
        }
        QISA_SYNCTHREADS();  // the step is done before the next one reads
      }
      // lam = dL/dpsi0; psi0 = x inv is real: dL/dx = (lam - psi0 (psi0 . lam)) inv
      float dot = 0.0f;
      for (int b = static_cast<int>(threadIdx.x); b < C; b += qa_nt()) dot += load_f(xr, b) * inv * lr[b];
      dot = block_reduce(dot, SumOp{});
      for (int b = static_cast<int>(threadIdx.x); b < C; b += qa_nt()) {  // each thread its own b
        const float d = (lr[b] - load_f(xr, b) * inv * dot) * inv;
        gx[b] = h == 0 ? d : gx[b] + d;
      }
    }
    if (dx)
      for (int b = static_cast<int>(threadIdx.x); b < C; b += qa_nt()) {
        T* dst = dx + row * ld_x;
        store_f(dst, b, dx_add ? load_f(dst, b) + gx[b] : gx[b]);
      }
  }
  QISA_SYNCTHREADS();  // every warp's slots are final
  double* p = part + static_cast<int64_t>(blockIdx.x) * H * nang;
  for (int k = static_cast<int>(threadIdx.x); k < H * nang; k += qa_nt()) {
    double s = 0.0;
    for (int w = 0; w < kQaWarps; ++w) s += wpart[k * kQaWarps + w];
    p[k] = s;
  }
}

// drx, dry, dry2 [H, n] (=|+=) the sum over blocks of part[.][h][angle], in block order (any null).
template <int kThreads>
__global__ void __launch_bounds__(kThreads)
    qisa_a_backward_params_kernel(float* drx, float* dry, float* dry2, bool add, const double* part, int64_t blocks,
                                  int H, int n) {
  const int k = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  const int nang = 3 * n;
  if (k >= H * nang) return;
  double s = 0.0;
  for (int64_t b = 0; b < blocks; ++b) s += part[b * H * nang + k];
  const int h = k / nang, slot = k % nang;
  float* dst = slot < n ? drx : (slot < 2 * n ? dry : dry2);
  if (!dst) return;
  float* e = dst + h * n + slot % n;
  *e = add ? *e + static_cast<float>(s) : static_cast<float>(s);
}

// ---- host side (enqueue on `stream`; device pointers)

inline void check_qisa_a_args(const char* op, int64_t N, int H, int D, int C, int n_qubits, int ld_x, int ld_v) {
  QISA_CHECK(N >= 0 && N <= 0x7FFFFFFF && H >= 1 && H <= 65535 && D >= 1 && C >= 1,
             std::string("cuda ") + op + " shape N=" + std::to_string(N) + " H=" + std::to_string(H) +
                 " D=" + std::to_string(D) + " C=" + std::to_string(C),
             "0 <= N < 2^31, 1 <= n_head <= 65535, head size and n_embd >= 1");
  QISA_CHECK(n_qubits >= 1 && n_qubits <= kQaMaxQubits && C <= (1 << n_qubits),
             std::string("cuda ") + op + ": C=" + std::to_string(C) + " amplitudes on " + std::to_string(n_qubits) +
                 " qubits",
             "n_qubits = ceil(log2(n_embd)) (C <= 2^n_qubits); the CUDA statevector kernel supports 1.." +
                 std::to_string(kQaMaxQubits) + " qubits");
  QISA_CHECK(ld_x >= C && static_cast<int64_t>(ld_v) >= static_cast<int64_t>(H) * D,
             std::string("cuda ") + op + ": row strides ld_x=" + std::to_string(ld_x) + " (needs >= " +
                 std::to_string(C) + "), ld_v=" + std::to_string(ld_v) + " (needs >= " +
                 std::to_string(static_cast<int64_t>(H) * D) + ")",
             "a row stride covers every head's columns");
  QISA_CHECK(qa_backward_smem_bytes(H, D, C, n_qubits) <= kQaSharedLimit,
             std::string("cuda ") + op + ": H=" + std::to_string(H) + " D=" + std::to_string(D) + " C=" +
                 std::to_string(C) + " on " + std::to_string(n_qubits) + " qubits needs " +
                 std::to_string(qa_backward_smem_bytes(H, D, C, n_qubits)) + " bytes of shared memory",
             "the backward kernel keeps the state, lam, the row's dx and the angle partials of every head in "
             "48 KiB of shared memory: fewer heads or qubits");
}

// v [N, ld_v]; x [N, ld_x]; rx, ry, ry2 [H, n_qubits]; terms [H*D].
template <typename T>
void qisa_a_forward(T* v, int ld_v, const T* x, int ld_x, const float* rx, const float* ry, const float* ry2,
                    const PauliTerm* terms, int64_t N, int H, int D, int C, int n_qubits, cudaStream_t stream) {
  check_qisa_a_args("qisa_a_forward", N, H, D, C, n_qubits, ld_x, ld_v);
  if (N == 0) return;
  const size_t smem = sizeof(float) * (2 * (size_t{1} << n_qubits) + 6 * static_cast<size_t>(n_qubits));
  const dim3 grid(static_cast<unsigned>(N), static_cast<unsigned>(H));
  QISA_LAUNCH(qisa_a_forward_kernel<T>, grid, dim3(static_cast<unsigned>(qa_block_threads(n_qubits))), smem, stream,
              v, ld_v, x, ld_x, rx, ry, ry2, terms, D, C, n_qubits);
}

// Doubles of device workspace qisa_a_backward needs for its angle-gradient partials.
inline int64_t qisa_a_backward_workspace(int64_t N, int H, int n_qubits) {
  return ceil_div_i64(N, kQaRows) * H * 3 * n_qubits;
}

// dx [N, ld_x] (=|+= by dx_mode; null: not needed); drx, dry, dry2 [H, n_qubits] (=|+= by param_mode,
// the sum over rows; any may be null); part: qisa_a_backward_workspace(N, H, n_qubits) doubles.
template <typename T>
void qisa_a_backward(T* dx, int ld_x, float* drx, float* dry, float* dry2, const T* dv, int ld_v, const T* x,
                     const float* rx, const float* ry, const float* ry2, const PauliTerm* terms, int64_t N, int H,
                     int D, int C, int n_qubits, GradMode dx_mode, GradMode param_mode, double* part,
                     cudaStream_t stream) {
  check_qisa_a_args("qisa_a_backward", N, H, D, C, n_qubits, ld_x, ld_v);
  const int64_t blocks = ceil_div_i64(N, kQaRows);
  if (blocks > 0) {
    const size_t smem = static_cast<size_t>(qa_backward_smem_bytes(H, D, C, n_qubits));
    QISA_LAUNCH(qisa_a_backward_rows_kernel<T>, dim3(static_cast<unsigned>(blocks)),
                dim3(static_cast<unsigned>(qa_block_threads(n_qubits))), smem, stream,
                dx, dx_mode == GradMode::accumulate, ld_x, part, dv, ld_v, x, rx, ry, ry2, terms, N, H, D, C,
                n_qubits);
  }
  if (!drx && !dry && !dry2) return;
  const dim3 grid(static_cast<unsigned>(ceil_div_i64(int64_t{3} * H * n_qubits, kQaReduceThreads)));
  QISA_LAUNCH(qisa_a_backward_params_kernel<kQaReduceThreads>, grid, dim3(kQaReduceThreads), 0, stream, drx, dry,
              dry2, param_mode == GradMode::accumulate, part, blocks, H, n_qubits);
}

}  // namespace qisa::cuda
