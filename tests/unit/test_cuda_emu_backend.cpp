// The CUDA backend (kernels/cuda/cuda_backend_impl.h), the product's code, run on the CPU through
// the CUDA emulator and the test doubles of the CUDA runtime (tests/cuda_emu/cuda_runtime_emu.h:
// documented semantics on host memory, NaN-filled allocations, strict pointer and handle checks,
// injected faults) and of cuBLASLt. What it shows: device memory moves only through
// upload/download/copy; every failing runtime call names itself with a hint; a backend frees
// what it took; ops refuse mixed storage types; and a training step through the whole backend
// matches the CPU backend, and resumes bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda_backend_emu.h"
#include "cuda_runtime_emu.h"
#include "expect_error.h"
#include "backend_training_cases.h"
#include "gpt_golden_cases.h"
#include "kernels/backend.h"
#include "test_util.h"
#include "trainer/kernel_lab.h"
#include "trainer_fixture.h"

namespace qisa {
namespace {

using test::error_of;
using test::expect_mentions;

template <class T>
std::vector<T> download_vec(Backend& be, const Buffer<T>& b) {
  std::vector<T> v(b.size());
  be.download(v.data(), b.get(), b.bytes());
  return v;
}
template <class T>
Buffer<T> upload_vec(Backend& be, const std::vector<T>& v) {
  Buffer<T> b(be, v.size());
  be.upload(b.get(), v.data(), v.size() * sizeof(T));
  return b;
}

TEST(CudaEmuBackend, DescribesItselfAsADevice) {
  auto be = test::make_emulated_cuda_backend();
  EXPECT_EQ(be->name(), "cuda:0");
  EXPECT_EQ(be->device_model(), "qisa CUDA emulator");
  EXPECT_FALSE(be->host_addressable());
  EXPECT_EQ(be->threads(), 1);
}

TEST(CudaEmuBackend, MemoryMovesThroughUploadDownloadCopyAndZero) {
  auto be = test::make_emulated_cuda_backend();
  const std::vector<float> host = {1.5f, -2.0f, 3.25f, 4.0f, 5.0f};
  Buffer<float> a = upload_vec(*be, host);
  Buffer<float> b(*be, host.size());
  be->copy(b.get(), a.get(), a.bytes());
  EXPECT_EQ(download_vec(*be, b), host);
  be->zero(a.get() + 1, 2 * sizeof(float));
  EXPECT_EQ(download_vec(*be, a), (std::vector<float>{1.5f, 0.0f, 0.0f, 4.0f, 5.0f}));
  EXPECT_EQ(be->alloc(0), nullptr);
  // alloc_zeroed is alloc + zero here (the double fills fresh allocations with NaN).
  Buffer<float> z(*be, 7, kZeroed);
  EXPECT_EQ(download_vec(*be, z), std::vector<float>(7, 0.0f));
  // The runtime double refuses a host pointer where device memory belongs: the backend must not
  // hand one over (here on purpose, so the refusal is seen with the call's name).
  std::vector<float> not_device(5);
  expect_mentions(error_of([&] { be->copy(not_device.data(), a.get(), a.bytes()); }),
                  {"cudaMemcpyAsync", "cudaErrorInvalidValue", "host pointer"});
  // The refusal was reported once: the runtime's last error does not resurface at the next op's
  // launch check (the backend read it when it threw).
  EXPECT_NO_THROW(be->scale(a.get(), 2.0f, 5));
}

TEST(CudaEmuBackend, FreesEverythingItAllocated) {
  const size_t before = emu::live_device_allocations();
  {
    auto be = test::make_emulated_cuda_backend();
    Buffer<float> x(*be, 1000);
    EXPECT_GT(emu::live_device_allocations(), before + 1);  // the buffer and the cuBLASLt workspace
    std::vector<float> ones(1000, 1.0f);
    be->upload(x.get(), ones.data(), x.bytes());
    EXPECT_EQ(be->sum_squares(x.get(), 1000), 1000.0);  // grows the workspace
  }
  EXPECT_EQ(emu::live_device_allocations(), before);
}

TEST(CudaEmuBackend, OutOfDeviceMemoryNamesTheCallAndHints) {
  auto be = test::make_emulated_cuda_backend();
  emu::FailCall oom("cudaMalloc", cudaErrorMemoryAllocation);
  expect_mentions(error_of([&] { Buffer<float> big(*be, 1 << 20); }),
                  {"cudaMalloc", "cudaErrorMemoryAllocation", "out of memory", "micro_batch_size"});
  EXPECT_TRUE(oom.fired());
}

TEST(CudaEmuBackend, AKernelFaultShowsAtTheNextSynchronisation) {
  auto be = test::make_emulated_cuda_backend();
  Buffer<float> x(*be, 4);
  be->zero(x.get(), x.bytes());
  // A kernel that faults reports at the next call that waits for the stream.
  emu::FailCall fault("cudaStreamSynchronize", cudaErrorIllegalAddress);
  float out[4];
  expect_mentions(error_of([&] { be->download(out, x.get(), sizeof out); }),
                  {"cudaStreamSynchronize", "cudaErrorIllegalAddress", "compute-sanitizer"});
}

TEST(CudaEmuBackend, ARefusedLaunchNamesTheOp) {
  auto be = test::make_emulated_cuda_backend();
  const int64_t N = 3;
  const int C = 8;
  Buffer<float> out(*be, N * C), in(*be, N * C), w(*be, C), b(*be, C), mean(*be, N), rstd(*be, N);
  emu::FailCall refused("cudaGetLastError", cudaErrorInvalidConfiguration);
  expect_mentions(error_of([&] {
                    be->layernorm_forward(out.get(), mean.get(), rstd.get(), in.get(), w.get(), b.get(), N, C);
                  }),
                  {"layernorm_forward", "cudaErrorInvalidConfiguration", "launch configuration"});
}

TEST(CudaEmuBackend, OpsRefuseMixedStorageTypes) {
  auto be = test::make_emulated_cuda_backend();
  Buffer<float> x(*be, 8);
  Buffer<bf16> y(*be, 8);
  expect_mentions(error_of([&] { be->activation_forward(y.get(), x.get(), 8, Activation::gelu); }),
                  {"activation_forward", "mixes fp32 and bf16", "convert()"});
}

TEST(CudaEmuBackend, EventsAreRecordedOnTheStream) {
  auto be = test::make_emulated_cuda_backend();
  auto e = be->make_event();
  EXPECT_TRUE(e->query());  // never recorded: complete
  be->record(*e);
  e->wait();
  EXPECT_TRUE(e->query());
  auto cpu = make_cpu_backend(1);
  auto foreign = cpu->make_event();
  expect_mentions(error_of([&] { be->record(*foreign); }), {"record() was given an event made by another backend"});
  auto side = be->make_side_stream();
  expect_mentions(error_of([&] { side->wait(*foreign); }), {"a side stream was given an event made by another backend"});
  expect_mentions(error_of([&] { side->record(*foreign); }), {"a side stream", "hint: make events with the backend"});
  side->wait(*e);  // the backend's own events order the two streams
  side->record(*e);
  e->wait();
}

// The reductions the trainer reads once a step: sum_to is the CPU's sum bit for bit.
TEST(CudaEmuBackend, ReductionsMatchTheCpuBackend) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = test::make_emulated_cuda_backend();
  auto cpu = make_cpu_backend(1);
  const auto x = test::random_vector<float>(rng, 1001, -3, 3);
  Buffer<float> dx = upload_vec(*be, x);
  Buffer<double> acc(*be, 1);
  const double start = 0.125;
  be->upload(acc.get(), &start, sizeof start);
  be->sum_to(acc.get(), dx.get(), 1001, GradMode::accumulate);
  double want = start;
  cpu->sum_to(&want, x.data(), 1001, GradMode::accumulate);
  EXPECT_EQ(download_vec(*be, acc)[0], want);
  EXPECT_NEAR(be->sum_squares(dx.get(), 1001), cpu->sum_squares(x.data(), 1001), 1e-9);
}

// ---- training through the whole backend (tests/backend_training_cases.h, shared with the device
// suite tests/gpu/test_gpu_backend.cpp).

class CudaEmuTraining : public test::CorpusSuite {
 protected:
  static std::unique_ptr<Backend> make() { return test::make_emulated_cuda_backend(); }
};

TEST_F(CudaEmuTraining, OneFp32StepMatchesTheCpuBackendForEveryAttention) {
  test::training_cases::one_fp32_step_matches_cpu(corpus(), make);
}
TEST_F(CudaEmuTraining, OneBf16StepMatchesTheCpuBackendWithinStatedTolerances) {
  test::training_cases::one_bf16_step_matches_cpu(corpus(), make);
}
TEST_F(CudaEmuTraining, ResumeIsBitExact) {
  test::training_cases::resume_is_bit_exact(corpus(), dir() / "cuda_emu_resume.h5", make);
}

// The golden files of SPEC §4 (float64) through the CUDA backend: logits, loss, head outputs and
// every gradient of each golden model (csa, qisa with both masks, qisa_a), at the CPU backend's
// tolerances (forward 1e-5, gradients 1e-4), from one forward and backward.
class CudaEmuGolden : public ::testing::TestWithParam<const char*> {};
TEST_P(CudaEmuGolden, ForwardAndEveryGradient) {
  auto be = test::make_emulated_cuda_backend();
  test::gpt_golden::every_gradient(*be, GetParam(), /*check_forward=*/true);
}
INSTANTIATE_TEST_SUITE_P(AllGoldenModels, CudaEmuGolden, ::testing::ValuesIn(test::gpt_golden::kModels),
                         [](const auto& info) { return test::gpt_golden::model_name(info.param); });

// `qisa bench kernels` on the emulated backend: every op of the lab runs through the product's
// CUDA backend and reports (figures marked emulated: they time the emulator, not a GPU).
TEST(CudaEmuBackend, KernelLabRunsEveryOpMarkedEmulated) {
  auto be = test::make_emulated_cuda_backend();
  {  // qisa_a: every op of the lab (csa, Gaussian, Pauli always) and the QISA-A circuit
    ModelConfig m;
    m.block_size = 5;
    m.n_embd = 8;
    m.n_head = 2;
    m.n_layer = 1;
    m.vocab_size = 11;
    m.attention = AttentionKind::qisa_a;
    KernelLabOptions o;
    o.reps = 1;
    o.warmup = 0;
    o.gemm_size = 16;
    o.copy_bytes = 1 << 12;
    o.emulated = true;
    const KernelLabReport r = run_kernel_lab(*be, m, 2, DType::bf16, o);
    EXPECT_TRUE(r.emulated);
    EXPECT_GT(r.copy_gbps, 0);
    EXPECT_GT(r.gemm_tflops, 0);
    EXPECT_EQ(r.kernels.size(), 26u);
    for (const KernelTiming& k : r.kernels) EXPECT_TRUE(std::isfinite(k.ms) && k.ms > 0) << k.kernel;
  }
}

}  // namespace
}  // namespace qisa
