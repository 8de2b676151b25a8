// AdamW as PyTorch's torch.optim.AdamW single-tensor path (SPEC §2), with its fused steps
// written out, so that every compiler (g++ on packs or single floats, nvcc on the GPU) gives
// the same bits whatever it would contract on its own:
//   g = grad * grad_scale
//   m = fma(w1, g, m * (1 - w1))                 w1 = 1 - b1  (PyTorch: lerp(m, g, w1))
//   v = fma(w2 * g, g, v * b2)                   w2 = 1 - b2
//   p = fma(p, 1 - lr*wd, -(step_size * m / (sqrt(v) / bc2_sqrt + eps)))
//   step_size = lr / (1 - b1^t),  bc2_sqrt = sqrt(1 - b2^t)      (both in double, as Python does)
// Every product not written inside an fma feeds only a multiplication, a division or an fma
// operand, never an addition, so no compiler may fuse it. Scalars are rounded to the tensor's
// precision where PyTorch does (scalar operands of tensor ops). PyTorch's unfused float32
// arithmetic gives the same values to within a rounding per operation (SPEC's 1e-5).
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "kernels/backend.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/simd.h"
#include "kernels/error.h"

namespace qisa::cpu {

// The scalars of one update, in the tensor's precision.
template <typename F>
struct AdamWScalars {
  F decay, w1, w1c, beta2, w2, step_size, bc2_sqrt, eps, gs;
};

// a*b + c with one rounding, and the square root, on one value or on each lane of a pack
QISA_INLINE float fused(float a, float b, float c) { return std::fma(a, b, c); }
QISA_INLINE double fused(double a, double b, double c) { return std::fma(a, b, c); }
QISA_INLINE Pack<float> fused(Pack<float> a, Pack<float> b, Pack<float> c) { return pack_fma<float>(a, b, c); }
QISA_INLINE Pack<double> fused(Pack<double> a, Pack<double> b, Pack<double> c) { return pack_fma<double>(a, b, c); }
QISA_INLINE float root(float x) { return std::sqrt(x); }
QISA_INLINE double root(double x) { return std::sqrt(x); }
QISA_INLINE Pack<float> root(Pack<float> x) { return pack_sqrt<float>(x); }
QISA_INLINE Pack<double> root(Pack<double> x) { return pack_sqrt<double>(x); }

// One element (V = F) or one pack of lanes (V = Pack<F>, scalars broadcast): the formula above.
template <typename F, typename V>
QISA_INLINE void adamw_element(V& p, V& m, V& v, V grad, const AdamWScalars<F>& s) {
  const auto all = [](F x) {  // a scalar in every lane, or itself
    if constexpr (std::is_same_v<V, F>) {
      return x;
    } else {
      V r;
      for (int l = 0; l < kPackLanes<F>; ++l) r[l] = x;
      return r;
    }
  };
  const V g = grad * s.gs;
  m = fused(all(s.w1), g, m * s.w1c);
  v = fused(g * s.w2, g, v * s.beta2);
  const V denom = root(v) / s.bc2_sqrt + s.eps;
  p = fused(p, all(s.decay), -(s.step_size * m / denom));
}

// Elements [i0, i1): whole packs (GCC does not vectorise a scalar loop with std::sqrt: it may set
// errno), then the tail one by one.
template <typename F>
void adamw_range(F* params, const F* grads, F* m, F* v, int64_t i0, int64_t i1, const AdamWScalars<F> s) {
  constexpr int L = kPackLanes<F>;
  int64_t i = i0;
  for (; i + L <= i1; i += L) {
    Pack<F> p = pack_load(params + i), mi = pack_load(m + i), vi = pack_load(v + i);
    adamw_element<F>(p, mi, vi, pack_load(grads + i), s);
    pack_store(params + i, p);
    pack_store(m + i, mi);
    pack_store(v + i, vi);
  }
  for (; i < i1; ++i) adamw_element<F>(params[i], m[i], v[i], grads[i], s);
}

template <typename F>
void adamw_update(F* params, const F* grads, F* m, F* v, int64_t n, const AdamWHyper& h) {
  QISA_CHECK(h.step >= 1, "AdamW step " + std::to_string(h.step), "the step count t is 1-based");
  QISA_CHECK(h.beta1 >= 0.0f && h.beta1 < 1.0f && h.beta2 >= 0.0f && h.beta2 < 1.0f,
             "AdamW betas (" + std::to_string(h.beta1) + ", " + std::to_string(h.beta2) + ")", "betas are in [0, 1)");
  const double lr = h.lr, b1 = h.beta1, b2 = h.beta2;
  AdamWScalars<F> s;
  s.decay = static_cast<F>(1.0 - lr * static_cast<double>(h.weight_decay));
  s.w1 = static_cast<F>(1.0 - b1);
  s.w1c = F(1) - s.w1;
  s.beta2 = static_cast<F>(b2);
  s.w2 = static_cast<F>(1.0 - b2);
  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(b2, static_cast<double>(h.step));
  s.step_size = static_cast<F>(lr / bc1);
  s.bc2_sqrt = static_cast<F>(std::sqrt(bc2));
  s.eps = static_cast<F>(h.eps);
  s.gs = static_cast<F>(h.grad_scale);
  // s by value: stores through F* could alias scalars read through a reference
  parallel_chunks(n, kElemChunk, [=](int64_t, int64_t i0, int64_t i1) { adamw_range(params, grads, m, v, i0, i1, s); });
}

}  // namespace qisa::cpu
