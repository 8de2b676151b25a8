// GradMode (kernels/backend.h): every backward op of the CPU backend in both modes, on random
// inputs with odd sizes (fresh seed). For each op and each choice of modes (input gradients,
// parameter gradients):
//  - overwrite: the gradient, pre-filled with NaN, equals exactly what accumulate adds to zeros
//    (so overwrite never reads the old contents and writes every element the op owns);
//  - accumulate: the gradient, pre-filled with random values P, becomes P + that value;
//  - elements outside the op's columns (strided operands) keep their old bits in both modes.
// This is what lets the trainer drop every zeroing pass: the first micro-batch overwrites.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/pauli.h"
#include "test_util.h"

namespace qisa {
namespace {

constexpr GradMode kSet = GradMode::overwrite, kAdd = GradMode::accumulate;

// One gradient output of an op: n floats; with ld > 0 only columns [0, cols) of each row of ld
// belong to the op. param: a parameter gradient (param mode), else an input gradient.
struct GradOut {
  size_t n;
  bool param = false;
  int64_t ld = 0;
  int64_t cols = 0;
  bool owned(size_t i) const { return ld == 0 || static_cast<int64_t>(i % static_cast<size_t>(ld)) < cols; }
};

struct GradCase {
  std::string name;
  std::vector<GradOut> outs;
  // Runs the op into outs[k] with the given modes (inputs are captured by the closure).
  std::function<void(Backend&, std::vector<std::vector<float>>&, GradMode input, GradMode param)> run;
};

class Inputs {
 public:
  explicit Inputs(uint64_t seed) : rng_(seed) {}
  std::vector<float> get(size_t n, double lo = -1, double hi = 1) { return test::random_vector<float>(rng_, n, lo, hi); }
  std::vector<int32_t> ids(size_t n, int V) {
    std::vector<int32_t> x(n);
    for (auto& i : x) i = static_cast<int32_t>(rng_() % static_cast<uint64_t>(V));
    return x;
  }
  std::vector<PauliTerm> terms(int count, int n) {
    static const char kL[] = "IXYZ";
    std::vector<PauliTerm> t;
    for (int i = 0; i < count; ++i) {
      std::string s(static_cast<size_t>(n), 'I');
      for (auto& c : s) c = kL[rng_() % 4];
      if (i % 2) s[0] = 'Y';
      t.push_back(pack_pauli(s));
    }
    return t;
  }

 private:
  std::mt19937_64 rng_;
};

std::vector<GradCase> all_cases(Inputs& in) {
  std::vector<GradCase> c;
  {  // embedding: T < the position table's rows, V > every id used
    const int64_t B = 3;
    const int T = 5, C = 7, V = 11;
    auto idx = in.ids(B * T, V - 2);
    auto g = in.get(B * T * C);
    c.push_back({"embedding", {{size_t(V) * C, true}, {size_t(T) * C, true}},
                 [=](Backend& be, auto& o, GradMode, GradMode p) {
                   be.embedding_backward(o[0].data(), o[1].data(), g.data(), idx.data(), B, T, C, V, p);
                 }});
  }
  for (int C : {13, 32}) {  // layernorm: plain loop and the register path (whole packs)
    const int64_t N = 300;
    auto x = in.get(N * C), g = in.get(N * C), w = in.get(C), b = in.get(C);
    std::vector<float> mean(N), rstd(N), y(N * C);
    auto be = make_cpu_backend(1);
    be->layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
    c.push_back({"layernorm C=" + std::to_string(C), {{size_t(N) * C}, {size_t(C), true}, {size_t(C), true}},
                 [=](Backend& be, auto& o, GradMode i, GradMode p) {
                   be.layernorm_backward(o[0].data(), o[1].data(), o[2].data(), g.data(), x.data(), w.data(),
                                         mean.data(), rstd.data(), N, C, i, p);
                 }});
  }
  for (auto shape : {std::pair{13, 29}, std::pair{150, 140}}) {  // narrow kernel; OpenBLAS
    const int IC = shape.first, OC = shape.second;
    const int64_t N = 37;
    auto x = in.get(N * IC), w = in.get(size_t(OC) * IC), g = in.get(N * OC);
    c.push_back({"linear " + std::to_string(IC) + "x" + std::to_string(OC),
                 {{size_t(N) * IC}, {size_t(OC) * IC, true}, {size_t(OC), true}},
                 [=](Backend& be, auto& o, GradMode i, GradMode p) {
                   be.linear_backward(o[0].data(), o[1].data(), o[2].data(), g.data(), x.data(), w.data(), N, IC, OC,
                                      i, p);
                 }});
  }
  for (Activation a : {Activation::relu, Activation::gelu}) {
    const int64_t n = 1001;
    auto x = in.get(n, -3, 3), g = in.get(n);
    c.push_back({a == Activation::relu ? "relu" : "gelu", {{size_t(n)}}, [=](Backend& be, auto& o, GradMode i, GradMode) {
                   be.activation_backward(o[0].data(), g.data(), x.data(), n, a, i);
                 }});
  }
  for (float pdrop : {0.0f, 0.3f}) {
    const int64_t n = 777;
    auto g = in.get(n);
    Dropout d;
    d.p = pdrop, d.seed = 3, d.step = 2, d.site = 1, d.elem_offset = 5;
    c.push_back({"dropout_add p=" + std::to_string(pdrop), {{size_t(n)}, {size_t(n)}},
                 [=](Backend& be, auto& o, GradMode i, GradMode) {
                   be.dropout_add_backward(o[0].data(), o[1].data(), g.data(), n, d, i);
                 }});
  }
  {  // csa: strided q|k|v with a spare column; dropout on
    const int64_t B = 2;
    const int T = 19, H = 3, D = 5, HD = H * D, ld = 3 * HD + 1, ldo = HD + 2;
    Dropout d;
    d.p = 0.1f, d.seed = 9, d.step = 1, d.site = 0, d.elem_offset = 0;
    auto qkv = in.get(B * T * ld, -2, 2), g = in.get(B * T * ldo);
    std::vector<float> o(B * T * ldo, 0.0f), lse(B * H * T);
    auto be = make_cpu_backend(1);
    be->csa_forward(o.data(), ldo, lse.data(), qkv.data(), qkv.data() + HD, qkv.data() + 2 * HD, ld, B, T, H, D, 0.4f, d);
    c.push_back({"csa", {{size_t(B * T * ld), false, ld, 3 * HD}}, [=](Backend& be, auto& out, GradMode i, GradMode) {
                   float* dq = out[0].data();
                   be.csa_backward(dq, dq + HD, dq + 2 * HD, g.data(), ldo, lse.data(), qkv.data(), qkv.data() + HD,
                                   qkv.data() + 2 * HD, ld, B, T, H, D, 0.4f, d, i);
                 }});
  }
  for (AttnMask mask : {AttnMask::causal, AttnMask::reference}) {
    const int64_t B = 2;
    const int T = 17, H = 2, D = 9, HD = H * D, ldqk = 2 * HD + 1, ldv = HD + 3, ldo = HD + 2;
    auto qk = in.get(B * T * ldqk, -0.3, 0.3), v = in.get(B * T * ldv), g = in.get(B * T * ldo);
    std::vector<float> o(B * T * ldo, 0.0f), z(B * H * T);
    auto be = make_cpu_backend(1);
    be->gaussian_attention_forward(o.data(), ldo, z.data(), qk.data(), qk.data() + HD, ldqk, v.data(), ldv, B, T, H, D,
                                   mask, qisa::AttnScore{});
    c.push_back({mask == AttnMask::causal ? "gaussian causal" : "gaussian reference",
                 {{size_t(B * T * ldqk), false, ldqk, 2 * HD}, {size_t(B * T * ldv), false, ldv, HD}},
                 [=](Backend& be, auto& out, GradMode i, GradMode) {
                   be.gaussian_attention_backward(out[0].data(), out[0].data() + HD, ldqk, out[1].data(), ldv,
                                                  g.data(), ldo, z.data(), qk.data(), qk.data() + HD, v.data(), B, T,
                                                  H, D, mask, qisa::AttnScore{}, i);
                 }});
  }
  {  // Pauli value: N not a multiple of the kernel's row tile, strided u
    const int64_t N = 45;
    const int H = 2, D = 5, C = 11, n = 4, ldu = H * C + 1, ldv = H * D + 1;
    auto terms = in.terms(H * D, n);
    auto u = in.get(N * ldu), g = in.get(N * ldv);
    c.push_back({"pauli_value", {{size_t(N * ldu), false, ldu, H * C}}, [=](Backend& be, auto& o, GradMode i, GradMode) {
                   be.pauli_value_backward(o[0].data(), ldu, g.data(), ldv, u.data(), terms.data(), N, H, D, C, n, i);
                 }});
  }
  {  // QISA-A
    const int64_t N = 45;
    const int H = 2, D = 5, C = 11, n = 4, ldx = C + 2, ldv = H * D + 1;
    auto terms = in.terms(H * D, n);
    auto x = in.get(N * ldx), g = in.get(N * ldv);
    auto rx = in.get(H * n, -3, 3), ry = in.get(H * n, -3, 3), ry2 = in.get(H * n, -3, 3);
    const size_t na = size_t(H) * n;
    c.push_back({"qisa_a", {{size_t(N * ldx), false, ldx, C}, {na, true}, {na, true}, {na, true}},
                 [=](Backend& be, auto& o, GradMode i, GradMode p) {
                   be.qisa_a_backward(o[0].data(), ldx, o[1].data(), o[2].data(), o[3].data(), g.data(), ldv, x.data(),
                                      rx.data(), ry.data(), ry2.data(), terms.data(), N, H, D, C, n, i, p);
                 }});
  }
  return c;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

TEST(GradMode, EveryBackwardOpOverwritesOrAccumulatesAsTold) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("QISA_TEST_SEED=" + std::to_string(seed));
  Inputs in(seed);
  std::mt19937_64 rng(seed + 1);
  auto be = make_cpu_backend(2);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const GradCase& gc : all_cases(in)) {
    SCOPED_TRACE(gc.name);
    // R: what the op adds, from zeros
    std::vector<std::vector<float>> ref;
    for (const GradOut& g : gc.outs) ref.emplace_back(g.n, 0.0f);
    gc.run(*be, ref, kAdd, kAdd);
    double mag = 0;
    for (const auto& r : ref)
      for (float v : r) mag = std::max(mag, std::fabs(static_cast<double>(v)));
    ASSERT_GT(mag, 0.0) << "the case computes nothing";
    for (GradMode im : {kSet, kAdd})
      for (GradMode pm : {kSet, kAdd}) {
        SCOPED_TRACE(std::string("input ") + (im == kSet ? "overwrite" : "accumulate") + ", params " +
                     (pm == kSet ? "overwrite" : "accumulate"));
        std::vector<std::vector<float>> before, out;
        for (const GradOut& g : gc.outs) {
          const bool set = (g.param ? pm : im) == kSet;
          before.push_back(set ? std::vector<float>(g.n, nan) : test::random_vector<float>(rng, g.n));
        }
        out = before;
        gc.run(*be, out, im, pm);
        for (size_t k = 0; k < gc.outs.size(); ++k) {
          const GradOut& g = gc.outs[k];
          const bool set = (g.param ? pm : im) == kSet;
          size_t bad = 0;
          for (size_t e = 0; e < g.n && bad < 3; ++e) {
            const float got = out[k][e];
            if (!g.owned(e)) {
              if (!same_bits(got, before[k][e])) ++bad, ADD_FAILURE() << "output " << k << "[" << e << "] is not the op's, but changed";
            } else if (set) {
              if (!(got == ref[k][e])) ++bad, ADD_FAILURE() << "output " << k << "[" << e << "] = " << got << ", want " << ref[k][e];
            } else {
              const double want = static_cast<double>(before[k][e]) + ref[k][e];
              if (!(std::fabs(got - want) <= 1e-6 + 1e-5 * std::fabs(want)))
                ++bad, ADD_FAILURE() << "output " << k << "[" << e << "] = " << got << ", want old + new = " << want;
            }
          }
        }
      }
  }
}

// Linear with no rows: the sums over rows are empty, so an overwritten weight gradient is 0
// (and an accumulated one unchanged).
TEST(GradMode, LinearWithNoRowsOverwritesParameterGradientsWithZero) {
  auto be = make_cpu_backend(1);
  std::vector<float> w(6, 1.0f), dw(6, std::numeric_limits<float>::quiet_NaN()), db(3, 5.0f);
  be->linear_backward(nullptr, dw.data(), db.data(), nullptr, nullptr, w.data(), 0, 2, 3, kSet, kSet);
  for (float v : dw) EXPECT_EQ(v, 0.0f);
  for (float v : db) EXPECT_EQ(v, 0.0f);
  std::vector<float> dw2(6, 2.0f);
  be->linear_backward(nullptr, dw2.data(), nullptr, nullptr, nullptr, w.data(), 0, 2, 3, kAdd, kAdd);
  for (float v : dw2) EXPECT_EQ(v, 2.0f);
}

// sum_to (the device-side loss sum): the index-order double sum, stored or added.
TEST(SumTo, StoresOrAddsTheIndexOrderSumInDouble) {
  std::mt19937_64 rng(test::fresh_seed());
  auto be = make_cpu_backend(2);
  const auto x = test::random_vector<float>(rng, 1001, 0, 5);
  double want = 0;
  for (float v : x) want += static_cast<double>(v);
  double acc = std::numeric_limits<double>::quiet_NaN();
  be->sum_to(&acc, x.data(), static_cast<int64_t>(x.size()), kSet);
  EXPECT_EQ(acc, want);
  be->sum_to(&acc, x.data(), static_cast<int64_t>(x.size()), kAdd);
  double twice = want;
  for (float v : x) twice += static_cast<double>(v);
  EXPECT_EQ(acc, twice);
  be->sum_to(&acc, x.data(), 0, kSet);
  EXPECT_EQ(acc, 0.0);
}

}  // namespace
}  // namespace qisa
