// DoubleOps: the double instantiations of the qisa::cpu templates behind the Backend's method
// names, so that one test scenario can drive the float CpuBackend and the float64 reference.
#pragma once
#include <cstdint>

#include "kernels/backend.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/adamw.h"
#include "kernels/cpu/attention_csa.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/dropout.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/gaussian_attention.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/pauli_value.h"
#include "kernels/cpu/qisa_a.h"
#include "kernels/cpu/reductions.h"

namespace qisa::test {

struct DoubleOps {
  using GradMode = qisa::GradMode;
  qisa::cpu::Workspace ws;
  void embedding_forward(double* o, const int32_t* i, const double* t, const double* p, int64_t B, int T, int C) {
    qisa::cpu::embedding_forward(o, i, t, p, B, T, C);
  }
  void embedding_backward(double* dt, double* dp, const double* g, const int32_t* i, int64_t B, int T, int C, int V,
                          GradMode m1) {
    qisa::cpu::embedding_backward(dt, dp, g, i, B, T, C, V, m1);
  }
  void layernorm_forward(double* o, double* m, double* r, const double* x, const double* w, const double* b, int64_t N,
                         int C) {
    qisa::cpu::layernorm_forward(o, m, r, x, w, b, N, C);
  }
  void layernorm_backward(double* dx, double* dw, double* db, const double* g, const double* x, const double* w,
                          const double* m, const double* r, int64_t N, int C, GradMode m1, GradMode m2) {
    qisa::cpu::layernorm_backward(dx, dw, db, g, x, w, m, r, N, C, ws, m1, m2);
  }
  void linear_forward(double* o, const double* x, const double* w, const double* b, int64_t N, int IC, int OC) {
    qisa::cpu::linear_forward(o, x, w, b, N, IC, OC);
  }
  void linear_backward(double* dx, double* dw, double* db, const double* g, const double* x, const double* w, int64_t N,
                       int IC, int OC, GradMode m1, GradMode m2) {
    qisa::cpu::linear_backward(dx, dw, db, g, x, w, N, IC, OC, ws, m1, m2);
  }
  void activation_forward(double* o, const double* x, int64_t n, Activation a) {
    qisa::cpu::activation_forward(o, x, n, a);
  }
  void activation_backward(double* dx, const double* g, const double* x, int64_t n, Activation a, GradMode m1) {
    qisa::cpu::activation_backward(dx, g, x, n, a, m1);
  }
  void dropout_add_forward(double* o, const double* x, const double* y, int64_t n, const Dropout& d) {
    qisa::cpu::dropout_add_forward(o, x, y, n, d);
  }
  void dropout_add_backward(double* dx, double* dy, const double* g, int64_t n, const Dropout& d, GradMode m1) {
    qisa::cpu::dropout_add_backward(dx, dy, g, n, d, m1);
  }
  void csa_forward(double* o, int ldo, double* att, const double* q, const double* k, const double* v, int ld,
                   int64_t B, int T, int H, int D, double s, const Dropout& d) {
    qisa::cpu::csa_forward(o, ldo, att, q, k, v, ld, B, T, H, D, s, d, ws);
  }
  void csa_backward(double* dq, double* dk, double* dv, const double* g, int ldo, const double* att, const double* q,
                    const double* k, const double* v, int ld, int64_t B, int T, int H, int D, double s,
                    const Dropout& d, GradMode m1) {
    qisa::cpu::csa_backward(dq, dk, dv, g, ldo, att, q, k, v, ld, B, T, H, D, s, d, ws, m1);
  }
  void gaussian_attention_forward(double* o, int ldo, double* att, const double* q, const double* k, int ldqk,
                                  const double* v, int ldv, int64_t B, int T, int H, int D, AttnMask m,
                                  qisa::AttnScore sc) {
    qisa::cpu::gaussian_attention_forward(o, ldo, att, q, k, ldqk, v, ldv, B, T, H, D, m, sc, ws);
  }
  void gaussian_attention_backward(double* dq, double* dk, int ldqk, double* dv, int ldv, const double* g, int ldo,
                                   const double* att, const double* q, const double* k, const double* v, int64_t B,
                                   int T, int H, int D, AttnMask m, qisa::AttnScore sc, GradMode m1) {
    qisa::cpu::gaussian_attention_backward(dq, dk, ldqk, dv, ldv, g, ldo, att, q, k, v, B, T, H, D, m, sc, ws, m1);
  }
  void pauli_value_forward(double* v, int ldv, const double* u, int ldu, const PauliTerm* t, int64_t N, int H, int D,
                           int C, int n) {
    qisa::cpu::pauli_value_forward(v, ldv, u, ldu, t, N, H, D, C, n, ws);
  }
  void pauli_value_backward(double* du, int ldu, const double* dv, int ldv, const double* u, const PauliTerm* t,
                            int64_t N, int H, int D, int C, int n, GradMode m1) {
    qisa::cpu::pauli_value_backward(du, ldu, dv, ldv, u, t, N, H, D, C, n, ws, m1);
  }
  void qisa_a_forward(double* v, int ldv, const double* x, int ldx, const double* rx, const double* ry,
                      const double* ry2, const PauliTerm* t, int64_t N, int H, int D, int C, int n) {
    qisa::cpu::qisa_a_forward(v, ldv, x, ldx, rx, ry, ry2, t, N, H, D, C, n, ws);
  }
  void qisa_a_backward(double* dx, int ldx, double* drx, double* dry, double* dry2, const double* dv, int ldv,
                       const double* x, const double* rx, const double* ry, const double* ry2, const PauliTerm* t,
                       int64_t N, int H, int D, int C, int n, GradMode m1, GradMode m2) {
    qisa::cpu::qisa_a_backward(dx, ldx, drx, dry, dry2, dv, ldv, x, rx, ry, ry2, t, N, H, D, C, n, ws, m1, m2);
  }
  void cross_entropy_forward(double* l, const double* x, const int32_t* t, int64_t N, int V) {
    qisa::cpu::cross_entropy_forward(l, x, t, N, V);
  }
  void cross_entropy_backward(double* d, const double* x, const int32_t* t, int64_t N, int V, double s) {
    qisa::cpu::cross_entropy_backward(d, x, t, N, V, s);
  }
  void adamw_update(double* p, const double* g, double* m, double* v, int64_t n, const qisa::AdamWHyper& h) {
    qisa::cpu::adamw_update(p, g, m, v, n, h);
  }
  double sum_squares(const double* x, int64_t n) { return qisa::cpu::sum_squares(x, n, ws); }
  void scale(double* x, double a, int64_t n) { qisa::cpu::scale(x, a, n); }
};

}  // namespace qisa::test
