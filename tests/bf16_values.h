// Test helpers for kernels templated on their storage type T (float or bf16): values in and out
// of T, and the two gradient modes with their names. Shared by the kernel cases of the emulator
// and GPU suites (tests/kernel_cases.h) and the cuBLASLt wrapper tests.
#pragma once
#include <cstddef>
#include <type_traits>
#include <vector>

#include "kernels/backend.h"
#include "kernels/bf16.h"

namespace qisa::test {

template <class T>
T from_f(float x) {
  if constexpr (std::is_same_v<T, float>) return x;
  else return qisa::float_to_bf16(x);
}
template <class T>
float to_f(T x) {
  if constexpr (std::is_same_v<T, float>) return x;
  else return qisa::bf16_to_float(x);
}
template <class T>
std::vector<float> widen(const std::vector<T>& v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = to_f(v[i]);
  return r;
}

inline constexpr GradMode kModes[] = {GradMode::overwrite, GradMode::accumulate};
inline const char* mode_name(GradMode m) { return m == GradMode::overwrite ? "overwrite" : "accumulate"; }

}  // namespace qisa::test
