#include <cuda_runtime.h>

#include "kernels/cuda/device_info.h"

namespace qisa::cuda {

DeviceQuery query_devices() {
  DeviceQuery q;
  cudaRuntimeGetVersion(&q.runtime_version);
  cudaDriverGetVersion(&q.driver_version);
  int n = 0;  // cudaGetDeviceCount leaves n untouched on failure
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    q.status = cudaGetErrorName(e);
    (void)cudaGetLastError();  // clear the sticky error so later calls are not poisoned
    return q;
  }
  q.status = "ok";
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
      (void)cudaGetLastError();
      continue;
    }
    q.devices.push_back(DeviceInfo{i, p.name, p.major, p.minor, p.totalGlobalMem});
  }
  return q;
}

}  // namespace qisa::cuda
