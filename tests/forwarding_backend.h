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
  std::unique_ptr<SideStream> make_side_stream() override { return be_->make_side_stream(); }
  bool host_addressable() const override { return be_->host_addressable(); }
  void embedding_forward(Act o, const int32_t* i, const float* t, const float* p, int64_t B, int T, int C) override {
    be_->embedding_forward(o, i, t, p, B, T, C);
  }
  void embedding_backward(float* dt, float* dp, CAct g, const int32_t* i, int64_t B, int T, int C, int V, GradMode m1) override {
    be_->embedding_backward(dt, dp, g, i, B, T, C, V, m1);
  }
  void layernorm_forward(Act o, float* m, float* r, CAct i, const float* w, const float* b, int64_t N, int C) override {
    be_->layernorm_forward(o, m, r, i, w, b, N, C);
  }
  void layernorm_backward(Act di, float* dw, float* db, CAct g, CAct i, const float* w, const float* m, const float* r,
                          int64_t N, int C, GradMode m1, GradMode m2) override {
    be_->layernorm_backward(di, dw, db, g, i, w, m, r, N, C, m1, m2);
  }
  void linear_forward(Act o, CAct i, CAct w, const float* b, int64_t N, int IC, int OC) override {
    be_->linear_forward(o, i, w, b, N, IC, OC);
  }
  void linear_backward(Act di, float* dw, float* db, CAct g, CAct i, CAct w, int64_t N, int IC, int OC, GradMode m1,
                       GradMode m2) override {
    be_->linear_backward(di, dw, db, g, i, w, N, IC, OC, m1, m2);
  }
  void activation_forward(Act o, CAct i, int64_t n, Activation a) override { be_->activation_forward(o, i, n, a); }
  void activation_backward(Act di, CAct g, CAct i, int64_t n, Activation a, GradMode m1) override {
    be_->activation_backward(di, g, i, n, a, m1);
  }
  void dropout_add_forward(Act o, CAct x, CAct y, int64_t n, const Dropout& d) override {
    be_->dropout_add_forward(o, x, y, n, d);
  }
  void dropout_add_backward(Act dx, Act dy, CAct g, int64_t n, const Dropout& d, GradMode m1) override {
    be_->dropout_add_backward(dx, dy, g, n, d, m1);
  }
  void csa_forward(Act o, int lo, float* att, CAct q, CAct k, CAct v, int li, int64_t B, int T, int H, int D, float s,
                   const Dropout& d) override {
    be_->csa_forward(o, lo, att, q, k, v, li, B, T, H, D, s, d);
  }
  void csa_backward(Act dq, Act dk, Act dv, CAct g, int lo, const float* att, CAct q, CAct k, CAct v, int li, int64_t B,
                    int T, int H, int D, float s, const Dropout& d, GradMode m1) override {
    be_->csa_backward(dq, dk, dv, g, lo, att, q, k, v, li, B, T, H, D, s, d, m1);
  }
  void gaussian_attention_forward(Act o, int lo, float* att, CAct q, CAct k, int lqk, CAct v, int lv, int64_t B, int T,
                                  int H, int D, AttnMask m, AttnScore sc) override {
    be_->gaussian_attention_forward(o, lo, att, q, k, lqk, v, lv, B, T, H, D, m, sc);
  }
  void gaussian_attention_backward(Act dq, Act dk, int lqk, Act dv, int lv, CAct g, int lo, const float* att, CAct q,
                                   CAct k, CAct v, int64_t B, int T, int H, int D, AttnMask m, AttnScore sc,
                                   GradMode m1) override {
    be_->gaussian_attention_backward(dq, dk, lqk, dv, lv, g, lo, att, q, k, v, B, T, H, D, m, sc, m1);
  }
  void pauli_value_forward(Act v, int lv, const float* u, int lu, const PauliTerm* t, int64_t N, int H, int D, int C,
                           int n) override {
    be_->pauli_value_forward(v, lv, u, lu, t, N, H, D, C, n);
  }
  void pauli_value_backward(float* du, int lu, CAct dv, int lv, const float* u, const PauliTerm* t, int64_t N, int H,
                            int D, int C, int n, GradMode m1) override {
    be_->pauli_value_backward(du, lu, dv, lv, u, t, N, H, D, C, n, m1);
  }
  void qisa_a_forward(Act v, int lv, CAct x, int lx, const float* rx, const float* ry, const float* ry2,
                      const PauliTerm* t, int64_t N, int H, int D, int C, int n) override {
    be_->qisa_a_forward(v, lv, x, lx, rx, ry, ry2, t, N, H, D, C, n);
  }
  void qisa_a_backward(Act dx, int lx, float* drx, float* dry, float* dry2, CAct dv, int lv, CAct x, const float* rx,
                       const float* ry, const float* ry2, const PauliTerm* t, int64_t N, int H, int D, int C, int n,
                       GradMode m1, GradMode m2) override {
    be_->qisa_a_backward(dx, lx, drx, dry, dry2, dv, lv, x, rx, ry, ry2, t, N, H, D, C, n, m1, m2);
  }
  void cross_entropy_forward(float* l, CAct g, const int32_t* t, int64_t N, int V) override {
    be_->cross_entropy_forward(l, g, t, N, V);
  }
  void cross_entropy_backward(Act d, CAct g, const int32_t* t, int64_t N, int V, float s) override {
    be_->cross_entropy_backward(d, g, t, N, V, s);
  }
  void convert(Act d, CAct s, int64_t n) override { be_->convert(d, s, n); }
  void round_bf16_stochastic(bf16* d, const float* s, int64_t n, uint64_t seed, uint32_t step, uint64_t off) override {
    be_->round_bf16_stochastic(d, s, n, seed, step, off);
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
