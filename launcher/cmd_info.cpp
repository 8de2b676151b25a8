// qisa info: what this build and machine offer (backends, devices, threads).
#include <omp.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "io/build_info.h"
#include "kernels/cpu/blas_kernel.h"
#include "launcher/commands.h"
#ifdef QISA_HAVE_CUDA
#include "kernels/cuda/device_info.h"
#endif

namespace qisa::cli {

void add_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Print the build configuration and the devices found, as one JSON line");
  cmd->callback([] {
    nlohmann::json j{{"version", QISA_VERSION}, {"git_commit", git_commit()}, {"omp_max_threads", omp_get_max_threads()}};
#ifdef QISA_HAVE_CUDA
    const cuda::DeviceQuery q = cuda::query_devices();
    nlohmann::json devs = nlohmann::json::array();
    for (const auto& d : q.devices)
      devs.push_back({{"index", d.index},
                      {"name", d.name},
                      {"sm", std::to_string(d.sm_major) + "." + std::to_string(d.sm_minor)},
                      {"memory_gib", static_cast<double>(d.memory_bytes) / (1024.0 * 1024.0 * 1024.0)}});
    j["cuda_built"] = true;
    j["cuda_runtime"] = q.runtime_version;
    j["cuda_driver"] = q.driver_version;
    j["cuda_status"] = q.status;
    j["cuda_devices"] = devs;
#else
    j["cuda_built"] = false;
#endif
    j["backends"] = {"cpu"};
    j["gemm_kernel"] = cpu::blas_kernel_description();
    std::printf("%s\n", j.dump().c_str());
  });
}

}  // namespace qisa::cli
