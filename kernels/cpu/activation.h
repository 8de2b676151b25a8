// Elementwise activations (SPEC §1): relu, and gelu with the tanh approximation
//   gelu(x) = 0.5 x (1 + tanh(z)), z = sqrt(2/pi) (x + 0.044715 x^3),
// evaluated as x * sigmoid(2z) (the same function: 1 + tanh(z) = 2 sigmoid(2z)), which needs
// one exp, keeps full relative accuracy for small |x| and vectorises with exp_poly.
#pragma once
#include <cstdint>

#include "kernels/backend.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/parallel.h"

namespace qisa::cpu {

inline constexpr int64_t kElemChunk = 16384;  // elements per work item of elementwise ops

template <typename F>
QISA_INLINE F gelu_sigmoid(F x) {  // sigmoid(2z)
  const F k0 = static_cast<F>(0.7978845608028654);  // sqrt(2/pi)
  const F k1 = static_cast<F>(0.044715);
  const F z = k0 * (x + k1 * x * x * x);
  return F(1) / (F(1) + exp_t<F>(F(-2) * z));
}

// out[i] = act(in[i])
template <typename F>
void activation_forward(F* out, const F* in, int64_t n, Activation act) {
  parallel_chunks(n, kElemChunk, [&](int64_t, int64_t i0, int64_t i1) {
    if (act == Activation::relu) {
#pragma omp simd
      for (int64_t i = i0; i < i1; ++i) out[i] = in[i] > F(0) ? in[i] : F(0);
    } else {
#pragma omp simd
      for (int64_t i = i0; i < i1; ++i) out[i] = in[i] * gelu_sigmoid(in[i]);
    }
  });
}

// din[i] += act'(in[i]) * dout[i]
// gelu' = s + 2 x s (1 - s) z'(x), s = sigmoid(2z), z' = sqrt(2/pi) (1 + 3*0.044715 x^2)
template <typename F>
void activation_backward(F* din, const F* dout, const F* in, int64_t n, Activation act, GradMode mode) {
  // kAdd a template parameter, not a run-time test inside the loops: the store must vectorise.
  auto rows = [&]<bool kAdd>(int64_t i0, int64_t i1) {
    if (act == Activation::relu) {
#pragma omp simd
      for (int64_t i = i0; i < i1; ++i) {
        const F g = dout[i];  // loaded unconditionally: a conditional load does not vectorise
        const F v = in[i] > F(0) ? g : F(0);
        din[i] = kAdd ? din[i] + v : v;
      }
    } else {
      const F k0 = static_cast<F>(0.7978845608028654);
      const F k13 = static_cast<F>(3 * 0.044715);
#pragma omp simd
      for (int64_t i = i0; i < i1; ++i) {
        const F x = in[i];
        const F s = gelu_sigmoid(x);
        const F dz = k0 * (F(1) + k13 * x * x);
        const F v = dout[i] * (s + F(2) * x * s * (F(1) - s) * dz);
        din[i] = kAdd ? din[i] + v : v;
      }
    }
  };
  parallel_chunks(n, kElemChunk, [&](int64_t, int64_t i0, int64_t i1) {
    if (mode == GradMode::accumulate)
      rows.template operator()<true>(i0, i1);
    else
      rows.template operator()<false>(i0, i1);
  });
}

}  // namespace qisa::cpu
