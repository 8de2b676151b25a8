#include "trainer/stats.h"

#include <cmath>

namespace qisa {

Stat stat(const std::vector<double>& v) {
  Stat s;
  double sum = 0;
  for (double x : v)
    if (std::isfinite(x)) sum += x, ++s.n;
  if (s.n == 0) return s;
  s.mean = sum / s.n;
  if (s.n > 1) {
    double ss = 0;
    for (double x : v)
      if (std::isfinite(x)) ss += (x - s.mean) * (x - s.mean);
    s.sd = std::sqrt(ss / (s.n - 1));
  }
  return s;
}

namespace {

// The continued fraction of I_x(a, b) (converges fast for x < (a + 1) / (a + b + 2)):
// modified Lentz's method on 1/(1+ d1/(1+ d2/(1+ ...))), d_{2m+1} = -(a+m)(a+b+m)x / ((a+2m)(a+2m+1)),
// d_{2m} = m(b-m)x / ((a+2m-1)(a+2m)).
double beta_fraction(double x, double a, double b) {
  constexpr double kTiny = 1e-300, kEps = 1e-15;
  double c = 1.0, d = 1.0 - (a + b) * x / (a + 1.0);
  if (std::fabs(d) < kTiny) d = kTiny;
  d = 1.0 / d;
  double h = d;
  for (int m = 1; m <= 10000; ++m) {
    const double m2 = 2.0 * m;
    double aa = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
    d = 1.0 + aa * d;
    c = 1.0 + aa / c;
    if (std::fabs(d) < kTiny) d = kTiny;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1.0 / d;
    h *= d * c;
    aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
    d = 1.0 + aa * d;
    c = 1.0 + aa / c;
    if (std::fabs(d) < kTiny) d = kTiny;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1.0 / d;
    const double del = d * c;
    h *= del;
    if (std::fabs(del - 1.0) < kEps) break;
  }
  return h;
}

}  // namespace

double regularized_incomplete_beta(double x, double a, double b) {
  if (!(a > 0) || !(b > 0) || !(x >= 0) || !(x <= 1)) return std::numeric_limits<double>::quiet_NaN();
  if (x == 0 || x == 1) return x;
  // x^a (1-x)^b / (a B(a, b)), in logs
  const double front = std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x));
  if (x < (a + 1.0) / (a + b + 2.0)) return front * beta_fraction(x, a, b) / a;
  return 1.0 - front * beta_fraction(1.0 - x, b, a) / b;  // the symmetry I_x(a,b) = 1 - I_{1-x}(b,a)
}

double student_t_two_sided(double t, double df) {
  if (!(df > 0) || std::isnan(t)) return std::numeric_limits<double>::quiet_NaN();
  if (std::isinf(t)) return 0.0;
  return regularized_incomplete_beta(df / (df + t * t), 0.5 * df, 0.5);
}

Welch welch_test(const Stat& a, const Stat& b) {
  Welch w;
  if (a.n == 0 || b.n == 0) return w;
  w.diff = a.mean - b.mean;
  if (a.n < 2 || b.n < 2) return w;
  const double va = a.sd * a.sd / a.n, vb = b.sd * b.sd / b.n, se2 = va + vb;
  if (!(se2 > 0)) return w;
  w.t = w.diff / std::sqrt(se2);
  w.df = se2 * se2 / (va * va / (a.n - 1) + vb * vb / (b.n - 1));
  w.p = student_t_two_sided(w.t, w.df);
  return w;
}

}  // namespace qisa
