// Pauli value layer (SPEC §1.2), per row n and head h:
//   v[n, h*D + j] = Re <u|P_hj|u> = s * sum_b u_b u_{b^f} (-1)^popc(b & m),
//   u = row n columns h*C .. h*C+C-1, zero-padded to 2^n_qubits amplitudes.
// Only amplitudes b < C are nonzero, and the summand is symmetric in (b, b^f) (for even y
// (-1)^popc(b&m) = (-1)^popc((b^f)&m)), so each term becomes a short list of pairs b <= b^f < C
// with a precomputed coefficient (2 s (-1)^popc(b&m), or s (-1)^popc(b&m) when f = 0); terms
// with s = 0 (odd y) have an empty list. Rows are processed in tiles of kLanes rows held
// transposed ([amplitude][lane]) so every inner loop runs across rows in SIMD lanes.
#pragma once
#include <algorithm>
#include <bit>
#include <complex>
#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/simd.h"
#include "kernels/error.h"
#include "kernels/pauli.h"

namespace qisa::cpu {

inline constexpr int kLanes = 16;  // rows per tile

// One pair (b, p = b ^ flip, b <= p) of a Pauli term with its coefficient.
template <typename F>
struct PauliPair {
  int32_t b, p;
  F coef;
};

// Pairs of every term (terms [count]) over amplitudes [0, amps): term t owns
// pairs[offsets[t] .. offsets[t+1]). real_only: Re<u|P|u> for real u (SPEC §1.2; odd y gives
// no pairs). Otherwise the complex QISA-A form: for pair (b, p), z = conj(psi_b) psi_p,
//   y even: v += coef * Re z   (coef = 2 (-1)^popc(b&m) (+1 if y%4==0, -1 if y%4==2); f = 0: |psi_b|^2)
//   y odd:  v += coef * Im z   (coef = 2 (-1)^popc(b&m) (+1 if y%4==1, -1 if y%4==3))
// which is <psi|P|psi> = (-i)^y sum_b conj(psi_b) psi_{b^f} (-1)^popc(b&m) summed pairwise.
// Returns the number of pairs written (pairs needs room for count * amps).
template <typename F>
int64_t build_pauli_pairs(PauliPair<F>* pairs, int32_t* offsets, const PauliTerm* terms, int64_t count, int amps,
                          bool real_only) {
  int64_t e = 0;
  for (int64_t t = 0; t < count; ++t) {
    offsets[t] = static_cast<int32_t>(e);
    const PauliTerm& term = terms[t];
    const int y = term.y_count;
    if (real_only && term.sign == 0) continue;
    const F s4 = (y % 4 == 0 || y % 4 == 1) ? F(1) : F(-1);
    for (int b = 0; b < amps; ++b) {
      const int p = b ^ static_cast<int>(term.flip);
      if (p >= amps || p < b) continue;  // zero padding, or counted with its partner
      const F sigma = (std::popcount(static_cast<uint32_t>(b) & term.phase) & 1) ? F(-1) : F(1);
      pairs[e++] = PauliPair<F>{b, p, (p == b ? F(1) : F(2)) * sigma * s4};
    }
  }
  offsets[count] = static_cast<int32_t>(e);
  return e;
}

// <psi|P|psi> of a complex state of 2^n amplitudes by the pair formula above (a scalar
// reference for tests and single rows).
template <typename F>
F pauli_expectation(const std::complex<F>* psi, const PauliTerm& term, int n_qubits) {
  const int amps = 1 << n_qubits;
  const bool odd = term.y_count % 2 != 0;
  const F s4 = (term.y_count % 4 == 0 || term.y_count % 4 == 1) ? F(1) : F(-1);
  F v = 0;
  for (int b = 0; b < amps; ++b) {
    const int p = b ^ static_cast<int>(term.flip);
    if (p < b) continue;
    const F sigma = (std::popcount(static_cast<uint32_t>(b) & term.phase) & 1) ? F(-1) : F(1);
    const std::complex<F> z = std::conj(psi[b]) * psi[p];
    v += (p == b ? F(1) : F(2)) * sigma * s4 * (odd ? z.imag() : z.real());
  }
  return v;
}

inline void check_pauli_args(const char* op, int64_t N, int H, int D, int C, int n_qubits, int ld_a, const char* na,
                             int need_a, int ld_b, const char* nb, int need_b) {
  QISA_CHECK(N >= 0 && H >= 1 && D >= 1 && C >= 1,
             std::string(op) + " shape N=" + std::to_string(N) + " H=" + std::to_string(H) + " D=" +
                 std::to_string(D) + " C=" + std::to_string(C),
             "N >= 0 and n_head, head size, n_embd >= 1");
  QISA_CHECK(n_qubits >= 1 && n_qubits <= kMaxPauliQubits && static_cast<int64_t>(C) <= (int64_t{1} << n_qubits),
             std::string(op) + ": C=" + std::to_string(C) + " amplitudes do not fit " + std::to_string(n_qubits) +
                 " qubits",
             "n_qubits = ceil(log2(n_embd)), so that C <= 2^n_qubits");
  QISA_CHECK(ld_a >= need_a && ld_b >= need_b,
             std::string(op) + ": row strides " + na + "=" + std::to_string(ld_a) + " (needs >= " +
                 std::to_string(need_a) + "), " + nb + "=" + std::to_string(ld_b) + " (needs >= " +
                 std::to_string(need_b) + ")",
             "a row stride covers every head's columns");
}

// xT[b*kLanes + r] = x[r*ld + b] for the tile's rows r < rows (b < C); lanes past the last row are 0.
template <typename F>
inline void transpose_tile(F* xT, const F* x, int64_t ld, int rows, int C) {
  for (int r = 0; r < kLanes; ++r) {
    if (r < rows) {
      const F* xr = x + r * ld;
      for (int b = 0; b < C; ++b) xT[b * kLanes + r] = xr[b];
    } else {
      for (int b = 0; b < C; ++b) xT[b * kLanes + r] = 0;
    }
  }
}

// v [N, ld_v] (head h at columns h*D); u [N, ld_u] (head h at columns h*C); terms [H*D].
template <typename F>
void pauli_value_forward(F* v, int ld_v, const F* u, int ld_u, const PauliTerm* terms, int64_t N, int H, int D,
                         int C, int n_qubits, Workspace& ws) {
  check_pauli_args("pauli_value_forward", N, H, D, C, n_qubits, ld_u, "ld_u", H * C, ld_v, "ld_v", H * D);
  validate_pauli_terms(terms, static_cast<size_t>(H) * D, n_qubits);
  const int64_t HD = static_cast<int64_t>(H) * D;
  auto* pairs = ws.get<PauliPair<F>>(1, static_cast<size_t>(HD * C));
  auto* offsets = ws.get<int32_t>(2, static_cast<size_t>(HD + 1));
  build_pauli_pairs(pairs, offsets, terms, HD, C, true);
  const int64_t per = static_cast<int64_t>(C) * kLanes;
  F* scratch = ws.get<F>(0, static_cast<size_t>(max_threads() * per));
  constexpr int kP = kPackLanes<F>, kPacks = kLanes / kP;
  parallel_for(ceil_div(N, kLanes), [&](int64_t tile) {
    const int64_t n0 = tile * kLanes;
    const int rows = static_cast<int>(std::min<int64_t>(kLanes, N - n0));
    F* uT = scratch + thread_index() * per;
    for (int h = 0; h < H; ++h) {
      transpose_tile(uT, u + n0 * ld_u + static_cast<int64_t>(h) * C, ld_u, rows, C);
      for (int j = 0; j < D; ++j) {
        const int64_t t = static_cast<int64_t>(h) * D + j;
        Pack<F> acc[kPacks] = {};  // the row sums of the tile, in registers
        for (int32_t e = offsets[t]; e < offsets[t + 1]; ++e) {
          const F c = pairs[e].coef;
          const F* ub = uT + pairs[e].b * kLanes;
          const F* up = uT + pairs[e].p * kLanes;
          for (int k = 0; k < kPacks; ++k) acc[k] += c * pack_load(ub + k * kP) * pack_load(up + k * kP);
        }
        alignas(64) F out[kLanes];
        for (int k = 0; k < kPacks; ++k) pack_store(out + k * kP, acc[k]);
        for (int r = 0; r < rows; ++r) v[(n0 + r) * ld_v + t] = out[r];
      }
    }
  });
}

// du [N, ld_u] += sum_j dv_j * dv_j/du (dv_j/du_b = 2 s (-1)^popc(b&m) u_{b^f}).
template <typename F>
void pauli_value_backward(F* du, int ld_u, const F* dv, int ld_v, const F* u, const PauliTerm* terms, int64_t N, int H,
                          int D, int C, int n_qubits, Workspace& ws) {
  check_pauli_args("pauli_value_backward", N, H, D, C, n_qubits, ld_u, "ld_u", H * C, ld_v, "ld_v", H * D);
  validate_pauli_terms(terms, static_cast<size_t>(H) * D, n_qubits);
  const int64_t HD = static_cast<int64_t>(H) * D;
  auto* pairs = ws.get<PauliPair<F>>(1, static_cast<size_t>(HD * C));
  auto* offsets = ws.get<int32_t>(2, static_cast<size_t>(HD + 1));
  build_pauli_pairs(pairs, offsets, terms, HD, C, true);
  const int64_t per = 2 * static_cast<int64_t>(C) * kLanes;
  F* scratch = ws.get<F>(0, static_cast<size_t>(max_threads() * per));
  parallel_for(ceil_div(N, kLanes), [&](int64_t tile) {
    const int64_t n0 = tile * kLanes;
    const int rows = static_cast<int>(std::min<int64_t>(kLanes, N - n0));
    F* uT = scratch + thread_index() * per;
    F* gT = uT + static_cast<int64_t>(C) * kLanes;
    for (int h = 0; h < H; ++h) {
      transpose_tile(uT, u + n0 * ld_u + static_cast<int64_t>(h) * C, ld_u, rows, C);
      for (int64_t i = 0; i < static_cast<int64_t>(C) * kLanes; ++i) gT[i] = 0;
      for (int j = 0; j < D; ++j) {
        const int64_t t = static_cast<int64_t>(h) * D + j;
        alignas(64) F g[kLanes];
        for (int r = 0; r < kLanes; ++r) g[r] = r < rows ? dv[(n0 + r) * ld_v + t] : F(0);
        for (int32_t e = offsets[t]; e < offsets[t + 1]; ++e) {
          const F c = pairs[e].coef;
          const int32_t b = pairs[e].b, p = pairs[e].p;
          const F* ub = uT + b * kLanes;
          const F* up = uT + p * kLanes;
          F* gb = gT + b * kLanes;
          F* gp = gT + p * kLanes;
          // d(c u_b u_p) = c u_p du_b + c u_b du_p (b == p adds both halves: 2 c u_b). Within a
          // term every amplitude is in one pair, so these updates do not chain.
#pragma omp simd
          for (int r = 0; r < kLanes; ++r) gb[r] += c * g[r] * up[r];
#pragma omp simd
          for (int r = 0; r < kLanes; ++r) gp[r] += c * g[r] * ub[r];
        }
      }
      for (int r = 0; r < rows; ++r) {
        F* dr = du + (n0 + r) * ld_u + h * C;
        for (int b = 0; b < C; ++b) dr[b] += gT[b * kLanes + r];
      }
    }
  });
}

}  // namespace qisa::cpu
