// Flat-buffer ops (CPU contract: backend.h convert, round_bf16_stochastic, scale, sum_squares).
//   convert:   dst[i] = src[i] (bf16 destinations round to nearest even)    grid-stride
//   round_bf16_stochastic: dst[i] = float_to_bf16_stochastic(src[i],
//              philox_bits(seed, kBf16RoundStream, step, elem_offset + i))    grid-stride
//   scale:     x[i] *= a                                                     grid-stride
//   sum_squares, deterministic in two kernels (no atomics):
//     kernel 1, G = min(kSsqBlocks, ceil(n / kSsqThreads)) blocks: thread t of block k sums
//               x[i]^2 in double over i = k*kSsqThreads + t, stepping by G*kSsqThreads;
//               block_reduce; part[k]
//     kernel 2, one block: block_reduce over part[0..G) -> *result
//   The same n gives the same bits on every run; the order differs from the CPU's (1e-15).
//   sum_to:    acc[0] (=|+=) x[0] + ... + x[n-1] in double, in index order, by one thread: the
//              CPU's exact sum (n is a micro-batch's rows, read once a step: cheap).
#pragma once
#include <algorithm>
#include <cstdint>

#include "kernels/backend.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/reduce.cuh"
#include "kernels/philox.h"

namespace qisa::cuda::inline QISA_KERNEL_ABI {

inline constexpr int kEltThreads = 256;
inline constexpr int64_t kEltMaxBlocks = 4096;
inline constexpr int kSsqThreads = 256;
inline constexpr int kSsqBlocks = 128;  // most partials of sum_squares (the order depends on n only)

inline dim3 elementwise_grid(int64_t n) {
  return dim3(static_cast<unsigned>(std::min(ceil_div_i64(n, kEltThreads), kEltMaxBlocks)));
}

template <typename D, typename S>
__global__ void __launch_bounds__(kEltThreads) convert_kernel(D* dst, const S* src, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    store_f(dst, i, load_f(src, i));
}

template <int kThreads>
__global__ void __launch_bounds__(kThreads)
    round_bf16_stochastic_kernel(bf16* dst, const float* src, int64_t n, uint64_t seed, uint32_t step,
                                 uint64_t elem_offset) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = float_to_bf16_stochastic(
        src[i], philox_bits(seed, kBf16RoundStream, step, elem_offset + static_cast<uint64_t>(i)));
}

template <int kThreads>
__global__ void __launch_bounds__(kThreads) scale_kernel(float* x, float a, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) x[i] *= a;
}

template <int kThreads>
__global__ void __launch_bounds__(kThreads) sum_squares_partial_kernel(double* part, const float* x, int64_t n) {
  double s = 0.0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const double d = static_cast<double>(x[i]);
    s += d * d;
  }
  s = block_reduce(s, SumOp{});
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// One thread: the sum in index order, so the bits are the CPU backend's.
template <int kThreads>
__global__ void __launch_bounds__(kThreads) sum_to_kernel(double* acc, const float* x, int64_t n, bool add) {
  if (threadIdx.x != 0) return;
  double s = add ? *acc : 0.0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]);
  *acc = s;
}

template <int kThreads>
__global__ void __launch_bounds__(kThreads) sum_partials_kernel(double* result, const double* part, int parts) {
  double s = 0.0;
  for (int k = static_cast<int>(threadIdx.x); k < parts; k += kThreads) s += part[k];
  s = block_reduce(s, SumOp{});
  if (threadIdx.x == 0) *result = s;
}

template <typename D, typename S>
void convert(D* dst, const S* src, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  QISA_LAUNCH((convert_kernel<D, S>), elementwise_grid(n), dim3(kEltThreads), 0, stream, dst, src, n);
}

inline void round_bf16_stochastic(bf16* dst, const float* src, int64_t n, uint64_t seed, uint32_t step,
                                  uint64_t elem_offset, cudaStream_t stream) {
  if (n <= 0) return;
  QISA_LAUNCH(round_bf16_stochastic_kernel<kEltThreads>, elementwise_grid(n), dim3(kEltThreads), 0, stream, dst, src,
              n, seed, step, elem_offset);
}

inline void scale(float* x, float a, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  QISA_LAUNCH(scale_kernel<kEltThreads>, elementwise_grid(n), dim3(kEltThreads), 0, stream, x, a, n);
}

// Doubles of device workspace sum_squares needs.
inline constexpr int64_t kSumSquaresWorkspace = kSsqBlocks;

// *result (device memory) = sum of x[i]^2 in double; part: kSumSquaresWorkspace doubles.
inline void sum_squares(double* result, const float* x, int64_t n, double* part, cudaStream_t stream) {
  const int blocks = static_cast<int>(std::min<int64_t>(kSsqBlocks, ceil_div_i64(std::max<int64_t>(n, 0), kSsqThreads)));
  if (blocks > 0)
    QISA_LAUNCH(sum_squares_partial_kernel<kSsqThreads>, dim3(blocks), dim3(kSsqThreads), 0, stream, part, x, n);
  QISA_LAUNCH(sum_partials_kernel<kSsqThreads>, dim3(1), dim3(kSsqThreads), 0, stream, result,
              static_cast<const double*>(part), blocks);
}

// acc[0] (device memory) (=|+=) sum of x[0..n) in double, in index order.
inline void sum_to(double* acc, const float* x, int64_t n, GradMode mode, cudaStream_t stream) {
  QISA_LAUNCH(sum_to_kernel<kWarp>, dim3(1), dim3(kWarp), 0, stream, acc, x, std::max<int64_t>(n, 0),
              mode == GradMode::accumulate);
}

}  // namespace qisa::cuda
