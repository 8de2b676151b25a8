// The report's statistics (trainer/stats.h) against closed forms: Student's t with 1 and 2
// degrees of freedom has an elementary CDF, the regularized incomplete beta function has
// elementary special cases, and Welch's t-test reduces to hand-computable numbers.
#include "trainer/stats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace qisa {
namespace {

TEST(Stats, MeanAndSampleStdLeaveNaNOut) {
  const Stat s = stat({1.0, 2.0, NAN, 4.0});
  EXPECT_EQ(s.n, 3);
  EXPECT_DOUBLE_EQ(s.mean, 7.0 / 3);
  EXPECT_NEAR(s.sd, std::sqrt(((1 - 7.0 / 3) * (1 - 7.0 / 3) + (2 - 7.0 / 3) * (2 - 7.0 / 3) + (4 - 7.0 / 3) * (4 - 7.0 / 3)) / 2), 1e-15);
  EXPECT_TRUE(std::isnan(stat({5.0}).sd));
  EXPECT_EQ(stat({}).n, 0);
}

TEST(Stats, IncompleteBetaMatchesItsElementaryCases) {
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> u(0.001, 0.999), ab(0.3, 20.0);
  for (int i = 0; i < 200; ++i) {
    const double x = u(rng), a = ab(rng);
    SCOPED_TRACE("x " + std::to_string(x) + " a " + std::to_string(a));
    EXPECT_NEAR(regularized_incomplete_beta(x, 1, 1), x, 1e-13);
    EXPECT_NEAR(regularized_incomplete_beta(x, a, 1), std::pow(x, a), 1e-12);                // x^a
    EXPECT_NEAR(regularized_incomplete_beta(x, 1, a), 1 - std::pow(1 - x, a), 1e-12);        // 1 - (1-x)^b
    EXPECT_NEAR(regularized_incomplete_beta(0.5, a, a), 0.5, 1e-12);                          // symmetry
    EXPECT_NEAR(regularized_incomplete_beta(x, a, 2.5) + regularized_incomplete_beta(1 - x, 2.5, a), 1.0, 1e-12);
  }
  EXPECT_EQ(regularized_incomplete_beta(0, 2, 3), 0);
  EXPECT_EQ(regularized_incomplete_beta(1, 2, 3), 1);
  EXPECT_TRUE(std::isnan(regularized_incomplete_beta(1.5, 2, 3)));
  EXPECT_TRUE(std::isnan(regularized_incomplete_beta(0.5, 0, 3)));
}

TEST(Stats, StudentTTailsMatchTheClosedForms) {
  const double pi = std::acos(-1.0);
  for (double t : {0.0, 0.1, 1.0, 2.5, 4.303, 19.0, -3.0, 100.0}) {
    SCOPED_TRACE(t);
    EXPECT_NEAR(student_t_two_sided(t, 1), 1 - 2 / pi * std::atan(std::fabs(t)), 1e-13);  // Cauchy
    EXPECT_NEAR(student_t_two_sided(t, 2), 1 - std::fabs(t) / std::sqrt(2 + t * t), 1e-13);
  }
  EXPECT_NEAR(student_t_two_sided(std::sqrt(1.805 / 0.0975), 2), 0.05, 1e-12);  // the 95% point of df 2: 4.3027
  EXPECT_NEAR(student_t_two_sided(2.0, 1e7), std::erfc(2.0 / std::sqrt(2.0)), 1e-6);  // -> normal
  EXPECT_EQ(student_t_two_sided(INFINITY, 3), 0.0);
  EXPECT_TRUE(std::isnan(student_t_two_sided(1.0, 0)));
}

TEST(Stats, WelchTestOnHandComputedNumbers) {
  // a = {1, 2, 3}: mean 2, var 1; b = {4, 6, 8}: mean 6, var 4. se^2 = 1/3 + 4/3 = 5/3,
  // t = -4 / sqrt(5/3); df = (5/3)^2 / ((1/3)^2 / 2 + (4/3)^2 / 2) = (25/9) / (17/18) = 50/17.
  const Welch w = welch_test(stat({1, 2, 3}), stat({4, 6, 8}));
  EXPECT_DOUBLE_EQ(w.diff, -4.0);
  EXPECT_NEAR(w.t, -4.0 / std::sqrt(5.0 / 3), 1e-14);
  EXPECT_NEAR(w.df, 50.0 / 17, 1e-13);
  EXPECT_NEAR(w.p, student_t_two_sided(w.t, 50.0 / 17), 1e-15);
  EXPECT_GT(w.p, 0.02);
  EXPECT_LT(w.p, 0.06);
  // symmetric in its arguments up to the sign
  const Welch r = welch_test(stat({4, 6, 8}), stat({1, 2, 3}));
  EXPECT_DOUBLE_EQ(r.p, w.p);
  EXPECT_DOUBLE_EQ(r.t, -w.t);
  // undefined p: one seed, or no spread at all; the difference is still there
  const Welch one = welch_test(stat({1}), stat({2, 3}));
  EXPECT_DOUBLE_EQ(one.diff, -1.5);
  EXPECT_TRUE(std::isnan(one.p));
  EXPECT_TRUE(std::isnan(welch_test(stat({1, 1}), stat({2, 2})).p));
  EXPECT_TRUE(std::isnan(welch_test(stat({}), stat({2, 2})).diff));
}

}  // namespace
}  // namespace qisa
