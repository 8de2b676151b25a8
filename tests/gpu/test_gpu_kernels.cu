// The kernel-vs-CPU cases of tests/kernel_cases.h on a real GPU: the kernels of
// kernels/cuda/*.cuh built by nvcc (namespace qisa::cuda::sm), on device memory, against the CPU
// backend, with the emulator suite's tolerances. Every test skips, naming why, when
// query_devices() finds no device (no driver, no GPU): that is the case on build machines and
// in CI, where only cluster/gpu/run.sh on a GPU machine runs them for real.
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>

#include "gpu/device_runner.h"
#include "kernel_cases.h"
#include "kernel_cases_gaussian.h"
#include "kernel_cases_value.h"
#include "kernel_cases_csa.h"
#include "kernels/cuda/device_info.h"

namespace {

namespace kc = qisa::test::kernel_cases;
using qisa::bf16;

// Why the tests cannot run here, or "" when device 0 is usable.
const std::string& no_device_reason() {
  static const std::string reason = [] {
    const qisa::cuda::DeviceQuery q = qisa::cuda::query_devices();
    if (!q.devices.empty()) return std::string();
    return "no CUDA device (query_devices: " + q.status + ", driver " + std::to_string(q.driver_version) +
           ", runtime " + std::to_string(q.runtime_version) + ")";
  }();
  return reason;
}

template <class T>
class GpuKernels : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!no_device_reason().empty()) GTEST_SKIP() << no_device_reason();
    QISA_CUDA_CALL(cudaSetDevice(0));
  }
  std::unique_ptr<qisa::Backend> cpu = qisa::make_cpu_backend(1);
  uint64_t seed = qisa::test::fresh_seed();
  std::mt19937_64 rng{seed};
  qisa::test::gpu::DeviceRunner dev;
};
using StorageTypes = ::testing::Types<float, bf16>;
TYPED_TEST_SUITE(GpuKernels, StorageTypes);
class GpuFlat : public GpuKernels<float> {};

#define QISA_GPU_TYPED_CASE(Name, fn)                              \
  TYPED_TEST(GpuKernels, Name) {                                   \
    SCOPED_TRACE("seed " + std::to_string(this->seed));            \
    kc::fn<TypeParam>(*this->cpu, this->rng, this->dev);           \
  }
#define QISA_GPU_CASE(Name, ...)                          \
  TEST_F(GpuFlat, Name) {                                 \
    SCOPED_TRACE("seed " + std::to_string(seed));         \
    kc::__VA_ARGS__;                                      \
  }

QISA_GPU_TYPED_CASE(LayerNormForwardMatchesCpu, layernorm_forward_matches_cpu)
QISA_GPU_TYPED_CASE(LayerNormBackwardMatchesCpuInBothModes, layernorm_backward_matches_cpu_in_both_modes)
QISA_GPU_TYPED_CASE(LayerNormParamGradientsAreBitwiseReproducible, layernorm_param_gradients_are_bitwise_reproducible)
QISA_GPU_TYPED_CASE(CrossEntropyForwardAndInPlaceBackwardMatchCpu, cross_entropy_forward_and_in_place_backward_match_cpu)
QISA_GPU_TYPED_CASE(DropoutAddMatchesCpu, dropout_add_matches_cpu)
QISA_GPU_TYPED_CASE(EmbeddingMatchesCpuBitForBit, embedding_matches_cpu_bit_for_bit)
QISA_GPU_TYPED_CASE(ActivationsMatchCpuInBothModes, activations_match_cpu_in_both_modes)
QISA_GPU_TYPED_CASE(GaussianAttentionForwardMatchesCpu, gaussian_attention_forward_matches_cpu)
QISA_GPU_TYPED_CASE(GaussianAttentionCausalBackwardMatchesCpuInBothModes,
                    gaussian_attention_causal_backward_matches_cpu_in_both_modes)
QISA_GPU_TYPED_CASE(GaussianAttentionReferenceBackwardMatchesCpuInBothModes,
                    gaussian_attention_reference_backward_matches_cpu_in_both_modes)
QISA_GPU_TYPED_CASE(CsaForwardMatchesCpu, csa_forward_matches_cpu)
QISA_GPU_TYPED_CASE(CsaBackwardMatchesCpuInBothModes, csa_backward_matches_cpu_in_both_modes)
QISA_GPU_TYPED_CASE(CsaBackwardPartialGradientsMatchTheFullCall, csa_backward_partial_gradients_match_the_full_call)
QISA_GPU_CASE(CrossEntropyTargetOutsideTheVocabularyGivesNaN, cross_entropy_target_outside_the_vocabulary_gives_nan(dev))
QISA_GPU_CASE(ConvertRoundScaleMatchCpuBitForBit, convert_round_scale_match_cpu_bit_for_bit(*cpu, rng, dev))
QISA_GPU_CASE(SumSquaresIsReproducibleAndMatchesCpu, sum_squares_is_reproducible_and_matches_cpu(*cpu, rng, dev))
QISA_GPU_CASE(AdamWMatchesCpuBitForBit, adamw_matches_cpu_bit_for_bit(*cpu, rng, dev))
QISA_GPU_TYPED_CASE(PauliValueForwardMatchesCpu, pauli_value_forward_matches_cpu)
QISA_GPU_TYPED_CASE(PauliValueBackwardMatchesCpuInBothModes, pauli_value_backward_matches_cpu_in_both_modes)
QISA_GPU_CASE(PauliValueMatchesGolden, pauli_value_matches_golden(dev))
QISA_GPU_TYPED_CASE(QisaAForwardMatchesCpu, qisa_a_forward_matches_cpu)
QISA_GPU_TYPED_CASE(QisaABackwardMatchesCpuInBothModes, qisa_a_backward_matches_cpu_in_both_modes)
QISA_GPU_CASE(QisaAAngleGradientsAreBitwiseReproducible, qisa_a_angle_gradients_are_bitwise_reproducible(rng, dev))
QISA_GPU_CASE(QisaAMatchesGolden, qisa_a_matches_golden(dev))

}  // namespace
