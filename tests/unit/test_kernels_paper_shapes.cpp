// The CPU kernels at the paper's sizes (T = 16, C = 16: rows of whole SIMD packs), which take
// register paths that the odd sizes of test_kernels_backend.cpp do not reach: layernorm rows
// of whole packs, the narrow linear kernel at 16/32/64/65 wide (and OpenBLAS past it),
// attention (csa, Gaussian) reading and writing rows in place, full Pauli tiles,
// cross-entropy over 65 classes. Checked:
//  - float CpuBackend against the double templates (SPEC §4: forward 1e-5, gradients 1e-4);
//  - bitwise the same results for 1, 2 and 3 threads;
//  - rows do not influence other rows (causal attention: later positions of the same
//    sequence), bitwise: what the leak probe relies on.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/attention_csa.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/gaussian_attention.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/pauli_value.h"
#include "kernels/pauli.h"
#include "kernel_double_ops.h"
#include "test_util.h"

namespace {

using qisa::GradMode;

using qisa::AttnMask;
using qisa::Dropout;
using qisa::PauliTerm;
using Results = std::map<std::string, std::vector<double>>;

using qisa::test::DoubleOps;

// Random float inputs by name, drawn once so both precisions see the same values.
struct Inputs {
  explicit Inputs(uint64_t seed) : rng(seed) {}
  std::mt19937_64 rng;
  std::map<std::string, std::vector<float>> v;
  const std::vector<float>& get(const std::string& name, size_t n, double lo = -1, double hi = 1) {
    auto it = v.find(name);
    if (it == v.end()) it = v.emplace(name, qisa::test::random_vector<float>(rng, n, lo, hi)).first;
    return it->second;
  }
};

template <typename F>
std::vector<F> as(const std::vector<float>& x) {
  return std::vector<F>(x.begin(), x.end());
}
template <typename F>
std::vector<double> out(const std::vector<F>& x) {
  return std::vector<double>(x.begin(), x.end());
}

// Pauli strings as the model draws them: mostly I (diagonal terms with Z), some X/Y flips.
std::vector<PauliTerm> model_like_terms(int count, int n) {
  std::mt19937_64 rng(5);
  std::vector<std::string> s;
  for (int i = 0; i < count; ++i) {
    std::string p(static_cast<size_t>(n), 'I');
    for (auto& c : p) c = "IIIIIIXYZZ"[rng() % 10];
    if (p.find_first_not_of('I') == std::string::npos) p[static_cast<size_t>(i) % p.size()] = 'Z';
    s.push_back(p);
  }
  return qisa::pack_paulis(s, n);
}

template <typename F, class Ops>
Results run_scenario(Ops& ops, Inputs& in) {
  Results r;
  for (int C : {16, 24, 64}) {  // layernorm: 2, 3, 8 packs of float (4, 6, 16 of double: 16 takes the plain loops)
    const int64_t N = 1001;
    const std::string p = "ln" + std::to_string(C);
    auto x = as<F>(in.get(p + ".x", N * C, -2, 3)), w = as<F>(in.get(p + ".w", C)), b = as<F>(in.get(p + ".b", C));
    auto g = as<F>(in.get(p + ".g", N * C)), dx = as<F>(in.get(p + ".dx", N * C)), dw = as<F>(in.get(p + ".dw", C)),
         db = as<F>(in.get(p + ".db", C));
    std::vector<F> o(N * C), m(N), rs(N);
    ops.layernorm_forward(o.data(), m.data(), rs.data(), x.data(), w.data(), b.data(), N, C);
    ops.layernorm_backward(dx.data(), dw.data(), db.data(), g.data(), x.data(), w.data(), m.data(), rs.data(), N, C, GradMode::accumulate, GradMode::accumulate);
    r[p + ".out"] = out(o), r[p + ".mean"] = out(m), r[p + ".rstd"] = out(rs), r[p + ".dx"] = out(dx),
    r[p + ".dw"] = out(dw), r[p + ".db"] = out(db);
  }
  struct Lin {
    int IC, OC;
    bool bias;
  };
  // the model's layers (fc, proj, q|k, head at V = 65), and one past the narrow kernel (OpenBLAS)
  for (Lin L : {Lin{16, 64, true}, Lin{64, 16, true}, Lin{16, 32, true}, Lin{16, 16, false}, Lin{16, 65, true},
                Lin{160, 136, true}}) {
    const int64_t N = L.IC > 128 ? 301 : 5003;  // > 2 partials of 2048 rows
    const std::string p = "lin" + std::to_string(L.IC) + "x" + std::to_string(L.OC);
    auto x = as<F>(in.get(p + ".x", N * L.IC)), w = as<F>(in.get(p + ".w", L.OC * L.IC)),
         b = as<F>(in.get(p + ".b", L.OC));
    auto g = as<F>(in.get(p + ".g", N * L.OC)), dx = as<F>(in.get(p + ".dx", N * L.IC)),
         dw = as<F>(in.get(p + ".dw", L.OC * L.IC)), db = as<F>(in.get(p + ".db", L.OC));
    std::vector<F> o(N * L.OC);
    ops.linear_forward(o.data(), x.data(), w.data(), L.bias ? b.data() : nullptr, N, L.IC, L.OC);
    ops.linear_backward(dx.data(), dw.data(), L.bias ? db.data() : nullptr, g.data(), x.data(), w.data(), N, L.IC,
                        L.OC, GradMode::accumulate, GradMode::accumulate);
    r[p + ".out"] = out(o), r[p + ".dx"] = out(dx), r[p + ".dw"] = out(dw);
    if (L.bias) r[p + ".db"] = out(db);
  }
  struct Att {
    int H, D;
  };
  for (Att A : {Att{1, 16}, Att{2, 8}}) {
    for (auto mask : {AttnMask::causal, AttnMask::reference}) {
      const int64_t B = 37;
      const int T = 16, HD = A.H * A.D, ldqk = 2 * HD + 1, ldv = HD, ldo = HD + 3;
      const std::string p = std::string(mask == AttnMask::causal ? "ga_causal" : "ga_reference") + "_h" +
                            std::to_string(A.H);
      auto qk = as<F>(in.get(p + ".qk", B * T * ldqk)), v = as<F>(in.get(p + ".v", B * T * ldv));
      auto g = as<F>(in.get(p + ".g", B * T * ldo)), dqk = as<F>(in.get(p + ".dqk", B * T * ldqk)),
           dv = as<F>(in.get(p + ".dv", B * T * ldv));
      std::vector<F> o(B * T * ldo, F(0)), stat(B * A.H * T);
      ops.gaussian_attention_forward(o.data(), ldo, stat.data(), qk.data(), qk.data() + HD, ldqk, v.data(), ldv, B, T,
                                     A.H, A.D, mask, qisa::AttnScore{});
      ops.gaussian_attention_backward(dqk.data(), dqk.data() + HD, ldqk, dv.data(), ldv, g.data(), ldo, stat.data(),
                                      qk.data(), qk.data() + HD, v.data(), B, T, A.H, A.D, mask, qisa::AttnScore{}, GradMode::accumulate);
      r[p + ".out"] = out(o), r[p + ".stat"] = out(stat), r[p + ".dqk"] = out(dqk), r[p + ".dv"] = out(dv);
    }
  }
  for (Att A : {Att{1, 16}, Att{2, 8}}) {
    for (float p_drop : {0.0f, 0.1f}) {  // csa: q|k|v as the model lays them out, scale 1/sqrt(C)
      const int64_t B = 37;
      const int T = 16, HD = A.H * A.D, ld = 3 * HD, ldo = HD;
      Dropout d;
      d.p = p_drop, d.seed = 3, d.step = 2, d.site = 1, d.elem_offset = 1000;
      const std::string p = "csa_h" + std::to_string(A.H) + (p_drop > 0 ? "_drop" : "");
      auto qkv = as<F>(in.get(p + ".qkv", B * T * ld, -2, 2)), g = as<F>(in.get(p + ".g", B * T * ldo));
      auto dqkv = as<F>(in.get(p + ".dqkv", B * T * ld));
      std::vector<F> o(B * T * ldo), stat(B * A.H * T);
      const F s = static_cast<F>(0.25f);
      ops.csa_forward(o.data(), ldo, stat.data(), qkv.data(), qkv.data() + HD, qkv.data() + 2 * HD, ld, B, T, A.H, A.D,
                      s, d);
      ops.csa_backward(dqkv.data(), dqkv.data() + HD, dqkv.data() + 2 * HD, g.data(), ldo, stat.data(), qkv.data(),
                       qkv.data() + HD, qkv.data() + 2 * HD, ld, B, T, A.H, A.D, s, d, GradMode::accumulate);
      r[p + ".out"] = out(o), r[p + ".stat"] = out(stat), r[p + ".dqkv"] = out(dqkv);
    }
  }
  {  // Pauli value layer: 4 qubits, C = D = 16, two heads; N leaves a partial tile
    const int64_t N = 1001;
    const int H = 2, D = 16, C = 16, n = 4;
    const auto terms = model_like_terms(H * D, n);
    auto u = as<F>(in.get("pv.u", N * H * C)), g = as<F>(in.get("pv.g", N * H * D)),
         du = as<F>(in.get("pv.du", N * H * C));
    std::vector<F> v(N * H * D);
    ops.pauli_value_forward(v.data(), H * D, u.data(), H * C, terms.data(), N, H, D, C, n);
    ops.pauli_value_backward(du.data(), H * C, g.data(), H * D, u.data(), terms.data(), N, H, D, C, n, GradMode::accumulate);
    r["pv.v"] = out(v), r["pv.du"] = out(du);
  }
  {  // cross-entropy over the tiny-Shakespeare vocabulary
    const int64_t N = 1001;
    const int V = 65;
    std::mt19937_64 rng(9);
    std::vector<int32_t> t(N);
    for (auto& i : t) i = static_cast<int32_t>(rng() % V);
    auto x = as<F>(in.get("ce.x", N * V, -6, 6));
    std::vector<F> l(N), d(N * V);
    ops.cross_entropy_forward(l.data(), x.data(), t.data(), N, V);
    ops.cross_entropy_backward(d.data(), x.data(), t.data(), N, V, static_cast<F>(1.0f / 1001));
    r["ce.loss"] = out(l), r["ce.d"] = out(d);
  }
  return r;
}

TEST(PaperShapes, FloatMatchesDoubleAndThreadCountDoesNotMatter) {
  const uint64_t seed = qisa::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Results ref;
  for (int threads : {1, 2, 3}) {
    auto be = qisa::make_cpu_backend(threads);
    Inputs in(seed);
    Results got = run_scenario<float>(*be, in);
    if (threads == 1) {
      ref = std::move(got);
      continue;
    }
    for (const auto& [name, want] : ref) {
      const auto& g = got.at(name);
      ASSERT_EQ(g.size(), want.size()) << name;
      EXPECT_EQ(std::memcmp(g.data(), want.data(), want.size() * sizeof(double)), 0)
          << name << " differs between 1 and " << threads << " threads";
    }
  }
  DoubleOps dops;
  Inputs in_d(seed);
  const Results rd = run_scenario<double>(dops, in_d);
  for (const auto& [name, want] : rd) {
    const bool fwd = name.find(".out") != std::string::npos || name.find(".stat") != std::string::npos ||
                     name.find(".mean") != std::string::npos || name.find(".rstd") != std::string::npos ||
                     name == "pv.v" || name == "ce.loss";
    const double e = qisa::test::max_rel_err(ref.at(name), want);
    EXPECT_LT(e, fwd ? 1e-5 : 1e-4) << name;
  }
}

// Perturbs one row (or one position) of an input and expects every output row that should not
// see it to be bitwise unchanged.
TEST(PaperShapes, RowsDoNotInfluenceOtherRows) {
  auto be = qisa::make_cpu_backend(2);
  std::mt19937_64 rng(21);
  auto rnd = [&](size_t n) { return qisa::test::random_vector<float>(rng, n); };
  auto same_rows = [](const std::vector<float>& a, const std::vector<float>& b, int64_t width, int64_t skip_row,
                      const char* what) {
    for (size_t i = 0; i < a.size(); ++i) {
      if (static_cast<int64_t>(i) / width == skip_row) continue;
      ASSERT_EQ(std::memcmp(&a[i], &b[i], sizeof(float)), 0) << what << " element " << i;
    }
  };
  const int64_t N = 64;
  for (int changed : {0, 5, 13, 63}) {
    {  // linear 16 -> 64 and 64 -> 16
      for (auto [IC, OC] : {std::pair{16, 64}, std::pair{64, 16}}) {
        auto x = rnd(N * IC), w = rnd(IC * OC), b = rnd(OC);
        std::vector<float> o1(N * OC), o2(N * OC);
        be->linear_forward(o1.data(), x.data(), w.data(), b.data(), N, IC, OC);
        for (int i = 0; i < IC; ++i) x[changed * IC + i] += 0.5f;
        be->linear_forward(o2.data(), x.data(), w.data(), b.data(), N, IC, OC);
        same_rows(o1, o2, OC, changed, "linear");
      }
    }
    {  // layernorm
      const int C = 16;
      auto x = rnd(N * C), w = rnd(C), b = rnd(C);
      std::vector<float> o1(N * C), o2(N * C), m(N), r(N);
      be->layernorm_forward(o1.data(), m.data(), r.data(), x.data(), w.data(), b.data(), N, C);
      for (int i = 0; i < C; ++i) x[changed * C + i] *= 1.5f;
      be->layernorm_forward(o2.data(), m.data(), r.data(), x.data(), w.data(), b.data(), N, C);
      same_rows(o1, o2, C, changed, "layernorm");
    }
    {  // Pauli values
      const int C = 16, D = 16;
      const auto terms = model_like_terms(D, 4);
      auto u = rnd(N * C);
      std::vector<float> v1(N * D), v2(N * D);
      be->pauli_value_forward(v1.data(), D, u.data(), C, terms.data(), N, 1, D, C, 4);
      for (int i = 0; i < C; ++i) u[changed * C + i] -= 0.25f;
      be->pauli_value_forward(v2.data(), D, u.data(), C, terms.data(), N, 1, D, C, 4);
      same_rows(v1, v2, D, changed, "pauli");
    }
  }
  // causal attention (Gaussian, csa): position t of sequence 1 changes; positions < t of that
  // sequence and the other sequences keep every bit (out and the row statistics)
  const int64_t B = 3;
  const int T = 16, D = 16;
  for (bool gaussian : {true, false}) {
    for (int t : {1, 7, 8, 15}) {
      auto x = rnd(B * T * 3 * D);  // q | k | v rows
      std::vector<float> o1(B * T * D), o2(B * T * D), a1(B * T), a2(B * T);
      auto run = [&](std::vector<float>& o, std::vector<float>& a) {
        if (gaussian)
          be->gaussian_attention_forward(o.data(), D, a.data(), x.data(), x.data() + D, 3 * D, x.data() + 2 * D, 3 * D,
                                         B, T, 1, D, AttnMask::causal, qisa::AttnScore{});
        else
          be->csa_forward(o.data(), D, a.data(), x.data(), x.data() + D, x.data() + 2 * D, 3 * D, B, T, 1, D, 0.25f,
                          Dropout{});
      };
      run(o1, a1);
      const int64_t row = 1 * T + t;
      for (int i = 0; i < 3 * D; ++i) x[row * 3 * D + i] += i % 2 ? 0.75f : -1.5f;
      run(o2, a2);
      for (int64_t r = 0; r < B * T; ++r) {
        if (r / T == 1 && r % T >= t) continue;
        ASSERT_EQ(std::memcmp(&o1[r * D], &o2[r * D], D * sizeof(float)), 0)
            << (gaussian ? "gaussian" : "csa") << " out row " << r << " (t " << t << ")";
        ASSERT_EQ(std::memcmp(&a1[r], &a2[r], sizeof(float)), 0)
            << (gaussian ? "gaussian" : "csa") << " row statistic " << r << " (t " << t << ")";
      }
    }
  }
}

}  // namespace
