// Device memory and checked CUDA calls for the GPU test and benchmark programs (nvcc only).
//   QISA_CUDA_CALL(call)   throws std::runtime_error naming file:line, the call, the CUDA error
//                          name and string, and a hint about what usually causes it
//   DeviceBuffer<T>        RAII cudaMalloc'd array (move-only)
//   DeviceRunner           the runner of tests/kernel_cases.h on device memory
#pragma once
#include <cuda_runtime.h>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace qisa::test::gpu {

inline const char* cuda_hint(cudaError_t e) {
  switch (e) {
    case cudaErrorInsufficientDriver:
      return "no NVIDIA driver, or one older than the CUDA runtime this was built with (13.x): run on a GPU machine";
    case cudaErrorNoDevice:
      return "the driver sees no device: check nvidia-smi and CUDA_VISIBLE_DEVICES";
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorInvalidDeviceFunction:
      return "the binary has no code for this GPU: rebuild with CMAKE_CUDA_ARCHITECTURES naming its sm (nvidia-smi)";
    case cudaErrorMemoryAllocation:
      return "out of device memory: another process may hold it (nvidia-smi), or the shape is too large";
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
      return "a kernel accessed memory out of bounds: run the test under compute-sanitizer --tool memcheck";
    case cudaErrorInvalidConfiguration:
      return "bad launch configuration (grid, block or shared memory size) for these shapes";
    case cudaErrorLaunchOutOfResources:
      return "too many registers or too much shared memory per block for this launch";
    default:
      return "see the CUDA runtime API's error list; the error may come from an earlier asynchronous launch";
  }
}

inline void check_cuda(cudaError_t e, const char* call, const char* file, int line) {
  if (e == cudaSuccess) return;
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + call + " failed: " +
                           cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + "); hint: " + cuda_hint(e));
}

}  // namespace qisa::test::gpu

#define QISA_CUDA_CALL(call) ::qisa::test::gpu::check_cuda((call), #call, __FILE__, __LINE__)

namespace qisa::test::gpu {

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
