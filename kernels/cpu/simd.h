// A fixed-width pack of floats or doubles with elementwise arithmetic (GCC/Clang vector
// extension), for the few loops that sum across iterations into per-lane accumulators. Written
// with `#pragma omp simd` such sums stay in memory and every step waits on a store-to-load
// round trip; a Pack accumulator lives in a register. The width is the native one (32 bytes
// with AVX, else 16), so packs never cross a function boundary in a non-native ABI.
#pragma once
#include <cstring>

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

}  // namespace qisa::cpu
