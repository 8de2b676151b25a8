// QISA-A circuit value (SPEC §1.1 qisa_a), per row n and head h:
//   psi = pad(x_n / |x_n|); on each wire w: RX(rx[h,w]) then RY(ry[h,w]);
//   CNOT(w, (w+1) mod n) for w = 0..n-1; RY(ry2[h,w]) on each wire; v[n, h*D+j] = <psi|P_hj|psi>.
// A complex statevector simulation, qubit 0 = most significant bit of the amplitude index.
// Rows run in tiles of kLanes held as [amplitude][lane] (real and imaginary parts apart), so
// every gate is a SIMD loop across rows.
//
// Backward is the adjoint method: recompute the final state phi, set lam = dL/dphi (real and
// imaginary parts as independent reals), then walk the gates backwards: phi <- G^dagger phi,
// dL/dtheta = Re<lam| dG/dtheta |phi> with dG/dtheta = G(theta + pi)/2 for RX and RY, and
// lam <- G^dagger lam. lam then holds dL/dpsi0; its real part goes through the normalisation.
// Angle gradients: per-lane sums in the tile, one double partial per (tile, head, angle),
// partials combined in tile order: the same bits for any thread count.
//
// Edge cases (documented choices): n_qubits == 1 has no entangling layer (CNOT(0, 0) is not
// a gate); an all-zero input row gives psi = 0, so v = 0 and zero gradients (not NaN).
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/pauli_value.h"
#include "kernels/cpu/simd.h"
#include "kernels/error.h"
#include "kernels/pauli.h"

namespace qisa::cpu {

inline constexpr int kQisaAMaxQubits = 16;  // statevector of 2^n amplitudes per lane

namespace qisa_a_detail {

// Gate parameters of one head: angle slot k in [0, 3n): rx[w] = k, ry[w] = n + w, ry2[w] = 2n + w.
template <typename F>
struct Gate {
  int kind;    // 0 RX, 1 RY, 2 CNOT
  int stride;  // RX/RY: bit of the wire; CNOT: control bit
  int tbit;    // CNOT: target bit
  int slot;    // RX/RY: angle slot
  F c, s;      // cos, sin of half the angle
};

// The gate sequence of head h; returns the gate count.
template <typename F>
int build_gates(Gate<F>* g, const F* rx, const F* ry, const F* ry2, int h, int n) {
  int m = 0;
  auto bit = [n](int w) { return 1 << (n - 1 - w); };
  auto rot = [&](int kind, int w, int slot, double theta) {
    g[m++] = Gate<F>{kind, bit(w), 0, slot, static_cast<F>(std::cos(0.5 * theta)), static_cast<F>(std::sin(0.5 * theta))};
  };
  for (int w = 0; w < n; ++w) {
    rot(0, w, w, static_cast<double>(rx[h * n + w]));
    rot(1, w, n + w, static_cast<double>(ry[h * n + w]));
  }
  if (n > 1)
    for (int w = 0; w < n; ++w) g[m++] = Gate<F>{2, bit(w), bit((w + 1) % n), -1, F(0), F(0)};
  for (int w = 0; w < n; ++w) rot(1, w, 2 * n + w, static_cast<double>(ry2[h * n + w]));
  return m;
}

// Apply RX(c, s) or RY(c, s) (s -> -s gives the adjoint) to the state [amps][kLanes].
template <typename F>
inline void rotate(F* re, F* im, int amps, int kind, int stride, F c, F s) {
  for (int base = 0; base < amps; base += 2 * stride) {
    for (int a0 = base; a0 < base + stride; ++a0) {
      F* r0 = re + a0 * kLanes;
      F* r1 = re + (a0 + stride) * kLanes;
      F* i0 = im + a0 * kLanes;
      F* i1 = im + (a0 + stride) * kLanes;
      if (kind == 0) {  // RX = [[c, -is], [-is, c]]
#pragma omp simd
        for (int l = 0; l < kLanes; ++l) {
          const F x0 = r0[l], y0 = i0[l], x1 = r1[l], y1 = i1[l];
          r0[l] = c * x0 + s * y1;
          i0[l] = c * y0 - s * x1;
          r1[l] = c * x1 + s * y0;
          i1[l] = c * y1 - s * x0;
        }
      } else {  // RY = [[c, -s], [s, c]]
#pragma omp simd
        for (int l = 0; l < kLanes; ++l) {
          const F x0 = r0[l], y0 = i0[l], x1 = r1[l], y1 = i1[l];
          r0[l] = c * x0 - s * x1;
          i0[l] = c * y0 - s * y1;
          r1[l] = s * x0 + c * x1;
          i1[l] = s * y0 + c * y1;
        }
      }
    }
  }
}

template <typename F>
inline void cnot(F* re, F* im, int amps, int cbit, int tbit) {
  for (int a = 0; a < amps; ++a) {
    if (!(a & cbit) || (a & tbit)) continue;
    F* r0 = re + a * kLanes;
    F* r1 = re + (a | tbit) * kLanes;
    F* i0 = im + a * kLanes;
    F* i1 = im + (a | tbit) * kLanes;
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) {
      const F x = r0[l], y = i0[l];
      r0[l] = r1[l];
      i0[l] = i1[l];
      r1[l] = x;
      i1[l] = y;
    }
  }
}

// One adjoint step over a rotation: phi (after the gate) -> before; dth[l] += Re<lam|dG|phi_before>;
// lam (after) -> before. Written with Packs so the dth sums over amplitude pairs stay in registers.
template <typename F>
inline void adjoint_rotate(F* re, F* im, F* lr, F* li, F* dth, int amps, int kind, int stride, F c, F s) {
  constexpr int kP = kPackLanes<F>, kPacks = kLanes / kP;
  const F h = F(0.5);
  Pack<F> acc[kPacks] = {};
  for (int base = 0; base < amps; base += 2 * stride) {
    for (int a0 = base; a0 < base + stride; ++a0) {
      for (int k = 0; k < kPacks; ++k) {
        const int64_t o0 = static_cast<int64_t>(a0) * kLanes + k * kP, o1 = o0 + static_cast<int64_t>(stride) * kLanes;
        const Pack<F> r0 = pack_load(re + o0), i0 = pack_load(im + o0), r1 = pack_load(re + o1), i1 = pack_load(im + o1);
        const Pack<F> p0 = pack_load(lr + o0), q0 = pack_load(li + o0), p1 = pack_load(lr + o1), q1 = pack_load(li + o1);
        Pack<F> x0, y0, x1, y1;
        if (kind == 0) {
          // undo RX: RX(-theta) = [[c, is], [is, c]]
          x0 = c * r0 - s * i1, y0 = c * i0 + s * r1, x1 = c * r1 - s * i0, y1 = c * i1 + s * r0;
          // dRX/dtheta = 0.5 [[-s, -ic], [-ic, -s]]
          acc[k] += h * (-s * (p0 * x0 + q0 * y0 + p1 * x1 + q1 * y1) + c * (p0 * y1 - q0 * x1 + p1 * y0 - q1 * x0));
          pack_store(lr + o0, c * p0 - s * q1), pack_store(li + o0, c * q0 + s * p1);
          pack_store(lr + o1, c * p1 - s * q0), pack_store(li + o1, c * q1 + s * p0);
        } else {
          // undo RY: RY(-theta) = [[c, s], [-s, c]]
          x0 = c * r0 + s * r1, y0 = c * i0 + s * i1, x1 = c * r1 - s * r0, y1 = c * i1 - s * i0;
          // dRY/dtheta = 0.5 [[-s, -c], [c, -s]]
          acc[k] += h * (-s * (p0 * x0 + q0 * y0 + p1 * x1 + q1 * y1) + c * (p1 * x0 + q1 * y0 - p0 * x1 - q0 * y1));
          pack_store(lr + o0, c * p0 + s * p1), pack_store(li + o0, c * q0 + s * q1);
          pack_store(lr + o1, c * p1 - s * p0), pack_store(li + o1, c * q1 - s * q0);
        }
        pack_store(re + o0, x0), pack_store(im + o0, y0), pack_store(re + o1, x1), pack_store(im + o1, y1);
      }
    }
  }
  for (int k = 0; k < kPacks; ++k) pack_store(dth + k * kP, pack_load(dth + k * kP) + acc[k]);
}

// Amplitude-encode the tile: p0[b][l] = x[row l][b] / |x_row| for b < C; inv[l] = 1/|x_row| (0 for
// a zero row or an unused lane). Each lane's |x|^2 sums b in order.
template <typename F>
inline void encode(F* p0, F* inv, const F* x, int ld_x, int64_t n0, int rows, int C) {
  constexpr int kP = kPackLanes<F>, kPacks = kLanes / kP;
  transpose_tile(p0, x + n0 * ld_x, ld_x, rows, C);  // lanes past the last row are 0
  for (int k = 0; k < kPacks; ++k) {
    Pack<F> s = {};
    for (int b = 0; b < C; ++b) {
      const Pack<F> xb = pack_load(p0 + b * kLanes + k * kP);
      s += xb * xb;
    }
    const Pack<F> iv = std::bit_cast<Pack<F>>(std::bit_cast<IPack<F>>(F(1) / pack_sqrt<F>(s)) & (s > F(0)));
    pack_store(inv + k * kP, iv);
    for (int b = 0; b < C; ++b) pack_store(p0 + b * kLanes + k * kP, pack_load(p0 + b * kLanes + k * kP) * iv);
  }
}

// Run the circuit of one head from the encoded tile into (re, im).
template <typename F>
inline void simulate(F* re, F* im, const F* p0, int C, int amps, const Gate<F>* gates, int ngates) {
  for (int i = 0; i < C * kLanes; ++i) re[i] = p0[i];
  for (int i = C * kLanes; i < amps * kLanes; ++i) re[i] = 0;
  for (int i = 0; i < amps * kLanes; ++i) im[i] = 0;
  for (int g = 0; g < ngates; ++g) {
    const Gate<F>& G = gates[g];
    if (G.kind == 2)
      cnot(re, im, amps, G.stride, G.tbit);
    else
      rotate(re, im, amps, G.kind, G.stride, G.c, G.s);
  }
}

inline void check_args(const char* op, int64_t N, int H, int D, int C, int n_qubits, int ld_x, int ld_v) {
  check_pauli_args(op, N, H, D, C, n_qubits, ld_x, "ld_x", C, ld_v, "ld_v", H * D);
  QISA_CHECK(n_qubits <= kQisaAMaxQubits,
             std::string(op) + ": " + std::to_string(n_qubits) + " qubits",
             "the QISA-A statevector simulation supports up to " + std::to_string(kQisaAMaxQubits) + " qubits");
}

// Pair tables of all H*D terms (complex form) and the gate list of every head, in ws slots 1..3.
template <typename F>
int prepare(Workspace& ws, const PauliTerm* terms, const F* rx, const F* ry, const F* ry2, int H, int D, int n,
            PauliPair<F>*& pairs, int32_t*& offsets, Gate<F>*& gates) {
  const int64_t HD = static_cast<int64_t>(H) * D;
  const int amps = 1 << n;
  pairs = ws.get<PauliPair<F>>(1, static_cast<size_t>(HD * amps), "QISA-A pair tables");
  offsets = ws.get<int32_t>(2, static_cast<size_t>(HD + 1), "QISA-A pair offsets");
  build_pauli_pairs(pairs, offsets, terms, HD, amps, false);
  const int per_head = 4 * n;
  gates = ws.get<Gate<F>>(3, static_cast<size_t>(H * per_head), "QISA-A gates");
  int ngates = 0;
  for (int h = 0; h < H; ++h) ngates = build_gates(gates + h * per_head, rx, ry, ry2, h, n);
  return ngates;
}

}  // namespace qisa_a_detail

// v [N, ld_v] (head h at columns h*D); x [N, ld_x] (C columns, shared by all heads);
// rx, ry, ry2 [H, n_qubits]; terms [H*D].
template <typename F>
void qisa_a_forward(F* v, int ld_v, const F* x, int ld_x, const F* rx, const F* ry, const F* ry2,
                    const PauliTerm* terms, int64_t N, int H, int D, int C, int n_qubits, Workspace& ws) {
  using namespace qisa_a_detail;
  check_args("qisa_a_forward", N, H, D, C, n_qubits, ld_x, ld_v);
  validate_pauli_terms(terms, static_cast<size_t>(H) * D, n_qubits);
  const int n = n_qubits, amps = 1 << n;
  PauliPair<F>* pairs;
  int32_t* offsets;
  Gate<F>* gates;
  const int ngates = prepare(ws, terms, rx, ry, ry2, H, D, n, pairs, offsets, gates);
  const int64_t per = (2 * static_cast<int64_t>(amps) + C + 1 + D) * kLanes;
  F* scratch = ws.get<F>(0, static_cast<size_t>(max_threads() * per), "QISA-A forward scratch");
  constexpr int kP = kPackLanes<F>, kPacks = kLanes / kP;
  parallel_for(ceil_div(N, kLanes), [&](int64_t tile) {
    const int64_t n0 = tile * kLanes;
    const int rows = static_cast<int>(std::min<int64_t>(kLanes, N - n0));
    F* re = scratch + thread_index() * per;
    F* im = re + amps * kLanes;
    F* p0 = im + amps * kLanes;
    F* inv = p0 + C * kLanes;
    F* vT = inv + kLanes;  // [D][kLanes]: values of the current head
    encode(p0, inv, x, ld_x, n0, rows, C);
    for (int h = 0; h < H; ++h) {
      simulate(re, im, p0, C, amps, gates + h * 4 * n, ngates);
      for (int j = 0; j < D; ++j) {
        const int64_t t = static_cast<int64_t>(h) * D + j;
        const bool odd = terms[t].y_count % 2 != 0;
        Pack<F> acc[kPacks] = {};  // row sums of the tile, in registers
        for (int32_t e = offsets[t]; e < offsets[t + 1]; ++e) {
          const F c = pairs[e].coef;
          const int64_t ob = static_cast<int64_t>(pairs[e].b) * kLanes, op = static_cast<int64_t>(pairs[e].p) * kLanes;
          for (int k = 0; k < kPacks; ++k) {
            const Pack<F> rb = pack_load(re + ob + k * kP), ib = pack_load(im + ob + k * kP);
            const Pack<F> rp = pack_load(re + op + k * kP), ip = pack_load(im + op + k * kP);
            // odd y: Im(conj(psi_b) psi_p); even y: Re(conj(psi_b) psi_p)
            acc[k] += c * (odd ? rb * ip - ib * rp : rb * rp + ib * ip);
          }
        }
        for (int k = 0; k < kPacks; ++k) pack_store(vT + j * kLanes + k * kP, acc[k]);
      }
      untranspose_tile<F, false>(v + n0 * ld_v + static_cast<int64_t>(h) * D, ld_v, vT, rows, D);
    }
  });
}

// dx [N, ld_x] += (dx_mode); drx, dry, dry2 [H, n_qubits] += (param_mode; any may be null); dv [N, ld_v].
template <typename F>
void qisa_a_backward(F* dx, int ld_x, F* drx, F* dry, F* dry2, const F* dv, int ld_v, const F* x, const F* rx,
                     const F* ry, const F* ry2, const PauliTerm* terms, int64_t N, int H, int D, int C, int n_qubits,
                     Workspace& ws, GradMode dx_mode, GradMode param_mode) {
  using namespace qisa_a_detail;
  check_args("qisa_a_backward", N, H, D, C, n_qubits, ld_x, ld_v);
  validate_pauli_terms(terms, static_cast<size_t>(H) * D, n_qubits);
  const int n = n_qubits, amps = 1 << n, nang = 3 * n;
  PauliPair<F>* pairs;
  int32_t* offsets;
  Gate<F>* gates;
  const int ngates = prepare(ws, terms, rx, ry, ry2, H, D, n, pairs, offsets, gates);
  const int64_t tiles = ceil_div(N, kLanes);
  // [tile][h][angle]
  double* part = ws.get<double>(4, static_cast<size_t>(tiles * H * nang), "QISA-A angle gradient partials");
  const int64_t per = (4 * static_cast<int64_t>(amps) + 2 * C + nang + 1 + D) * kLanes;
  F* scratch = ws.get<F>(0, static_cast<size_t>(max_threads() * per), "QISA-A backward scratch");
  constexpr int kP = kPackLanes<F>, kPacks = kLanes / kP;
  parallel_for(tiles, [&](int64_t tile) {
    const int64_t n0 = tile * kLanes;
    const int rows = static_cast<int>(std::min<int64_t>(kLanes, N - n0));
    F* re = scratch + thread_index() * per;
    F* im = re + amps * kLanes;
    F* lr = im + amps * kLanes;
    F* li = lr + amps * kLanes;
    F* p0 = li + amps * kLanes;
    F* gx = p0 + C * kLanes;  // dL/dx of the tile, summed over heads
    F* dth = gx + C * kLanes;
    F* inv = dth + nang * kLanes;
    F* gT = inv + kLanes;  // [D][kLanes]: dv of the current head
    encode(p0, inv, x, ld_x, n0, rows, C);
    for (int i = 0; i < C * kLanes; ++i) gx[i] = 0;
    for (int h = 0; h < H; ++h) {
      const Gate<F>* hg = gates + h * 4 * n;
      simulate(re, im, p0, C, amps, hg, ngates);
      // lam = dL/dphi = sum_j dv_j dv_j/dphi (real and imaginary parts)
      for (int i = 0; i < amps * kLanes; ++i) lr[i] = li[i] = 0;
      transpose_tile(gT, dv + n0 * ld_v + static_cast<int64_t>(h) * D, ld_v, rows, D);
      for (int j = 0; j < D; ++j) {
        const int64_t t = static_cast<int64_t>(h) * D + j;
        const bool odd = terms[t].y_count % 2 != 0;
        const F* g = gT + j * kLanes;
        for (int32_t e = offsets[t]; e < offsets[t + 1]; ++e) {
          const F c = pairs[e].coef;
          const int32_t b = pairs[e].b, p = pairs[e].p;
          const F *rb = re + b * kLanes, *ib = im + b * kLanes, *rp = re + p * kLanes, *ip = im + p * kLanes;
          F *lrb = lr + b * kLanes, *lib = li + b * kLanes, *lrp = lr + p * kLanes, *lip = li + p * kLanes;
          if (odd) {  // c (re_b im_p - im_b re_p)
#pragma omp simd
            for (int l = 0; l < kLanes; ++l) {
              const F w = c * g[l];
              lrb[l] += w * ip[l];
              lib[l] -= w * rp[l];
              lrp[l] -= w * ib[l];
              lip[l] += w * rb[l];
            }
          } else {  // c (re_b re_p + im_b im_p); b == p gets both halves
#pragma omp simd
            for (int l = 0; l < kLanes; ++l) {
              const F w = c * g[l];
              lrb[l] += w * rp[l];
              lib[l] += w * ip[l];
            }
#pragma omp simd
            for (int l = 0; l < kLanes; ++l) {
              const F w = c * g[l];
              lrp[l] += w * rb[l];
              lip[l] += w * ib[l];
            }
          }
        }
      }
      // walk the gates backwards
      for (int i = 0; i < nang * kLanes; ++i) dth[i] = 0;
      for (int gi = ngates - 1; gi >= 0; --gi) {
        const Gate<F>& G = hg[gi];
        if (G.kind == 2) {
          cnot(re, im, amps, G.stride, G.tbit);
          cnot(lr, li, amps, G.stride, G.tbit);
        } else {
          adjoint_rotate(re, im, lr, li, dth + G.slot * kLanes, amps, G.kind, G.stride, G.c, G.s);
        }
      }
      double* pt = part + (tile * H + h) * nang;
      for (int k = 0; k < nang; ++k) {
        double s = 0;
        for (int l = 0; l < rows; ++l) s += static_cast<double>(dth[k * kLanes + l]);
        pt[k] = s;
      }
      // lam is now dL/dpsi0; psi0 = x/|x| is real: dL/dx = (g - psi0 (psi0 . g)) / |x|
      Pack<F> dk[kPacks] = {};
      for (int b = 0; b < C; ++b)
        for (int k = 0; k < kPacks; ++k)
          dk[k] += pack_load(p0 + b * kLanes + k * kP) * pack_load(lr + b * kLanes + k * kP);
      alignas(64) F dot[kLanes];
      for (int k = 0; k < kPacks; ++k) pack_store(dot + k * kP, dk[k]);
      for (int b = 0; b < C; ++b) {
#pragma omp simd
        for (int l = 0; l < kLanes; ++l) gx[b * kLanes + l] += (lr[b * kLanes + l] - p0[b * kLanes + l] * dot[l]) * inv[l];
      }
    }
    if (dx && dx_mode == GradMode::accumulate)
      untranspose_tile<F, true>(dx + n0 * ld_x, ld_x, gx, rows, C);
    else if (dx)
      untranspose_tile<F, false>(dx + n0 * ld_x, ld_x, gx, rows, C);
  });
  // angle gradients: partials combined in tile order
  for (int h = 0; h < H; ++h) {
    for (int k = 0; k < nang; ++k) {
      double s = 0;
      for (int64_t tile = 0; tile < tiles; ++tile) s += part[(tile * H + h) * nang + k];
      F* dst = k < n ? drx : (k < 2 * n ? dry : dry2);
      F* g = dst ? dst + h * n + k % n : nullptr;
      if (g) *g = param_mode == GradMode::accumulate ? *g + static_cast<F>(s) : static_cast<F>(s);
    }
  }
}

}  // namespace qisa::cpu
