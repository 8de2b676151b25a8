// bfloat16 storage (train.precision: bf16): the upper 16 bits of an IEEE-754 float32 (1 sign,
// 8 exponent, 7 mantissa bits), so bf16 -> float is exact and float -> bf16 only rounds the
// mantissa. Arithmetic is always float: bf16 is how values are stored and moved, never how
// they are summed. Host and device share these functions (QISA_HD), so the CPU backend rounds
// exactly as the GPU's __float2bfloat16_rn does.
#pragma once
#include <cstdint>
#include <cstring>

#include "kernels/philox.h"

namespace qisa {

// A bf16 value as its bit pattern (a distinct type, so a bf16 buffer is never read as floats).
struct bf16 {
  uint16_t bits;
};

QISA_HD uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

QISA_HD float bf16_to_float(bf16 h) {
  const uint32_t u = static_cast<uint32_t>(h.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Round to nearest, ties to even (IEEE default; __float2bfloat16_rn). NaN stays a (quiet) NaN
// with its sign; values beyond the largest bf16 round to infinity as IEEE says.
QISA_HD bf16 float_to_bf16(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return bf16{static_cast<uint16_t>((u >> 16) | 0x0040u)};
  const uint32_t rounded = u + 0x7FFFu + ((u >> 16) & 1u);
  return bf16{static_cast<uint16_t>(rounded >> 16)};
}

// Stochastic rounding with 16 random bits r: rounds up with probability (dropped bits) / 2^16,
// so E[bf16_to_float(result)] = f up to 2^-16 of an ulp. Used for the bf16 weight copy
// (train.bf16_rounding: stochastic) with r from Philox counters, so it is reproducible.
// Infinities stay; a finite value may round up to infinity only from the last binade, as IEEE
// round-up would.
QISA_HD bf16 float_to_bf16_stochastic(float f, uint32_t r) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7FFFFFFFu) >= 0x7F800000u) return float_to_bf16(f);  // inf, NaN
  return bf16{static_cast<uint16_t>((u + (r & 0xFFFFu)) >> 16)};
}

}  // namespace qisa
