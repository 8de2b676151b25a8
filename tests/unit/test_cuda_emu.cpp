// Self-tests of the CUDA emulator (tests/cuda_emu): barriers, shared memory, warp collectives
// and atomics behave as the CUDA execution model says, and every misuse the model forbids is
// reported by launch() as an error instead of a hang or a silent wrong answer.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/device.h"

namespace {

using qisa::emu::launch;
using qisa::emu::LaunchError;

// Runs f and returns launch()'s error message ("" if none).
template <class F>
std::string launch_error(F&& f) {
  try {
    f();
  } catch (const LaunchError& e) {
    return e.what();
  }
  return "";
}

// ---- barriers

__global__ void neighbour_kernel(int* out) {
  QISA_SHARED(int, s, 64);
  const int t = static_cast<int>(threadIdx.x);
  s[t] = t * 10 + static_cast<int>(blockIdx.x);
  __syncthreads();
  out[blockIdx.x * 64 + t] = s[(t + 1) % 64];
}

TEST(CudaEmu, BarrierMakesNeighboursWritesVisible) {
  std::vector<int> out(3 * 64, -1);
  launch(dim3(3), dim3(64), 0, neighbour_kernel, out.data());
  for (int b = 0; b < 3; ++b)
    for (int t = 0; t < 64; ++t) ASSERT_EQ(out[b * 64 + t], ((t + 1) % 64) * 10 + b) << "block " << b << " thread " << t;
}

__global__ void early_return_kernel(int* out) {
  if (threadIdx.x % 2 == 1) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

TEST(CudaEmu, BarrierAfterAThreadReturnedIsAnErrorNotAHang) {
  std::vector<int> out(64, 0);
  const std::string e = launch_error([&] { launch(dim3(1), dim3(64), 0, early_return_kernel, out.data()); });
  EXPECT_NE(e.find("returned"), std::string::npos) << e;
}

__global__ void two_barriers_kernel(int* out) {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

TEST(CudaEmu, ThreadsAtDifferentBarriersAreAnError) {
  std::vector<int> out(32, 0);
  const std::string e = launch_error([&] { launch(dim3(1), dim3(32), 0, two_barriers_kernel, out.data()); });
  EXPECT_NE(e.find("different barriers"), std::string::npos) << e;
}

// ---- shared memory

__global__ void shared_init_kernel(float* seen, float* seen_dyn, uintptr_t* where) {
  QISA_SHARED(float, s, 32);
  QISA_DYNAMIC_SHARED(float, d);
  const unsigned t = threadIdx.x, i = blockIdx.x * 32 + t;
  seen[i] = s[t];
  seen_dyn[i] = d[t];
  where[i] = reinterpret_cast<uintptr_t>(s);
  __syncthreads();  // everyone has read before anyone writes
  s[t] = 1.0f;
  d[t] = 2.0f;
}

TEST(CudaEmu, SharedMemoryIsNaNAtEveryBlockStartAndOneArrayPerBlock) {
  const int blocks = 3;
  std::vector<float> seen(blocks * 32, 0.0f), seen_dyn(blocks * 32, 0.0f);
  std::vector<uintptr_t> where(blocks * 32, 0);
  launch(dim3(blocks), dim3(32), 32 * sizeof(float), shared_init_kernel, seen.data(), seen_dyn.data(), where.data());
  for (int i = 0; i < blocks * 32; ++i) {
    EXPECT_TRUE(std::isnan(seen[i])) << i;  // block 1 and 2 do not see block 0's 1.0f
    EXPECT_TRUE(std::isnan(seen_dyn[i])) << i;
    EXPECT_EQ(where[i], where[i / 32 * 32]) << "thread " << i << " sees another array than thread 0 of its block";
  }
}

// ---- warp collectives

__global__ void full_mask_kernel(int* out) {
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int w = static_cast<int>(threadIdx.x) / 32;
  int* o = out + threadIdx.x * 8;
  int v = lane + 1;
  for (int k = 16; k > 0; k /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, k);
  o[0] = v;                                                     // 528 = 1 + ... + 32
  o[1] = __shfl_sync(0xFFFFFFFFu, lane * 3 + w, 5);             // broadcast of lane 5
  o[2] = __shfl_down_sync(0xFFFFFFFFu, lane, 4);                // lane+4, own value at the top
  o[3] = __shfl_up_sync(0xFFFFFFFFu, lane, 1);                  // lane-1, own value at lane 0
  o[4] = static_cast<int>(__ballot_sync(0xFFFFFFFFu, lane % 3 == 0));
  o[5] = __all_sync(0xFFFFFFFFu, lane < 32 + w);
  o[6] = __any_sync(0xFFFFFFFFu, lane == 31 && w == 1);
  __syncwarp();
  o[7] = __shfl_xor_sync(0xFFFFFFFFu, lane, 1, 8);              // width 8 segments
}

TEST(CudaEmu, FullMaskShufflesBallotAllAny) {
  std::vector<int> out(64 * 8, -1);
  launch(dim3(1), dim3(64), 0, full_mask_kernel, out.data());
  unsigned every_third = 0;
  for (int l = 0; l < 32; l += 3) every_third |= 1u << l;
  for (int t = 0; t < 64; ++t) {
    const int lane = t % 32, w = t / 32;
    const int* o = out.data() + t * 8;
    EXPECT_EQ(o[0], 528) << t;
    EXPECT_EQ(o[1], 5 * 3 + w) << t;
    EXPECT_EQ(o[2], lane + 4 < 32 ? lane + 4 : lane) << t;
    EXPECT_EQ(o[3], lane >= 1 ? lane - 1 : lane) << t;
    EXPECT_EQ(static_cast<unsigned>(o[4]), every_third) << t;
    EXPECT_EQ(o[5], 1) << t;
    EXPECT_EQ(o[6], w == 1 ? 1 : 0) << t;
    EXPECT_EQ(o[7], lane ^ 1) << t;
  }
}

// Two halves of a warp run different collectives with disjoint masks at the same time.
__global__ void partial_mask_kernel(int* out) {
  const int lane = static_cast<int>(threadIdx.x);
  if (lane < 16) {
    out[lane] = __shfl_down_sync(0x0000FFFFu, lane, 1, 16);  // lane 15 keeps its own
    out[32 + lane] = static_cast<int>(__ballot_sync(0x0000FFFFu, lane >= 8));
  } else {
    out[lane] = __shfl_xor_sync(0xFFFF0000u, lane, 2);
    out[32 + lane] = __any_sync(0xFFFF0000u, lane == 20);
  }
}

TEST(CudaEmu, PartialMasksOfDisjointLanes) {
  std::vector<int> out(64, -1);
  launch(dim3(1), dim3(32), 0, partial_mask_kernel, out.data());
  for (int l = 0; l < 16; ++l) {
    EXPECT_EQ(out[l], l < 15 ? l + 1 : 15) << l;
    EXPECT_EQ(static_cast<unsigned>(out[32 + l]), 0x0000FF00u) << l;
  }
  for (int l = 16; l < 32; ++l) {
    EXPECT_EQ(out[l], l ^ 2) << l;
    EXPECT_EQ(out[32 + l], 1) << l;
  }
}

__global__ void inactive_read_kernel(int* out) {
  const int lane = static_cast<int>(threadIdx.x);
  if (lane < 16) out[lane] = __shfl_down_sync(0x0000FFFFu, lane, 1);  // lane 15 reads lane 16
}

TEST(CudaEmu, ReadingAnInactiveLaneIsAnError) {
  std::vector<int> out(32, -1);
  const std::string e = launch_error([&] { launch(dim3(1), dim3(32), 0, inactive_read_kernel, out.data()); });
  EXPECT_NE(e.find("not in the mask"), std::string::npos) << e;
}

__global__ void mismatched_mask_kernel(int* out) {
  const int lane = static_cast<int>(threadIdx.x);
  const unsigned mask = lane < 16 ? 0x0000FFFFu : 0xFFFFFFFFu;  // the upper half waits for the lower
  out[lane] = __shfl_xor_sync(mask, lane, 1);
}

__global__ void mismatched_op_kernel(int* out) {
  const int lane = static_cast<int>(threadIdx.x);
  out[lane] = lane == 0 ? static_cast<int>(__ballot_sync(0xFFFFFFFFu, 1)) : __shfl_sync(0xFFFFFFFFu, lane, 0);
}

__global__ void caller_outside_mask_kernel(int* out) {
  out[threadIdx.x] = __shfl_sync(0x0000FFFFu, 1, 0);  // lanes 16..31 are not in their mask
}

__global__ void missing_lanes_kernel(int* out) {
  out[threadIdx.x] = __shfl_xor_sync(0xFFFFFFFFu, 1, 1);  // 48 threads: warp 1 has 16 lanes
}

TEST(CudaEmu, MismatchedMasksAndIntrinsicsAreErrors) {
  std::vector<int> out(64, -1);
  std::string e = launch_error([&] { launch(dim3(1), dim3(32), 0, mismatched_mask_kernel, out.data()); });
  EXPECT_NE(e.find("returned"), std::string::npos) << e;  // the lower half returns; the upper waits for it
  e = launch_error([&] { launch(dim3(1), dim3(32), 0, mismatched_op_kernel, out.data()); });
  EXPECT_NE(e.find("same intrinsic"), std::string::npos) << e;
  e = launch_error([&] { launch(dim3(1), dim3(32), 0, caller_outside_mask_kernel, out.data()); });
  EXPECT_NE(e.find("not in its mask"), std::string::npos) << e;
  e = launch_error([&] { launch(dim3(1), dim3(48), 0, missing_lanes_kernel, out.data()); });
  EXPECT_NE(e.find("do not exist"), std::string::npos) << e;
}

__global__ void warp_waits_for_barrier_kernel(int* out) {
  // warp 0 waits in a shuffle for a lane that waits at a barrier for warp 0: a deadlock
  if (threadIdx.x == 31) __syncthreads();
  out[threadIdx.x] = __shfl_sync(0xFFFFFFFFu, 1, 0);
}

TEST(CudaEmu, DeadlockIsAnError) {
  std::vector<int> out(64, -1);
  const std::string e = launch_error([&] { launch(dim3(1), dim3(64), 0, warp_waits_for_barrier_kernel, out.data()); });
  EXPECT_FALSE(e.empty());
}

// ---- atomics

__global__ void atomics_kernel(int* count, float* sum, int* max) {
  const int t = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  atomicAdd(count, 1);
  atomicAdd(sum, 0.5f);
  atomicMax(max, (t * 37) % 1001);
}

TEST(CudaEmu, AtomicsAreAtomic) {
  int count = 0, max = -1;
  float sum = 0.0f;
  launch(dim3(4), dim3(128), 0, atomics_kernel, &count, &sum, &max);
  EXPECT_EQ(count, 512);
  EXPECT_EQ(sum, 256.0f);  // halves sum exactly in any order
  int want = -1;
  for (int t = 0; t < 512; ++t) want = std::max(want, (t * 37) % 1001);
  EXPECT_EQ(max, want);
}

__global__ void throwing_kernel(int* out) {
  if (threadIdx.x == 3) throw std::runtime_error("device assert");
  out[threadIdx.x] = 1;
}

__global__ void too_much_shared_kernel(int* out) {
  QISA_SHARED(float, big, 10000);  // 40000 bytes, plus 16 KiB dynamic: over 48 KiB
  big[threadIdx.x] = 1.0f;
  out[threadIdx.x] = 1;
}

TEST(CudaEmu, KernelExceptionsAndSharedMemoryOverflowAreErrors) {
  std::vector<int> out(32, 0);
  std::string e = launch_error([&] { launch(dim3(2), dim3(32), 0, throwing_kernel, out.data()); });
  EXPECT_NE(e.find("device assert"), std::string::npos) << e;
  EXPECT_NE(e.find("block (0,0,0)"), std::string::npos) << e;
  e = launch_error([&] { launch(dim3(1), dim3(32), 16 * 1024, too_much_shared_kernel, out.data()); });
  EXPECT_NE(e.find("exceeds 48 KiB"), std::string::npos) << e;
  launch(dim3(1), dim3(32), 0, too_much_shared_kernel, out.data());  // 40000 bytes alone fit
}

TEST(CudaEmu, InvalidLaunchShapesAreErrors) {
  int count = 0, max = 0;
  float sum = 0;
  EXPECT_THROW(launch(dim3(1), dim3(2048), 0, atomics_kernel, &count, &sum, &max), LaunchError);
  EXPECT_THROW(launch(dim3(0), dim3(32), 0, atomics_kernel, &count, &sum, &max), LaunchError);
  EXPECT_THROW(launch(dim3(1), dim3(32), 64 * 1024, atomics_kernel, &count, &sum, &max), LaunchError);
}

}  // namespace
