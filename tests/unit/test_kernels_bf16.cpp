// bf16 storage (kernels/bf16.h) against a plain reference: the nearest bf16 by distance, ties to
// the even mantissa, over random and edge-case floats; stochastic rounding is unbiased.
// Events of the CPU backend (kernels/backend.h): complete when recorded.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "kernels/backend.h"
#include "kernels/bf16.h"
#include "kernels/error.h"
#include "test_util.h"

namespace qisa {
namespace {

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// The reference: of the two bf16 values around f (truncation and the next one up in
// magnitude), the nearer in exact (double) arithmetic; on a tie, the one with an even mantissa.
uint16_t nearest_bf16_reference(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const uint16_t lo = static_cast<uint16_t>(u >> 16), hi = static_cast<uint16_t>(lo + 1);
  const double x = f, a = bf16_to_float(bf16{lo}), b = bf16_to_float(bf16{hi});
  const double da = std::fabs(x - a), db = std::fabs(b - x);
  if (da < db) return lo;
  if (db < da) return hi;
  return (lo & 1) ? hi : lo;
}

TEST(Bf16, RoundToNearestEvenMatchesThePlainReference) {
  std::mt19937 rng(static_cast<uint32_t>(test::fresh_seed()));
  std::uniform_int_distribution<uint32_t> bits;
  int checked = 0;
  for (int i = 0; i < 200000; ++i) {
    uint32_t u = bits(rng);
    if (i % 4 == 1) u = (u & 0xFFFF0000u) | 0x8000u;  // exact ties
    if (i % 4 == 2) u &= 0xFFFF0000u;                 // exactly representable
    const float f = from_bits(u);
    if (!std::isfinite(f)) continue;
    if (std::fabs(f) >= from_bits(0x7F7F8000u)) {  // rounds to infinity from here up (ties to even)
      EXPECT_TRUE(std::isinf(bf16_to_float(float_to_bf16(f)))) << f;
      continue;
    }
    ASSERT_EQ(float_to_bf16(f).bits, nearest_bf16_reference(f)) << "float bits 0x" << std::hex << u;
    ++checked;
  }
  EXPECT_GT(checked, 190000);
}

TEST(Bf16, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(bf16_to_float(float_to_bf16(inf)), inf);
  EXPECT_EQ(bf16_to_float(float_to_bf16(-inf)), -inf);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::nanf("")))));
  // a NaN whose payload sits only in the low 16 bits must not become infinity
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(from_bits(0x7F800001u)))));
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16_stochastic(from_bits(0x7F800001u), 0xFFFFu))));
  EXPECT_EQ(float_to_bf16(-0.0f).bits, 0x8000u);
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f)), 1.0f);
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f + 1.0f / 256)), 1.0f);          // tie: to even (1.0)
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f + 3.0f / 256)), 1.0f + 1.0f / 64);  // tie: to even (up)
}

TEST(Bf16, StochasticRoundingIsUnbiasedAndBracketsTheValue) {
  std::mt19937 rng(static_cast<uint32_t>(test::fresh_seed()));
  std::uniform_real_distribution<float> val(-3.0f, 3.0f);
  for (int i = 0; i < 20; ++i) {
    const float f = val(rng);
    const float down = bf16_to_float(bf16{static_cast<uint16_t>(float_bits(f) >> 16)});
    double sum = 0;
    const int n = 1 << 16;
    for (int r = 0; r < n; ++r) {  // every 16-bit draw once: the mean is exact up to 2^-16 ulp
      const float q = bf16_to_float(float_to_bf16_stochastic(f, static_cast<uint32_t>(r)));
      ASSERT_TRUE(q == down || std::fabs(q) > std::fabs(down)) << f;
      sum += q;
    }
    const double ulp = std::ldexp(1.0, std::ilogb(f) - 7);
    EXPECT_NEAR(sum / n, f, ulp * 1e-4) << f;
    EXPECT_EQ(float_to_bf16_stochastic(f, 0).bits, float_bits(f) >> 16);  // r = 0 truncates
  }
}

TEST(BackendEvents, CpuEventsAreCompleteWhenRecorded) {
  auto be = make_cpu_backend(1);
  auto e = be->make_event();
  EXPECT_TRUE(e->query());  // never recorded: nothing to wait for (as cudaEventQuery)
  Buffer<float> x(*be, 4);
  be->zero(x.get(), x.bytes());
  be->record(*e);
  EXPECT_TRUE(e->query());
  e->wait();
  EXPECT_EQ(dtype_bytes(DType::bf16), sizeof(bf16));
  EXPECT_EQ(dtype_bytes(DType::f32), sizeof(float));
}

TEST(BackendEvents, RecordingAnotherBackendsEventIsAnError) {
  auto be = make_cpu_backend(1);
  struct Foreign final : Event {
    void wait() override {}
    bool query() override { return true; }
  } foreign;
  EXPECT_THROW(be->record(foreign), Error);
}

}  // namespace
}  // namespace qisa
