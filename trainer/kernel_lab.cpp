// The kernel lab (kernel_lab.h). Each op family allocates its operands, uploads random values,
// and hands a table of OpSpec {name, bytes, flops, bound, body} to Lab::run, which times them.
// Notation in the traffic formulas: a = activation element size (2 bf16, 4 fp32), f = 4 (fp32
// parameters, gradients, statistics, amplitudes, losses), i = 4 (int32 ids), PT = 16 (PauliTerm).
#include "trainer/kernel_lab.h"

#include <chrono>
#include <climits>
#include <cmath>
#include <cstddef>
#include <functional>

#include "kernels/error.h"
#include "kernels/pauli.h"
#include "trainer/model.h"
#include "trainer/param_table.h"

namespace qisa {

const char* to_string(Bound b) { return b == Bound::memory ? "memory" : "compute"; }

namespace {

constexpr double kF = 4;   // fp32 element
constexpr double kI = 4;   // int32 token id
constexpr double kPT = sizeof(PauliTerm);
constexpr GradMode kSet = GradMode::overwrite;

struct OpSpec {
  std::string name;
  double bytes;
  double flops;  // 0 for memory-bound ops
  Bound bound;
  std::function<void()> body;
};

// An activation operand: n elements of the run's storage type in backend memory.
struct Operand {
  Buffer<std::byte> mem;
  DType t;
  Act act() const { return {mem.get(), t}; }
};

class Lab {
 public:
  Lab(Backend& be, const ModelConfig& m, int64_t B, DType act, const KernelLabOptions& o)
      : be(be), o(o), score(m.attn_score()), rng_(o.seed | 1) {
    r.B = B, r.T = m.block_size, r.C = m.n_embd, r.H = m.n_head, r.D = m.head_dim();
    r.V = m.vocab_size, r.N = B * m.block_size, r.n_qubits = m.n_qubits(), r.act = act;
    r.params = ParamTable(m).total(), r.emulated = o.emulated;
    a = static_cast<double>(dtype_bytes(act));
    pairs = static_cast<double>(B) * r.H * r.T * (r.T + 1) / 2.0;
  }

  // uniform values in [lo, hi) from a xorshift stream (cheap for the large ceiling buffers)
  std::vector<float> host_values(int64_t n, double lo, double hi) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = static_cast<float>(lo + (hi - lo) * static_cast<double>(next() >> 40) * 0x1p-24);
    return v;
  }
  Buffer<float> floats(int64_t n, double lo = -1, double hi = 1) {  // n = 0: a null buffer
    Buffer<float> b(be, static_cast<size_t>(n));
    if (n == 0) return b;
    const auto v = host_values(n, lo, hi);
    be.upload(b.get(), v.data(), v.size() * sizeof(float));
    return b;
  }
  Operand acts(int64_t n, double lo = -1, double hi = 1) {
    Operand op{Buffer<std::byte>(be, static_cast<size_t>(n) * dtype_bytes(r.act)), r.act};
    const auto v = host_values(n, lo, hi);
    if (r.act == DType::f32) {
      be.upload(op.mem.get(), v.data(), v.size() * sizeof(float));
    } else {
      std::vector<bf16> h(v.size());
      for (size_t i = 0; i < v.size(); ++i) h[i] = float_to_bf16(v[i]);
      be.upload(op.mem.get(), h.data(), h.size() * sizeof(bf16));
    }
    return op;
  }
  Buffer<int32_t> ids(int64_t n, int64_t below) {
    std::vector<int32_t> h(static_cast<size_t>(n));
    for (int32_t& x : h) x = static_cast<int32_t>(next() % static_cast<uint64_t>(below));
    Buffer<int32_t> b(be, h.size());
    be.upload(b.get(), h.data(), h.size() * sizeof(int32_t));
    return b;
  }

  // Mean ms per call of `body` over o.reps calls between two synchronize() calls.
  double time_ms(const std::function<void()>& body) {
    for (int i = 0; i < o.warmup; ++i) body();
    be.synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < o.reps; ++i) body();
    be.synchronize();
    const std::chrono::duration<double, std::milli> dt = std::chrono::steady_clock::now() - t0;
    return dt.count() / o.reps;
  }

  void run(const std::vector<OpSpec>& ops) {
    for (const OpSpec& op : ops) {
      KernelTiming k{op.name, time_ms(op.body), op.bytes, op.flops, 0, 0, 0, op.bound};
      const double s = k.ms / 1e3;
      k.gbps = k.bytes / s / 1e9;
      k.tflops = k.flops / s / 1e12;
      k.fraction_of_ceiling = op.bound == Bound::memory ? k.gbps / r.copy_gbps : k.tflops / r.gemm_tflops;
      r.kernels.push_back(std::move(k));
    }
  }

  Backend& be;
  const KernelLabOptions& o;
  AttnScore score;   // the config's Gaussian attention score
  KernelLabReport r;
  double a = 4;      // activation element size
  double pairs = 0;  // causal (b, h, i, j <= i) pairs: B*H*T(T+1)/2

 private:
  uint64_t next() {  // xorshift64*
    rng_ ^= rng_ >> 12, rng_ ^= rng_ << 25, rng_ ^= rng_ >> 27;
    return rng_ * 0x2545F4914F6CDD1Dull;
  }
  uint64_t rng_;
};

// ---- ceilings: a copy of o.copy_bytes (GB/s = 2 x bytes / s: read + write) and a square GEMM
// in the activation type (FLOPs 2 g^3).
void measure_ceilings(Lab& L) {
  {
    const auto n = static_cast<size_t>(L.o.copy_bytes);
    Buffer<std::byte> src(L.be, n), dst(L.be, n);
    L.be.zero(src.get(), n);  // values do not matter to a copy
    L.r.copy_ms = L.time_ms([&] { L.be.copy(dst.get(), src.get(), n); });
    L.r.copy_gbps = 2.0 * static_cast<double>(n) / (L.r.copy_ms / 1e3) / 1e9;
  }
  const int64_t g = L.o.gemm_size;
  Operand in = L.acts(g * g), w = L.acts(g * g, -0.02, 0.02), out = L.acts(g * g);
  const int gi = static_cast<int>(g);
  L.r.gemm_ms = L.time_ms([&] { L.be.linear_forward(out.act(), in.act(), w.act(), nullptr, g, gi, gi); });
  L.r.gemm_tflops = 2.0 * static_cast<double>(g) * g * g / (L.r.gemm_ms / 1e3) / 1e12;
}

void lab_embedding(Lab& L) {
  const auto& r = L.r;
  const double NC = static_cast<double>(r.N) * r.C, VC = static_cast<double>(r.V) * r.C, TC = double(r.T) * r.C;
  auto idx = L.ids(r.N, r.V);
  auto tok = L.floats(r.V * r.C), pos = L.floats(int64_t{r.T} * r.C), dtok = L.floats(r.V * r.C),
       dpos = L.floats(int64_t{r.T} * r.C);
  Operand out = L.acts(r.N * r.C), dout = L.acts(r.N * r.C);
  const int V = static_cast<int>(r.V);
  L.run({
      // idx N*i + one tok row per token N*C*f + pos T*C*f; out N*C*a
      {"embedding_forward", r.N * kI + NC * kF + TC * kF + NC * L.a, 0, Bound::memory,
       [&] { L.be.embedding_forward(out.act(), idx.get(), tok.get(), pos.get(), r.B, r.T, r.C); }},
      // dout N*C*a + idx N*i; dtok V*C*f (overwrite: every row) + dpos T*C*f
      {"embedding_backward", NC * L.a + r.N * kI + VC * kF + TC * kF, 0, Bound::memory,
       [&] { L.be.embedding_backward(dtok.get(), dpos.get(), dout.act(), idx.get(), r.B, r.T, r.C, V, kSet); }},
  });
}

void lab_layernorm(Lab& L) {
  const auto& r = L.r;
  const double NC = static_cast<double>(r.N) * r.C;
  Operand in = L.acts(r.N * r.C), out = L.acts(r.N * r.C), dout = L.acts(r.N * r.C), din = L.acts(r.N * r.C);
  auto w = L.floats(r.C, 0.5, 1.5), b = L.floats(r.C), dw = L.floats(r.C), db = L.floats(r.C);
  auto mean = L.floats(r.N), rstd = L.floats(r.N, 0.5, 2.0);
  L.run({
      // in N*C*a + w, b 2*C*f; out N*C*a + mean, rstd 2*N*f
      {"layernorm_forward", 2 * NC * L.a + 2.0 * r.C * kF + 2.0 * r.N * kF, 0, Bound::memory,
       [&] { L.be.layernorm_forward(out.act(), mean.get(), rstd.get(), in.act(), w.get(), b.get(), r.N, r.C); }},
      // dout, in 2*N*C*a + w C*f + mean, rstd 2*N*f; din N*C*a + dw, db 2*C*f
      {"layernorm_backward", 3 * NC * L.a + 3.0 * r.C * kF + 2.0 * r.N * kF, 0, Bound::memory,
       [&] {
         L.be.layernorm_backward(din.act(), dw.get(), db.get(), dout.act(), in.act(), w.get(), mean.get(), rstd.get(),
                                 r.N, r.C, kSet, kSet);
       }},
  });
}

// out[N,OC] = in[N,IC] w[OC,IC]^T (+ bias[OC]); w in the activation type (the model's GEMM weight).
void lab_linear(Lab& L, const std::string& what, int IC, int OC, bool with_bias) {
  const int64_t N = L.r.N;
  const double n = static_cast<double>(N), bias_f = with_bias ? OC * kF : 0;
  Operand in = L.acts(N * IC), w = L.acts(int64_t{OC} * IC, -0.05, 0.05), out = L.acts(N * OC);
  Operand dout = L.acts(N * OC), din = L.acts(N * IC);
  auto bias = L.floats(with_bias ? OC : 0), dw = L.floats(int64_t{OC} * IC), dbias = L.floats(with_bias ? OC : 0);
  const double gemm = 2.0 * n * IC * OC;
  L.run({
      // in N*IC*a + w OC*IC*a + bias OC*f; out N*OC*a. FLOPs 2*N*IC*OC
      {"linear_" + what + "_forward", (n * IC + double(OC) * IC + n * OC) * L.a + bias_f, gemm, Bound::compute,
       [&] { L.be.linear_forward(out.act(), in.act(), w.act(), bias.get(), N, IC, OC); }},
      // dout N*OC*a + in N*IC*a + w OC*IC*a; din N*IC*a + dw OC*IC*f + dbias OC*f. FLOPs 4*N*IC*OC
      {"linear_" + what + "_backward", (n * OC + 2 * n * IC + double(OC) * IC) * L.a + double(OC) * IC * kF + bias_f,
       2 * gemm, Bound::compute,
       [&] {
         L.be.linear_backward(din.act(), dw.get(), dbias.get(), dout.act(), in.act(), w.act(), N, IC, OC, kSet, kSet);
       }},
  });
}

// gelu over the MLP's N*4C elements; dropout_add (p = 0.1) over the residual's N*C, dx null as
// in the model (the residual gradient passes through unchanged).
void lab_elementwise(Lab& L) {
  const int64_t n4 = L.r.N * 4 * L.r.C, n = L.r.N * L.r.C;
  Operand in = L.acts(n4), out = L.acts(n4), dout = L.acts(n4), din = L.acts(n4);
  Operand x = L.acts(n), y = L.acts(n), res = L.acts(n), dres = L.acts(n), dy = L.acts(n);
  const Dropout d{0.1f, L.o.seed, 1, 0, 0};
  L.run({
      // in n*a; out n*a (n = N*4C)
      {"gelu_forward", 2.0 * n4 * L.a, 0, Bound::memory,
       [&] { L.be.activation_forward(out.act(), in.act(), n4, Activation::gelu); }},
      // dout, in 2n*a; din n*a
      {"gelu_backward", 3.0 * n4 * L.a, 0, Bound::memory,
       [&] { L.be.activation_backward(din.act(), dout.act(), in.act(), n4, Activation::gelu, kSet); }},
      // x, y 2n*a; out n*a (n = N*C)
      {"dropout_add_forward", 3.0 * n * L.a, 0, Bound::memory,
       [&] { L.be.dropout_add_forward(res.act(), x.act(), y.act(), n, d); }},
      // dout n*a; dy n*a
      {"dropout_add_backward", 2.0 * n * L.a, 0, Bound::memory,
       [&] { L.be.dropout_add_backward(nullptr, dy.act(), dres.act(), n, d, kSet); }},
  });
}

// csa over q|k|v = [N, 3C] (the model's fused projection), no dropout. FLOPs per causal pair:
// forward 4D (scores 2D, weighted sum 2D); backward 10D (recomputed scores 2D, dv 2D, dp 2D,
// dq 2D, dk 2D).
void lab_csa(Lab& L) {
  const auto& r = L.r;
  const double NC = static_cast<double>(r.N) * r.C, BHT = static_cast<double>(r.B) * r.H * r.T;
  Operand qkv = L.acts(r.N * 3 * r.C), out = L.acts(r.N * r.C), dout = L.acts(r.N * r.C);
  Operand dqkv = L.acts(r.N * 3 * r.C);
  auto lse = L.floats(static_cast<int64_t>(BHT));
  const CAct q = qkv.act();
  const Act dq = dqkv.act();
  const float scale = 1.0f / std::sqrt(static_cast<float>(r.C));
  const Dropout none{};
  auto fwd = [&] { L.be.csa_forward(out.act(), r.C, lse.get(), q, q + r.C, q + 2 * r.C, 3 * r.C, r.B, r.T, r.H, r.D, scale, none); };
  fwd();  // the backward reads the forward's lse
  L.run({
      // q, k, v 3*N*C*a; out N*C*a + lse B*H*T*f
      {"csa_forward", 4 * NC * L.a + BHT * kF, 4.0 * r.D * L.pairs, Bound::compute, fwd},
      // dout N*C*a + lse B*H*T*f + q, k, v 3*N*C*a; dq, dk, dv 3*N*C*a
      {"csa_backward", 7 * NC * L.a + BHT * kF, 10.0 * r.D * L.pairs, Bound::compute,
       [&] {
         L.be.csa_backward(dq, dq + r.C, dq + 2 * r.C, dout.act(), r.C, lse.get(), q, q + r.C, q + 2 * r.C, 3 * r.C, r.B,
                           r.T, r.H, r.D, scale, none, kSet);
       }},
  });
}

// Gaussian attention over q|k = [N, 2C] and v [N, C] (the Pauli values). FLOPs per causal pair
// (the reference mask uses the same triangle): forward 5D (|q_i - k_j|^2 3D as flops.h, weighted
// sum 2D); backward 11D (recomputed kernel 3D, dv 2D, dp = dout_i . v_j 2D, dq 2D and dk 2D from
// the kept difference q_i - k_j; the O(1) softmax terms per pair are not counted).
void lab_gaussian(Lab& L, AttnMask mask) {
  const auto& r = L.r;
  const double NC = static_cast<double>(r.N) * r.C, BHT = static_cast<double>(r.B) * r.H * r.T;
  Operand qk = L.acts(r.N * 2 * r.C), v = L.acts(r.N * r.C), out = L.acts(r.N * r.C), dout = L.acts(r.N * r.C);
  Operand dqk = L.acts(r.N * 2 * r.C), dv = L.acts(r.N * r.C);
  auto z = L.floats(static_cast<int64_t>(BHT));
  const CAct q = qk.act();
  const Act dq = dqk.act();
  auto fwd = [&] { L.be.gaussian_attention_forward(out.act(), r.C, z.get(), q, q + r.C, 2 * r.C, v.act(), r.C, r.B, r.T, r.H, r.D, mask, L.score); };
  fwd();  // the backward reads the forward's z
  const std::string name = std::string("gaussian_attention_") + to_string(mask);
  L.run({
      // q, k 2*N*C*a + v N*C*a; out N*C*a + z B*H*T*f
      {name + "_forward", 4 * NC * L.a + BHT * kF, 5.0 * r.D * L.pairs, Bound::compute, fwd},
      // dout N*C*a + z B*H*T*f + q, k, v 3*N*C*a; dq, dk, dv 3*N*C*a
      {name + "_backward", 7 * NC * L.a + BHT * kF, 11.0 * r.D * L.pairs, Bound::compute,
       [&] {
         L.be.gaussian_attention_backward(dq, dq + r.C, 2 * r.C, dv.act(), r.C, dout.act(), r.C, z.get(), q, q + r.C,
                                          v.act(), r.B, r.T, r.H, r.D, mask, L.score, kSet);
       }},
  });
}

// The model's Pauli strings of block 0 (draw_pauli_strings), packed and uploaded: [H*D].
Buffer<PauliTerm> pauli_terms(Lab& L, const ModelConfig& m) {
  const auto terms = pack_paulis(
      draw_pauli_strings(L.o.seed, 0, m.n_head, m.head_dim(), m.n_qubits(), m.pauli_identity_prob), m.n_qubits());
  Buffer<PauliTerm> b(L.be, terms.size());
  L.be.upload(b.get(), terms.data(), terms.size() * sizeof(PauliTerm));
  return b;
}

// Pauli value layer, per head (model.qisa_value: per_head): u [N, H*C] fp32, v [N, C].
// FLOPs (flops.h): H*D strings x 2^n amplitudes x 3 per row, forward; backward the same count
// (du_b += c_j * sign * u_{b^f}: 3 per string and amplitude).
void lab_pauli(Lab& L, const ModelConfig& m) {
  const auto& r = L.r;
  const int HC = r.H * r.C;
  const double n = static_cast<double>(r.N), HD = double(r.H) * r.D;
  auto terms = pauli_terms(L, m);
  auto u = L.floats(r.N * HC), du = L.floats(r.N * HC);
  Operand v = L.acts(r.N * r.C), dv = L.acts(r.N * r.C);
  const double flops = n * HD * std::ldexp(1.0, r.n_qubits) * 3;
  L.run({
      // u N*H*C*f + terms H*D*PT; v N*H*D*a
      {"pauli_value_forward", n * HC * kF + HD * kPT + n * HD * L.a, flops, Bound::compute,
       [&] { L.be.pauli_value_forward(v.act(), r.C, u.get(), HC, terms.get(), r.N, r.H, r.D, r.C, r.n_qubits); }},
      // dv N*H*D*a + u N*H*C*f + terms H*D*PT; du N*H*C*f
      {"pauli_value_backward", n * HD * L.a + 2 * n * HC * kF + HD * kPT, flops, Bound::compute,
       [&] {
         L.be.pauli_value_backward(du.get(), HC, dv.act(), r.C, u.get(), terms.get(), r.N, r.H, r.D, r.C, r.n_qubits,
                                   kSet);
       }},
  });
}

// QISA-A circuit (only for qisa_a models). FLOPs (flops.h): per row, H x (3n rotations x 6 x 2^n
// + D strings x 2^n x 5) + 3C for the encoding; backward counted as 2 x forward (flops.h's
// convention), not a count of the adjoint kernel's operations.
void lab_qisa_a(Lab& L, const ModelConfig& m) {
  const auto& r = L.r;
  const double n = static_cast<double>(r.N), NC = n * r.C, amps = std::ldexp(1.0, r.n_qubits);
  const double angles = 3.0 * r.H * r.n_qubits, HD = double(r.H) * r.D;
  auto terms = pauli_terms(L, m);
  auto rx = L.floats(int64_t{r.H} * r.n_qubits, -3.14, 3.14), ry = L.floats(int64_t{r.H} * r.n_qubits, -3.14, 3.14),
       ry2 = L.floats(int64_t{r.H} * r.n_qubits, -3.14, 3.14);
  auto drx = L.floats(int64_t{r.H} * r.n_qubits), dry = L.floats(int64_t{r.H} * r.n_qubits),
       dry2 = L.floats(int64_t{r.H} * r.n_qubits);
  Operand x = L.acts(r.N * r.C), v = L.acts(r.N * r.C), dv = L.acts(r.N * r.C), dx = L.acts(r.N * r.C);
  const double flops = n * (r.H * (3.0 * r.n_qubits * 6 * amps + r.D * amps * 5) + 3.0 * r.C);
  L.run({
      // x N*C*a + rx, ry, ry2 3*H*n*f + terms H*D*PT; v N*H*D*a
      {"qisa_a_forward", NC * L.a + angles * kF + HD * kPT + n * HD * L.a, flops, Bound::compute,
       [&] {
         L.be.qisa_a_forward(v.act(), r.C, x.act(), r.C, rx.get(), ry.get(), ry2.get(), terms.get(), r.N, r.H, r.D, r.C,
                             r.n_qubits);
       }},
      // dv N*H*D*a + x N*C*a + angles 3*H*n*f + terms H*D*PT; dx N*C*a + dangles 3*H*n*f
      {"qisa_a_backward", n * HD * L.a + 2 * NC * L.a + 2 * angles * kF + HD * kPT, 2 * flops, Bound::compute,
       [&] {
         L.be.qisa_a_backward(dx.act(), r.C, drx.get(), dry.get(), dry2.get(), dv.act(), r.C, x.act(), rx.get(),
                              ry.get(), ry2.get(), terms.get(), r.N, r.H, r.D, r.C, r.n_qubits, kSet, kSet);
       }},
  });
}

void lab_cross_entropy(Lab& L) {
  const auto& r = L.r;
  const double NV = static_cast<double>(r.N) * r.V;
  Operand logits = L.acts(r.N * r.V, -4, 4), dlogits = L.acts(r.N * r.V);
  auto targets = L.ids(r.N, r.V);
  auto losses = L.floats(r.N);
  const int V = static_cast<int>(r.V);
  const float scale = 1.0f / static_cast<float>(r.N);
  L.run({
      // logits N*V*a + targets N*i; losses N*f
      {"cross_entropy_forward", NV * L.a + r.N * kI + r.N * kF, 0, Bound::memory,
       [&] { L.be.cross_entropy_forward(losses.get(), logits.act(), targets.get(), r.N, V); }},
      // logits N*V*a + targets N*i; dlogits N*V*a (a separate buffer; in place moves the same)
      {"cross_entropy_backward", 2 * NV * L.a + r.N * kI, 0, Bound::memory,
       [&] { L.be.cross_entropy_backward(dlogits.act(), logits.act(), targets.get(), r.N, V, scale); }},
  });
}

// Over the model's P = ParamTable(m).total() parameters.
void lab_optimizer(Lab& L) {
  const int64_t P = L.r.params;
  auto params = L.floats(P, -0.1, 0.1), grads = L.floats(P, -0.01, 0.01);
  Buffer<float> m(L.be, static_cast<size_t>(P)), v(L.be, static_cast<size_t>(P));
  L.be.zero(m.get(), m.bytes());
  L.be.zero(v.get(), v.bytes());
  const AdamWHyper h{1e-4f, 0.9f, 0.999f, 1e-8f, 0.01f, 1, 1.0f};
  double sink = 0;
  L.run({
      // params, grads, m, v 4*P*f; params, m, v 3*P*f
      {"adamw_update", 7.0 * P * kF, 0, Bound::memory,
       [&] { L.be.adamw_update(params.get(), grads.get(), m.get(), v.get(), P, h); }},
      // x P*f (the double result is not counted)
      {"sum_squares", 1.0 * P * kF, 0, Bound::memory, [&] { sink += L.be.sum_squares(grads.get(), P); }},
  });
  QISA_CHECK(std::isfinite(sink), "kernel lab: sum_squares returned " + std::to_string(sink),
             "the backend's sum_squares or its uploaded values are broken");
}

void check_inputs(const ModelConfig& m, int64_t B, const KernelLabOptions& o) {
  QISA_CHECK(B >= 1 && B * m.block_size <= INT32_MAX, "kernel lab: batch " + std::to_string(B) + " sequences",
             "B >= 1 and B * block_size < 2^31");
  QISA_CHECK(m.vocab_size >= 1 && m.vocab_size <= INT32_MAX, "kernel lab: vocab_size " + std::to_string(m.vocab_size),
             "set the model's vocab_size (the corpus's) first");
  QISA_CHECK(m.n_head >= 1 && m.n_embd % m.n_head == 0,
             "kernel lab: n_embd " + std::to_string(m.n_embd) + " over n_head " + std::to_string(m.n_head),
             "n_head must divide n_embd");
  QISA_CHECK(o.reps >= 1 && o.warmup >= 0, "kernel lab: reps " + std::to_string(o.reps) + ", warmup " + std::to_string(o.warmup),
             "reps >= 1 and warmup >= 0");
  QISA_CHECK(o.gemm_size >= 1 && o.gemm_size <= 65536, "kernel lab: gemm_size " + std::to_string(o.gemm_size),
             "1 to 65536");
  QISA_CHECK(o.copy_bytes >= 1, "kernel lab: copy_bytes " + std::to_string(o.copy_bytes), "at least 1 byte");
}

}  // namespace

KernelLabReport run_kernel_lab(Backend& be, const ModelConfig& m, int64_t B, DType act, const KernelLabOptions& o) {
  check_inputs(m, B, o);
  Lab L(be, m, B, act, o);
  measure_ceilings(L);
  lab_embedding(L);
  lab_layernorm(L);
  lab_linear(L, "qkv", m.n_embd, 3 * m.n_embd, false);
  lab_linear(L, "mlp_fc", m.n_embd, 4 * m.n_embd, true);
  lab_elementwise(L);
  lab_csa(L);
  lab_gaussian(L, AttnMask::causal);
  lab_gaussian(L, AttnMask::reference);
  lab_pauli(L, m);
  if (m.attention == AttentionKind::qisa_a) lab_qisa_a(L, m);
  lab_cross_entropy(L);
  lab_optimizer(L);
  return std::move(L.r);
}

}  // namespace qisa
