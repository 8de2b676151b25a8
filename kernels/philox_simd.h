// Philox-4x32-10 blocks kPhiloxBlocks at a time in SIMD lanes, on the host (CPU dropout masks,
// model initialisation): the bits of philox4x32 (kernels/philox.h) one block after another.
// Host code only (AVX2 intrinsics where the compiler targets them).
#pragma once
#include <cstdint>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "kernels/philox.h"

namespace qisa {

inline constexpr int kPhiloxBlocks = 32;  // blocks per batch: 128 words (8 vectors in flight)

// words[4k + w] = word w of the Philox-4x32-10 block for element block blk0 + k, i.e. the same
// bits as philox_bits(key, a, b, 4 * (blk0 + k) + w). With AVX2 the blocks run as vectors of
// 4 64-bit lanes (8 vectors in flight hide the multiply's latency), each word in the low half
// of a lane: vpmuludq multiplies low halves 32x32->64, so a round is 2 multiplies, 2 shifts and
// 4 xors per vector with no shuffles (the high halves hold whatever the products left there;
// only low halves are read). A plain loop with 32-bit words compiles to a pack/unpack around every multiply: 1.64 ns a word against 0.62
// here (one core of the 2-core VM, 2026-12-07); one block at a time, 1.94.
inline void philox_blocks(uint64_t blk0, uint32_t a, uint32_t b, uint64_t key, uint32_t* words) {
  static_assert(kPhiloxBlocks % 4 == 0);
#if defined(__AVX2__)
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  constexpr int kVec = kPhiloxBlocks / 4;
  __m256i x0[kVec], x1[kVec], x2[kVec], x3[kVec];
  for (int j = 0; j < kVec; ++j) {
    alignas(32) uint64_t lo[4], hi[4];
    for (int l = 0; l < 4; ++l) {
      const uint64_t blk = blk0 + static_cast<uint64_t>(4 * j + l);
      lo[l] = blk & 0xFFFFFFFFu;
      hi[l] = blk >> 32;
    }
    x0[j] = _mm256_load_si256(reinterpret_cast<const __m256i*>(lo));
    x1[j] = _mm256_load_si256(reinterpret_cast<const __m256i*>(hi));
    x2[j] = _mm256_set1_epi64x(a);
    x3[j] = _mm256_set1_epi64x(b);
  }
  const __m256i m0 = _mm256_set1_epi64x(0xD2511F53u), m1 = _mm256_set1_epi64x(0xCD9E8D57u);
  for (int round = 0; round < 10; ++round) {
    const __m256i kk0 = _mm256_set1_epi64x(k0), kk1 = _mm256_set1_epi64x(k1);
    for (int j = 0; j < kVec; ++j) {
      const __m256i p0 = _mm256_mul_epu32(x0[j], m0);
      const __m256i p1 = _mm256_mul_epu32(x2[j], m1);
      x0[j] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), x1[j]), kk0);
      x2[j] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), x3[j]), kk1);
      x1[j] = p1;
      x3[j] = p0;
    }
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  // out: lane l's low halves as the words of block 4j + l, interleaved
  for (int j = 0; j < kVec; ++j) {
    const __m256i w01 = _mm256_blend_epi32(x0[j], _mm256_slli_epi64(x1[j], 32), 0xAA);  // x1:x0 per lane
    const __m256i w23 = _mm256_blend_epi32(x2[j], _mm256_slli_epi64(x3[j], 32), 0xAA);
    const __m256i even = _mm256_unpacklo_epi64(w01, w23);  // blocks l = 0, 2
    const __m256i odd = _mm256_unpackhi_epi64(w01, w23);   // blocks l = 1, 3
    __m256i* out = reinterpret_cast<__m256i*>(words + 16 * j);
    _mm256_storeu_si256(out, _mm256_permute2x128_si256(even, odd, 0x20));
    _mm256_storeu_si256(out + 1, _mm256_permute2x128_si256(even, odd, 0x31));
  }
#else
  for (int k = 0; k < kPhiloxBlocks; ++k) {
    const uint64_t blk = blk0 + static_cast<uint64_t>(k);
    const Philox4 r = philox4x32(static_cast<uint32_t>(blk), static_cast<uint32_t>(blk >> 32), a, b, key);
    for (int v = 0; v < 4; ++v) words[4 * k + v] = r.v[v];
  }
#endif
}

}  // namespace qisa
