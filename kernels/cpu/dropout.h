// Counter-based dropout (SPEC §2b, backend.h Dropout): element e (global index) of site s at
// step t is kept iff philox_uniform(seed, t, s, e) >= p; kept values are scaled by 1/(1-p)
// (computed in the op's precision). The bits are a pure function of (seed, step, site, e), so
// backward recomputes the mask instead of storing it.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/parallel.h"
#include "kernels/error.h"
#include "kernels/philox_simd.h"

namespace qisa::cpu {

// The keep test on raw bits: exactly philox_uniform(...) >= p.
QISA_INLINE bool dropout_keep(uint32_t bits, float p) {
  return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f) >= p;
}

// body(i, count, bits): bits[k] are the Philox words of global elements e0 + i + k, for
// consecutive sub-ranges [i, i+count) covering [0, n).
template <class Body>
void for_dropout_bits(const Dropout& d, uint64_t e0, int64_t n, Body&& body) {
  uint32_t words[4 * kPhiloxBlocks];
  int64_t i = 0;
  while (i < n) {
    const uint64_t e = e0 + static_cast<uint64_t>(i);
    const int first = static_cast<int>(e & 3);
    philox_blocks(e >> 2, d.step, d.site, d.seed, words);
    const int64_t count = std::min<int64_t>(4 * kPhiloxBlocks - first, n - i);
    body(i, count, words + first);
    i += count;
  }
}

inline void check_dropout(const Dropout& d) {
  QISA_CHECK(d.p >= 0.0f && d.p < 1.0f, "dropout p = " + std::to_string(d.p), "dropout probability is in [0, 1)");
}

template <typename F>
inline F dropout_scale(const Dropout& d) {
  return F(1) / (F(1) - static_cast<F>(d.p));
}

// mult[i] = kept(e0 + i) ? 1/(1-p) : 0 for i in [0, n). With p == 0 all ones.
template <typename F>
void dropout_multipliers(F* mult, int64_t n, const Dropout& d, uint64_t e0) {
  if (!d.active()) {
    std::fill(mult, mult + n, F(1));
    return;
  }
  const F scale = dropout_scale<F>(d);
  const float p = d.p;
  for_dropout_bits(d, e0, n, [&](int64_t i, int64_t count, const uint32_t* bits) {
    const float pk = p;
    const F sc = scale;
    F* m = mult + i;
#pragma omp simd
    for (int64_t k = 0; k < count; ++k) m[k] = dropout_keep(bits[k], pk) ? sc : F(0);
  });
}

// out[i] = x[i] + dropout(y[i]), global element index d.elem_offset + i (out may alias x).
template <typename F>
void dropout_add_forward(F* out, const F* x, const F* y, int64_t n, const Dropout& d) {
  check_dropout(d);
  const F scale = dropout_scale<F>(d);
  const float p = d.p;
  const bool active = d.active();
  parallel_chunks(n, kElemChunk, [&](int64_t, int64_t i0, int64_t i1) {
    if (!active) {
#pragma omp simd
      for (int64_t i = i0; i < i1; ++i) out[i] = x[i] + y[i];
      return;
    }
    for_dropout_bits(d, d.elem_offset + static_cast<uint64_t>(i0), i1 - i0,
                     [&](int64_t j, int64_t count, const uint32_t* bits) {
                       // locals, not captures: a store through out could alias a captured float
                       const float pk = p;
                       const F sc = scale;
                       F* o = out + i0 + j;
                       const F* xs = x + i0 + j;
                       const F* ys = y + i0 + j;
                       // multiply by a selected constant: a select of float results would not vectorise
#pragma omp simd
                       for (int64_t k = 0; k < count; ++k) o[k] = xs[k] + ys[k] * (dropout_keep(bits[k], pk) ? sc : F(0));
                     });
  });
}

// dx[i] += dout[i] (dx may be null); dy[i] += dropout(dout[i]) with the forward's mask and scale
// (dy may be null).
template <typename F>
void dropout_add_backward(F* dx, F* dy, const F* dout, int64_t n, const Dropout& d, GradMode mode) {
  check_dropout(d);
  const F scale = dropout_scale<F>(d);
  const float p = d.p;
  const bool active = d.active();
  // kAdd a template parameter, not a run-time test inside the loops: the stores must vectorise.
  auto rows = [&]<bool kAdd>(int64_t i0, int64_t i1) {
    if (dx) {
#pragma omp simd
      for (int64_t i = i0; i < i1; ++i) dx[i] = kAdd ? dx[i] + dout[i] : dout[i];
    }
    if (!dy) return;
    if (!active) {
#pragma omp simd
      for (int64_t i = i0; i < i1; ++i) dy[i] = kAdd ? dy[i] + dout[i] : dout[i];
      return;
    }
    for_dropout_bits(d, d.elem_offset + static_cast<uint64_t>(i0), i1 - i0,
                     [&](int64_t j, int64_t count, const uint32_t* bits) {
                       const float pk = p;
                       const F sc = scale;
                       F* o = dy + i0 + j;
                       const F* g = dout + i0 + j;
#pragma omp simd
                       for (int64_t k = 0; k < count; ++k) {
                         const F v = g[k] * (dropout_keep(bits[k], pk) ? sc : F(0));
                         o[k] = kAdd ? o[k] + v : v;
                       }
                     });
  };
  parallel_chunks(n, kElemChunk, [&](int64_t, int64_t i0, int64_t i1) {
    if (mode == GradMode::accumulate)
      rows.template operator()<true>(i0, i1);
    else
      rows.template operator()<false>(i0, i1);
  });
}

}  // namespace qisa::cpu
