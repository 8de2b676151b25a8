// A test double of the part of the CUDA runtime API that the CUDA backend calls
// (kernels/cuda/cuda_backend_impl.h), for the emulated build (QISA_CUDA_EMU). It implements the
// documented semantics of each call on host memory, strictly, so that the backend's use of the
// API is tested and not skipped:
//  - device memory (cudaMalloc) is a host allocation aligned to 256 bytes (CUDA's guarantee) and
//    NOT cleared: it is filled with 0xFF bytes (NaN floats and bf16), so reading memory nobody
//    wrote shows; every call that names device memory checks that the whole range lies inside
//    one live allocation and returns cudaErrorInvalidValue otherwise (a host pointer passed
//    where device memory belongs, a copy past an allocation's end, a double free);
//  - cudaMemcpy kinds are checked against where the pointers are (cudaMemcpyDefault infers it);
//  - streams and events are handles that must be live; the work of a stream runs when it is
//    enqueued (kernels run inside launch(), copies at once): a legal CUDA schedule, in which
//    every recorded event is complete, so cudaEventQuery returns cudaSuccess, except work that
//    a stream hold (emu_streams.h: a collective of the NCCL double not yet complete) keeps
//    back: events recorded behind a hold report cudaErrorNotReady until it is released, and
//    calls that must wait for it (copies on its stream, stream and event synchronisation)
//    block until then (30 s at most, then cudaErrorLaunchTimeout: a real program would hang);
//    cudaStreamWaitEvent makes a stream take on the open holds of the event;
//  - cudaGetLastError returns and resets the calling thread's last error, which every failing
//    call sets, as the runtime does;
//  - faults can be injected: a FailCall makes the n-th next call of a named function fail with a
//    given error (out of memory, a kernel fault reported at the next synchronisation, ...).
// The numeric values of cudaError_t are those of CUDA 13's driver_types.h. The names live in
// qisa::emu::runtime (a using-directive brings them to global scope, where CUDA has them), so
// their symbols never interpose on libcudart's in a binary that also links the real runtime.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "cuda_emu.h"
#include "emu_streams.h"

namespace qisa::emu::runtime {

enum cudaError_t : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInsufficientDriver = 35,
  cudaErrorInvalidDeviceFunction = 98,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorNoKernelImageForDevice = 209,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorLaunchTimeout = 702,
  cudaErrorLaunchFailure = 719,
  cudaErrorUnknown = 999,
};
using cudaError = cudaError_t;

enum cudaMemcpyKind : int {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

using cudaEvent_t = struct CUevent_st*;
inline constexpr unsigned cudaStreamNonBlocking = 0x01;
inline constexpr unsigned cudaEventDisableTiming = 0x02;

// The fields of cudaDeviceProp that qisa reads (the real struct has many more).
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  int major, minor;
  int multiProcessorCount;
};

cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaMalloc(void** ptr, size_t bytes);
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream);
cudaError_t cudaEventQuery(cudaEvent_t event);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorName(cudaError_t error);
const char* cudaGetErrorString(cudaError_t error);

}  // namespace qisa::emu::runtime

using namespace qisa::emu::runtime;  // NOLINT: CUDA's names are global

namespace qisa::emu {

// Makes the (skip+1)-th call of `call` (e.g. "cudaMalloc") made while it lives return `error`
// (and set the last error) without doing anything; later calls succeed again. One at a time.
class FailCall {
 public:
  FailCall(std::string call, cudaError_t error, int skip = 0);
  ~FailCall();
  FailCall(const FailCall&) = delete;
  FailCall& operator=(const FailCall&) = delete;
  bool fired() const;  // the fault has been returned
};

// Live cudaMalloc allocations and their bytes: tests check that a backend frees what it took.
size_t live_device_allocations();
size_t live_device_bytes();

}  // namespace qisa::emu
