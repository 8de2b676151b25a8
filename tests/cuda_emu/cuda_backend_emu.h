// The CUDA backend (kernels/cuda/cuda_backend_impl.h) built against the CUDA emulator and the test
// doubles of the CUDA runtime (cuda_runtime_emu.h) and of cuBLASLt (cublaslt_double.h): every
// line of the product's backend runs on the CPU. No CUDA header here.
#pragma once
#include <memory>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"

namespace qisa::test {

std::unique_ptr<Backend> make_emulated_cuda_backend(const CudaOptions& options = {});

}  // namespace qisa::test
