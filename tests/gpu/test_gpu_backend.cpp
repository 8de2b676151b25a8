// The CUDA backend (kernels/cuda/cuda_backend.h) on a real GPU: the training cases of
// tests/backend_training_cases.h that the emulated suite runs on the CPU (test_cuda_emu_backend),
// now on the device against the CPU backend, and the memory and event paths. Every test skips,
// naming why, when query_devices() finds no device (build machines, CI); cluster/gpu/run.sh runs
// it on a GPU machine.
#include <gtest/gtest.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backend_training_cases.h"
#include "gpt_golden_cases.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device_info.h"
#include "thread_world.h"
#include "trainer/comm/collectives.h"
#include "trainer/comm/communicator.h"
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

// dist.comm: nccl on one GPU with the real libnccl: non-blocking init polled to ready, the three
// collectives of one rank on the communication stream (a sum over one rank is the value itself,
// reduce-scatter and all-gather copies), then finalize and destroy without error.
TEST_F(GpuBackend, NcclCollectivesOfOneRank) {
  auto be = make();
  auto host = make_communicator("none");
  auto coll = make_nccl_collectives(*host, *be, 60.0);
  EXPECT_EQ(coll->name(), "nccl");
  const std::vector<float> x = {1.5f, -2.0f, 3.25f, -0.0f, 7.0f};
  Buffer<float> a(*be, x.size()), b(*be, x.size());
  be->upload(a.get(), x.data(), a.bytes());
  auto after = be->make_event();
  be->record(*after);
  coll->iallreduce_sum(a.get(), x.size(), DType::f32, after.get())->wait();
  coll->reduce_scatter_sum(a.get(), b.get(), x.size(), DType::f32, after.get());
  std::vector<float> got(x.size()), copied(x.size());
  be->download(got.data(), a.get(), a.bytes());
  be->download(copied.data(), b.get(), b.bytes());
  EXPECT_EQ(got, x);
  EXPECT_EQ(copied, x);
  be->zero(b.get(), b.bytes());
  coll->all_gather(a.get(), b.get(), x.size(), DType::f32, nullptr);
  be->download(copied.data(), b.get(), b.bytes());
  EXPECT_EQ(copied, x);
}

// np=2 over NCCL, one GPU a rank (NCCL refuses two ranks on one GPU: skipped on a one-GPU
// machine), ranks as threads (tests/thread_world.h) each on its own device: the step's
// parameters are the same on both ranks and within fp32 summation order of one rank's. A CUDA
// backend is used from the thread that made it (the current device is per thread); trainers
// open the corpus one at a time (serial HDF5).
TEST_F(GpuBackend, NcclTrainingOnTwoGpusEqualsOneRank) {
  const size_t gpus = cuda::query_devices().devices.size();
  if (gpus < 2) GTEST_SKIP() << "needs 2 GPUs, this machine has " << gpus;
  Config cfg = test::training_cases::tiny_config(corpus(), "csa", "  eps: 1.0e-6\n");
  cfg.dist.bucket_mb = 300.0 * sizeof(float) / (1024.0 * 1024.0);
  test::ThreadWorld threads(2);
  std::mutex one_at_a_time;
  std::vector<std::vector<float>> params(2);
  threads.run([&](int r) {
    CudaOptions o;
    o.device = r;
    auto be = make_cuda_backend(o);
    auto coll = make_nccl_collectives(threads.comm(r), *be, 60.0);
    std::unique_ptr<Trainer> t;
    {
      std::lock_guard<std::mutex> lock(one_at_a_time);
      t = std::make_unique<Trainer>(cfg, *be, threads.comm(r), *coll);
    }
    t->step();
    params[static_cast<size_t>(r)] = t->model().params_host();
    std::lock_guard<std::mutex> lock(one_at_a_time);
    t.reset();
  });
  EXPECT_EQ(params[0], params[1]);
  auto be = make();
  const test::training_cases::Run single = test::training_cases::train(cfg, *be, 1);
  EXPECT_LT(test::max_rel_err(params[0], single.params), 1e-5);
}

TEST_F(GpuBackend, OneFp32StepMatchesTheCpuBackendForEveryAttention) {
  test::training_cases::one_fp32_step_matches_cpu(corpus(), make);
}
TEST_F(GpuBackend, OneBf16StepMatchesTheCpuBackendWithinStatedTolerances) {
  test::training_cases::one_bf16_step_matches_cpu(corpus(), make);
}
TEST_F(GpuBackend, ResumeIsBitExact) { test::training_cases::resume_is_bit_exact(corpus(), dir() / "gpu_resume.h5", make); }

// The golden files of SPEC §4 on the device (they are found through QISA_GOLDEN_DIR, or the
// source tree's tests/golden; a bundle sets QISA_GOLDEN_DIR).
class GpuGolden : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    if (!no_device_reason().empty()) GTEST_SKIP() << no_device_reason();
  }
};
TEST_P(GpuGolden, ForwardLogitsLossAndHeads) { test::gpt_golden::forward_logits_loss_and_heads(*make(), GetParam()); }
TEST_P(GpuGolden, EveryGradient) { test::gpt_golden::every_gradient(*make(), GetParam()); }
TEST_P(GpuGolden, AdamWSemanticsOnGoldenGradients) {
  test::gpt_golden::adamw_semantics_on_golden_gradients(*make(), GetParam());
}
TEST_P(GpuGolden, TwoTrainingSteps) { test::gpt_golden::two_training_steps(*make(), GetParam()); }
INSTANTIATE_TEST_SUITE_P(AllGoldenModels, GpuGolden, ::testing::ValuesIn(test::gpt_golden::kModels),
                         [](const auto& info) { return test::gpt_golden::model_name(info.param); });

}  // namespace
}  // namespace qisa
