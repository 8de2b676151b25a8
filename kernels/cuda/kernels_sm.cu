// Instantiates every kernel template of kernels/cuda/*.cuh with nvcc, for each element type the
// CPU contract has, so the GPU compile of the kernels that the emulator tests run on the host
// (tests/unit/test_cuda_emu_kernels.cpp) is checked for every CMAKE_CUDA_ARCHITECTURES entry.
#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/adamw.cuh"
#include "kernels/cuda/attention_csa.cuh"
#include "kernels/cuda/cross_entropy.cuh"
#include "kernels/cuda/dropout.cuh"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/gaussian_attention.cuh"
#include "kernels/cuda/layernorm.cuh"
#include "kernels/cuda/linear.cuh"
#include "kernels/cuda/pauli_value.cuh"
#include "kernels/cuda/qisa_a.cuh"

namespace qisa::cuda {

#define QISA_INSTANTIATE(T)                                                                                      \
  template void layernorm_forward<T>(T*, float*, float*, const T*, const float*, const float*, int64_t, int,       \
                                     cudaStream_t);                                                                \
  template void layernorm_backward<T>(T*, float*, float*, const T*, const T*, const float*, const float*,          \
                                      const float*, int64_t, int, GradMode, GradMode, float*, cudaStream_t);       \
  template void cross_entropy_forward<T>(float*, const T*, const int32_t*, int64_t, int, cudaStream_t);           \
  template void cross_entropy_backward<T>(T*, const T*, const int32_t*, int64_t, int, float, cudaStream_t);       \
  template void activation_forward<T>(T*, const T*, int64_t, Activation, cudaStream_t);                           \
  template void activation_backward<T>(T*, const T*, const T*, int64_t, Activation, GradMode, cudaStream_t);       \
  template void dropout_add_forward<T>(T*, const T*, const T*, int64_t, const Dropout&, cudaStream_t);            \
  template void dropout_add_backward<T>(T*, T*, const T*, int64_t, const Dropout&, GradMode, cudaStream_t);       \
  template void embedding_forward<T>(T*, const int32_t*, const float*, const float*, int64_t, int, int, int,       \
                                     cudaStream_t);                                                                \
  template void embedding_backward<T>(float*, float*, const T*, const int32_t*, int64_t, int, int, int, GradMode,  \
                                      cudaStream_t);                                                              \
  template void bias_grad<T>(float*, const T*, int64_t, int, GradMode, cudaStream_t);                              \
  template __global__ void add_bias_kernel<T>(T*, const float*, const float*, int64_t, int);

QISA_INSTANTIATE(float)
QISA_INSTANTIATE(bf16)
#undef QISA_INSTANTIATE

// The kernels of the non-template launchers (inline functions, emitted only where they are used).
template __global__ void layernorm_backward_params_kernel<kLnReduceThreads>(float*, float*, bool, const float*,
                                                                            int64_t, int);
template __global__ void adamw_kernel<kAdamThreads>(float*, const float*, float*, float*, int64_t, AdamWScalars);
template __global__ void round_bf16_stochastic_kernel<kEltThreads>(bf16*, const float*, int64_t, uint64_t, uint32_t,
                                                                   uint64_t);
template __global__ void scale_kernel<kEltThreads>(float*, float, int64_t);
template __global__ void sum_squares_partial_kernel<kSsqThreads>(double*, const float*, int64_t);
template __global__ void sum_to_kernel<kWarp>(double*, const float*, int64_t, bool);
template __global__ void sum_partials_kernel<kSsqThreads>(double*, const double*, int);

// Classical causal self-attention (the kernels of every D bucket, through the host wrappers).
#define QISA_INSTANTIATE_CSA(T)                                                                                   \
  template void csa_forward<T>(T*, int, float*, const T*, const T*, const T*, int, int64_t, int, int, int, float,    \
                               const Dropout&, cudaStream_t);                                                       \
  template void csa_backward<T>(T*, T*, T*, const T*, int, const float*, const T*, const T*, const T*, int, int64_t, \
                                int, int, int, float, const Dropout&, GradMode, float*, cudaStream_t);
QISA_INSTANTIATE_CSA(float)
QISA_INSTANTIATE_CSA(bf16)
#undef QISA_INSTANTIATE_CSA

template void convert<float, float>(float*, const float*, int64_t, cudaStream_t);
template void convert<float, bf16>(float*, const bf16*, int64_t, cudaStream_t);
template void convert<bf16, float>(bf16*, const float*, int64_t, cudaStream_t);
template void convert<bf16, bf16>(bf16*, const bf16*, int64_t, cudaStream_t);

// Gaussian-kernel attention (kernels/cuda/gaussian_attention.cuh)
#define QISA_INSTANTIATE_GAUSSIAN_ATTENTION(T)                                                                   \
  template void gaussian_attention_forward<T>(T*, int, float*, const T*, const T*, int, const T*, int, int64_t,    \
                                              int, int, int, AttnMask, AttnScore, cudaStream_t);                  \
  template void gaussian_attention_backward<T>(T*, T*, int, T*, int, const T*, int, const float*, const T*,        \
                                               const T*, const T*, int64_t, int, int, int, AttnMask, AttnScore,   \
                                               GradMode,                                                          \
                                               float*, cudaStream_t);
QISA_INSTANTIATE_GAUSSIAN_ATTENTION(float)
QISA_INSTANTIATE_GAUSSIAN_ATTENTION(bf16)
#undef QISA_INSTANTIATE_GAUSSIAN_ATTENTION
// The QISA value layers: v/dv storage float or bf16, amplitudes fp32.
#define QISA_INSTANTIATE_VALUE(T)                                                                                \
  template void pauli_value_forward<T>(T*, int, const float*, int, const PauliTerm*, int64_t, int, int, int, int,  \
                                       cudaStream_t);                                                              \
  template void pauli_value_backward<T>(float*, int, const T*, int, const float*, const PauliTerm*, int64_t, int,  \
                                        int, int, int, GradMode, cudaStream_t);                                   \
  template void qisa_a_forward<T>(T*, int, const T*, int, const float*, const float*, const float*,                \
                                  const PauliTerm*, int64_t, int, int, int, int, cudaStream_t);                    \
  template void qisa_a_backward<T>(T*, int, float*, float*, float*, const T*, int, const T*, const float*,         \
                                   const float*, const float*, const PauliTerm*, int64_t, int, int, int, int,      \
                                   GradMode, GradMode, double*, cudaStream_t);
QISA_INSTANTIATE_VALUE(float)
QISA_INSTANTIATE_VALUE(bf16)
#undef QISA_INSTANTIATE_VALUE
template __global__ void qisa_a_backward_params_kernel<kQaReduceThreads>(float*, float*, float*, bool, const double*,
                                                                         int64_t, int, int);

}  // namespace qisa::cuda
