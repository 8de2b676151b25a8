// The portability header of the kernel sources: kernels/cuda/*.cuh include only this, and the
// same kernel text compiles with nvcc for the GPU and with g++ against the test-only CUDA
// emulator (tests/cuda_emu, built with -DQISA_CUDA_EMU; it is not part of the product).
//
//   QISA_SHARED(T, name, N)      a block's shared array T name[N]
//   QISA_DYNAMIC_SHARED(T, name) T* name = the launch's dynamic shared memory
//   QISA_SYNCTHREADS()           __syncthreads() (the emulator can skip a call site in tests)
//   QISA_LAUNCH(kernel, grid, block, smem, stream, args...)   kernel<<<grid, block, smem, stream>>>(args...)
//
// `__shared__ T x[N]` inside a function is one array per block on the GPU but one static object
// in plain C++, hence the macros: under the emulator each names a pointer into the block's own
// shared memory (filled with NaN at block start), the same pointer for every thread of the block.
// The kernels live in the inline namespace qisa::cuda::sm (nvcc) or qisa::cuda::emu (emulator),
// so a test binary that links both never mixes the two instantiations of a template.
#pragma once

#if defined(__CUDACC__)
#include <cuda_runtime.h>

#define QISA_SHARED(T, name, N) __shared__ T name[N]
// One untyped extern array for every kernel: extern __shared__ arrays of different element types
// in different template instances would clash.
#define QISA_DYNAMIC_SHARED(T, name)                         \
  extern __shared__ __align__(16) unsigned char qisa_dynamic_smem_[]; \
  T* const name = reinterpret_cast<T*>(qisa_dynamic_smem_)
#define QISA_SYNCTHREADS() __syncthreads()
#define QISA_LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<grid, block, smem, stream>>>(__VA_ARGS__)
#define QISA_KERNEL_ABI sm

#elif defined(QISA_CUDA_EMU)
#include "cuda_emu.h"

#define QISA_SHARED(T, name, N) \
  T* const name = static_cast<T*>(::qisa::emu::shared_array(sizeof(T) * (N), std::source_location::current()))
#define QISA_DYNAMIC_SHARED(T, name) T* const name = static_cast<T*>(::qisa::emu::dynamic_shared())
#define QISA_SYNCTHREADS() __syncthreads()
#define QISA_LAUNCH(kernel, grid, block, smem, stream, ...) \
  ((void)(stream), ::qisa::emu::launch(grid, block, smem, kernel, __VA_ARGS__))
#define QISA_KERNEL_ABI emu

#else
#error "kernels/cuda/device.h: compile with nvcc, or with -DQISA_CUDA_EMU and tests/cuda_emu on the include path"
#endif

#include <cstdint>

#include "kernels/bf16.h"

namespace qisa::cuda::inline QISA_KERNEL_ABI {

inline constexpr unsigned kFullMask = 0xFFFFFFFFu;
inline constexpr int kWarp = 32;

// Element storage: arithmetic is fp32, bf16 is rounded to nearest even once, when stored.
__device__ __forceinline__ float load_f(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load_f(const bf16* p, int64_t i) { return bf16_to_float(p[i]); }
__device__ __forceinline__ void store_f(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store_f(bf16* p, int64_t i, float v) { p[i] = float_to_bf16(v); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

__host__ __device__ __forceinline__ int64_t ceil_div_i64(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace qisa::cuda
