// The CUDA backend (DESIGN.md): the Backend interface over the kernels of kernels/cuda/*.cuh and
// the cuBLASLt wrapper (gemm.h), on one device and one stream. Needs no CUDA header.
#pragma once
#include <memory>

#include "kernels/backend.h"

namespace qisa {

struct CudaOptions {
  int device = 0;           // CUDA device index (after CUDA_VISIBLE_DEVICES)
  bool allow_tf32 = false;  // train.tf32: fp32 GEMMs may use TF32 tensor cores
};

// Built only where nvcc was found (QISA_HAVE_CUDA); throws qisa::Error naming the CUDA call and a
// hint when the device cannot be used (no driver, no device, out of memory).
std::unique_ptr<Backend> make_cuda_backend(const CudaOptions& options);

}  // namespace qisa
