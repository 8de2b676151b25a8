// Summary statistics of replicate runs (seeds) for the experiment reports: mean and sample
// standard deviation, and Welch's unequal-variances t-test of two groups' means.
#pragma once
#include <limits>
#include <vector>

namespace qisa {

struct Stat {
  double mean = std::numeric_limits<double>::quiet_NaN(), sd = std::numeric_limits<double>::quiet_NaN();
  int n = 0;  // finite values
};

// Mean and sample standard deviation (n - 1) of the finite values; NaN values are left out.
Stat stat(const std::vector<double>& v);

struct Welch {
  double diff = std::numeric_limits<double>::quiet_NaN();  // mean(a) - mean(b)
  double t = std::numeric_limits<double>::quiet_NaN();
  double df = std::numeric_limits<double>::quiet_NaN();    // Welch-Satterthwaite degrees of freedom
  double p = std::numeric_limits<double>::quiet_NaN();     // two-sided; NaN when not defined
};

// Welch's t-test of mean(a) = mean(b): t = diff / sqrt(sa^2/na + sb^2/nb). p is NaN when a group
// has fewer than two finite values or both have zero spread (then diff alone is reported).
Welch welch_test(const Stat& a, const Stat& b);

// The two-sided tail P(|T| >= |t|) of Student's t with df > 0 degrees of freedom:
// I_{df/(df+t^2)}(df/2, 1/2), the regularized incomplete beta function.
double student_t_two_sided(double t, double df);

// I_x(a, b) for a, b > 0 and 0 <= x <= 1 (continued fraction, Lentz's method; |error| < 1e-13).
double regularized_incomplete_beta(double x, double a, double b);

}  // namespace qisa
