// make_emulated_cuda_backend: the product's CudaBackend, compiled by g++ against the emulator.
#include "cuda_backend_emu.h"

#include "kernels/cuda/cuda_backend_impl.h"

namespace qisa::test {

std::unique_ptr<Backend> make_emulated_cuda_backend(const CudaOptions& options) {
  return std::make_unique<cuda::CudaBackend>(options);
}

}  // namespace qisa::test
