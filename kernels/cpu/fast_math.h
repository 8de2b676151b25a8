// Elementary functions the hot loops need, written so that GCC vectorises the loops that
// call them (no library calls). float gets a Cephes-style polynomial exp (max relative
// error about 2 ulp); double, used by the float64 reference and the gradient checks, keeps
// the libm functions.
#pragma once
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

// The helpers below must inline into the SIMD loops that call them (a call blocks
// vectorisation), so they do not depend on GCC's inlining heuristics.
#define QISA_INLINE inline __attribute__((always_inline))

namespace qisa::cpu {

// exp(x) for float without calls. |x| is clamped to 87.3, so the result is a finite normal
// number (exp(-87.3) = 1.2e-38 stands in for anything smaller, which is below float
// resolution next to any softmax denominator >= 1; +-inf saturate the same way); NaN gives
// NaN. The clamp and the NaN test work on the bit pattern with integer operations: GCC
// (with -ftrapping-math, no AVX-512 masks) will not if-convert float compares, and a
// branch in the loop body blocks vectorisation.
QISA_INLINE float exp_poly(float x0) {
  const int32_t bits = std::bit_cast<int32_t>(x0);
  const int32_t mag = std::min(bits & 0x7fffffff, 0x42AE999A);  // 0x42AE999A = 87.3f
  const float x = std::bit_cast<float>((bits & static_cast<int32_t>(0x80000000u)) | mag);
  // k = round(x / ln2) by the 1.5*2^23 trick (exact, vectorises; no -ffast-math here).
  const float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - k * 0.693359375f;  // Cody-Waite: ln2 = C1 + C2 with C1 exact in float
  r = r - k * -2.12194440e-4f;
  const float z = r * r;
  float y = 1.9875691500e-4f;  // Cephes expf minimax polynomial on [-ln2/2, ln2/2]
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * z + r + 1.0f;
  const int32_t ki = static_cast<int32_t>(k);  // in [-126, 126]
  const float res = y * std::bit_cast<float>((ki + 127) << 23);
  const int32_t nan_bits = -static_cast<int32_t>((bits & 0x7fffffff) > 0x7f800000) & 0x7fc00000;
  return std::bit_cast<float>(std::bit_cast<int32_t>(res) | nan_bits);
}

template <typename F>
QISA_INLINE F exp_t(F x) {
  if constexpr (std::is_same_v<F, float>) {
    return exp_poly(x);
  } else {
    return std::exp(x);
  }
}

// exp(a - 1/2) for a in [0, 1]: for a softmax over values known to lie in [0, 1] (the Gaussian
// kernel's alpha), where the constant factor exp(-1/2) cancels. float: a degree-6 polynomial in
// r = a - 1/2 in [-1/2, 1/2] (Chebyshev fit, max error 2.6e-8, about 1 ulp after rounding),
// no range reduction: a third of exp_poly's work. NaN gives NaN. double: std::exp.
template <typename F>
QISA_INLINE F exp_unit_shifted(F a) {
  if constexpr (std::is_same_v<F, float>) {
    const float r = a - 0.5f;
    float y = 1.3997773379590333e-3f;
    y = y * r + 8.4205165925759884e-3f;
    y = y * r + 4.1665304193438315e-2f;
    y = y * r + 1.6665575457981404e-1f;
    y = y * r + 5.0000004259205444e-1f;
    y = y * r + 1.0000003411504726f;
    return y * r + 1.0f;
  } else {
    return std::exp(a - F(0.5));
  }
}

}  // namespace qisa::cpu
