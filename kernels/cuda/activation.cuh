// Elementwise activations (SPEC §1; CPU contract: kernels/cpu/activation.h): relu, and gelu
// with the tanh approximation evaluated as x * sigmoid(2z), z = sqrt(2/pi) (x + 0.044715 x^3).
//   forward:  out[i] = act(in[i])
//   backward: din[i] (=|+=) act'(in[i]) * dout[i],
//             gelu' = s + 2 x s (1 - s) z'(x), s = sigmoid(2z), z' = sqrt(2/pi) (1 + 3*0.044715 x^2)
// Grid-stride loops, kActThreads per block, at most kActMaxBlocks blocks; T: float or bf16
// storage (fp32 arithmetic). in, out, dout, din [n].
#pragma once
#include <algorithm>
#include <cstdint>

#include "kernels/backend.h"
#include "kernels/cuda/device.h"

namespace qisa::cuda::inline QISA_KERNEL_ABI {

inline constexpr int kActThreads = 256;
inline constexpr int64_t kActMaxBlocks = 4096;

__device__ __forceinline__ float gelu_sigmoid_f(float x) {  // sigmoid(2z)
  const float z = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return 1.0f / (1.0f + expf(-2.0f * z));
}

template <typename T>
__global__ void __launch_bounds__(kActThreads) activation_forward_kernel(T* out, const T* in, int64_t n, bool gelu) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float x = load_f(in, i);
    store_f(out, i, gelu ? x * gelu_sigmoid_f(x) : (x > 0.0f ? x : 0.0f));
  }
}

template <typename T>
__global__ void __launch_bounds__(kActThreads)
    activation_backward_kernel(T* din, const T* dout, const T* in, int64_t n, bool gelu, bool add) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float x = load_f(in, i), g = load_f(dout, i);
    float v;
    if (gelu) {
      const float s = gelu_sigmoid_f(x);
      const float dz = 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * x * x);
      v = g * (s + 2.0f * x * s * (1.0f - s) * dz);
    } else {
      v = x > 0.0f ? g : 0.0f;
    }
    store_f(din, i, add ? load_f(din, i) + v : v);
  }
}

inline dim3 activation_grid(int64_t n) {
  return dim3(static_cast<unsigned>(std::min(ceil_div_i64(n, kActThreads), kActMaxBlocks)));
}

template <typename T>
void activation_forward(T* out, const T* in, int64_t n, Activation act, cudaStream_t stream) {
  if (n <= 0) return;
  QISA_LAUNCH(activation_forward_kernel<T>, activation_grid(n), dim3(kActThreads), 0, stream, out, in, n,
              act == Activation::gelu);
}

template <typename T>
void activation_backward(T* din, const T* dout, const T* in, int64_t n, Activation act, GradMode mode,
                         cudaStream_t stream) {
  if (n <= 0) return;
  QISA_LAUNCH(activation_backward_kernel<T>, activation_grid(n), dim3(kActThreads), 0, stream, din, dout, in, n,
              act == Activation::gelu, mode == GradMode::accumulate);
}

}  // namespace qisa::cuda
