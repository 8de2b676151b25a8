// Device memory and checked CUDA calls for the GPU test and benchmark programs (nvcc only).
//   QISA_CUDA_CALL(call)   kernels/cuda/cuda_check.h: throws qisa::Error naming file:line, the call,
//                          the CUDA error and a hint
//   DeviceBuffer<T>        RAII cudaMalloc'd array (move-only)
//   DeviceRunner           the runner of tests/kernel_cases.h on device memory
#pragma once
#include <cuda_runtime.h>

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/cuda_check.h"

namespace qisa::test::gpu {

using qisa::cuda::check_cuda;
using qisa::cuda::cuda_hint;

template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (n_ > 0) QISA_CUDA_CALL(cudaMalloc(reinterpret_cast<void**>(&p_), n_ * sizeof(T)));
  }
  explicit DeviceBuffer(const std::vector<T>& v) : DeviceBuffer(v.size()) {
    if (n_ > 0) QISA_CUDA_CALL(cudaMemcpy(p_, v.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (!p_) return;
    if (const cudaError_t e = cudaFree(p_); e != cudaSuccess)  // a destructor must not throw: report
      std::fprintf(stderr, "%s:%d: cudaFree failed: %s (%s); hint: %s\n", __FILE__, __LINE__, cudaGetErrorName(e),
                   cudaGetErrorString(e), cuda_hint(e));
  }
  T* data() const { return p_; }
  size_t size() const { return n_; }
  // The values, after every launch on the device has finished.
  std::vector<T> download() const {
    std::vector<T> v(n_);
    QISA_CUDA_CALL(cudaDeviceSynchronize());
    if (n_ > 0) QISA_CUDA_CALL(cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// tests/kernel_cases.h on the device: buffers in device memory, the default stream.
struct DeviceRunner {
  template <class T>
  using Buf = DeviceBuffer<T>;
  template <class T>
  DeviceBuffer<T> put(const std::vector<T>& v) const { return DeviceBuffer<T>(v); }
  template <class T>
  std::vector<T> get(const DeviceBuffer<T>& b) const { return b.download(); }
  // After a host wrapper (one or more launches): a bad launch leaves its error for
  // cudaGetLastError; a fault inside a kernel shows at the next synchronisation (download).
  void launched(const char* what, const char* file, int line) const {
    check_cuda(cudaGetLastError(), what, file, line);
  }
};

}  // namespace qisa::test::gpu
