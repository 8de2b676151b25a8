// Philox-4x32-10 known-answer vectors (Random123 kat_vectors) and the batched generator the
// dropout kernels use.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>

#include "kernels/cpu/dropout.h"
#include "kernels/philox_simd.h"
#include "test_util.h"

namespace {

using qisa::Philox4;

struct Kat {
  uint32_t ctr[4];
  uint32_t key[2];
  uint32_t want[4];
};

// Random123 kat_vectors, philox4x32 with 10 rounds. key word 0 is the low half of our 64-bit key.
constexpr Kat kKats[] = {
    {{0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u},
     {0x00000000u, 0x00000000u},
     {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
    {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
     {0xffffffffu, 0xffffffffu},
     {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
    {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
     {0xa4093822u, 0x299f31d0u},
     {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
};

uint64_t key_of(const Kat& k) { return (static_cast<uint64_t>(k.key[1]) << 32) | k.key[0]; }

TEST(Philox, KnownAnswerVectors) {
  for (const Kat& k : kKats) {
    const Philox4 r = qisa::philox4x32(k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3], key_of(k));
    for (int w = 0; w < 4; ++w) EXPECT_EQ(r.v[w], k.want[w]) << "word " << w << " of KAT with ctr0 " << k.ctr[0];
  }
}

TEST(Philox, BitsTakeWordIndexMod4OfBlockIndexDiv4) {
  // philox_bits(key, a, b, index): counter (index/4 low, index/4 high, a, b); the element
  // index is 64-bit, so the block index stays below 2^62 (KAT 3's would not).
  const Kat& k = kKats[0];
  const uint64_t blk = (static_cast<uint64_t>(k.ctr[1]) << 32) | k.ctr[0];
  for (int w = 0; w < 4; ++w)
    EXPECT_EQ(qisa::philox_bits(key_of(k), k.ctr[2], k.ctr[3], blk * 4 + w), k.want[w]);
}

TEST(Philox, BatchedBlocksMatchScalar) {
  const uint64_t seed = qisa::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  uint32_t words[4 * qisa::kPhiloxBlocks];
  for (int rep = 0; rep < 50; ++rep) {
    const uint64_t key = rng();
    const uint32_t a = static_cast<uint32_t>(rng()), b = static_cast<uint32_t>(rng());
    // include block indices that carry into the high counter word
    const uint64_t blk0 = rep % 2 ? rng() >> 3 : 0xFFFFFFFFull - qisa::kPhiloxBlocks / 2;
    qisa::philox_blocks(blk0, a, b, key, words);
    for (int i = 0; i < 4 * qisa::kPhiloxBlocks; ++i)
      ASSERT_EQ(words[i], qisa::philox_bits(key, a, b, blk0 * 4 + i)) << "word " << i;
  }
}

TEST(Philox, UniformIsInUnitIntervalWithMeanHalf) {
  double s = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const float u = qisa::philox_uniform(1234, 5, 6, static_cast<uint64_t>(i));
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    s += u;
  }
  EXPECT_NEAR(s / n, 0.5, 0.005);
}

TEST(Philox, DropoutKeepEqualsUniformTest) {
  for (uint64_t i = 0; i < 4096; ++i) {
    const uint32_t bits = qisa::philox_bits(99, 1, 2, i);
    for (float p : {0.0f, 0.1f, 0.5f, 0.9f})
      ASSERT_EQ(qisa::cpu::dropout_keep(bits, p), qisa::philox_uniform(99, 1, 2, i) >= p);
  }
}

}  // namespace
