// AdamW as PyTorch's torch.optim.AdamW (SPEC §2; CPU contract: kernels/cpu/adamw.h). The
// scalars are derived on the host exactly as the CPU backend derives them (double, then
// rounded to float), and the per-element arithmetic is the CPU's formula, fused steps included:
//   g = grad*gs;  m = fma(w1, g, m*w1c);  v = fma(w2*g, g, v*beta2)
//   p = fma(p, decay, -(step_size*m / (sqrt(v)/bc2_sqrt + eps)))
// The products outside an fma are __fmul_rn on the GPU, which nvcc never contracts, and the
// division and square root are IEEE (nvcc's default -prec-div=true -prec-sqrt=true), so the
// GPU's bits are the CPU's whatever --fmad says.
// Grid-stride loop, kAdamThreads per block, at most kAdamMaxBlocks blocks. params, grads, m, v [n].
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/cuda/device.h"
#include "kernels/error.h"

namespace qisa::cuda::inline QISA_KERNEL_ABI {

inline constexpr int kAdamThreads = 256;
inline constexpr int64_t kAdamMaxBlocks = 4096;

struct AdamWScalars {
  float decay, w1, w1c, beta2, w2, step_size, bc2_sqrt, eps, gs;
};

// a*b rounded once and never fused into a later addition (the emulated build: g++ fuses a
// product only into an addition, and these feed none)
__device__ __forceinline__ float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

inline AdamWScalars adamw_scalars(const AdamWHyper& h) {
  QISA_CHECK(h.step >= 1, "AdamW step " + std::to_string(h.step), "the step count t is 1-based");
  QISA_CHECK(h.beta1 >= 0.0f && h.beta1 < 1.0f && h.beta2 >= 0.0f && h.beta2 < 1.0f,
             "AdamW betas (" + std::to_string(h.beta1) + ", " + std::to_string(h.beta2) + ")", "betas are in [0, 1)");
  const double lr = h.lr, b1 = h.beta1, b2 = h.beta2;
  AdamWScalars s{};
  s.decay = static_cast<float>(1.0 - lr * static_cast<double>(h.weight_decay));
  s.w1 = static_cast<float>(1.0 - b1);
  s.w1c = 1.0f - s.w1;
  s.beta2 = static_cast<float>(b2);
  s.w2 = static_cast<float>(1.0 - b2);
  s.step_size = static_cast<float>(lr / (1.0 - std::pow(b1, static_cast<double>(h.step))));
  s.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(b2, static_cast<double>(h.step))));
  s.eps = static_cast<float>(h.eps);
  s.gs = static_cast<float>(h.grad_scale);
  return s;
}

// A template (on the block size) because a non-template __global__ function defined in a header
// is defined again in every .cu file that includes it (nvcc has no inline kernels).
template <int kThreads>
__global__ void __launch_bounds__(kThreads)
    adamw_kernel(float* params, const float* grads, float* m, float* v, int64_t n, AdamWScalars s) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float g = mul_rn(grads[i], s.gs);
    const float mi = fmaf(s.w1, g, mul_rn(m[i], s.w1c));
    const float vi = fmaf(mul_rn(g, s.w2), g, mul_rn(v[i], s.beta2));
    const float denom = sqrtf(vi) / s.bc2_sqrt + s.eps;
    const float p = fmaf(params[i], s.decay, -(mul_rn(s.step_size, mi) / denom));
    params[i] = p;
    m[i] = mi;
    v[i] = vi;
  }
}

inline void adamw_update(float* params, const float* grads, float* m, float* v, int64_t n, const AdamWHyper& h,
                         cudaStream_t stream) {
  const AdamWScalars s = adamw_scalars(h);
  if (n <= 0) return;
  const int64_t blocks = std::min(ceil_div_i64(n, kAdamThreads), kAdamMaxBlocks);
  QISA_LAUNCH(adamw_kernel<kAdamThreads>, dim3(static_cast<unsigned>(blocks)), dim3(kAdamThreads), 0, stream, params, grads, m, v,
              n, s);
}

}  // namespace qisa::cuda
