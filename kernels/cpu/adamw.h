// AdamW exactly as PyTorch's torch.optim.AdamW single-tensor path (SPEC §2):
//   p *= 1 - lr*wd
//   g = grad * grad_scale
//   m = lerp(m, g, 1 - b1)          (PyTorch lerp: weight < 0.5 ? m + w (g - m) : g - (g - m)(1 - w))
//   v = v * b2 + (1 - b2) * g * g
//   step_size = lr / (1 - b1^t),  bc2_sqrt = sqrt(1 - b2^t)      (both in double, as Python does)
//   p -= step_size * m / (sqrt(v) / bc2_sqrt + eps)
// Scalars are rounded to the tensor's precision where PyTorch does (scalar operands of
// tensor ops), so float results follow PyTorch's float32 arithmetic step by step.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/parallel.h"
#include "kernels/error.h"

namespace qisa::cpu {

template <typename F>
void adamw_update(F* params, const F* grads, F* m, F* v, int64_t n, const AdamWHyper& h) {
  QISA_CHECK(h.step >= 1, "AdamW step " + std::to_string(h.step), "the step count t is 1-based");
  QISA_CHECK(h.beta1 >= 0.0f && h.beta1 < 1.0f && h.beta2 >= 0.0f && h.beta2 < 1.0f,
             "AdamW betas (" + std::to_string(h.beta1) + ", " + std::to_string(h.beta2) + ")", "betas are in [0, 1)");
  const double lr = h.lr, b1 = h.beta1, b2 = h.beta2;
  const F decay = static_cast<F>(1.0 - lr * static_cast<double>(h.weight_decay));
  const F w1 = static_cast<F>(1.0 - b1);  // lerp weight
  const F w1c = F(1) - w1;
  const bool small_w = w1 < F(0.5);
  const F beta2 = static_cast<F>(b2);
  const F w2 = static_cast<F>(1.0 - b2);
  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(b2, static_cast<double>(h.step));
  const F step_size = static_cast<F>(lr / bc1);
  const F bc2_sqrt = static_cast<F>(std::sqrt(bc2));
  const F eps = static_cast<F>(h.eps);
  const F gs = static_cast<F>(h.grad_scale);
  // scalars captured by value: stores through F* could alias by-reference captures
  parallel_chunks(n, kElemChunk, [=](int64_t, int64_t i0, int64_t i1) {
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) {
      const F g = grads[i] * gs;
      F p = params[i] * decay;
      const F mi = small_w ? m[i] + w1 * (g - m[i]) : g - (g - m[i]) * w1c;
      const F vi = v[i] * beta2 + w2 * g * g;
      const F denom = std::sqrt(vi) / bc2_sqrt + eps;
      p = p - step_size * mi / denom;
      params[i] = p;
      m[i] = mi;
      v[i] = vi;
    }
  });
}

}  // namespace qisa::cpu
