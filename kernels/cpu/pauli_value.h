// Pauli value layer (SPEC §1.2), per row n and head h:
//   v[n, h*D + j] = Re <u|P_hj|u> = s * sum_b u_b u_{b^f} (-1)^popc(b & m),
//   u = row n columns h*C .. h*C+C-1, zero-padded to 2^n_qubits amplitudes.
// Only amplitudes b < C are nonzero, and the summand is symmetric in (b, b^f) (for even y
// (-1)^popc(b&m) = (-1)^popc((b^f)&m)), so each term becomes a short list of pairs b <= b^f < C
// with a precomputed coefficient (2 s (-1)^popc(b&m), or s (-1)^popc(b&m) when f = 0); terms
// with s = 0 (odd y) have an empty list. Rows are processed in tiles of kLanes rows held
// transposed ([amplitude][lane]) so every inner loop runs across rows in SIMD lanes.
// Backward goes amplitude by amplitude instead (each du_b a sum in registers over the terms).
// Diagonal terms (no X/Y letter: most of the model's strings) take a shortcut in both: their
// pairs are (b, b), so forward sums c u_b^2 from squares computed once per tile, and backward
// sums their coefficients times dv before one multiplication by u_b.
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

// out[k] = sum over e in [e0, e1) of what term(acc, e) adds to acc[k], as two interleaved
// partial sums (e - e0 even, odd) added at the end: two independent FMA chains per pack, where
// one would wait on the FMA latency every term.
template <typename F, int KP, class Term>
QISA_INLINE void sum_entries(Pack<F>* out, int32_t e0, int32_t e1, Term&& term) {
  Pack<F> a[KP] = {}, b[KP] = {};
  int32_t e = e0;
  for (; e + 2 <= e1; e += 2) {
    term(a, e);
    term(b, e + 1);
  }
  if (e < e1) term(a, e);
  for (int k = 0; k < KP; ++k) out[k] = a[k] + b[k];
}

// xT[b*kLanes + r] = x[r*ld + b] for the tile's rows r < rows (b < C); lanes past the last row
// are 0. A full tile goes by W x W register transposes (scalar at the column edge).
template <typename F>
inline void transpose_tile(F* xT, const F* x, int64_t ld, int rows, int C) {
  constexpr int L = kPackLanes<F>;
  int b0 = 0;
  if (rows == kLanes)
    for (; b0 + L <= C; b0 += L)
      for (int r0 = 0; r0 < kLanes; r0 += L) transpose_pack_block(xT + b0 * kLanes + r0, kLanes, x + r0 * ld + b0, ld);
  if (b0 == C) return;
  for (int r = 0; r < kLanes; ++r)
    for (int b = b0; b < C; ++b) xT[b * kLanes + r] = r < rows ? x[r * ld + b] : F(0);
}

// x[r*ld + b] = xT[b*kLanes + r] (+= with kAdd) for r < rows, b < C: the inverse of transpose_tile.
template <typename F, bool kAdd>
inline void untranspose_tile(F* x, int64_t ld, const F* xT, int rows, int C) {
  constexpr int L = kPackLanes<F>;
  int b0 = 0;
  if (rows == kLanes)
    for (; b0 + L <= C; b0 += L)
      for (int r0 = 0; r0 < kLanes; r0 += L)
        transpose_pack_block<F, kAdd>(x + r0 * ld + b0, ld, xT + b0 * kLanes + r0, kLanes);
  if (b0 == C) return;
  for (int r = 0; r < rows; ++r)
    for (int b = b0; b < C; ++b) x[r * ld + b] = kAdd ? x[r * ld + b] + xT[b * kLanes + r] : xT[b * kLanes + r];
}

// v [N, ld_v] (head h at columns h*D); u [N, ld_u] (head h at columns h*C); terms [H*D].
template <typename F>
void pauli_value_forward(F* v, int ld_v, const F* u, int ld_u, const PauliTerm* terms, int64_t N, int H, int D,
                         int C, int n_qubits, Workspace& ws) {
  check_pauli_args("pauli_value_forward", N, H, D, C, n_qubits, ld_u, "ld_u", H * C, ld_v, "ld_v", H * D);
  validate_pauli_terms(terms, static_cast<size_t>(H) * D, n_qubits);
  const int64_t HD = static_cast<int64_t>(H) * D;
  auto* pairs = ws.get<PauliPair<F>>(1, static_cast<size_t>(HD * C), "Pauli value pair tables");
  auto* offsets = ws.get<int32_t>(2, static_cast<size_t>(HD + 1), "Pauli value pair offsets");
  build_pauli_pairs(pairs, offsets, terms, HD, C, true);
  const int64_t per = static_cast<int64_t>(2 * C + D) * kLanes;
  F* scratch = ws.get<F>(0, static_cast<size_t>(max_threads() * per), "Pauli value forward scratch");
  constexpr int kP = kPackLanes<F>, kPacks = kLanes / kP;
  parallel_for(ceil_div(N, kLanes), [&](int64_t tile) {
    const int64_t n0 = tile * kLanes;
    const int rows = static_cast<int>(std::min<int64_t>(kLanes, N - n0));
    F* uT = scratch + thread_index() * per;          // [C][kLanes]
    F* sqT = uT + static_cast<int64_t>(C) * kLanes;  // [C][kLanes]: u_b^2
    F* vT = sqT + static_cast<int64_t>(C) * kLanes;  // [D][kLanes]
    for (int h = 0; h < H; ++h) {
      transpose_tile(uT, u + n0 * ld_u + static_cast<int64_t>(h) * C, ld_u, rows, C);
      for (int b = 0; b < C; ++b)
        for (int k = 0; k < kPacks; ++k) {
          const Pack<F> x = pack_load(uT + b * kLanes + k * kP);
          pack_store(sqT + b * kLanes + k * kP, x * x);
        }
      for (int j = 0; j < D; ++j) {
        const int64_t t = static_cast<int64_t>(h) * D + j;
        Pack<F> acc[kPacks];  // the row sums of the tile, in registers
        if (terms[t].flip == 0) {  // diagonal (I/Z letters only; the model's most common terms): c u_b^2
          sum_entries<F, kPacks>(acc, offsets[t], offsets[t + 1], [&](Pack<F>* a, int32_t e) {
            const F c = pairs[e].coef;
            const F* sb = sqT + pairs[e].b * kLanes;
            for (int k = 0; k < kPacks; ++k) a[k] += c * pack_load(sb + k * kP);
          });
        } else {
          sum_entries<F, kPacks>(acc, offsets[t], offsets[t + 1], [&](Pack<F>* a, int32_t e) {
            const F c = pairs[e].coef;
            const F* ub = uT + pairs[e].b * kLanes;
            const F* up = uT + pairs[e].p * kLanes;
            for (int k = 0; k < kPacks; ++k) a[k] += c * pack_load(ub + k * kP) * pack_load(up + k * kP);
          });
        }
        for (int k = 0; k < kPacks; ++k) pack_store(vT + j * kLanes + k * kP, acc[k]);
      }
      untranspose_tile<F, false>(v + n0 * ld_v + static_cast<int64_t>(h) * D, ld_v, vT, rows, D);
    }
  });
}

// One entry of dv_j/du_b = coef * u_x of a head: term j (within the head), partner amplitude x.
template <typename F>
struct PauliGrad {
  int32_t j, x;
  F coef;
};

// The entries of every amplitude b of every head h, x = b ^ flip_j for the terms with x < C and
// even y, coef = 2 sign_j (-1)^popc(b & phase_j) (dv_j/du_b = 2 s (-1)^popc(b&m) u_{b^f}, SPEC
// §1.2). Amplitude a = h*C + b has its diagonal entries (x = b) at grads[goff[2a] .. goff[2a+1])
// and the others at grads[goff[2a+1] .. goff[2a+2]), j ascending in each.
template <typename F>
void build_pauli_grads(PauliGrad<F>* grads, int32_t* goff, const PauliTerm* terms, int H, int D, int C) {
  int32_t e = 0;
  for (int h = 0; h < H; ++h)
    for (int b = 0; b < C; ++b)
      for (int diag = 1; diag >= 0; --diag) {
        goff[2 * (h * C + b) + (1 - diag)] = e;
        for (int j = 0; j < D; ++j) {
          const PauliTerm& term = terms[static_cast<int64_t>(h) * D + j];
          const int x = b ^ static_cast<int>(term.flip);
          if (term.sign == 0 || x >= C || (x == b) != (diag == 1)) continue;
          const F sigma = (std::popcount(static_cast<uint32_t>(b) & term.phase) & 1) ? F(-1) : F(1);
          grads[e++] = PauliGrad<F>{j, x, F(2) * static_cast<F>(term.sign) * sigma};
        }
      }
  goff[2 * H * C] = e;
}

// du [N, ld_u] += (mode) sum_j dv_j * dv_j/du (dv_j/du_b = 2 s (-1)^popc(b&m) u_{b^f}). Amplitude by
// amplitude: du_b of the tile sums its entries (j ascending) in registers, then the tile is
// transposed back and added to (or stored in) du.
template <typename F>
void pauli_value_backward(F* du, int ld_u, const F* dv, int ld_v, const F* u, const PauliTerm* terms, int64_t N, int H,
                          int D, int C, int n_qubits, Workspace& ws, GradMode mode) {
  check_pauli_args("pauli_value_backward", N, H, D, C, n_qubits, ld_u, "ld_u", H * C, ld_v, "ld_v", H * D);
  validate_pauli_terms(terms, static_cast<size_t>(H) * D, n_qubits);
  auto* grads = ws.get<PauliGrad<F>>(1, static_cast<size_t>(H) * C * D, "Pauli value gradient tables");
  auto* goff = ws.get<int32_t>(2, static_cast<size_t>(2 * H * C + 1), "Pauli value gradient offsets");
  build_pauli_grads(grads, goff, terms, H, D, C);
  const int64_t per = static_cast<int64_t>(2 * C + D) * kLanes;
  F* scratch = ws.get<F>(0, static_cast<size_t>(max_threads() * per), "Pauli value backward scratch");
  constexpr int kP = kPackLanes<F>, kPacks = kLanes / kP;
  parallel_for(ceil_div(N, kLanes), [&](int64_t tile) {
    const int64_t n0 = tile * kLanes;
    const int rows = static_cast<int>(std::min<int64_t>(kLanes, N - n0));
    F* uT = scratch + thread_index() * per;           // [C][kLanes]
    F* gT = uT + static_cast<int64_t>(C) * kLanes;    // [D][kLanes]: dv
    F* duT = gT + static_cast<int64_t>(D) * kLanes;   // [C][kLanes]
    for (int h = 0; h < H; ++h) {
      transpose_tile(uT, u + n0 * ld_u + static_cast<int64_t>(h) * C, ld_u, rows, C);
      transpose_tile(gT, dv + n0 * ld_v + static_cast<int64_t>(h) * D, ld_v, rows, D);
      for (int b = 0; b < C; ++b) {
        const int64_t a = 2 * (static_cast<int64_t>(h) * C + b);
        // diagonal entries share the factor u_b: du_b = u_b sum_j c g_j + sum_j c g_j u_x
        Pack<F> dsum[kPacks], acc[kPacks];
        sum_entries<F, kPacks>(dsum, goff[a], goff[a + 1], [&](Pack<F>* s, int32_t e) {
          const F c = grads[e].coef;
          const F* g = gT + grads[e].j * kLanes;
          for (int k = 0; k < kPacks; ++k) s[k] += c * pack_load(g + k * kP);
        });
        sum_entries<F, kPacks>(acc, goff[a + 1], goff[a + 2], [&](Pack<F>* s, int32_t e) {
          const F c = grads[e].coef;
          const F* g = gT + grads[e].j * kLanes;
          const F* ux = uT + grads[e].x * kLanes;
          for (int k = 0; k < kPacks; ++k) s[k] += c * (pack_load(g + k * kP) * pack_load(ux + k * kP));
        });
        for (int k = 0; k < kPacks; ++k)
          pack_store(duT + b * kLanes + k * kP, dsum[k] * pack_load(uT + b * kLanes + k * kP) + acc[k]);
      }
      F* dst = du + n0 * ld_u + static_cast<int64_t>(h) * C;
      if (mode == GradMode::accumulate)
        untranspose_tile<F, true>(dst, ld_u, duT, rows, C);
      else
        untranspose_tile<F, false>(dst, ld_u, duT, rows, C);
    }
  });
}

}  // namespace qisa::cpu
