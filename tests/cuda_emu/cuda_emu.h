// A test-only emulation of the CUDA execution model, so that the kernel headers of
// kernels/cuda/ compile with g++ and run on the host (kernels/cuda/device.h includes this when
// QISA_CUDA_EMU is defined). It is honest where kernels can go wrong:
//  - every thread of a block is a real std::thread (blocks run one after another); the threads
//    of a block start in order, thread k+1 when thread k first blocks or returns (a legal CUDA
//    schedule that lets early threads run ahead, so a missing barrier reads unwritten memory;
//    a kernel that spins on a flag that a later thread sets would wait forever here);
//  - __syncthreads() is a real barrier; a barrier that not every thread reaches (one returned,
//    or threads wait at different barriers) and any deadlock make launch() throw LaunchError;
//  - shared memory is per block and filled with 0xFF bytes (NaN floats and bf16) at block start;
//  - warps are 32 lanes with real per-warp synchronisation: every lane of a mask must call the
//    same intrinsic with the same mask, the caller must be in its mask, and reading a lane that
//    is not in the mask is an error;
//  - atomics are std::atomic_ref.
// Kernels declare shared memory with QISA_SHARED / QISA_DYNAMIC_SHARED (device.h).
#pragma once
#include <atomic>
#include <cmath>
#include <math.h>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <source_location>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace qisa::emu {

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using uint3 = dim3;

// Constant-initialised inline variables: every TU accesses them directly (an extern thread_local
// goes through a TLS wrapper call, which UBSan's null check misreads in the sanitizer build).
inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
inline constexpr int warpSize = 32;

// What launch() throws when a kernel breaks the execution model (or throws itself).
class LaunchError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Runs body on every thread of every block (the untyped core of launch()).
void run_grid(dim3 grid, dim3 block, size_t dynamic_smem_bytes, const std::function<void()>& body);

// kernel<<<grid, block, dynamic_smem_bytes>>>(args...): arguments are converted to the kernel's
// parameter types once, as a CUDA launch does, and every thread gets its own copy.
template <class... P, class... A>
void launch(dim3 grid, dim3 block, size_t dynamic_smem_bytes, void (*kernel)(P...), A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "launch: wrong number of kernel arguments");
  const std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
  run_grid(grid, block, dynamic_smem_bytes, [&] {
    auto copy = params;
    std::apply(kernel, copy);
  });
}

// Test switch: launches made while a SkipBarriers lives treat the n-th distinct __syncthreads()
// call site (numbered 0, 1, ... in the order a launch first reaches them) as absent, or all of
// them (kAllBarriers). For tests that show a kernel needs its barriers.
inline constexpr int kAllBarriers = -1;
class SkipBarriers {
 public:
  explicit SkipBarriers(int site);
  ~SkipBarriers();
  SkipBarriers(const SkipBarriers&) = delete;
  SkipBarriers& operator=(const SkipBarriers&) = delete;
};

// ---- device-side primitives (valid only inside a launch)
void syncthreads(std::source_location loc = std::source_location::current());
void* shared_array(size_t bytes, std::source_location loc);
void* dynamic_shared();

enum class WarpOp : int { shfl, shfl_up, shfl_down, shfl_xor, ballot, all, any, syncwarp };
// One warp collective: the caller deposits `value` and the lane it reads (src < 0: its own
// value); returns the value of lane src (shuffles) or the ballot of the mask's predicates.
uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int src, size_t bytes);
int lane_id();

template <class T>
T shuffle(WarpOp op, unsigned mask, T var, int src) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffles move up to 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &var, sizeof(T));
  bits = warp_collective(op, mask, bits, src, sizeof(T));
  std::memcpy(&var, &bits, sizeof(T));
  return var;
}

// The lane a shuffle reads within its width-wide segment; -1: the caller keeps its own value.
int shfl_source(WarpOp op, int lane, int arg, int width);

}  // namespace qisa::emu

// ---- the CUDA names, at global scope as in CUDA
using qisa::emu::blockDim;
using qisa::emu::blockIdx;
using qisa::emu::dim3;
using qisa::emu::gridDim;
using qisa::emu::threadIdx;
using qisa::emu::uint3;
using qisa::emu::warpSize;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

using cudaStream_t = struct CUstream_st*;

inline void __syncthreads(std::source_location loc = std::source_location::current()) {
  qisa::emu::syncthreads(loc);
}
inline void __syncwarp(unsigned mask = 0xFFFFFFFFu) {
  qisa::emu::warp_collective(qisa::emu::WarpOp::syncwarp, mask, 0, -1, 0);
}
template <class T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32) {
  using qisa::emu::WarpOp;
  return qisa::emu::shuffle(WarpOp::shfl, mask, var,
                            qisa::emu::shfl_source(WarpOp::shfl, qisa::emu::lane_id(), src_lane, width));
}
template <class T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  using qisa::emu::WarpOp;
  return qisa::emu::shuffle(WarpOp::shfl_up, mask, var,
                            qisa::emu::shfl_source(WarpOp::shfl_up, qisa::emu::lane_id(), int(delta), width));
}
template <class T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  using qisa::emu::WarpOp;
  return qisa::emu::shuffle(WarpOp::shfl_down, mask, var,
                            qisa::emu::shfl_source(WarpOp::shfl_down, qisa::emu::lane_id(), int(delta), width));
}
template <class T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
  using qisa::emu::WarpOp;
  return qisa::emu::shuffle(WarpOp::shfl_xor, mask, var,
                            qisa::emu::shfl_source(WarpOp::shfl_xor, qisa::emu::lane_id(), lane_mask, width));
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  return static_cast<unsigned>(qisa::emu::warp_collective(qisa::emu::WarpOp::ballot, mask, pred != 0, -1, 0));
}
inline int __all_sync(unsigned mask, int pred) {
  return static_cast<int>(qisa::emu::warp_collective(qisa::emu::WarpOp::all, mask, pred != 0, -1, 0));
}
inline int __any_sync(unsigned mask, int pred) {
  return static_cast<int>(qisa::emu::warp_collective(qisa::emu::WarpOp::any, mask, pred != 0, -1, 0));
}

// Atomics return the old value, as CUDA's do.
template <class T>
T atomicAdd(T* address, T val) {
  return std::atomic_ref<T>(*address).fetch_add(val);
}
template <class T>
T atomicMax(T* address, T val) {
  std::atomic_ref<T> a(*address);
  T old = a.load();
  while (old < val && !a.compare_exchange_weak(old, val)) {
  }
  return old;
}
template <class T>
T atomicCAS(T* address, T compare, T val) {
  std::atomic_ref<T>(*address).compare_exchange_strong(compare, val);
  return compare;
}
template <class T>
T atomicExch(T* address, T val) {
  return std::atomic_ref<T>(*address).exchange(val);
}
