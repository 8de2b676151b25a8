// Counter-based dropout (SPEC §2b): identity at p = 0, kept fraction 1-p, scale 1/(1-p), the
// same mask in forward and backward, and a mask that depends only on (seed, step, site,
// global element index), so slices, micro-batches and thread counts see the same bits.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/attention_csa.h"
#include "kernels/cpu/dropout.h"
#include "kernels/philox.h"
#include "test_util.h"

namespace {

using qisa::GradMode;

using qisa::Dropout;

Dropout make(float p, uint64_t seed, uint32_t step = 2, uint32_t site = 5, uint64_t off = 0) {
  Dropout d;
  d.p = p;
  d.seed = seed;
  d.step = step;
  d.site = site;
  d.elem_offset = off;
  return d;
}

// mask * scale of n elements: forward with x = 0, y = 1.
std::vector<float> forward_mask(qisa::Backend& be, const Dropout& d, int64_t n) {
  std::vector<float> x(n, 0.0f), y(n, 1.0f), out(n);
  be.dropout_add_forward(out.data(), x.data(), y.data(), n, d);
  return out;
}

TEST(Dropout, ZeroProbabilityIsIdentity) {
  auto be = qisa::make_cpu_backend(2);
  std::mt19937_64 rng(1);
  const int64_t n = 50001;
  auto x = qisa::test::random_vector<float>(rng, n), y = qisa::test::random_vector<float>(rng, n);
  std::vector<float> out(n);
  be->dropout_add_forward(out.data(), x.data(), y.data(), n, make(0.0f, 9));
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(out[i], x[i] + y[i]);
  std::vector<float> dx(n, 1.0f), dy(n, 2.0f);
  be->dropout_add_backward(dx.data(), dy.data(), y.data(), n, make(0.0f, 9), GradMode::accumulate);
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(dx[i], 1.0f + y[i]);
    ASSERT_EQ(dy[i], 2.0f + y[i]);
  }
  // in place: out aliases x
  be->dropout_add_forward(x.data(), x.data(), y.data(), n, make(0.0f, 9));
  EXPECT_EQ(x, out);
}

TEST(Dropout, KeptFractionAndScale) {
  const uint64_t seed = qisa::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto be = qisa::make_cpu_backend(2);
  const int64_t n = 1 << 20;
  for (float p : {0.1f, 0.5f, 0.9f}) {
    const auto m = forward_mask(*be, make(p, seed), n);
    const float scale = 1.0f / (1.0f - p);
    int64_t kept = 0;
    for (float v : m) {
      ASSERT_TRUE(v == 0.0f || v == scale) << v;
      kept += v != 0.0f;
    }
    // 1-p within 10 standard deviations (loose: never flaky, still catches a wrong rule)
    const double frac = static_cast<double>(kept) / n, sd = std::sqrt(p * (1 - p) / n);
    EXPECT_NEAR(frac, 1.0 - p, 10 * sd) << "p=" << p;
  }
}

TEST(Dropout, MaskIsThePhiloxRuleAndSameInBackward) {
  const uint64_t seed = qisa::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto be = qisa::make_cpu_backend(2);
  const int64_t n = 40003;
  const Dropout d = make(0.3f, seed, 17, 4, 1000003);
  const auto fwd = forward_mask(*be, d, n);
  for (int64_t i = 0; i < n; ++i) {
    const bool keep = qisa::philox_uniform(d.seed, d.step, d.site, d.elem_offset + static_cast<uint64_t>(i)) >= d.p;
    ASSERT_EQ(fwd[i] != 0.0f, keep) << "element " << i;
  }
  std::vector<float> ones(n, 1.0f), dy(n, 0.0f);
  be->dropout_add_backward(nullptr, dy.data(), ones.data(), n, d, GradMode::accumulate);
  EXPECT_EQ(dy, fwd);
}

TEST(Dropout, MaskDependsOnlyOnGlobalIndex) {
  const uint64_t seed = qisa::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto be1 = qisa::make_cpu_backend(1), be2 = qisa::make_cpu_backend(2);
  const int64_t n = 70001;
  const auto full = forward_mask(*be2, make(0.4f, seed), n);
  EXPECT_EQ(forward_mask(*be1, make(0.4f, seed), n), full);
  for (auto [a, b] : {std::pair<int64_t, int64_t>{0, 5}, {1, 70001}, {3, 66}, {16385, 50002}, {69999, 70001}}) {
    const auto part = forward_mask(*be2, make(0.4f, seed, 2, 5, static_cast<uint64_t>(a)), b - a);
    for (int64_t i = a; i < b; ++i) ASSERT_EQ(part[i - a], full[i]) << "slice [" << a << "," << b << ") at " << i;
  }
  // any of seed, step, site changes the mask
  EXPECT_NE(forward_mask(*be2, make(0.4f, seed + 1), n), full);
  EXPECT_NE(forward_mask(*be2, make(0.4f, seed, 3), n), full);
  EXPECT_NE(forward_mask(*be2, make(0.4f, seed, 2, 6), n), full);
}

// Attention dropout: element ((b*H + h)*T + i)*T + j + elem_offset. A micro-batch of the last
// sequences with the matching offset sees the same bits as the whole batch; and the result is
// the explicit formula out_i = sum_j p_ij keep_ij / (1-p) v_j.
TEST(Dropout, AttentionDropoutIndexing) {
  const uint64_t seed = qisa::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  qisa::cpu::Workspace ws;
  const int64_t B = 4;
  const int T = 5, H = 2, D = 3, HD = H * D, ld = 3 * HD;
  const double scale = 0.6;
  const Dropout d = make(0.35f, seed, 9, 2, 0);
  auto qkv = qisa::test::random_vector<double>(rng, B * T * ld);
  std::vector<double> out(B * T * HD), stat(B * H * T);
  qisa::cpu::csa_forward(out.data(), HD, stat.data(), qkv.data(), qkv.data() + HD, qkv.data() + 2 * HD, ld, B, T, H, D,
                         scale, d, ws);
  for (int64_t b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < T; ++i)
        for (int dd = 0; dd < D; ++dd) {
          double want = 0;
          for (int j = 0; j <= i; ++j) {
            const uint64_t e = static_cast<uint64_t>(((b * H + h) * T + i) * T + j);
            const bool keep = qisa::philox_uniform(d.seed, d.step, d.site, e) >= d.p;
            double qk = 0;  // p_ij = exp(w_ij - lse_i), lse as saved by forward
            for (int c = 0; c < D; ++c) qk += qkv[(b * T + i) * ld + h * D + c] * qkv[(b * T + j) * ld + HD + h * D + c];
            const double p_ij = std::exp(qk * scale - stat[(b * H + h) * T + i]);
            want += p_ij * (keep ? 1.0 / (1.0 - static_cast<double>(d.p)) : 0.0) *
                    qkv[(b * T + j) * ld + 2 * HD + h * D + dd];
          }
          ASSERT_NEAR(out[(b * T + i) * HD + h * D + dd], want, 1e-12);
        }
  // the last two sequences alone, offset by their global position
  const int64_t b0 = 2;
  Dropout ds = d;
  ds.elem_offset = static_cast<uint64_t>(b0 * H * T * T);
  std::vector<double> out2((B - b0) * T * HD), stat2((B - b0) * H * T);
  const double* q2 = qkv.data() + b0 * T * ld;
  qisa::cpu::csa_forward(out2.data(), HD, stat2.data(), q2, q2 + HD, q2 + 2 * HD, ld, B - b0, T, H, D, scale, ds, ws);
  for (size_t i = 0; i < out2.size(); ++i) ASSERT_EQ(out2[i], out[b0 * T * HD + i]);
  // and the backward of the slice equals the slice of the backward
  auto g = qisa::test::random_vector<double>(rng, B * T * HD);
  std::vector<double> dqkv(B * T * ld, 0.0), dqkv2((B - b0) * T * ld, 0.0);
  qisa::cpu::csa_backward(dqkv.data(), dqkv.data() + HD, dqkv.data() + 2 * HD, g.data(), HD, stat.data(), qkv.data(),
                          qkv.data() + HD, qkv.data() + 2 * HD, ld, B, T, H, D, scale, d, ws, GradMode::accumulate);
  qisa::cpu::csa_backward(dqkv2.data(), dqkv2.data() + HD, dqkv2.data() + 2 * HD, g.data() + b0 * T * HD, HD,
                          stat2.data(), q2, q2 + HD, q2 + 2 * HD, ld, B - b0, T, H, D, scale, ds, ws, GradMode::accumulate);
  for (size_t i = 0; i < dqkv2.size(); ++i) ASSERT_EQ(dqkv2[i], dqkv[b0 * T * ld + i]);
}

}  // namespace
