// LayerNorm over the last dimension (SPEC §1; the CPU contract is kernels/cpu/layernorm.h):
// eps 1e-5, biased variance, affine. T: storage of in/out/din/dout (float or bf16); statistics,
// parameters and their gradients are fp32.
//
// forward: one warp per row, kLnWarps rows per block.
//   for row n:  mu = sum_c x[c] / C;  var = sum_c (x[c]-mu)^2 / C  (two passes, no cancellation)
//               rs = 1/sqrt(var + eps);  out[c] = (x[c]-mu)*rs*w[c] + b[c]
// backward, kernel 1: one warp per row, a block owns kLnBwdRows consecutive rows; warp w takes
//   rows w, w + kLnWarps, ... of them and accumulates dw, db for its rows in its own slice of
//   shared memory; after a barrier the block sums the warps' slices in warp order into its
//   partial row part[block] = [dw C | db C].
//   for row n:  xh = (x-mu)*rs;  sg = sum_c g*w / C;  sgx = sum_c g*w*xh / C
//               din[c] (=|+=) rs*(g[c]*w[c] - sg - xh[c]*sgx);  dw[c] += g*xh;  db[c] += g
// backward, kernel 2: dw[c], db[c] (=|+=) the sum over blocks of part[.][c], in block order.
// Rows wider than kLnMaxC (GPT-2 XL's 1600): the warps' slices would not fit 48 KiB of shared
//   memory, so kernel 1 computes din alone and a column kernel writes the same partials: block
//   (r, j) takes columns [kLnReduceThreads j, +kLnReduceThreads), a thread per column, and sums
//   the kLnBwdRows rows of row block r in row order: part[r] = [sum g*xh | sum g]. It reads x and
//   g once more (6 NC floats of traffic instead of 4), for any C.
// No float atomics: dw/db are bit-for-bit reproducible for a given N.
// Shapes: in, out, dout, din [N, C]; mean, rstd [N]; w, b, dw, db [C]; part [blocks, 2C].
#pragma once
#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/cuda/device.h"
#include "kernels/error.h"

namespace qisa::cuda::inline QISA_KERNEL_ABI {

inline constexpr int kLnWarps = 4;                 // warps (rows in flight) per block
inline constexpr int kLnThreads = kLnWarps * kWarp;
inline constexpr int kLnBwdRows = 32;              // rows per block of backward (per dw/db partial)
inline constexpr int kLnMaxC = 48 * 1024 / (2 * kLnWarps * 4);  // widest C whose shared slices fit 48 KiB
inline constexpr int kLnReduceThreads = 128;       // threads per block of the partial reduction
inline constexpr float kLnEps = 1e-5f;

template <typename T>
__global__ void __launch_bounds__(kLnThreads)
    layernorm_forward_kernel(T* out, float* mean, float* rstd, const T* in, const float* w, const float* b,
                             int64_t N, int C) {
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kLnWarps + threadIdx.x / kWarp;
  if (n >= N) return;  // the whole warp: no barrier follows
  const T* x = in + n * C;
  const float inv_c = 1.0f / static_cast<float>(C);
  float s = 0.0f;
  for (int c = lane; c < C; c += kWarp) s += load_f(x, c);
  const float mu = warp_sum(s) * inv_c;
  float v = 0.0f;
  for (int c = lane; c < C; c += kWarp) {
    const float d = load_f(x, c) - mu;
    v += d * d;
  }
  const float rs = 1.0f / sqrtf(warp_sum(v) * inv_c + kLnEps);
  for (int c = lane; c < C; c += kWarp) store_f(out + n * C, c, (load_f(x, c) - mu) * rs * w[c] + b[c]);
  if (lane == 0) {
    mean[n] = mu;
    rstd[n] = rs;
  }
}

// kSlices: dynamic shared memory [kLnWarps][2][C] floats (dw slice, db slice per warp), and the
// block's partial written to part; without, din only (part unused).
template <typename T, bool kSlices>
__global__ void __launch_bounds__(kLnThreads)
    layernorm_backward_rows_kernel(T* din, bool din_add, float* part, const T* dout, const T* in, const float* w,
                                   const float* mean, const float* rstd, int64_t N, int C) {
  QISA_DYNAMIC_SHARED(float, acc);
  const int lane = static_cast<int>(threadIdx.x) % kWarp, warp = static_cast<int>(threadIdx.x) / kWarp;
  [[maybe_unused]] float* aw = acc + static_cast<int64_t>(warp) * 2 * C;
  [[maybe_unused]] float* ab = aw + C;
  if constexpr (kSlices)
    for (int c = lane; c < C; c += kWarp) aw[c] = ab[c] = 0.0f;  // each lane owns its columns
  const float inv_c = 1.0f / static_cast<float>(C);
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kLnBwdRows;
  for (int64_t n = n0 + warp; n < n0 + kLnBwdRows && n < N; n += kLnWarps) {
    const T* x = in + n * C;
    const T* g = dout + n * C;
    const float mu = mean[n], rs = rstd[n];
    float sg = 0.0f, sgx = 0.0f;
    for (int c = lane; c < C; c += kWarp) {
      const float gw = load_f(g, c) * w[c];
      sg += gw;
      sgx += gw * ((load_f(x, c) - mu) * rs);
    }
    sg = warp_sum(sg) * inv_c;
    sgx = warp_sum(sgx) * inv_c;
    for (int c = lane; c < C; c += kWarp) {
      const float gc = load_f(g, c), xh = (load_f(x, c) - mu) * rs;
      if (din) {
        const float v = rs * (gc * w[c] - sg - xh * sgx);
        store_f(din + n * C, c, din_add ? load_f(din + n * C, c) + v : v);
      }
      if constexpr (kSlices) {
        aw[c] += gc * xh;
        ab[c] += gc;
      }
    }
  }
  if constexpr (!kSlices) return;  // the whole block: no barrier follows
  QISA_SYNCTHREADS();  // every warp's slices are complete
  float* p = part + static_cast<int64_t>(blockIdx.x) * 2 * C;
  for (int c = static_cast<int>(threadIdx.x); c < C; c += kLnThreads) {
    float sw = 0.0f, sb = 0.0f;
    for (int k = 0; k < kLnWarps; ++k) {
      sw += acc[static_cast<int64_t>(k) * 2 * C + c];
      sb += acc[static_cast<int64_t>(k) * 2 * C + C + c];
    }
    p[c] = sw;
    p[C + c] = sb;
  }
}

// Wide rows: part[r] = [sum_n g*xh | sum_n g] over row block r, a thread per column (see the top).
template <typename T>
__global__ void __launch_bounds__(kLnReduceThreads)
    layernorm_backward_cols_kernel(float* part, const T* dout, const T* in, const float* mean, const float* rstd,
                                   int64_t N, int C) {
  const int c = static_cast<int>(blockIdx.y * blockDim.x + threadIdx.x);
  if (c >= C) return;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kLnBwdRows;
  const int64_t n1 = n0 + kLnBwdRows < N ? n0 + kLnBwdRows : N;
  float sw = 0.0f, sb = 0.0f;
  for (int64_t n = n0; n < n1; ++n) {
    const float g = load_f(dout + n * C, c);
    sw += g * ((load_f(in + n * C, c) - mean[n]) * rstd[n]);
    sb += g;
  }
  float* p = part + static_cast<int64_t>(blockIdx.x) * 2 * C;
  p[c] = sw;
  p[C + c] = sb;
}

// dw[c], db[c] (=|+=) sum over the blocks' partials in block order (dw or db may be null).
// A template (on the block size): nvcc has no inline kernels, and a non-template kernel defined
// in a header would be defined again by every .cu file that includes it.
template <int kThreads>
__global__ void __launch_bounds__(kThreads)
    layernorm_backward_params_kernel(float* dw, float* db, bool param_add, const float* part, int64_t blocks, int C) {
  const int c = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (c >= C) return;
  float sw = 0.0f, sb = 0.0f;
  for (int64_t k = 0; k < blocks; ++k) {
    sw += part[k * 2 * C + c];
    sb += part[k * 2 * C + C + c];
  }
  if (dw) dw[c] = param_add ? dw[c] + sw : sw;
  if (db) db[c] = param_add ? db[c] + sb : sb;
}

// ---- host side (enqueue on `stream`; device pointers)

inline void check_layernorm_shape(int64_t N, int C, int max_c) {
  QISA_CHECK(N >= 0 && C >= 1 && C <= max_c,
             "cuda layernorm shape N=" + std::to_string(N) + " C=" + std::to_string(C),
             "N >= 0, 1 <= C <= " + std::to_string(max_c));
}

template <typename T>
void layernorm_forward(T* out, float* mean, float* rstd, const T* in, const float* w, const float* b, int64_t N,
                       int C, cudaStream_t stream) {
  check_layernorm_shape(N, C, 1 << 30);
  if (N == 0) return;
  const dim3 grid(static_cast<unsigned>(ceil_div_i64(N, kLnWarps)));
  QISA_LAUNCH(layernorm_forward_kernel<T>, grid, dim3(kLnThreads), 0, stream, out, mean, rstd, in, w, b, N, C);
}

// Floats of device workspace layernorm_backward needs for its partial sums.
inline int64_t layernorm_backward_workspace(int64_t N, int C) { return ceil_div_i64(N, kLnBwdRows) * 2 * C; }

// part: layernorm_backward_workspace(N, C) floats. din may be null (then only dw, db).
template <typename T>
void layernorm_backward(T* din, float* dw, float* db, const T* dout, const T* in, const float* w, const float* mean,
                        const float* rstd, int64_t N, int C, GradMode din_mode, GradMode param_mode, float* part,
                        cudaStream_t stream) {
  check_layernorm_shape(N, C, 1 << 30);
  const int64_t blocks = ceil_div_i64(N, kLnBwdRows);
  const bool slices = C <= kLnMaxC;
  const auto rows_kernel = slices ? layernorm_backward_rows_kernel<T, true> : layernorm_backward_rows_kernel<T, false>;
  if (blocks > 0 && (slices || din)) {
    const size_t smem = slices ? sizeof(float) * kLnWarps * 2 * static_cast<size_t>(C) : 0;
    QISA_LAUNCH(rows_kernel, dim3(static_cast<unsigned>(blocks)), dim3(kLnThreads), smem, stream, din,
                din_mode == GradMode::accumulate, part, dout, in, w, mean, rstd, N, C);
  }
  if (blocks > 0 && !slices && (dw || db)) {
    const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(ceil_div_i64(C, kLnReduceThreads)));
    QISA_LAUNCH(layernorm_backward_cols_kernel<T>, grid, dim3(kLnReduceThreads), 0, stream, part, dout, in, mean,
                rstd, N, C);
  }
  if (!dw && !db) return;
  const dim3 grid(static_cast<unsigned>(ceil_div_i64(C, kLnReduceThreads)));
  QISA_LAUNCH(layernorm_backward_params_kernel<kLnReduceThreads>, grid, dim3(kLnReduceThreads), 0, stream, dw, db,
              param_mode == GradMode::accumulate, part, blocks, C);
}

}  // namespace qisa::cuda
