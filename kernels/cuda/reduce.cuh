// Block-wide reductions for kernels/cuda: every warp reduces with shuffles, lane 0 of each warp
// parks its result in shared memory, and after one barrier every warp reduces those partials
// again, so all threads get the result without a broadcast step. The order of the additions is
// fixed by the block shape, so results are deterministic.
// Needs blockDim.x a multiple of 32 (full-mask shuffles) and at most 1024 threads, 1-D blocks.
#pragma once
#include "kernels/cuda/device.h"

namespace qisa::cuda::inline QISA_KERNEL_ABI {

struct SumOp {
  template <class V>
  __device__ __forceinline__ V operator()(V a, V b) const { return a + b; }
  template <class V>
  __device__ __forceinline__ static V identity() { return V(0); }
};
struct MaxOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
  template <class V>
  __device__ __forceinline__ static V identity() { return -INFINITY; }
};

template <class V, class Op>
__device__ __forceinline__ V warp_reduce(V v, Op op) {
  for (int o = kWarp / 2; o > 0; o /= 2) v = op(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// Every thread of the block calls this with its value; every thread gets op over all of them.
// V: float or double.
template <class V, class Op>
__device__ V block_reduce(V v, Op op) {
  QISA_SHARED(V, partial, kWarp);  // one slot per warp
  const int lane = static_cast<int>(threadIdx.x) % kWarp, warp = static_cast<int>(threadIdx.x) / kWarp;
  const int warps = static_cast<int>(blockDim.x) / kWarp;
  v = warp_reduce(v, op);
  if (lane == 0) partial[warp] = v;
  QISA_SYNCTHREADS();  // the partials are written
  v = warp_reduce(lane < warps ? partial[lane] : Op::template identity<V>(), op);
  QISA_SYNCTHREADS();  // every warp has read them: the next reduction may overwrite them
  return v;
}

}  // namespace qisa::cuda
