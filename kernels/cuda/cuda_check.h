// Checked CUDA runtime calls. Every call qisa makes to the runtime goes through QISA_CUDA_CALL:
// a failure throws qisa::Error naming file:line, the call, the CUDA error name and string, and a
// hint about what usually causes it. The runtime is the real one (nvcc, or g++ with the toolkit's
// headers) or, in the emulated test build (QISA_CUDA_EMU), the test double of
// tests/cuda_emu/cuda_runtime_emu.h, which implements the same calls' documented semantics.
#pragma once
#if defined(QISA_CUDA_EMU)
#include "cuda_runtime_emu.h"
#else
#include <cuda_runtime.h>
#endif

#include <string>

#include "kernels/error.h"

namespace qisa::cuda {

inline const char* cuda_hint(cudaError_t e) {
  switch (e) {
    case cudaErrorInsufficientDriver:
      return "no NVIDIA driver, or one older than the CUDA runtime this was built with (13.x): run on a GPU machine";
    case cudaErrorNoDevice:
      return "the driver sees no device: check nvidia-smi and CUDA_VISIBLE_DEVICES";
    case cudaErrorInvalidDevice:
      return "no device with that index: check nvidia-smi, CUDA_VISIBLE_DEVICES and the local rank";
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorInvalidDeviceFunction:
      return "the binary has no code for this GPU: rebuild with CMAKE_CUDA_ARCHITECTURES naming its sm (nvidia-smi)";
    case cudaErrorMemoryAllocation:
      return "out of device memory: reduce train.micro_batch_size, use train.recompute: blocks, or check nvidia-smi "
             "for another process holding memory";
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
      return "a kernel accessed memory out of bounds: run under compute-sanitizer --tool memcheck";
    case cudaErrorInvalidConfiguration:
      return "bad launch configuration (grid, block or shared memory size) for these shapes";
    case cudaErrorLaunchOutOfResources:
      return "too many registers or too much shared memory per block for this launch";
    case cudaErrorInvalidValue:
      return "an argument is invalid (a host pointer where device memory belongs, a size past an allocation)";
    default:
      return "see the CUDA runtime API's error list; the error may come from an earlier asynchronous launch";
  }
}

// A failing call also leaves its error as the thread's last error (cudaGetLastError's documented
// state), which the next launch check would report again under another name: read it here, once.
inline void check_cuda(cudaError_t e, const char* call, const char* file, int line) {
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();
  throw Error(std::string(file) + ":" + std::to_string(line) + ": " + call + " failed: " + cudaGetErrorName(e) + " (" +
                  cudaGetErrorString(e) + ")",
              cuda_hint(e));
}

}  // namespace qisa::cuda

#define QISA_CUDA_CALL(call) ::qisa::cuda::check_cuda((call), #call, __FILE__, __LINE__)
