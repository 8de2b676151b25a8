// Float64 central-difference gradient checks of every backward op (double instantiation of
// the CPU templates), on odd shapes (C not a power of two, odd T, several heads, D != C,
// strided operands). Gradient buffers are pre-filled with random values and the check is on
// (after - before), which also tests the accumulate (+=) contract.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention_csa.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/dropout.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/gaussian_attention.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/pauli_value.h"
#include "kernels/cpu/qisa_a.h"
#include "kernels/pauli.h"
#include "test_util.h"

namespace {

using qisa::GradMode;

using qisa::cpu::Workspace;
using Vec = std::vector<double>;
constexpr double kTol = 1e-6;  // max|analytic - numeric| / max|numeric|

// Central differences of loss() w.r.t. every element of x (x is restored).
Vec numeric_grad(Vec& x, const std::function<double()>& loss, double h = 1e-5) {
  Vec g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double old = x[i];
    x[i] = old + h;
    const double lp = loss();
    x[i] = old - h;
    const double lm = loss();
    x[i] = old;
    g[i] = (lp - lm) / (2 * h);
  }
  return g;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// after - before: what a backward call added.
Vec added(const Vec& after, const Vec& before) {
  Vec d(after.size());
  for (size_t i = 0; i < d.size(); ++i) d[i] = after[i] - before[i];
  return d;
}

void expect_grad(const Vec& analytic, const Vec& numeric, const std::string& what) {
  double mx = 0;
  for (double v : numeric) mx = std::max(mx, std::abs(v));
  EXPECT_GT(mx, 1e-6) << what << ": the numeric gradient is all zero, the check would be vacuous";
  EXPECT_LT(qisa::test::max_rel_err(analytic, numeric), kTol) << what;
}

struct Fixture : ::testing::Test {
  uint64_t seed = qisa::test::fresh_seed();
  std::mt19937_64 rng{seed};
  Workspace ws;
  void SetUp() override { RecordProperty("seed", std::to_string(seed)); }
  Vec rnd(size_t n, double lo = -1, double hi = 1) { return qisa::test::random_vector<double>(rng, n, lo, hi); }
};

// Random strings that always cover the three kinds: term i gets letter "YXZ"[i % 3] at a
// random position, and the X and Z terms have no other Y (even y, so their real value is not
// identically 0). Without this a draw like all-"Y" at n = 1 makes the RY angle gradients
// exactly zero (Y commutes with RY) and the check vacuous.
std::string random_pauli(std::mt19937_64& rng, int n, int i) {
  static const char kL[] = "IXYZ";
  std::string s(static_cast<size_t>(n), 'I');
  for (auto& c : s) c = kL[rng() % 4];
  const char forced = "YXZ"[i % 3];
  if (forced != 'Y')
    for (auto& c : s)
      if (c == 'Y') c = forced;
  s[rng() % static_cast<size_t>(n)] = forced;
  return s;
}

std::vector<qisa::PauliTerm> random_terms(std::mt19937_64& rng, int count, int n) {
  std::vector<qisa::PauliTerm> t;
  for (int i = 0; i < count; ++i) t.push_back(qisa::pack_pauli(random_pauli(rng, n, i)));
  return t;
}

using GradCheck = Fixture;

TEST_F(GradCheck, Embedding) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int64_t B = 3;
  const int T = 5, C = 7, V = 11, P = 6;
  std::vector<int32_t> idx(B * T);
  for (auto& i : idx) i = static_cast<int32_t>(rng() % V);
  Vec tok = rnd(V * C), pos = rnd(P * C), R = rnd(B * T * C), out(B * T * C);
  auto loss = [&] {
    qisa::cpu::embedding_forward(out.data(), idx.data(), tok.data(), pos.data(), B, T, C);
    return dot(out, R);
  };
  Vec dtok0 = rnd(V * C), dpos0 = rnd(P * C), dtok = dtok0, dpos = dpos0;
  qisa::cpu::embedding_backward(dtok.data(), dpos.data(), R.data(), idx.data(), B, T, C, V, GradMode::accumulate);
  expect_grad(added(dtok, dtok0), numeric_grad(tok, loss), "dtok");
  expect_grad(added(dpos, dpos0), numeric_grad(pos, loss), "dpos");
}

TEST_F(GradCheck, LayerNorm) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int64_t N = 7;
  const int C = 13;
  Vec x = rnd(N * C, -2, 2), w = rnd(C, 0.5, 1.5), b = rnd(C), R = rnd(N * C), out(N * C), mean(N), rstd(N);
  auto loss = [&] {
    qisa::cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
    return dot(out, R);
  };
  loss();
  Vec dx0 = rnd(N * C), dw0 = rnd(C), db0 = rnd(C), dx = dx0, dw = dw0, db = db0;
  qisa::cpu::layernorm_backward(dx.data(), dw.data(), db.data(), R.data(), x.data(), w.data(), mean.data(),
                                rstd.data(), N, C, ws, GradMode::accumulate, GradMode::accumulate);
  expect_grad(added(dx, dx0), numeric_grad(x, loss), "din");
  expect_grad(added(dw, dw0), numeric_grad(w, loss), "dw");
  expect_grad(added(db, db0), numeric_grad(b, loss), "db");
  // biased variance, eps 1e-5 (PyTorch): check one row directly
  double mu = 0, var = 0;
  for (int c = 0; c < C; ++c) mu += x[c] / C;
  for (int c = 0; c < C; ++c) var += (x[c] - mu) * (x[c] - mu) / C;
  EXPECT_NEAR(rstd[0], 1 / std::sqrt(var + 1e-5), 1e-12);
}

TEST_F(GradCheck, Linear) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (bool with_bias : {true, false}) {
    const int64_t N = 9;
    const int IC = 7, OC = 5;
    Vec x = rnd(N * IC), w = rnd(OC * IC), b = rnd(OC), R = rnd(N * OC), out(N * OC);
    auto loss = [&] {
      qisa::cpu::linear_forward(out.data(), x.data(), w.data(), with_bias ? b.data() : nullptr, N, IC, OC);
      return dot(out, R);
    };
    Vec dx0 = rnd(N * IC), dw0 = rnd(OC * IC), db0 = rnd(OC), dx = dx0, dw = dw0, db = db0;
    qisa::cpu::linear_backward(dx.data(), dw.data(), with_bias ? db.data() : nullptr, R.data(), x.data(), w.data(), N,
                               IC, OC, ws, GradMode::accumulate, GradMode::accumulate);
    expect_grad(added(dx, dx0), numeric_grad(x, loss), "din");
    expect_grad(added(dw, dw0), numeric_grad(w, loss), "dw");
    if (with_bias) expect_grad(added(db, db0), numeric_grad(b, loss), "dbias");
    // din == null leaves the weight gradient alone
    Vec dw2 = dw0;
    qisa::cpu::linear_backward<double>(nullptr, dw2.data(), nullptr, R.data(), x.data(), w.data(), N, IC, OC, ws, GradMode::accumulate,
                                       GradMode::accumulate);
    EXPECT_EQ(dw2, dw);
  }
}

TEST_F(GradCheck, Activations) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int64_t n = 37;
  for (auto act : {qisa::Activation::relu, qisa::Activation::gelu}) {
    Vec x = rnd(n, -3, 3), R = rnd(n), out(n);
    for (auto& v : x)
      if (std::abs(v) < 0.05) v = 0.3;  // keep relu away from its kink
    auto loss = [&] {
      qisa::cpu::activation_forward(out.data(), x.data(), n, act);
      return dot(out, R);
    };
    Vec dx0 = rnd(n), dx = dx0;
    qisa::cpu::activation_backward(dx.data(), R.data(), x.data(), n, act, GradMode::accumulate);
    expect_grad(added(dx, dx0), numeric_grad(x, loss), act == qisa::Activation::relu ? "relu" : "gelu");
  }
}

TEST_F(GradCheck, DropoutAdd) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int64_t n = 53;
  for (float p : {0.0f, 0.3f}) {
    qisa::Dropout d;
    d.p = p;
    d.seed = seed;
    d.step = 3;
    d.site = 2;
    d.elem_offset = 101;
    Vec x = rnd(n), y = rnd(n), R = rnd(n), out(n);
    auto loss = [&] {
      qisa::cpu::dropout_add_forward(out.data(), x.data(), y.data(), n, d);
      return dot(out, R);
    };
    Vec dx0 = rnd(n), dy0 = rnd(n), dx = dx0, dy = dy0;
    qisa::cpu::dropout_add_backward(dx.data(), dy.data(), R.data(), n, d, GradMode::accumulate);
    expect_grad(added(dx, dx0), numeric_grad(x, loss), "dx");
    expect_grad(added(dy, dy0), numeric_grad(y, loss), "dy");
  }
}

// q|k|v (and a spare column) side by side in one [N, ld] buffer: strided head access.
struct AttnShape {
  int64_t B;
  int T, H, D;
};
// T > 16 and D > 16 cross the kernels' 16-wide blocks
constexpr AttnShape kAttnShapes[] = {{2, 5, 3, 4}, {1, 19, 2, 3}, {1, 17, 1, 18}};

TEST_F(GradCheck, CausalSelfAttention) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (const AttnShape sh : kAttnShapes)
  for (float p : {0.0f, 0.25f}) {
    const int64_t B = sh.B;
    const int T = sh.T, H = sh.H, D = sh.D, HD = H * D, ld_in = 3 * HD + 1, ld_out = HD + 2;
    const double scale = 0.37;
    qisa::Dropout d;
    d.p = p;
    d.seed = seed;
    d.step = 7;
    d.site = 1;
    d.elem_offset = 5;
    Vec qkv = rnd(B * T * ld_in, -1.5, 1.5), R = rnd(B * T * ld_out), out(B * T * ld_out), stat(B * H * T);
    auto loss = [&] {
      qisa::cpu::csa_forward(out.data(), ld_out, stat.data(), qkv.data(), qkv.data() + HD, qkv.data() + 2 * HD, ld_in, B,
                             T, H, D, scale, d, ws);
      double s = 0;  // only the head columns are outputs
      for (int64_t r = 0; r < B * T; ++r)
        for (int c = 0; c < HD; ++c) s += out[r * ld_out + c] * R[r * ld_out + c];
      return s;
    };
    loss();
    Vec g0 = rnd(qkv.size()), g = g0;
    qisa::cpu::csa_backward(g.data(), g.data() + HD, g.data() + 2 * HD, R.data(), ld_out, stat.data(), qkv.data(),
                            qkv.data() + HD, qkv.data() + 2 * HD, ld_in, B, T, H, D, scale, d, ws, GradMode::accumulate);
    expect_grad(added(g, g0), numeric_grad(qkv, loss), "dq|dk|dv p=" + std::to_string(p) + " T=" + std::to_string(T));
  }
}

TEST_F(GradCheck, GaussianAttentionBothMasks) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (const AttnShape sh : {AttnShape{2, 7, 3, 5}, AttnShape{1, 19, 2, 3}, AttnShape{1, 17, 1, 18}})
  for (auto mask : {qisa::AttnMask::causal, qisa::AttnMask::reference}) {
    const int64_t B = sh.B;
    const int T = sh.T, H = sh.H, D = sh.D, HD = H * D, ld_qk = 2 * HD + 1, ld_v = HD + 3, ld_out = HD + 2;
    const std::string m = (mask == qisa::AttnMask::causal ? "causal" : "reference") + std::string(" T=") +
                          std::to_string(T);
    Vec qk = rnd(B * T * ld_qk, D > 8 ? -0.25 : -0.6, D > 8 ? 0.25 : 0.6), v = rnd(B * T * ld_v), R = rnd(B * T * ld_out), out(B * T * ld_out),
        stat(B * H * T);
    auto loss = [&] {
      qisa::cpu::gaussian_attention_forward(out.data(), ld_out, stat.data(), qk.data(), qk.data() + HD, ld_qk, v.data(),
                                            ld_v, B, T, H, D, mask, qisa::AttnScore{}, ws);
      double s = 0;
      for (int64_t r = 0; r < B * T; ++r)
        for (int c = 0; c < HD; ++c) s += out[r * ld_out + c] * R[r * ld_out + c];
      return s;
    };
    loss();
    Vec gqk0 = rnd(qk.size()), gv0 = rnd(v.size()), gqk = gqk0, gv = gv0;
    qisa::cpu::gaussian_attention_backward(gqk.data(), gqk.data() + HD, ld_qk, gv.data(), ld_v, R.data(), ld_out,
                                           stat.data(), qk.data(), qk.data() + HD, v.data(), B, T, H, D, mask, qisa::AttnScore{}, ws, GradMode::accumulate);
    expect_grad(added(gqk, gqk0), numeric_grad(qk, loss), m + " dq|dk");
    expect_grad(added(gv, gv0), numeric_grad(v, loss), m + " dv");
  }
}

TEST_F(GradCheck, PauliValue) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  struct Shape { int C, n, D, H; int64_t N; };
  for (const Shape s : {Shape{5, 3, 6, 2, 5}, Shape{12, 4, 7, 1, 19}, Shape{3, 2, 16, 3, 17}}) {
    const int ld_u = s.H * s.C + 3, ld_v = s.H * s.D + 2;
    const auto terms = random_terms(rng, s.H * s.D, s.n);
    Vec u = rnd(s.N * ld_u), R = rnd(s.N * ld_v), v(s.N * ld_v);
    auto loss = [&] {
      qisa::cpu::pauli_value_forward(v.data(), ld_v, u.data(), ld_u, terms.data(), s.N, s.H, s.D, s.C, s.n, ws);
      double r = 0;
      for (int64_t i = 0; i < s.N; ++i)
        for (int c = 0; c < s.H * s.D; ++c) r += v[i * ld_v + c] * R[i * ld_v + c];
      return r;
    };
    Vec du0 = rnd(u.size()), du = du0;
    qisa::cpu::pauli_value_backward(du.data(), ld_u, R.data(), ld_v, u.data(), terms.data(), s.N, s.H, s.D, s.C, s.n,
                                    ws, GradMode::accumulate);
    expect_grad(added(du, du0), numeric_grad(u, loss), "du C=" + std::to_string(s.C));
  }
}

// model.qisa_value: shared, as the model composes it: u = a L^T once (L [C, C]), head h measures
// that same u with its own D strings (one pauli_value call per head, H = 1, terms + h*D), the
// heads' dL/du accumulate (+=) into one du, then ONE linear backward gives dL/dL and dL/da.
TEST_F(GradCheck, SharedPauliValue) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  struct Shape { int C, n, H; int64_t N; };
  for (const Shape s : {Shape{12, 4, 3, 7}, Shape{6, 3, 2, 5}, Shape{9, 4, 3, 17}}) {
    const int C = s.C, H = s.H, D = C / H;
    const auto terms = random_terms(rng, H * D, s.n);
    Vec a = rnd(s.N * C), L = rnd(C * C), R = rnd(s.N * C), u(s.N * C), v(s.N * C);
    auto loss = [&] {
      qisa::cpu::linear_forward(u.data(), a.data(), L.data(), static_cast<const double*>(nullptr), s.N, C, C);
      for (int h = 0; h < H; ++h)
        qisa::cpu::pauli_value_forward(v.data() + h * D, C, u.data(), C, terms.data() + h * D, s.N, 1, D, C, s.n, ws);
      return dot(v, R);
    };
    loss();
    Vec du(s.N * C, 0.0), da0 = rnd(a.size()), dL0 = rnd(L.size()), da = da0, dL = dL0;
    for (int h = 0; h < H; ++h)
      qisa::cpu::pauli_value_backward(du.data(), C, R.data() + h * D, C, u.data(), terms.data() + h * D, s.N, 1, D, C,
                                      s.n, ws, GradMode::accumulate);
    qisa::cpu::linear_backward(da.data(), dL.data(), static_cast<double*>(nullptr), du.data(), a.data(), L.data(), s.N,
                               C, C, ws, GradMode::accumulate, GradMode::accumulate);
    const std::string tag = " C=" + std::to_string(C) + " H=" + std::to_string(H);
    expect_grad(added(dL, dL0), numeric_grad(L, loss), "dL" + tag);
    expect_grad(added(da, da0), numeric_grad(a, loss), "da" + tag);
  }
}

TEST_F(GradCheck, QisaA) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  struct Shape { int C, n, D, H; int64_t N; };
  for (const Shape s : {Shape{6, 3, 5, 2, 5}, Shape{11, 4, 4, 1, 19}, Shape{2, 1, 3, 2, 3}, Shape{4, 2, 6, 2, 17}}) {
    const int ld_x = s.C + 2, ld_v = s.H * s.D + 1, na = s.H * s.n;
    const auto terms = random_terms(rng, s.H * s.D, s.n);
    Vec x = rnd(s.N * ld_x), rx = rnd(na, -3, 3), ry = rnd(na, -3, 3), ry2 = rnd(na, -3, 3), R = rnd(s.N * ld_v),
        v(s.N * ld_v);
    auto loss = [&] {
      qisa::cpu::qisa_a_forward(v.data(), ld_v, x.data(), ld_x, rx.data(), ry.data(), ry2.data(), terms.data(), s.N,
                                s.H, s.D, s.C, s.n, ws);
      double r = 0;
      for (int64_t i = 0; i < s.N; ++i)
        for (int c = 0; c < s.H * s.D; ++c) r += v[i * ld_v + c] * R[i * ld_v + c];
      return r;
    };
    Vec dx0 = rnd(x.size()), drx0 = rnd(na), dry0 = rnd(na), dry20 = rnd(na);
    Vec dx = dx0, drx = drx0, dry = dry0, dry2 = dry20;
    qisa::cpu::qisa_a_backward(dx.data(), ld_x, drx.data(), dry.data(), dry2.data(), R.data(), ld_v, x.data(), rx.data(),
                               ry.data(), ry2.data(), terms.data(), s.N, s.H, s.D, s.C, s.n, ws, GradMode::accumulate, GradMode::accumulate);
    const std::string tag = " C=" + std::to_string(s.C) + " n=" + std::to_string(s.n);
    // the padding columns of x are not inputs: their gradient is 0, as the numeric one
    expect_grad(added(dx, dx0), numeric_grad(x, loss), "dx" + tag);
    expect_grad(added(drx, drx0), numeric_grad(rx, loss), "drx" + tag);
    expect_grad(added(dry, dry0), numeric_grad(ry, loss), "dry" + tag);
    expect_grad(added(dry2, dry20), numeric_grad(ry2, loss), "dry2" + tag);
  }
}

TEST_F(GradCheck, CrossEntropy) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int64_t N = 6;
  const int V = 9;
  const double scale = 0.7;
  std::vector<int32_t> tgt(N);
  for (auto& t : tgt) t = static_cast<int32_t>(rng() % V);
  Vec logits = rnd(N * V, -4, 4), losses(N);
  auto loss = [&] {
    qisa::cpu::cross_entropy_forward(losses.data(), logits.data(), tgt.data(), N, V);
    double s = 0;
    for (double l : losses) s += scale * l;
    return s;
  };
  Vec num = numeric_grad(logits, loss);
  Vec dl(N * V, 123.0);  // overwritten, not accumulated
  qisa::cpu::cross_entropy_backward(dl.data(), logits.data(), tgt.data(), N, V, scale);
  expect_grad(dl, num, "dlogits");
  // in place
  Vec inplace = logits;
  qisa::cpu::cross_entropy_backward(inplace.data(), inplace.data(), tgt.data(), N, V, scale);
  EXPECT_EQ(inplace, dl);
  // the loss itself: -log softmax
  loss();
  double mx = -1e300, s = 0;
  for (int j = 0; j < V; ++j) mx = std::max(mx, logits[j]);
  for (int j = 0; j < V; ++j) s += std::exp(logits[j] - mx);
  EXPECT_NEAR(losses[0], -(logits[tgt[0]] - mx - std::log(s)), 1e-12);
}

}  // namespace
