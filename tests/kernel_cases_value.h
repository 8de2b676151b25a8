// The kernel-vs-CPU cases of the QISA value layers (kernels/cuda/pauli_value.cuh and
// kernels/cuda/qisa_a.cuh), in the style of tests/kernel_cases.h (same namespace, same Runner
// concept, same tolerances unless a case says why not), shared by the emulator suite and the
// device suite. The Pauli strings come from the model's own generator (draw_pauli_strings),
// redrawn until the head's list has a Y-odd string (sign 0 on the real path) and a string with
// y % 4 == 2 (sign -1). The golden cases read tests/golden/*.h5 (float64 references, SPEC §4
// tolerances) and skip, naming the path, where the file is not there (a device machine without
// the source tree: set QISA_GOLDEN_DIR).
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "io/hdf5.h"
#include "kernel_cases.h"
#include "kernels/cuda/pauli_value.cuh"
#include "kernels/cuda/qisa_a.cuh"
#include "kernels/pauli.h"

namespace qisa::test::kernel_cases {

// H*D packed strings of n letters from the model's generator (SPEC §1.2). p_identity 0.9 is the
// model's default (mostly diagonal strings); with a smaller one the list is redrawn until it has an
// odd-y string and (n >= 2) a y%4 == 2 string, so the sign-0 and sign -1 paths are both exercised.
inline std::vector<qisa::PauliTerm> model_terms(std::mt19937_64& rng, int H, int D, int n, double p_identity) {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const auto terms = qisa::pack_paulis(qisa::draw_pauli_strings(rng(), attempt % 7, H, D, n, p_identity), n);
    if (p_identity >= 0.5) return terms;
    bool odd = false, neg = false;
    for (const auto& t : terms) {
      odd |= t.y_count % 2 != 0;
      neg |= t.sign == -1;
    }
    if (odd && (neg || n < 2)) return terms;  // y%4 == 2 needs two letters
  }
  ADD_FAILURE() << "no string list with an odd-y and a y%4==2 string in 1000 draws";
  return {};
}

struct ValueShape {
  int64_t N;
  int H, D, C, n;
  double p_identity;
  std::string name() const {
    return "N " + std::to_string(N) + " H " + std::to_string(H) + " D " + std::to_string(D) + " C " +
           std::to_string(C) + " n_qubits " + std::to_string(n) + " p_identity " + std::to_string(p_identity);
  }
};
// C not a power of two (and 16 = 2^n exactly), odd N, partial row tiles, strided rows (ld > H*C).
inline const ValueShape kValueShapes[] = {
    {37, 2, 4, 5, 3, 0.3}, {37, 3, 6, 13, 4, 0.3}, {9, 2, 16, 16, 4, 0.9}, {1, 3, 5, 7, 3, 0.3}};

// ---- Pauli value layer

template <class T, class R>
void pauli_value_forward_matches_cpu(qisa::Backend& cpu, std::mt19937_64& rng, R& r) {
  for (const ValueShape& s : kValueShapes) {
    SCOPED_TRACE(s.name());
    const int ld_u = s.H * s.C + 3, ld_v = s.H * s.D + 1;
    const auto terms = model_terms(rng, s.H, s.D, s.n, s.p_identity);
    const auto u = qisa::test::random_vector<float>(rng, s.N * ld_u);
    auto want = nans<T>(s.N * ld_v);
    cpu.pauli_value_forward(want.data(), ld_v, u.data(), ld_u, terms.data(), s.N, s.H, s.D, s.C, s.n);
    auto d_v = r.put(nans<T>(s.N * ld_v));
    auto d_u = r.put(u);
    auto d_terms = r.put(terms);
    QISA_KC_LAUNCH(r, qisa::cuda::pauli_value_forward(d_v.data(), ld_v, d_u.data(), ld_u, d_terms.data(), s.N, s.H,
                                                      s.D, s.C, s.n, kStream));
    const auto v = widen(r.get(d_v)), w = widen(want);
    for (int64_t i = 0; i < s.N; ++i)  // the padding column stays untouched (NaN in both)
      for (int c = 0; c < ld_v; ++c) ASSERT_EQ(std::isnan(v[i * ld_v + c]), c >= s.H * s.D) << i << " " << c;
    std::vector<float> got, ref;
    for (int64_t i = 0; i < s.N; ++i)
      for (int c = 0; c < s.H * s.D; ++c) got.push_back(v[i * ld_v + c]), ref.push_back(w[i * ld_v + c]);
    EXPECT_LE(max_rel_err(got, ref), kTol<T>);
    for (int64_t i = 0; i < s.N; ++i)  // sign 0 (odd y): exactly 0 on the real path
      for (size_t t = 0; t < terms.size(); ++t)
        if (terms[t].sign == 0) {
          ASSERT_EQ(got[i * s.H * s.D + t], 0.0f) << "row " << i << " term " << t;
        }
  }
}

template <class T, class R>
void pauli_value_backward_matches_cpu_in_both_modes(qisa::Backend& cpu, std::mt19937_64& rng, R& r) {
  for (const ValueShape& s : kValueShapes) {
    const int ld_u = s.H * s.C + 3, ld_v = s.H * s.D + 1;
    const auto terms = model_terms(rng, s.H, s.D, s.n, s.p_identity);
    const auto u = qisa::test::random_vector<float>(rng, s.N * ld_u);
    const auto dv = random_t<T>(rng, s.N * ld_v);
    auto d_u = r.put(u);
    auto d_dv = r.put(dv);
    auto d_terms = r.put(terms);
    for (GradMode mode : kModes) {
      SCOPED_TRACE(s.name() + " " + mode_name(mode));
      auto du0 = mode == GradMode::overwrite ? std::vector<float>(s.N * ld_u, NAN)
                                             : qisa::test::random_vector<float>(rng, s.N * ld_u);
      for (int64_t i = 0; i < s.N; ++i)  // the padding columns: untouched by both
        for (int c = s.H * s.C; c < ld_u; ++c) du0[i * ld_u + c] = 7.0f;
      auto want = du0;
      cpu.pauli_value_backward(want.data(), ld_u, dv.data(), ld_v, u.data(), terms.data(), s.N, s.H, s.D, s.C, s.n,
                               mode);
      auto d_du = r.put(du0);
      QISA_KC_LAUNCH(r, qisa::cuda::pauli_value_backward(d_du.data(), ld_u, d_dv.data(), ld_v, d_u.data(),
                                                         d_terms.data(), s.N, s.H, s.D, s.C, s.n, mode, kStream));
      const auto du = r.get(d_du);
      ASSERT_FALSE(any_nan(du));
      // du is fp32 whatever dv's type: both sides read the same bf16 dv values
      EXPECT_LE(max_rel_err(du, want), 1e-5);
    }
  }
}

// Both kernels on one shape, for the barrier test: v and du (overwrite) from the runner.
template <class R>
void pauli_value_run(R& r, const std::vector<float>& u, const std::vector<float>& dv,
                     const std::vector<qisa::PauliTerm>& terms, const ValueShape& s, std::vector<float>& v,
                     std::vector<float>& du) {
  auto d_u = r.put(u);
  auto d_dv = r.put(dv);
  auto d_terms = r.put(terms);
  auto d_v = r.put(std::vector<float>(s.N * s.H * s.D, NAN));
  auto d_du = r.put(std::vector<float>(s.N * s.H * s.C, NAN));
  QISA_KC_LAUNCH(r, qisa::cuda::pauli_value_forward(d_v.data(), s.H * s.D, d_u.data(), s.H * s.C, d_terms.data(), s.N,
                                                    s.H, s.D, s.C, s.n, kStream));
  QISA_KC_LAUNCH(r, qisa::cuda::pauli_value_backward(d_du.data(), s.H * s.C, d_dv.data(), s.H * s.D, d_u.data(),
                                                     d_terms.data(), s.N, s.H, s.D, s.C, s.n, GradMode::overwrite,
                                                     kStream));
  v = r.get(d_v);
  du = r.get(d_du);
}

// ---- golden files (float64 references; SPEC §4: forward 1e-5, gradients 1e-4)

inline std::vector<std::string> golden_cases(const qisa::h5::File& f) {
  std::vector<std::string> out;
  for (const auto& name : f.list("/"))
    if (name.rfind("case", 0) == 0) out.push_back("/" + name);
  return out;
}
inline std::vector<float> to_floats(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

template <class R>
void pauli_value_matches_golden(R& r) {
  const std::string path = qisa::test::golden("value_layer.h5");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no golden file " << path << " (set QISA_GOLDEN_DIR)";
  qisa::h5::File f(path, qisa::h5::File::Mode::read);
  const auto names = golden_cases(f);
  ASSERT_FALSE(names.empty());
  for (const auto& c : names) {
    SCOPED_TRACE(c);
    const int C = static_cast<int>(f.attr_int(c, "n_embd")), n = static_cast<int>(f.attr_int(c, "n_qubits"));
    std::vector<hsize_t> du_dims, dv_dims;
    const auto terms = qisa::pack_paulis(f.read_strings(c + "/pauli"), n);
    const auto u = f.read<double>(c + "/u", &du_dims), v = f.read<double>(c + "/v", &dv_dims);
    const auto gv = f.read<double>(c + "/grad_v"), gu = f.read<double>(c + "/grad_u");
    const int64_t M = static_cast<int64_t>(du_dims[0]);
    const int D = static_cast<int>(dv_dims[1]);
    ASSERT_EQ(static_cast<int>(du_dims[1]), C);
    ASSERT_EQ(static_cast<int>(terms.size()), D);
    auto d_u = r.put(to_floats(u));
    auto d_gv = r.put(to_floats(gv));
    auto d_terms = r.put(terms);
    auto d_v = r.put(std::vector<float>(M * D, NAN));
    auto d_gu = r.put(std::vector<float>(M * C, 0.0f));
    QISA_KC_LAUNCH(r, qisa::cuda::pauli_value_forward(d_v.data(), D, d_u.data(), C, d_terms.data(), M, 1, D, C, n,
                                                      kStream));
    QISA_KC_LAUNCH(r, qisa::cuda::pauli_value_backward(d_gu.data(), C, d_gv.data(), D, d_u.data(), d_terms.data(), M,
                                                       1, D, C, n, GradMode::accumulate, kStream));
    EXPECT_LE(max_rel_err(r.get(d_v), v), 1e-5);
    EXPECT_LE(max_rel_err(r.get(d_gu), gu), 1e-4);
  }
}

// ---- QISA-A circuit value

// One QISA-A problem: x [N, ld_x] (row 0 all zeros: psi = 0, v = 0, zero gradients), angles in
// [-pi, pi], the model's strings, dv [N, ld_v].
template <class T>
struct QisaACase {
  ValueShape s;
  int ld_x, ld_v;
  std::vector<T> x, dv;
  std::vector<float> rx, ry, ry2;
  std::vector<qisa::PauliTerm> terms;
  QisaACase(std::mt19937_64& rng, const ValueShape& shape)
      : s(shape), ld_x(shape.C + 2), ld_v(shape.H * shape.D + 1), x(random_t<T>(rng, shape.N * ld_x)),
        dv(random_t<T>(rng, shape.N * ld_v)), rx(qisa::test::random_vector<float>(rng, shape.H * shape.n, -3.14, 3.14)),
        ry(qisa::test::random_vector<float>(rng, shape.H * shape.n, -3.14, 3.14)),
        ry2(qisa::test::random_vector<float>(rng, shape.H * shape.n, -3.14, 3.14)),
        terms(model_terms(rng, shape.H, shape.D, shape.n, shape.p_identity)) {
    for (int c = 0; c < s.C; ++c) x[c] = from_f<T>(0.0f);
  }
  // The kernel's v [N, ld_v], written over NaN.
  template <class R>
  std::vector<T> forward(R& r) const {
    auto d_v = r.put(nans<T>(s.N * ld_v));
    auto d_x = r.put(x);
    auto d_rx = r.put(rx), d_ry = r.put(ry), d_ry2 = r.put(ry2);
    auto d_terms = r.put(terms);
    QISA_KC_LAUNCH(r, qisa::cuda::qisa_a_forward(d_v.data(), ld_v, d_x.data(), ld_x, d_rx.data(), d_ry.data(),
                                                 d_ry2.data(), d_terms.data(), s.N, s.H, s.D, s.C, s.n, kStream));
    return r.get(d_v);
  }
  struct Grads {
    std::vector<T> dx;
    std::vector<float> drx, dry, dry2;
  };
  // The kernels' gradients from starting values g (empty dx: dx == nullptr).
  template <class R>
  Grads backward(R& r, Grads g, GradMode dm, GradMode pm) const {
    auto d_x = r.put(x);
    auto d_dv = r.put(dv);
    auto d_rx = r.put(rx), d_ry = r.put(ry), d_ry2 = r.put(ry2);
    auto d_terms = r.put(terms);
    auto d_dx = r.put(g.dx);
    auto d_drx = r.put(g.drx), d_dry = r.put(g.dry), d_dry2 = r.put(g.dry2);
    auto d_part = r.put(std::vector<double>(qisa::cuda::qisa_a_backward_workspace(s.N, s.H, s.n), NAN));
    QISA_KC_LAUNCH(r, qisa::cuda::qisa_a_backward(g.dx.empty() ? nullptr : d_dx.data(), ld_x, d_drx.data(),
                                                  d_dry.data(), d_dry2.data(), d_dv.data(), ld_v, d_x.data(),
                                                  d_rx.data(), d_ry.data(), d_ry2.data(), d_terms.data(), s.N, s.H,
                                                  s.D, s.C, s.n, dm, pm, d_part.data(), kStream));
    return Grads{r.get(d_dx), r.get(d_drx), r.get(d_dry), r.get(d_dry2)};
  }
};

// Fewer and smaller shapes than the Pauli layer: the backward block walks every row's circuit
// with one barrier per gate, and the emulator runs 128 OS threads per block.
inline const ValueShape kQisaAShapes[] = {{11, 2, 4, 5, 3, 0.3}, {7, 3, 6, 13, 4, 0.3}, {3, 1, 3, 2, 1, 0.3}};

template <class T, class R>
void qisa_a_forward_matches_cpu(qisa::Backend& cpu, std::mt19937_64& rng, R& r) {
  for (const ValueShape& s : kQisaAShapes) {
    SCOPED_TRACE(s.name());
    const QisaACase<T> k(rng, s);
    auto want = nans<T>(s.N * k.ld_v);
    cpu.qisa_a_forward(want.data(), k.ld_v, k.x.data(), k.ld_x, k.rx.data(), k.ry.data(), k.ry2.data(),
                       k.terms.data(), s.N, s.H, s.D, s.C, s.n);
    const auto v = widen(k.forward(r)), w = widen(want);
    std::vector<float> got, ref;
    for (int64_t i = 0; i < s.N; ++i)
      for (int c = 0; c < k.ld_v; ++c) {
        ASSERT_EQ(std::isnan(v[i * k.ld_v + c]), c >= s.H * s.D) << i << " " << c;  // padding: untouched
        if (c < s.H * s.D) got.push_back(v[i * k.ld_v + c]), ref.push_back(w[i * k.ld_v + c]);
      }
    for (int c = 0; c < s.H * s.D; ++c) EXPECT_EQ(got[c], 0.0f) << "zero row, column " << c;
    EXPECT_LE(max_rel_err(got, ref), kTol<T>);
  }
}

// The angle gradients are sums over the rows of fp32 terms, which the kernel adds in another
// order than the CPU (per thread, warp, then block partials), and each row's term is itself a
// sum of products that may cancel: seed 19002901 gave a 1-qubit bf16 case whose dry summed to
// 3.5e-8 (the sum over rows of |row term| too), with 1.4e-8 between the backends, roundoff of
// O(1) amplitudes. So the bound is on what the terms can be, not on what they came to: psi is a
// unit vector and a rotation's derivative is the rotation by pi, halved, so
// |d v[n, h*D+j] / d angle| <= 1 and row n adds at most sum_j |dv[n, h*D+j]| to an angle of head
// h. Differences stay below 2e-5 of max(that bound, |want|) (accumulate mode adds the starting
// values, |want|); fp32 roundoff is about 1e-7 of it.
inline constexpr double kQisaAAngleTol = 2e-5;

// max over heads h of sum over rows n and j < D of |dv[n, h*D+j]|: a bound on every angle gradient.
template <class T>
double qisa_a_angle_gradient_bound(const QisaACase<T>& k) {
  const ValueShape& s = k.s;
  const auto dv = widen(k.dv);
  double bound = 0;
  for (int h = 0; h < s.H; ++h) {
    double sum = 0;
    for (int64_t i = 0; i < s.N; ++i)
      for (int j = 0; j < s.D; ++j) sum += std::abs(static_cast<double>(dv[i * k.ld_v + h * s.D + j]));
    bound = std::max(bound, sum);
  }
  return bound;
}

// max |got - want| <= kQisaAAngleTol * max(bound, max |want|)
inline void expect_angle_gradient_close(const std::vector<float>& got, const std::vector<float>& want, double bound,
                                        const char* what) {
  double worst = 0, ref = bound;
  for (size_t j = 0; j < want.size(); ++j) {
    worst = std::max(worst, std::abs(static_cast<double>(got[j]) - want[j]));
    ref = std::max(ref, std::abs(static_cast<double>(want[j])));
  }
  EXPECT_LE(worst, kQisaAAngleTol * ref) << what << ": max |got - want| " << worst << ", bound " << ref;
}

template <class T, class R>
void qisa_a_backward_matches_cpu_in_both_modes(qisa::Backend& cpu, std::mt19937_64& rng, R& r) {
  for (const ValueShape& s : kQisaAShapes) {
    const QisaACase<T> k(rng, s);
    const size_t na = static_cast<size_t>(s.H) * s.n;
    const double bound = qisa_a_angle_gradient_bound(k);
    for (auto [dm, pm, with_dx] : {std::tuple{GradMode::overwrite, GradMode::overwrite, true},
                                   std::tuple{GradMode::accumulate, GradMode::accumulate, true},
                                   std::tuple{GradMode::overwrite, GradMode::accumulate, false}}) {
      if (!with_dx && s.N > 3) continue;  // dx == nullptr: on the smallest shape only (emulator time)
      SCOPED_TRACE(s.name() + " dx " + (with_dx ? mode_name(dm) : "null") + " params " + mode_name(pm));
      typename QisaACase<T>::Grads g;
      if (with_dx) g.dx = dm == GradMode::overwrite ? nans<T>(s.N * k.ld_x) : random_t<T>(rng, s.N * k.ld_x);
      for (auto* a : {&g.drx, &g.dry, &g.dry2})
        *a = pm == GradMode::overwrite ? std::vector<float>(na, NAN) : qisa::test::random_vector<float>(rng, na);
      auto want = g;
      cpu.qisa_a_backward(with_dx ? qisa::Act(want.dx.data()) : qisa::Act(nullptr), k.ld_x, want.drx.data(),
                          want.dry.data(), want.dry2.data(), k.dv.data(), k.ld_v, k.x.data(), k.rx.data(),
                          k.ry.data(), k.ry2.data(), k.terms.data(), s.N, s.H, s.D, s.C, s.n, dm, pm);
      const auto got = k.backward(r, g, dm, pm);
      if (with_dx) {
        const auto dx = widen(got.dx), wdx = widen(want.dx);
        for (int64_t i = 0; i < s.N; ++i)
          for (int c = 0; c < k.ld_x; ++c)  // padding columns untouched (NaN in overwrite, in both)
            ASSERT_EQ(std::isnan(dx[i * k.ld_x + c]), std::isnan(wdx[i * k.ld_x + c])) << i << " " << c;
        for (int c = 0; c < s.C; ++c) EXPECT_EQ(dx[c], wdx[c]) << "zero row, column " << c;
        std::vector<float> a, b;
        for (int64_t i = 0; i < s.N; ++i)
          for (int c = 0; c < s.C; ++c) a.push_back(dx[i * k.ld_x + c]), b.push_back(wdx[i * k.ld_x + c]);
        EXPECT_LE(max_rel_err(a, b), kTol<T>);
      }
      ASSERT_FALSE(any_nan(got.drx) || any_nan(got.dry) || any_nan(got.dry2));
      expect_angle_gradient_close(got.drx, want.drx, bound, "drx");
      expect_angle_gradient_close(got.dry, want.dry, bound, "dry");
      expect_angle_gradient_close(got.dry2, want.dry2, bound, "dry2");
    }
  }
}

// The angle gradients come from a fixed-order reduction: two runs give the same bits.
template <class R>
void qisa_a_angle_gradients_are_bitwise_reproducible(std::mt19937_64& rng, R& r) {
  const QisaACase<float> k(rng, {13, 2, 5, 13, 4, 0.3});
  typename QisaACase<float>::Grads g;
  for (auto* a : {&g.drx, &g.dry, &g.dry2}) *a = std::vector<float>(2 * 4, NAN);
  const auto a = k.backward(r, g, GradMode::overwrite, GradMode::overwrite);
  const auto b = k.backward(r, g, GradMode::overwrite, GradMode::overwrite);
  EXPECT_TRUE(same_bits(a.drx, b.drx) && same_bits(a.dry, b.dry) && same_bits(a.dry2, b.dry2));
}

template <class R>
void qisa_a_matches_golden(R& r) {
  const std::string path = qisa::test::golden("qisa_a_value.h5");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no golden file " << path << " (set QISA_GOLDEN_DIR)";
  qisa::h5::File f(path, qisa::h5::File::Mode::read);
  const auto names = golden_cases(f);
  ASSERT_FALSE(names.empty());
  for (const auto& c : names) {
    SCOPED_TRACE(c);
    const int C = static_cast<int>(f.attr_int(c, "n_embd")), n = static_cast<int>(f.attr_int(c, "n_qubits"));
    std::vector<hsize_t> dx_dims, dv_dims;
    const auto terms = qisa::pack_paulis(f.read_strings(c + "/pauli"), n);
    const auto x = f.read<double>(c + "/x", &dx_dims), v = f.read<double>(c + "/v", &dv_dims);
    const auto gv = f.read<double>(c + "/grad_v");
    const int64_t M = static_cast<int64_t>(dx_dims[0]);
    const int D = static_cast<int>(dv_dims[1]);
    ASSERT_EQ(static_cast<int>(dx_dims[1]), C);
    auto d_x = r.put(to_floats(x));
    auto d_gv = r.put(to_floats(gv));
    auto d_rx = r.put(to_floats(f.read<double>(c + "/rx"))), d_ry = r.put(to_floats(f.read<double>(c + "/ry")));
    auto d_ry2 = r.put(to_floats(f.read<double>(c + "/ry2")));
    auto d_terms = r.put(terms);
    auto d_v = r.put(std::vector<float>(M * D, NAN));
    auto d_gx = r.put(std::vector<float>(M * C, 0.0f));
    auto d_grx = r.put(std::vector<float>(n, 0.0f)), d_gry = r.put(std::vector<float>(n, 0.0f));
    auto d_gry2 = r.put(std::vector<float>(n, 0.0f));
    auto d_part = r.put(std::vector<double>(qisa::cuda::qisa_a_backward_workspace(M, 1, n), NAN));
    QISA_KC_LAUNCH(r, qisa::cuda::qisa_a_forward(d_v.data(), D, d_x.data(), C, d_rx.data(), d_ry.data(), d_ry2.data(),
                                                 d_terms.data(), M, 1, D, C, n, kStream));
    QISA_KC_LAUNCH(r, qisa::cuda::qisa_a_backward(d_gx.data(), C, d_grx.data(), d_gry.data(), d_gry2.data(),
                                                  d_gv.data(), D, d_x.data(), d_rx.data(), d_ry.data(), d_ry2.data(),
                                                  d_terms.data(), M, 1, D, C, n, GradMode::accumulate,
                                                  GradMode::accumulate, d_part.data(), kStream));
    EXPECT_LE(max_rel_err(r.get(d_v), v), 1e-5);
    EXPECT_LE(max_rel_err(r.get(d_gx), f.read<double>(c + "/grad_x")), 1e-4);
    EXPECT_LE(max_rel_err(r.get(d_grx), f.read<double>(c + "/grad_rx")), 1e-4);
    EXPECT_LE(max_rel_err(r.get(d_gry), f.read<double>(c + "/grad_ry")), 1e-4);
    EXPECT_LE(max_rel_err(r.get(d_gry2), f.read<double>(c + "/grad_ry2")), 1e-4);
  }
}

}  // namespace qisa::test::kernel_cases
