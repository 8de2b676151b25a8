// AdamW (SPEC §2, PyTorch torch.optim.AdamW) against a hand-written double reference, weight
// decay, grad_scale; sum_squares and scale.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "io/hdf5.h"
#include "kernels/backend.h"
#include "kernels/cpu/adamw.h"
#include "kernels/cpu/reductions.h"
#include "test_util.h"

namespace {

// Textbook decoupled AdamW in double.
void reference_step(std::vector<double>& p, const std::vector<double>& grad, std::vector<double>& m,
                    std::vector<double>& v, double lr, double b1, double b2, double eps, double wd, int64_t t,
                    double gs) {
  for (size_t i = 0; i < p.size(); ++i) {
    const double g = grad[i] * gs;
    p[i] *= 1 - lr * wd;
    m[i] = b1 * m[i] + (1 - b1) * g;
    v[i] = b2 * v[i] + (1 - b2) * g * g;
    const double mhat = m[i] / (1 - std::pow(b1, static_cast<double>(t)));
    const double denom = std::sqrt(v[i]) / std::sqrt(1 - std::pow(b2, static_cast<double>(t))) + eps;
    p[i] -= lr * mhat / denom;
  }
}

TEST(AdamW, MatchesReferenceOverSeveralSteps) {
  const uint64_t seed = qisa::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = qisa::make_cpu_backend(2);
  const int64_t n = 50001;
  const float lr = 3e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.01f, gs = 0.7f;
  const auto p0 = qisa::test::random_vector<float>(rng, n);
  std::vector<float> pf = p0, mf(n, 0.0f), vf(n, 0.0f);
  std::vector<double> pd(p0.begin(), p0.end()), md(n, 0.0), vd(n, 0.0);  // double template
  std::vector<double> pr(p0.begin(), p0.end()), mr(n, 0.0), vr(n, 0.0);  // reference
  for (int64_t t = 1; t <= 4; ++t) {
    const auto g = qisa::test::random_vector<float>(rng, n, -2, 2);
    const std::vector<double> gd(g.begin(), g.end());
    const qisa::AdamWHyper h{lr, b1, b2, eps, wd, t, gs};
    be->adamw_update(pf.data(), g.data(), mf.data(), vf.data(), n, h);
    qisa::cpu::adamw_update(pd.data(), gd.data(), md.data(), vd.data(), n, h);
    reference_step(pr, gd, mr, vr, lr, b1, b2, eps, wd, t, gs);
  }
  EXPECT_LT(qisa::test::max_rel_err(pd, pr), 1e-13);
  EXPECT_LT(qisa::test::max_rel_err(md, mr), 1e-13);
  EXPECT_LT(qisa::test::max_rel_err(vd, vr), 1e-13);
  EXPECT_LT(qisa::test::max_rel_err(pf, pr), 1e-6);
  EXPECT_LT(qisa::test::max_rel_err(mf, mr), 1e-5);
  EXPECT_LT(qisa::test::max_rel_err(vf, vr), 1e-5);
  // the parameters did move by about lr per step
  double moved = 0;
  for (int64_t i = 0; i < n; ++i) moved = std::max(moved, std::abs(pr[i] - p0[i]));
  EXPECT_GT(moved, 5e-3);
}

TEST(AdamW, FirstStepIsSignTimesLearningRate) {
  // t = 1, no decay: m/(1-b1) = g, sqrt(v/(1-b2)) = |g|, so p moves by lr * g/(|g| + eps)
  auto be = qisa::make_cpu_backend(1);
  std::vector<float> p{1.0f, -2.0f, 0.5f}, g{0.3f, -4.0f, 1e-3f}, m(3, 0.f), v(3, 0.f);
  be->adamw_update(p.data(), g.data(), m.data(), v.data(), 3, qisa::AdamWHyper{0.01f, 0.9f, 0.999f, 1e-8f, 0.0f, 1, 1.0f});
  EXPECT_NEAR(p[0], 1.0f - 0.01f, 1e-6);
  EXPECT_NEAR(p[1], -2.0f + 0.01f, 1e-6);
  EXPECT_NEAR(p[2], 0.5f - 0.01f, 1e-6);
}

TEST(AdamW, WeightDecayIsDecoupled) {
  auto be = qisa::make_cpu_backend(1);
  // zero gradient and moments: only the decay acts, p *= 1 - lr*wd
  std::vector<float> p{1.0f, -3.0f, 0.25f}, g(3, 0.f), m(3, 0.f), v(3, 0.f);
  be->adamw_update(p.data(), g.data(), m.data(), v.data(), 3, qisa::AdamWHyper{0.1f, 0.9f, 0.999f, 1e-8f, 0.5f, 1, 1.0f});
  const float f = static_cast<float>(1.0 - 0.1f * static_cast<double>(0.5f));
  EXPECT_EQ(p[0], 1.0f * f);
  EXPECT_EQ(p[1], -3.0f * f);
  EXPECT_EQ(p[2], 0.25f * f);
}

TEST(AdamW, GradScaleMultipliesTheGradient) {
  std::mt19937_64 rng(5);
  auto be = qisa::make_cpu_backend(2);
  const int64_t n = 1000;
  const auto p0 = qisa::test::random_vector<float>(rng, n), g = qisa::test::random_vector<float>(rng, n);
  std::vector<float> gs(n);
  for (int64_t i = 0; i < n; ++i) gs[i] = g[i] * 0.25f;
  std::vector<float> pa = p0, ma(n, 0.f), va(n, 0.f), pb = p0, mb(n, 0.f), vb(n, 0.f);
  be->adamw_update(pa.data(), g.data(), ma.data(), va.data(), n, qisa::AdamWHyper{1e-3f, 0.9f, 0.99f, 1e-8f, 0.01f, 3, 0.25f});
  be->adamw_update(pb.data(), gs.data(), mb.data(), vb.data(), n, qisa::AdamWHyper{1e-3f, 0.9f, 0.99f, 1e-8f, 0.01f, 3, 1.0f});
  EXPECT_EQ(pa, pb);
  EXPECT_EQ(ma, mb);
  EXPECT_EQ(va, vb);
  // and differs from the unscaled step (bias corrections at t = 3 do not cancel the scale)
  std::vector<float> pc = p0, mc(n, 0.f), vc(n, 0.f);
  be->adamw_update(pc.data(), g.data(), mc.data(), vc.data(), n, qisa::AdamWHyper{1e-3f, 0.9f, 0.99f, 1e-8f, 0.01f, 3, 1.0f});
  EXPECT_NE(pc, pa);
}

// SPEC §4 "AdamW semantics": expected/grad/<name> (rounded to float32) fed into one AdamW step
// at params/<name> must land within 1e-5 of PyTorch's expected/step1/<name>, for every
// parameter of every model golden file.
TEST(AdamW, MatchesPyTorchFirstStepOnGoldenModels) {
  auto be = qisa::make_cpu_backend(2);
  int files = 0, tensors = 0;
  double worst = 0;
  for (const char* file : {"gpt_csa_causal.h5", "gpt_qisa_causal.h5", "gpt_qisa_reference.h5", "gpt_qisa_a_causal.h5"}) {
    SCOPED_TRACE(file);
    qisa::h5::File f(qisa::test::golden(file), qisa::h5::File::Mode::read);
    const qisa::AdamWHyper h{static_cast<float>(f.attr_double("/adamw", "lr")),
                             static_cast<float>(f.attr_double("/adamw", "beta1")),
                             static_cast<float>(f.attr_double("/adamw", "beta2")),
                             static_cast<float>(f.attr_double("/adamw", "eps")),
                             static_cast<float>(f.attr_double("/adamw", "weight_decay")), 1, 1.0f};
    for (const auto& name : f.list("/expected/grad")) {
      SCOPED_TRACE(name);
      auto p = f.read<float>("/params/" + name);
      const auto g = f.read<float>("/expected/grad/" + name);
      const auto want = f.read<double>("/expected/step1/" + name);
      ASSERT_EQ(p.size(), g.size());
      ASSERT_EQ(p.size(), want.size());
      std::vector<float> m(p.size(), 0.f), v(p.size(), 0.f);
      be->adamw_update(p.data(), g.data(), m.data(), v.data(), static_cast<int64_t>(p.size()), h);
      const double e = qisa::test::max_rel_err(p, want);
      EXPECT_LT(e, 1e-5);
      worst = std::max(worst, e);
      ++tensors;
    }
    ++files;
  }
  EXPECT_EQ(files, 4);
  EXPECT_GT(tensors, 40);
  std::printf("    %d tensors, worst max|got-want|/max|want| = %.2e\n", tensors, worst);
}

TEST(Reductions, SumSquaresAndScale) {
  const uint64_t seed = qisa::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = qisa::make_cpu_backend(2);
  for (int64_t n : {0, 1, 7, 65536, 65537, 1000003}) {
    auto x = qisa::test::random_vector<float>(rng, static_cast<size_t>(n));
    long double want = 0;
    for (float v : x) want += static_cast<long double>(v) * v;
    EXPECT_NEAR(be->sum_squares(x.data(), n), static_cast<double>(want), 1e-12 * static_cast<double>(want) + 1e-300)
        << n;
    auto y = x;
    be->scale(y.data(), 0.5f, n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[i], x[i] * 0.5f);
  }
}

}  // namespace
