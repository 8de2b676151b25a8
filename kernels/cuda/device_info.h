// What CUDA devices this process can use. Any CUDA error (no driver, no device) means "none":
// a CUDA-enabled build must run on machines without a GPU (toolchain.md §2).
#pragma once
#include <string>
#include <vector>

namespace qisa::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int sm_major = 0, sm_minor = 0;
  size_t memory_bytes = 0;
};

struct DeviceQuery {
  std::vector<DeviceInfo> devices;
  int runtime_version = 0;  // e.g. 13000
  int driver_version = 0;   // 0 when no driver is installed
  std::string status;       // "ok" or the CUDA error name that meant "no devices"
};

DeviceQuery query_devices();

}  // namespace qisa::cuda
