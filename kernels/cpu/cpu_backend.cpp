// CpuBackend: the Backend interface over the float instantiations of the qisa::cpu templates.
// Each call runs its parallel regions on exactly threads() OpenMP threads (set for the call
// and restored after it), with OpenBLAS single-threaded, and keeps its scratch in a member
// Workspace, so steady-state training allocates nothing here.
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <string>

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
#include "kernels/error.h"

namespace qisa {

namespace {

// Sets the OpenMP team size of the calling thread for one backend call.
class ThreadScope {
 public:
  explicit ThreadScope(int threads) : saved_(omp_get_max_threads()) { omp_set_num_threads(threads); }
  ~ThreadScope() { omp_set_num_threads(saved_); }
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  int saved_;
};

// Every CPU op has finished when its call returns: an event is complete as soon as it is
// recorded, so wait() and query() have nothing to wait for.
class CpuEvent final : public Event {
 public:
  void wait() override {}
  bool query() override { return true; }
};

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : threads_(threads > 0 ? threads : omp_get_max_threads()) {
    cpu::blas_single_threaded();
  }

  std::string name() const override { return "cpu"; }
  int threads() const override { return threads_; }

  // ---- memory
  void* alloc(size_t bytes) override {
    if (bytes == 0) return nullptr;
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    QISA_CHECK(p != nullptr, "cpu backend: allocating " + std::to_string(bytes) + " bytes failed",
               "reduce batch_size or model size");
    return p;
  }
  void release(void* p) noexcept override { std::free(p); }
  void upload(void* dst, const void* src, size_t bytes) override { copy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { copy(dst, src, bytes); }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes) std::memmove(dst, src, bytes);
  }
  // Large buffers (the parameter table at init): split over the threads.
  void zero(void* dst, size_t bytes) override {
    constexpr int64_t kChunk = 256 << 10;
    if (bytes <= static_cast<size_t>(kChunk) || threads_ == 1) {
      if (bytes) std::memset(dst, 0, bytes);
      return;
    }
    ThreadScope ts(threads_);
    cpu::parallel_chunks(static_cast<int64_t>(bytes), kChunk, [&](int64_t, int64_t b0, int64_t b1) {
      std::memset(static_cast<char*>(dst) + b0, 0, static_cast<size_t>(b1 - b0));
    });
  }
  void synchronize() override {}
  std::unique_ptr<Event> make_event() override { return std::make_unique<CpuEvent>(); }
  void record(Event& e) override {
    QISA_CHECK(dynamic_cast<CpuEvent*>(&e) != nullptr, "cpu backend: record() of an event made by another backend",
               "make events with the backend that records them");
  }

  // ---- ops
  void embedding_forward(float* out, const int32_t* idx, const float* tok, const float* pos, int64_t B, int T,
                         int C) override {
    ThreadScope ts(threads_);
    cpu::embedding_forward(out, idx, tok, pos, B, T, C);
  }
  void embedding_backward(float* dtok, float* dpos, const float* dout, const int32_t* idx, int64_t B, int T, int C,
                          int V, GradMode mode) override {
    ThreadScope ts(threads_);
    cpu::embedding_backward(dtok, dpos, dout, idx, B, T, C, V, mode);
  }

  void layernorm_forward(float* out, float* mean, float* rstd, const float* in, const float* w, const float* b,
                         int64_t N, int C) override {
    ThreadScope ts(threads_);
    cpu::layernorm_forward(out, mean, rstd, in, w, b, N, C);
  }
  void layernorm_backward(float* din, float* dw, float* db, const float* dout, const float* in, const float* w,
                          const float* mean, const float* rstd, int64_t N, int C, GradMode din_mode,
                          GradMode param_mode) override {
    ThreadScope ts(threads_);
    cpu::layernorm_backward(din, dw, db, dout, in, w, mean, rstd, N, C, ws_, din_mode, param_mode);
  }

  void linear_forward(float* out, const float* in, const float* w, const float* bias, int64_t N, int IC,
                      int OC) override {
    ThreadScope ts(threads_);
    cpu::linear_forward(out, in, w, bias, N, IC, OC, ws_);
  }
  void linear_backward(float* din, float* dw, float* dbias, const float* dout, const float* in, const float* w,
                       int64_t N, int IC, int OC, GradMode din_mode, GradMode param_mode) override {
    ThreadScope ts(threads_);
    cpu::linear_backward(din, dw, dbias, dout, in, w, N, IC, OC, ws_, din_mode, param_mode);
  }

  void activation_forward(float* out, const float* in, int64_t n, Activation act) override {
    ThreadScope ts(threads_);
    cpu::activation_forward(out, in, n, act);
  }
  void activation_backward(float* din, const float* dout, const float* in, int64_t n, Activation act,
                           GradMode mode) override {
    ThreadScope ts(threads_);
    cpu::activation_backward(din, dout, in, n, act, mode);
  }

  void dropout_add_forward(float* out, const float* x, const float* y, int64_t n, const Dropout& d) override {
    ThreadScope ts(threads_);
    cpu::dropout_add_forward(out, x, y, n, d);
  }
  void dropout_add_backward(float* dx, float* dy, const float* dout, int64_t n, const Dropout& d,
                            GradMode mode) override {
    ThreadScope ts(threads_);
    cpu::dropout_add_backward(dx, dy, dout, n, d, mode);
  }

  void csa_forward(float* out, int ld_out, float* lse, const float* q, const float* k, const float* v, int ld_in,
                   int64_t B, int T, int H, int D, float scale, const Dropout& d) override {
    ThreadScope ts(threads_);
    cpu::csa_forward(out, ld_out, lse, q, k, v, ld_in, B, T, H, D, scale, d, ws_);
  }
  void csa_backward(float* dq, float* dk, float* dv, const float* dout, int ld_out, const float* lse, const float* q,
                    const float* k, const float* v, int ld_in, int64_t B, int T, int H, int D, float scale,
                    const Dropout& d, GradMode mode) override {
    ThreadScope ts(threads_);
    cpu::csa_backward(dq, dk, dv, dout, ld_out, lse, q, k, v, ld_in, B, T, H, D, scale, d, ws_, mode);
  }

  void gaussian_attention_forward(float* out, int ld_out, float* z, const float* q, const float* k, int ld_qk,
                                  const float* v, int ld_v, int64_t B, int T, int H, int D, AttnMask mask) override {
    ThreadScope ts(threads_);
    cpu::gaussian_attention_forward(out, ld_out, z, q, k, ld_qk, v, ld_v, B, T, H, D, mask, ws_);
  }
  void gaussian_attention_backward(float* dq, float* dk, int ld_qk, float* dv, int ld_v, const float* dout, int ld_out,
                                   const float* z, const float* q, const float* k, const float* v, int64_t B, int T,
                                   int H, int D, AttnMask mask, GradMode mode) override {
    ThreadScope ts(threads_);
    cpu::gaussian_attention_backward(dq, dk, ld_qk, dv, ld_v, dout, ld_out, z, q, k, v, B, T, H, D, mask, ws_, mode);
  }

  void pauli_value_forward(float* v, int ld_v, const float* u, int ld_u, const PauliTerm* terms, int64_t N, int H,
                           int D, int C, int n_qubits) override {
    ThreadScope ts(threads_);
    cpu::pauli_value_forward(v, ld_v, u, ld_u, terms, N, H, D, C, n_qubits, ws_);
  }
  void pauli_value_backward(float* du, int ld_u, const float* dv, int ld_v, const float* u, const PauliTerm* terms,
                            int64_t N, int H, int D, int C, int n_qubits, GradMode mode) override {
    ThreadScope ts(threads_);
    cpu::pauli_value_backward(du, ld_u, dv, ld_v, u, terms, N, H, D, C, n_qubits, ws_, mode);
  }

  void qisa_a_forward(float* v, int ld_v, const float* x, int ld_x, const float* rx, const float* ry, const float* ry2,
                      const PauliTerm* terms, int64_t N, int H, int D, int C, int n_qubits) override {
    ThreadScope ts(threads_);
    cpu::qisa_a_forward(v, ld_v, x, ld_x, rx, ry, ry2, terms, N, H, D, C, n_qubits, ws_);
  }
  void qisa_a_backward(float* dx, int ld_x, float* drx, float* dry, float* dry2, const float* dv, int ld_v,
                       const float* x, const float* rx, const float* ry, const float* ry2, const PauliTerm* terms,
                       int64_t N, int H, int D, int C, int n_qubits, GradMode dx_mode, GradMode param_mode) override {
    ThreadScope ts(threads_);
    cpu::qisa_a_backward(dx, ld_x, drx, dry, dry2, dv, ld_v, x, rx, ry, ry2, terms, N, H, D, C, n_qubits, ws_, dx_mode,
                         param_mode);
  }

  void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t N, int V) override {
    ThreadScope ts(threads_);
    cpu::cross_entropy_forward(losses, logits, targets, N, V);
  }
  void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets, int64_t N, int V,
                              float scale) override {
    ThreadScope ts(threads_);
    cpu::cross_entropy_backward(dlogits, logits, targets, N, V, scale);
  }

  void adamw_update(float* params, const float* grads, float* m, float* v, int64_t n, const AdamWHyper& h) override {
    ThreadScope ts(threads_);
    cpu::adamw_update(params, grads, m, v, n, h);
  }
  void sum_to(double* acc, const float* x, int64_t n, GradMode mode) override {
    double s = mode == GradMode::accumulate ? *acc : 0.0;
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]);
    *acc = s;
  }
  double sum_squares(const float* x, int64_t n) override {
    ThreadScope ts(threads_);
    return cpu::sum_squares(x, n, ws_);
  }
  void scale(float* x, float a, int64_t n) override {
    ThreadScope ts(threads_);
    cpu::scale(x, a, n);
  }

 private:
  int threads_;
  cpu::Workspace ws_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) { return std::make_unique<CpuBackend>(threads); }

}  // namespace qisa
