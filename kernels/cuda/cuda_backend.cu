// make_cuda_backend: the CUDA backend of kernels/cuda/cuda_backend_impl.h, built by nvcc.
#include "kernels/cuda/cuda_backend_impl.h"

namespace qisa {

std::unique_ptr<Backend> make_cuda_backend(const CudaOptions& options) {
  return std::make_unique<cuda::CudaBackend>(options);
}

}  // namespace qisa
