// Fused softmax cross-entropy over rows of logits [N, V] (SPEC §1; CPU contract:
// kernels/cpu/cross_entropy.h), max-subtracted, in fp32 whatever the logits' storage T.
// One block of kCeThreads per row:
//   mx = max_j l[j]                        (block_reduce, exact in any order)
//   s  = sum_j exp(l[j] - mx)              (per-thread strided sums, then block_reduce)
//   forward:  loss[n] = log(s) + mx - l[t]
//   backward: d[j] = (exp(l[j]-mx)/s - [j == t]) * scale   (d may alias l: every thread has
//             finished reading l for the sums before the barrier in block_reduce, and then
//             rewrites only the elements it reads)
// A target outside [0, V) gives a NaN loss (and a NaN row of dlogits) instead of a wild read.
#pragma once
#include <cstdint>
#include <string>

#include "kernels/cuda/device.h"
#include "kernels/cuda/reduce.cuh"
#include "kernels/error.h"

namespace qisa::cuda::inline QISA_KERNEL_ABI {

inline constexpr int kCeThreads = 256;  // per row; a multiple of 32 (block_reduce)

template <typename T>
__device__ __forceinline__ void ce_row_stats(const T* l, int V, float& mx, float& s) {
  float m = -INFINITY;
  for (int j = static_cast<int>(threadIdx.x); j < V; j += kCeThreads) m = fmaxf(m, load_f(l, j));
  mx = block_reduce(m, MaxOp{});
  float e = 0.0f;
  for (int j = static_cast<int>(threadIdx.x); j < V; j += kCeThreads) e += expf(load_f(l, j) - mx);
  s = block_reduce(e, SumOp{});
}

template <typename T>
__global__ void __launch_bounds__(kCeThreads)
    cross_entropy_forward_kernel(float* losses, const T* logits, const int32_t* targets, int V) {
  const int64_t n = blockIdx.x;
  const T* l = logits + n * V;
  float mx, s;
  ce_row_stats(l, V, mx, s);
  if (threadIdx.x == 0) {
    const int t = targets[n];
    losses[n] = (t >= 0 && t < V) ? logf(s) + mx - load_f(l, t) : NAN;
  }
}

template <typename T>
__global__ void __launch_bounds__(kCeThreads)
    cross_entropy_backward_kernel(T* dlogits, const T* logits, const int32_t* targets, int V, float scale) {
  const int64_t n = blockIdx.x;
  const T* l = logits + n * V;
  T* d = dlogits + n * V;
  float mx, s;
  ce_row_stats(l, V, mx, s);
  const int t = targets[n];
  const float inv = (t >= 0 && t < V) ? 1.0f / s : NAN;
  for (int j = static_cast<int>(threadIdx.x); j < V; j += kCeThreads) {
    const float p = expf(load_f(l, j) - mx) * inv;
    store_f(d, j, (j == t ? p - 1.0f : p) * scale);
  }
}

inline void check_cross_entropy_shape(int64_t N, int V) {
  QISA_CHECK(N >= 0 && N <= 0x7FFFFFFF && V >= 1,
             "cuda cross-entropy shape N=" + std::to_string(N) + " V=" + std::to_string(V),
             "0 <= N < 2^31, vocab_size >= 1");
}

// losses [N]; logits [N, V]; targets [N]
template <typename T>
void cross_entropy_forward(float* losses, const T* logits, const int32_t* targets, int64_t N, int V,
                           cudaStream_t stream) {
  check_cross_entropy_shape(N, V);
  if (N == 0) return;
  QISA_LAUNCH(cross_entropy_forward_kernel<T>, dim3(static_cast<unsigned>(N)), dim3(kCeThreads), 0, stream, losses,
              logits, targets, V);
}

// dlogits [N, V] = (softmax - onehot) * scale. OVERWRITES; dlogits may alias logits.
template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const int32_t* targets, int64_t N, int V, float scale,
                            cudaStream_t stream) {
  check_cross_entropy_shape(N, V);
  if (N == 0) return;
  QISA_LAUNCH(cross_entropy_backward_kernel<T>, dim3(static_cast<unsigned>(N)), dim3(kCeThreads), 0, stream,
              dlogits, logits, targets, V, scale);
}

}  // namespace qisa::cuda
