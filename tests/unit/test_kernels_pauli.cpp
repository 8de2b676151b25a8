// Pauli strings: packing and validation, the O(N) fast measurement against dense 2^n x 2^n
// Kronecker products (real value layer and complex QISA-A states), and the QISA-A circuit
// against a dense matrix simulation.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/pauli_value.h"
#include "kernels/cpu/qisa_a.h"
#include "kernels/error.h"
#include "kernels/pauli.h"
#include "test_util.h"

namespace {

using qisa::GradMode;

using cd = std::complex<double>;
using Mat = std::vector<cd>;  // dense, row-major dim x dim

Mat letter(char c) {
  const cd i(0, 1);
  switch (c) {
    case 'X': return {0, 1, 1, 0};
    case 'Y': return {0, -i, i, 0};
    case 'Z': return {1, 0, 0, -1};
    default: return {1, 0, 0, 1};
  }
}

Mat kron(const Mat& a, int da, const Mat& b, int db) {
  Mat out(static_cast<size_t>(da * db * da * db));
  for (int r1 = 0; r1 < da; ++r1)
    for (int c1 = 0; c1 < da; ++c1)
      for (int r2 = 0; r2 < db; ++r2)
        for (int c2 = 0; c2 < db; ++c2)
          out[(r1 * db + r2) * (da * db) + (c1 * db + c2)] = a[r1 * da + c1] * b[r2 * db + c2];
  return out;
}

// Letter 0 is the leftmost (most significant) factor: qubit 0 = MSB of the index.
Mat dense_pauli(const std::string& s) {
  Mat m{1};
  int dim = 1;
  for (char c : s) {
    m = kron(m, dim, letter(c), 2);
    dim *= 2;
  }
  return m;
}

// A one-qubit gate g on wire w of n qubits as a dense matrix.
Mat on_wire(const Mat& g, int w, int n) {
  Mat m{1};
  int dim = 1;
  for (int k = 0; k < n; ++k) {
    m = kron(m, dim, k == w ? g : letter('I'), 2);
    dim *= 2;
  }
  return m;
}

// SPEC §1.1: RX(t) = [[cos t/2, -i sin t/2], [-i sin t/2, cos t/2]], RY(t) = [[cos t/2, -sin t/2], [sin t/2, cos t/2]]
Mat rx_mat(double t) {
  const cd c = std::cos(t / 2), s = cd(0, -std::sin(t / 2));
  return {c, s, s, c};
}
Mat ry_mat(double t) {
  const cd c = std::cos(t / 2), s = std::sin(t / 2);
  return {c, -s, s, c};
}

Mat cnot(int c, int t, int n) {
  const int dim = 1 << n;
  Mat m(static_cast<size_t>(dim * dim));
  const int cb = 1 << (n - 1 - c), tb = 1 << (n - 1 - t);
  for (int col = 0; col < dim; ++col) m[((col & cb) ? col ^ tb : col) * dim + col] = 1;
  return m;
}

std::vector<cd> matvec(const Mat& m, const std::vector<cd>& v) {
  const size_t dim = v.size();
  std::vector<cd> out(dim);
  for (size_t r = 0; r < dim; ++r)
    for (size_t c = 0; c < dim; ++c) out[r] += m[r * dim + c] * v[c];
  return out;
}

cd expectation(const Mat& m, const std::vector<cd>& psi) {
  const std::vector<cd> mp = matvec(m, psi);
  cd s = 0;
  for (size_t r = 0; r < psi.size(); ++r) s += std::conj(psi[r]) * mp[r];
  return s;
}

std::string random_pauli(std::mt19937_64& rng, int n, int y_count) {
  static const char kL[] = "IXZ";
  std::string s(static_cast<size_t>(n), 'I');
  for (auto& c : s) c = kL[rng() % 3];
  std::vector<int> pos(static_cast<size_t>(n));
  for (int k = 0; k < n; ++k) pos[k] = k;
  std::shuffle(pos.begin(), pos.end(), rng);
  for (int k = 0; k < y_count; ++k) s[pos[k]] = 'Y';
  return s;
}

TEST(PauliPack, Masks) {
  qisa::PauliTerm t = qisa::pack_pauli("IXYZ");  // I bit3, X bit2, Y bit1, Z bit0
  EXPECT_EQ(t.flip, 0b0110u);
  EXPECT_EQ(t.phase, 0b0011u);
  EXPECT_EQ(t.y_count, 1);
  EXPECT_EQ(t.sign, 0);
  t = qisa::pack_pauli("YY");
  EXPECT_EQ(t.flip, 3u);
  EXPECT_EQ(t.phase, 3u);
  EXPECT_EQ(t.sign, -1);
  EXPECT_EQ(qisa::pack_pauli("YYYY").sign, 1);
  EXPECT_EQ(qisa::pack_pauli("YYY").sign, 0);
  EXPECT_EQ(qisa::pack_pauli("Z").sign, 1);
  EXPECT_EQ(qisa::pack_pauli("XIIIIIIIIIIIIIIIIIIIIIIIIIIIIII").flip, 1u << 30);  // 31 letters
  for (const char* s : {"I", "XYZI", "IIYIY", "ZXYZXYIZ"})
    EXPECT_EQ(qisa::unpack_pauli(qisa::pack_pauli(s), static_cast<int>(std::string(s).size())), s);
}

TEST(PauliPack, RejectsBadStrings) {
  for (const std::string& bad : {std::string(""), std::string("IXA"), std::string("ixyz"), std::string(32, 'X'),
                                std::string("X Y")}) {
    try {
      qisa::pack_pauli(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const qisa::Error& e) {
      EXPECT_NE(std::string(e.what()).find("'" + bad + "'"), std::string::npos) << e.what();
      EXPECT_FALSE(e.hint().empty());
    }
  }
  EXPECT_THROW(qisa::pack_paulis({"XY", "XYZ"}, 2), qisa::Error);
  qisa::PauliTerm t = qisa::pack_pauli("XYZ");
  EXPECT_NO_THROW(qisa::validate_pauli_terms(&t, 1, 3));
  EXPECT_THROW(qisa::validate_pauli_terms(&t, 1, 2), qisa::Error);  // masks wider than 2 qubits
  t.sign = 1;                                                       // odd y must have sign 0
  EXPECT_THROW(qisa::validate_pauli_terms(&t, 1, 3), qisa::Error);
}

// Re<u|P|u> for real u zero-padded from C to 2^n: fast layer vs dense Kronecker product.
TEST(PauliFastPath, RealValueLayerMatchesDense) {
  const uint64_t seed = qisa::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  qisa::cpu::Workspace ws;
  for (int n = 1; n <= 5; ++n) {
    const int amps = 1 << n;
    for (int C : {amps, std::max(1, amps - 3), amps / 2 + 1}) {
      std::vector<std::string> strings;
      for (int y = 0; y <= n; ++y)
        for (int rep = 0; rep < 3; ++rep) strings.push_back(random_pauli(rng, n, y));
      const int D = static_cast<int>(strings.size());
      const auto terms = qisa::pack_paulis(strings, n);
      const int64_t N = 3;
      const auto u = qisa::test::random_vector<double>(rng, N * C);
      std::vector<double> v(N * D);
      qisa::cpu::pauli_value_forward(v.data(), D, u.data(), C, terms.data(), N, 1, D, C, n, ws);
      for (int j = 0; j < D; ++j) {
        const Mat m = dense_pauli(strings[j]);
        for (int64_t r = 0; r < N; ++r) {
          std::vector<cd> psi(amps);
          for (int b = 0; b < C; ++b) psi[b] = u[r * C + b];
          const cd want = expectation(m, psi);
          EXPECT_NEAR(v[r * D + j], want.real(), 1e-12) << strings[j] << " C=" << C;
          if (terms[j].y_count % 2) {
            EXPECT_EQ(v[r * D + j], 0.0) << strings[j];  // odd y: exactly 0
          }
        }
      }
    }
  }
}

// <psi|P|psi> for complex psi: the pair formula vs the dense product.
TEST(PauliFastPath, ComplexExpectationMatchesDense) {
  const uint64_t seed = qisa::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int n = 1; n <= 5; ++n) {
    const int amps = 1 << n;
    for (int y = 0; y <= n; ++y) {
      for (int rep = 0; rep < 4; ++rep) {
        const std::string s = random_pauli(rng, n, y);
        const auto re = qisa::test::random_vector<double>(rng, amps), im = qisa::test::random_vector<double>(rng, amps);
        std::vector<cd> psi(amps);
        for (int b = 0; b < amps; ++b) psi[b] = cd(re[b], im[b]);
        const cd want = expectation(dense_pauli(s), psi);
        EXPECT_NEAR(want.imag(), 0.0, 1e-12);  // Hermitian
        EXPECT_NEAR(qisa::cpu::pauli_expectation(psi.data(), qisa::pack_pauli(s), n), want.real(), 1e-12) << s;
      }
    }
  }
}

// The QISA-A circuit (gates, ordering, qubit convention, complex measurement) vs dense matrices.
TEST(QisaACircuit, MatchesDenseSimulation) {
  const uint64_t seed = qisa::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  qisa::cpu::Workspace ws;
  for (int n = 1; n <= 4; ++n) {
    const int amps = 1 << n;
    const int C = std::max(1, amps - 1), H = 2;
    std::vector<std::string> strings;
    for (int h = 0; h < H; ++h)
      for (int y = 0; y <= n; ++y) strings.push_back(random_pauli(rng, n, y));
    const int D = static_cast<int>(strings.size()) / H;
    const auto terms = qisa::pack_paulis(strings, n);
    const int64_t N = 21;  // two tiles, the second partial
    const auto x = qisa::test::random_vector<double>(rng, N * C);
    const auto rx = qisa::test::random_vector<double>(rng, H * n, -3, 3);
    const auto ry = qisa::test::random_vector<double>(rng, H * n, -3, 3);
    const auto ry2 = qisa::test::random_vector<double>(rng, H * n, -3, 3);
    std::vector<double> v(N * H * D);
    qisa::cpu::qisa_a_forward(v.data(), H * D, x.data(), C, rx.data(), ry.data(), ry2.data(), terms.data(), N, H, D, C,
                              n, ws);
    for (int h = 0; h < H; ++h) {
      // U = RY2 layer * CNOT chain * (RX then RY per wire), applied right to left
      std::vector<Mat> gates;
      for (int w = 0; w < n; ++w) {
        gates.push_back(on_wire(rx_mat(rx[h * n + w]), w, n));
        gates.push_back(on_wire(ry_mat(ry[h * n + w]), w, n));
      }
      if (n > 1)
        for (int w = 0; w < n; ++w) gates.push_back(cnot(w, (w + 1) % n, n));
      for (int w = 0; w < n; ++w) {
        gates.push_back(on_wire(ry_mat(ry2[h * n + w]), w, n));
      }
      for (int64_t r = 0; r < N; ++r) {
        double nrm = 0;
        for (int b = 0; b < C; ++b) nrm += x[r * C + b] * x[r * C + b];
        std::vector<cd> psi(amps);
        for (int b = 0; b < C; ++b) psi[b] = x[r * C + b] / std::sqrt(nrm);
        for (const Mat& g : gates) psi = matvec(g, psi);
        for (int j = 0; j < D; ++j) {
          const cd want = expectation(dense_pauli(strings[h * D + j]), psi);
          EXPECT_NEAR(v[r * H * D + h * D + j], want.real(), 1e-12) << strings[h * D + j] << " n=" << n;
        }
      }
    }
  }
}

TEST(PauliFastPath, RejectsBadArguments) {
  qisa::cpu::Workspace ws;
  const auto terms = qisa::pack_paulis({"XY", "ZZ"}, 2);
  std::vector<double> u(5 * 8), v(5 * 8);
  // C = 5 > 2^2
  EXPECT_THROW(qisa::cpu::pauli_value_forward(v.data(), 2, u.data(), 5, terms.data(), 5, 1, 2, 5, 2, ws), qisa::Error);
  // ld_v below H*D
  EXPECT_THROW(qisa::cpu::pauli_value_forward(v.data(), 1, u.data(), 4, terms.data(), 5, 1, 2, 4, 2, ws), qisa::Error);
  // D <= 0
  EXPECT_THROW(qisa::cpu::pauli_value_backward(u.data(), 4, v.data(), 2, u.data(), terms.data(), 5, 1, 0, 4, 2, ws, GradMode::accumulate),
               qisa::Error);
  // terms packed for 2 qubits used with 1
  EXPECT_THROW(qisa::cpu::pauli_value_forward(v.data(), 2, u.data(), 2, terms.data(), 5, 1, 2, 2, 1, ws), qisa::Error);
  std::vector<double> ang(2);
  EXPECT_THROW(qisa::cpu::qisa_a_forward(v.data(), 2, u.data(), 5, ang.data(), ang.data(), ang.data(), terms.data(), 5,
                                         1, 2, 5, 2, ws),
               qisa::Error);
  try {
    qisa::cpu::pauli_value_forward(v.data(), 2, u.data(), 5, terms.data(), 5, 1, 2, 5, 2, ws);
  } catch (const qisa::Error& e) {
    EXPECT_NE(e.hint().find("n_qubits"), std::string::npos) << e.message();
  }
}

}  // namespace
