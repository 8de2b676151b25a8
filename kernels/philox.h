// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11).
// Counter-based: every draw is a pure function of (key, counter), so dropout bits, sample
// offsets and initial weights do not depend on thread count, world size, device or on how
// many draws came before (DESIGN "Determinism and exactness", SPEC §2b).
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define QISA_HD __host__ __device__ __forceinline__
#else
#define QISA_HD inline
#endif

namespace qisa {

struct Philox4 {
  uint32_t v[4];
};

QISA_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// One Philox-4x32-10 block: 128 random bits for counter `ctr` under 64-bit key `key`.
QISA_HD Philox4 philox4x32(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint64_t key) {
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(0xD2511F53u, c0, hi0, lo0);
    philox_mulhilo(0xCD9E8D57u, c2, hi1, lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// 32 random bits for element `index` of stream (key, a, b): the element's block is
// counter (index/4, a, b) and it takes word index%4 of that block.
QISA_HD uint32_t philox_bits(uint64_t key, uint32_t a, uint32_t b, uint64_t index) {
  const uint64_t blk = index >> 2;
  const Philox4 r = philox4x32(static_cast<uint32_t>(blk), static_cast<uint32_t>(blk >> 32), a, b, key);
  return r.v[index & 3];
}

// Uniform float in [0, 1) with 24 random bits (exactly representable, same on CPU and GPU).
QISA_HD float philox_uniform(uint64_t key, uint32_t a, uint32_t b, uint64_t index) {
  return static_cast<float>(philox_bits(key, a, b, index) >> 8) * (1.0f / 16777216.0f);
}

// Uniform double in [0, 1) with 53 random bits from words v[0], v[1] of a block.
QISA_HD double uniform_double_of(const uint32_t* v) {
  const uint64_t bits = (static_cast<uint64_t>(v[0]) << 21) ^ (v[1] >> 11);
  return static_cast<double>(bits & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

// Standard normal double from the four words of a block (Box-Muller: two uniforms).
QISA_HD double normal_double_of(const uint32_t* v) {
  const uint64_t b1 = ((static_cast<uint64_t>(v[0]) << 21) ^ (v[1] >> 11)) & ((1ull << 53) - 1);
  const uint64_t b2 = ((static_cast<uint64_t>(v[2]) << 21) ^ (v[3] >> 11)) & ((1ull << 53) - 1);
  const double u1 = (static_cast<double>(b1) + 1.0) * (1.0 / 9007199254740993.0);  // (0, 1]
  const double u2 = static_cast<double>(b2) * (1.0 / 9007199254740992.0);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586476925 * u2);
}

// Uniform double in [0, 1) with 53 random bits (two words of block `index`).
QISA_HD double philox_uniform_double(uint64_t key, uint32_t a, uint32_t b, uint64_t index) {
  const Philox4 r = philox4x32(static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), a, b, key);
  return uniform_double_of(r.v);
}

// Standard normal double (Box-Muller on one block: four words, two uniforms).
QISA_HD double philox_normal_double(uint64_t key, uint32_t a, uint32_t b, uint64_t index) {
  const Philox4 r = philox4x32(static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), a, b, key);
  return normal_double_of(r.v);
}

}  // namespace qisa
