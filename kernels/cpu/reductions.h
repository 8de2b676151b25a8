// Flat-buffer reductions and scaling (global-norm clipping).
#pragma once
#include <cstdint>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/parallel.h"

namespace qisa::cpu {

inline constexpr int64_t kSumChunk = 65536;  // elements per partial

// sum of x[i]^2 in double. Fixed order: within a chunk 8 interleaved accumulators (a fixed
// pattern, so it vectorises), then the 8 combined in order, then chunk partials in chunk order.
template <typename F>
double sum_squares(const F* x, int64_t n, Workspace& ws) {
  const int64_t parts = ceil_div(n, kSumChunk);
  if (parts == 0) return 0.0;
  double* part = ws.get<double>(0, static_cast<size_t>(parts), "sum of squares partials");
  parallel_chunks(n, kSumChunk, [&](int64_t c, int64_t i0, int64_t i1) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8) {
      for (int k = 0; k < 8; ++k) {
        const double d = static_cast<double>(x[i + k]);
        acc[k] += d * d;
      }
    }
    for (int k = 0; i < i1; ++i, ++k) {
      const double d = static_cast<double>(x[i]);
      acc[k] += d * d;
    }
    double s = 0;
    for (int k = 0; k < 8; ++k) s += acc[k];
    part[c] = s;
  });
  double s = 0;
  for (int64_t c = 0; c < parts; ++c) s += part[c];
  return s;
}

// x[i] *= a
template <typename F>
void scale(F* x, F a, int64_t n) {
  parallel_chunks(n, kElemChunk, [=](int64_t, int64_t i0, int64_t i1) {  // by value: see adamw.h
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) x[i] *= a;
  });
}

}  // namespace qisa::cpu
