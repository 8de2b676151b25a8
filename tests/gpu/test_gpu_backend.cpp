// The CUDA backend (kernels/cuda/cuda_backend.h) on a real GPU: the training cases of
// tests/backend_training_cases.h that the emulated suite runs on the CPU (test_cuda_emu_backend),
// now on the device against the CPU backend, and the memory and event paths. Every test skips,
// naming why, when query_devices() finds no device (build machines, CI); cluster/gpu/run.sh runs
// it on a GPU machine.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "backend_training_cases.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device_info.h"
#include "trainer_fixture.h"

namespace qisa {
namespace {

const std::string& no_device_reason() {
  static const std::string reason = [] {
    const cuda::DeviceQuery q = cuda::query_devices();
    if (!q.devices.empty()) return std::string();
    return "no CUDA device (query_devices: " + q.status + ", driver " + std::to_string(q.driver_version) +
           ", runtime " + std::to_string(q.runtime_version) + ")";
  }();
  return reason;
}

std::unique_ptr<Backend> make() { return make_cuda_backend(CudaOptions{}); }

class GpuBackend : public test::CorpusSuite {
 protected:
  void SetUp() override {
    if (!no_device_reason().empty()) GTEST_SKIP() << no_device_reason();
  }
};

TEST_F(GpuBackend, MemoryAndEventsFollowTheStream) {
  auto be = make();
  EXPECT_FALSE(be->host_addressable());
  const std::vector<float> host = {1.5f, -2.0f, 3.25f, 4.0f};
  Buffer<float> a(*be, 4), b(*be, 4);
  be->upload(a.get(), host.data(), a.bytes());
  be->copy(b.get(), a.get(), a.bytes());
  be->zero(a.get(), a.bytes());
  auto e = be->make_event();
  be->record(*e);
  e->wait();
  EXPECT_TRUE(e->query());
  std::vector<float> got(4), zeros(4);
  be->download(got.data(), b.get(), b.bytes());
  be->download(zeros.data(), a.get(), a.bytes());
  EXPECT_EQ(got, host);
  EXPECT_EQ(zeros, std::vector<float>(4, 0.0f));
}

TEST_F(GpuBackend, OneFp32StepMatchesTheCpuBackendForEveryAttention) {
  test::training_cases::one_fp32_step_matches_cpu(corpus(), make);
}
TEST_F(GpuBackend, OneBf16StepMatchesTheCpuBackendWithinStatedTolerances) {
  test::training_cases::one_bf16_step_matches_cpu(corpus(), make);
}
TEST_F(GpuBackend, ResumeIsBitExact) { test::training_cases::resume_is_bit_exact(corpus(), dir() / "gpu_resume.h5", make); }

}  // namespace
}  // namespace qisa
