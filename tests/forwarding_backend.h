// ForwardingBackend: a Backend that hands every call to another one (the CPU backend unless
// given). Tests derive from it and override the calls they count or check, e.g. the bytes a
// model allocates (test_trainer_plan.cpp) or the host synchronisations of a step.
#pragma once
#include <memory>
#include <string>

#include "kernels/backend.h"

namespace qisa::test {

class ForwardingBackend : public Backend {
 public:
  explicit ForwardingBackend(std::unique_ptr<Backend> inner = make_cpu_backend(1)) : be_(std::move(inner)) {}

  std::string name() const override { return be_->name(); }
  std::string device_model() const override { return be_->device_model(); }
  int threads() const override { return be_->threads(); }
  void* alloc(size_t bytes) override { return be_->alloc(bytes); }
  void release(void* p) noexcept override { be_->release(p); }
  void upload(void* d, const void* s, size_t n) override { be_->upload(d, s, n); }
  void download(void* d, const void* s, size_t n) override { be_->download(d, s, n); }
  void copy(void* d, const void* s, size_t n) override { be_->copy(d, s, n); }
  void zero(void* d, size_t n) override { be_->zero(d, n); }
  void synchronize() override { be_->synchronize(); }
  void sum_to(double* acc, const float* x, int64_t n, GradMode mode) override { be_->sum_to(acc, x, n, mode); }
  std::unique_ptr<Event> make_event() override { return be_->make_event(); }
  void record(Event& e) override { be_->record(e); }
  void embedding_forward(float* o, const int32_t* i, const float* t, const float* p, int64_t B, int T, int C) override {
    be_->embedding_forward(o, i, t, p, B, T, C);
  }
  void embedding_backward(float* dt, float* dp, const float* g, const int32_t* i, int64_t B, int T, int C, int V, GradMode m1) override {
    be_->embedding_backward(dt, dp, g, i, B, T, C, V, m1);
  }
  void layernorm_forward(float* o, float* m, float* r, const float* i, const float* w, const float* b, int64_t N,
                         int C) override {
    be_->layernorm_forward(o, m, r, i, w, b, N, C);
  }
  void layernorm_backward(float* di, float* dw, float* db, const float* g, const float* i, const float* w,
                          const float* m, const float* r, int64_t N, int C, GradMode m1, GradMode m2) override {
    be_->layernorm_backward(di, dw, db, g, i, w, m, r, N, C, m1, m2);
  }
  void linear_forward(float* o, const float* i, const float* w, const float* b, int64_t N, int IC, int OC) override {
    be_->linear_forward(o, i, w, b, N, IC, OC);
  }
  void linear_backward(float* di, float* dw, float* db, const float* g, const float* i, const float* w, int64_t N,
                       int IC, int OC, GradMode m1, GradMode m2) override {
    be_->linear_backward(di, dw, db, g, i, w, N, IC, OC, m1, m2);
  }
  void activation_forward(float* o, const float* i, int64_t n, Activation a) override { be_->activation_forward(o, i, n, a); }
  void activation_backward(float* di, const float* g, const float* i, int64_t n, Activation a, GradMode m1) override {
    be_->activation_backward(di, g, i, n, a, m1);
  }
  void dropout_add_forward(float* o, const float* x, const float* y, int64_t n, const Dropout& d) override {
    be_->dropout_add_forward(o, x, y, n, d);
  }
  void dropout_add_backward(float* dx, float* dy, const float* g, int64_t n, const Dropout& d, GradMode m1) override {
    be_->dropout_add_backward(dx, dy, g, n, d, m1);
  }
  void csa_forward(float* o, int lo, float* att, const float* q, const float* k, const float* v, int li, int64_t B,
                   int T, int H, int D, float s, const Dropout& d) override {
    be_->csa_forward(o, lo, att, q, k, v, li, B, T, H, D, s, d);
  }
  void csa_backward(float* dq, float* dk, float* dv, const float* g, int lo, const float* att, const float* q,
                    const float* k, const float* v, int li, int64_t B, int T, int H, int D, float s,
                    const Dropout& d, GradMode m1) override {
    be_->csa_backward(dq, dk, dv, g, lo, att, q, k, v, li, B, T, H, D, s, d, m1);
  }
  void gaussian_attention_forward(float* o, int lo, float* att, const float* q, const float* k, int lqk, const float* v,
                                  int lv, int64_t B, int T, int H, int D, AttnMask m) override {
    be_->gaussian_attention_forward(o, lo, att, q, k, lqk, v, lv, B, T, H, D, m);
  }
  void gaussian_attention_backward(float* dq, float* dk, int lqk, float* dv, int lv, const float* g, int lo,
                                   const float* att, const float* q, const float* k, const float* v, int64_t B, int T,
                                   int H, int D, AttnMask m, GradMode m1) override {
    be_->gaussian_attention_backward(dq, dk, lqk, dv, lv, g, lo, att, q, k, v, B, T, H, D, m, m1);
  }
  void pauli_value_forward(float* v, int lv, const float* u, int lu, const PauliTerm* t, int64_t N, int H, int D, int C,
                           int n) override {
    be_->pauli_value_forward(v, lv, u, lu, t, N, H, D, C, n);
  }
  void pauli_value_backward(float* du, int lu, const float* dv, int lv, const float* u, const PauliTerm* t, int64_t N,
                            int H, int D, int C, int n, GradMode m1) override {
    be_->pauli_value_backward(du, lu, dv, lv, u, t, N, H, D, C, n, m1);
  }
  void qisa_a_forward(float* v, int lv, const float* x, int lx, const float* rx, const float* ry, const float* ry2,
                      const PauliTerm* t, int64_t N, int H, int D, int C, int n) override {
    be_->qisa_a_forward(v, lv, x, lx, rx, ry, ry2, t, N, H, D, C, n);
  }
  void qisa_a_backward(float* dx, int lx, float* drx, float* dry, float* dry2, const float* dv, int lv, const float* x,
                       const float* rx, const float* ry, const float* ry2, const PauliTerm* t, int64_t N, int H, int D,
                       int C, int n, GradMode m1, GradMode m2) override {
    be_->qisa_a_backward(dx, lx, drx, dry, dry2, dv, lv, x, rx, ry, ry2, t, N, H, D, C, n, m1, m2);
  }
  void cross_entropy_forward(float* l, const float* g, const int32_t* t, int64_t N, int V) override {
    be_->cross_entropy_forward(l, g, t, N, V);
  }
  void cross_entropy_backward(float* d, const float* g, const int32_t* t, int64_t N, int V, float s) override {
    be_->cross_entropy_backward(d, g, t, N, V, s);
  }
  void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, const AdamWHyper& h) override {
    be_->adamw_update(p, g, m, v, n, h);
  }
  double sum_squares(const float* x, int64_t n) override { return be_->sum_squares(x, n); }
  void scale(float* x, float a, int64_t n) override { be_->scale(x, a, n); }

 protected:
  std::unique_ptr<Backend> be_;
};

}  // namespace qisa::test
