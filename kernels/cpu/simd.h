// A fixed-width pack of floats or doubles with elementwise arithmetic (GCC/Clang vector
// extension), for the loops that sum across iterations into per-lane accumulators, and the few
// lane operations the kernels need on it (lane masks, sum and max over lanes, square root, a
// W x W transpose). Written with `#pragma omp simd` such sums stay in memory and every step
// waits on a store-to-load round trip; a Pack accumulator lives in a register. The width is
// the native one (32 bytes with AVX, else 16), so packs never cross a function boundary in a
// non-native ABI.
#pragma once
#if defined(__AVX__)
#include <immintrin.h>
#endif

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/cpu/fast_math.h"

namespace qisa::cpu {

#if defined(__AVX__)
inline constexpr int kPackBytes = 32;
#else
inline constexpr int kPackBytes = 16;
#endif

template <typename F>
struct PackType {
  typedef F type __attribute__((vector_size(kPackBytes)));
};
template <typename F>
using Pack = typename PackType<F>::type;

template <typename F>
inline constexpr int kPackLanes = kPackBytes / static_cast<int>(sizeof(F));

template <typename F>
QISA_INLINE Pack<F> pack_load(const F* p) {
  Pack<F> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename F>
QISA_INLINE void pack_store(F* p, Pack<F> v) {
  std::memcpy(p, &v, sizeof v);
}

// Integer packs of the same width (lane masks for the float packs).
template <typename F>
using IntOf = std::conditional_t<sizeof(F) == 4, int32_t, int64_t>;
template <typename F>
using IPack = typename PackType<IntOf<F>>::type;

// All ones in lanes l < n, zeros from n on.
template <typename F>
QISA_INLINE IPack<F> lanes_below(int n) {
  IPack<F> lane;
  for (int l = 0; l < kPackLanes<F>; ++l) lane[l] = l;
  return lane < static_cast<IntOf<F>>(n);
}

// v with lanes l >= n set to +0, by a bit mask: whatever is in those lanes (even NaN) is gone.
template <typename F>
QISA_INLINE Pack<F> pack_keep_below(Pack<F> v, int n) {
  return std::bit_cast<Pack<F>>(std::bit_cast<IPack<F>>(v) & lanes_below<F>(n));
}

// v with lanes l >= n set to `fill` (e.g. -inf before a max over the first n lanes).
template <typename F>
QISA_INLINE Pack<F> pack_fill_from(Pack<F> v, int n, F fill) {
  Pack<F> f = {};
  f += fill;
  const IPack<F> keep = lanes_below<F>(n);
  return std::bit_cast<Pack<F>>((std::bit_cast<IPack<F>>(v) & keep) | (std::bit_cast<IPack<F>>(f) & ~keep));
}

// Lane-wise square root, correctly rounded (the same bits as std::sqrt on each lane). GCC does
// not vectorise std::sqrt without -fno-math-errno, so AVX uses the instruction directly.
template <typename F>
QISA_INLINE Pack<F> pack_sqrt(Pack<F> v) {
#if defined(__AVX__)
  if constexpr (kPackBytes == 32 && std::is_same_v<F, float>) return (Pack<F>)_mm256_sqrt_ps((__m256)v);
  if constexpr (kPackBytes == 32 && std::is_same_v<F, double>) return (Pack<F>)_mm256_sqrt_pd((__m256d)v);
#endif
  for (int l = 0; l < kPackLanes<F>; ++l) v[l] = std::sqrt(v[l]);
  return v;
}

// Lane-wise a*b + c with one rounding (IEEE fma): for expressions whose fused steps are part of
// their definition (the same bits on every compiler, whatever it contracts on its own).
template <typename F>
QISA_INLINE Pack<F> pack_fma(Pack<F> a, Pack<F> b, Pack<F> c) {
#if defined(__FMA__)
  if constexpr (kPackBytes == 32 && std::is_same_v<F, float>)
    return (Pack<F>)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
  if constexpr (kPackBytes == 32 && std::is_same_v<F, double>)
    return (Pack<F>)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
#endif
  for (int l = 0; l < kPackLanes<F>; ++l) a[l] = std::fma(a[l], b[l], c[l]);
  return a;
}

// Sum of the lanes in a fixed pairwise order: halves added, then halves of the result
// (8 lanes: ((v0+v4) + (v2+v6)) + ((v1+v5) + (v3+v7))). With __builtin_shufflevector the
// halves are vector adds (3 shuffles, 3 adds); otherwise the same order on single lanes.
template <typename F>
QISA_INLINE F pack_sum(Pack<F> v) {
  constexpr int W = kPackLanes<F>;
  static_assert(W == 2 || W == 4 || W == 8, "pack width");
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
  if constexpr (W == 8) {
    const auto a = __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
    const auto b = __builtin_shufflevector(a, a, 0, 1) + __builtin_shufflevector(a, a, 2, 3);
    return b[0] + b[1];
  } else if constexpr (W == 4) {
    const auto a = __builtin_shufflevector(v, v, 0, 1) + __builtin_shufflevector(v, v, 2, 3);
    return a[0] + a[1];
  }
#endif
  if constexpr (W == 8) {
    const F a0 = v[0] + v[4], a1 = v[1] + v[5], a2 = v[2] + v[6], a3 = v[3] + v[7];
    return (a0 + a2) + (a1 + a3);
  } else if constexpr (W == 4) {
    return (v[0] + v[2]) + (v[1] + v[3]);
  } else {
    return v[0] + v[1];
  }
}

// Lane-wise max (a NaN in b is passed on; exact, so any order of a max reduction gives the
// same value) and the max over the lanes.
template <typename F>
QISA_INLINE Pack<F> pack_max(Pack<F> a, Pack<F> b) {
  return a < b ? b : a;
}
template <typename F>
QISA_INLINE F pack_hmax(Pack<F> v) {
  F m = v[0];
  for (int l = 1; l < kPackLanes<F>; ++l) m = m < v[l] ? v[l] : m;
  return m;
}

// dst[c*ldd + r] = src[r*lds + c] (+= with kAdd) for r, c < W (one W x W block; W =
// kPackLanes<F>): W pack loads, 3 (float) or 2 (double) rounds of two-input shuffles, W pack
// stores. Without __builtin_shufflevector (GCC < 12), or for other widths, element by element.
template <typename F, bool kAdd = false>
QISA_INLINE void transpose_pack_block(F* dst, int64_t ldd, const F* src, int64_t lds) {
  constexpr int W = kPackLanes<F>;
  auto put = [&](F* d, Pack<F> v) { pack_store(d, kAdd ? pack_load(d) + v : v); };
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
  if constexpr (W == 8) {
    Pack<F> r[8], t[8], s[8];
    for (int i = 0; i < 8; ++i) r[i] = pack_load(src + i * lds);
    for (int i = 0; i < 8; i += 2) {  // interleave row pairs within 128-bit halves
      t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
      t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int i = 0; i < 8; i += 4) {  // pairs of pairs
      s[i] = __builtin_shufflevector(t[i], t[i + 2], 0, 1, 8, 9, 4, 5, 12, 13);
      s[i + 1] = __builtin_shufflevector(t[i], t[i + 2], 2, 3, 10, 11, 6, 7, 14, 15);
      s[i + 2] = __builtin_shufflevector(t[i + 1], t[i + 3], 0, 1, 8, 9, 4, 5, 12, 13);
      s[i + 3] = __builtin_shufflevector(t[i + 1], t[i + 3], 2, 3, 10, 11, 6, 7, 14, 15);
    }
    for (int i = 0; i < 4; ++i) {  // 128-bit halves
      put(dst + i * ldd, __builtin_shufflevector(s[i], s[i + 4], 0, 1, 2, 3, 8, 9, 10, 11));
      put(dst + (i + 4) * ldd, __builtin_shufflevector(s[i], s[i + 4], 4, 5, 6, 7, 12, 13, 14, 15));
    }
    return;
  } else if constexpr (W == 4) {
    Pack<F> r[4], t[4];
    for (int i = 0; i < 4; ++i) r[i] = pack_load(src + i * lds);
    for (int i = 0; i < 4; i += 2) {
      t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 4, 2, 6);
      t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 1, 5, 3, 7);
    }
    for (int i = 0; i < 2; ++i) {
      put(dst + i * ldd, __builtin_shufflevector(t[i], t[i + 2], 0, 1, 4, 5));
      put(dst + (i + 2) * ldd, __builtin_shufflevector(t[i], t[i + 2], 2, 3, 6, 7));
    }
    return;
  }
#endif
  for (int rr = 0; rr < W; ++rr)
    for (int c = 0; c < W; ++c) dst[c * ldd + rr] = kAdd ? dst[c * ldd + rr] + src[rr * lds + c] : src[rr * lds + c];
}

}  // namespace qisa::cpu
