// CpuBackend: the Backend interface over the float instantiations of the qisa::cpu templates.
// Each call runs its parallel regions on exactly threads() OpenMP threads (set for the call
// and restored after it), with OpenBLAS single-threaded, and keeps its scratch in a member
// Workspace, so steady-state training allocates nothing here.
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <initializer_list>
#include <cstring>
#include <string>

#include "kernels/backend.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/adamw.h"
#include "kernels/cpu/attention_csa.h"
#include "kernels/cpu/bf16_stage.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/dropout.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/gaussian_attention.h"
#include "kernels/cpu/host_memory.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/pauli_value.h"
#include "kernels/cpu/qisa_a.h"
#include "kernels/cpu/reductions.h"
#include "kernels/error.h"
#include "kernels/philox.h"

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
  void* alloc(size_t bytes) override { return bytes ? cpu::host_alloc(bytes, false) : nullptr; }
  void* alloc_zeroed(size_t bytes) override { return bytes ? cpu::host_alloc(bytes, true) : nullptr; }
  void release(void* p) noexcept override { cpu::host_free(p); }
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

  // ---- ops. fp32 operands go straight to the kernels; bf16 ones through a Stage (bf16_stage.h).
  void embedding_forward(Act out, const int32_t* idx, const float* tok, const float* pos, int64_t B, int T,
                         int C) override {
    ThreadScope ts(threads_);
    cpu::Stage st(stage_);
    cpu::embedding_forward(st.out(out, B * T * C), idx, tok, pos, B, T, C);
    st.commit();
  }
  void embedding_backward(float* dtok, float* dpos, CAct dout, const int32_t* idx, int64_t B, int T, int C, int V,
                          GradMode mode) override {
    ThreadScope ts(threads_);
    cpu::Stage st(stage_);
    cpu::embedding_backward(dtok, dpos, st.in(dout, B * T * C), idx, B, T, C, V, mode);
  }

  void layernorm_forward(Act out, float* mean, float* rstd, CAct in, const float* w, const float* b, int64_t N,
                         int C) override {
    ThreadScope ts(threads_);
    cpu::Stage st(stage_);
    cpu::layernorm_forward(st.out(out, N * C), mean, rstd, st.in(in, N * C), w, b, N, C);
    st.commit();
  }
  void layernorm_backward(Act din, float* dw, float* db, CAct dout, CAct in, const float* w, const float* mean,
                          const float* rstd, int64_t N, int C, GradMode din_mode, GradMode param_mode) override {
    ThreadScope ts(threads_);
    cpu::Stage st(stage_);
    cpu::layernorm_backward(st.out(din, N * C, din_mode), dw, db, st.in(dout, N * C), st.in(in, N * C), w, mean, rstd,
                            N, C, ws_, din_mode, param_mode);
    st.commit();
  }

  // Row chunks (bf16_stage.h); dw and dbias: the first chunk stores or adds as param_mode says, the
  // others add.
  void linear_forward(Act out, CAct in, CAct w, const float* bias, int64_t N, int IC, int OC) override {
    ThreadScope ts(threads_);
    cpu::Stage sw(stage_param_);
    const float* w32 = sw.in(w, int64_t{OC} * IC);
    const int64_t rows = cpu::chunk_rows(N, std::max(IC, OC), cpu::any_bf16({out.t, in.t}));
    for (int64_t r0 = 0; r0 == 0 || r0 < N; r0 += rows) {  // once with N = 0 too
      const int64_t n = std::min(rows, N - r0);
      cpu::Stage st(stage_);
      cpu::linear_forward(st.out(out + r0 * OC, n * OC), st.in(in + r0 * IC, n * IC), w32, bias, n, IC, OC, ws_);
      st.commit();
    }
  }
  void linear_backward(Act din, float* dw, float* dbias, CAct dout, CAct in, CAct w, int64_t N, int IC, int OC,
                       GradMode din_mode, GradMode param_mode) override {
    ThreadScope ts(threads_);
    cpu::Stage sw(stage_param_);
    const float* w32 = din ? sw.in(w, int64_t{OC} * IC) : nullptr;
    const int64_t rows = cpu::chunk_rows(N, std::max(IC, OC), cpu::any_bf16({din.t, dout.t, in.t}));
    for (int64_t r0 = 0; r0 == 0 || r0 < N; r0 += rows) {  // N = 0 still overwrites dw, dbias with 0
      const int64_t n = std::min(rows, N - r0);
      cpu::Stage st(stage_);
      float* din32 = din ? st.out(din + r0 * IC, n * IC, din_mode) : nullptr;
      cpu::linear_backward(din32, dw, dbias, st.in(dout + r0 * OC, n * OC), st.in(in + r0 * IC, n * IC), w32, n, IC,
                           OC, ws_, din_mode, r0 == 0 ? param_mode : GradMode::accumulate);
      st.commit();
    }
  }

  // Elementwise: chunks of elements (dropout's element index moves with the chunk).
  void activation_forward(Act out, CAct in, int64_t n, Activation act) override {
    ThreadScope ts(threads_);
    for_elements(n, {out.t, in.t}, [&](cpu::Stage& st, int64_t i0, int64_t m) {
      cpu::activation_forward(st.out(out + i0, m), st.in(in + i0, m), m, act);
    });
  }
  void activation_backward(Act din, CAct dout, CAct in, int64_t n, Activation act, GradMode mode) override {
    ThreadScope ts(threads_);
    for_elements(n, {din.t, dout.t, in.t}, [&](cpu::Stage& st, int64_t i0, int64_t m) {
      cpu::activation_backward(st.out(din + i0, m, mode), st.in(dout + i0, m), st.in(in + i0, m), m, act, mode);
    });
  }

  void dropout_add_forward(Act out, CAct x, CAct y, int64_t n, const Dropout& d) override {
    ThreadScope ts(threads_);
    for_elements(n, {out.t, x.t, y.t}, [&](cpu::Stage& st, int64_t i0, int64_t m) {
      Dropout dc = d;
      dc.elem_offset += static_cast<uint64_t>(i0);
      const float* x32 = st.in(x + i0, m);  // out may alias x: x is read before out is stored
      cpu::dropout_add_forward(st.out(out + i0, m), x32, st.in(y + i0, m), m, dc);
    });
  }
  void dropout_add_backward(Act dx, Act dy, CAct dout, int64_t n, const Dropout& d, GradMode mode) override {
    ThreadScope ts(threads_);
    for_elements(n, {dx.t, dy.t, dout.t}, [&](cpu::Stage& st, int64_t i0, int64_t m) {
      Dropout dc = d;
      dc.elem_offset += static_cast<uint64_t>(i0);
      float* dx32 = dx ? st.out(dx + i0, m, mode) : nullptr;
      cpu::dropout_add_backward(dx32, st.out(dy + i0, m, mode), st.in(dout + i0, m), m, dc, mode);
    });
  }

  // Attention: q, k, v, out (and their gradients) share row strides, so when any is bf16 all are
  // staged as compact [N, H*D] copies.
  void csa_forward(Act out, int ld_out, float* lse, CAct q, CAct k, CAct v, int ld_in, int64_t B, int T, int H, int D,
                   float scale, const Dropout& d) override {
    ThreadScope ts(threads_);
    const int64_t N = B * T, W = int64_t{H} * D;
    const bool c = cpu::any_bf16({out.t, q.t, k.t, v.t});
    cpu::Stage st(stage_);
    cpu::csa_forward(st.out_rows(out, N, W, ld_out, c), st.ld_of(c, W, ld_out), lse, st.in_rows(q, N, W, ld_in, c),
                     st.in_rows(k, N, W, ld_in, c), st.in_rows(v, N, W, ld_in, c), st.ld_of(c, W, ld_in), B, T, H, D,
                     scale, d, ws_);
    st.commit();
  }
  void csa_backward(Act dq, Act dk, Act dv, CAct dout, int ld_out, const float* lse, CAct q, CAct k, CAct v, int ld_in,
                    int64_t B, int T, int H, int D, float scale, const Dropout& d, GradMode mode) override {
    ThreadScope ts(threads_);
    const int64_t N = B * T, W = int64_t{H} * D;
    const bool c = cpu::any_bf16({dq.t, dk.t, dv.t, dout.t, q.t, k.t, v.t});
    cpu::Stage st(stage_);
    cpu::csa_backward(st.out_rows(dq, N, W, ld_in, c, mode), st.out_rows(dk, N, W, ld_in, c, mode),
                      st.out_rows(dv, N, W, ld_in, c, mode), st.in_rows(dout, N, W, ld_out, c), st.ld_of(c, W, ld_out),
                      lse, st.in_rows(q, N, W, ld_in, c), st.in_rows(k, N, W, ld_in, c), st.in_rows(v, N, W, ld_in, c),
                      st.ld_of(c, W, ld_in), B, T, H, D, scale, d, ws_, mode);
    st.commit();
  }

  void gaussian_attention_forward(Act out, int ld_out, float* z, CAct q, CAct k, int ld_qk, CAct v, int ld_v, int64_t B,
                                  int T, int H, int D, AttnMask mask, AttnScore score) override {
    ThreadScope ts(threads_);
    const int64_t N = B * T, W = int64_t{H} * D;
    const bool c = cpu::any_bf16({out.t, q.t, k.t, v.t});
    cpu::Stage st(stage_);
    cpu::gaussian_attention_forward(st.out_rows(out, N, W, ld_out, c), st.ld_of(c, W, ld_out), z,
                                    st.in_rows(q, N, W, ld_qk, c), st.in_rows(k, N, W, ld_qk, c), st.ld_of(c, W, ld_qk),
                                    st.in_rows(v, N, W, ld_v, c), st.ld_of(c, W, ld_v), B, T, H, D, mask, score, ws_);
    st.commit();
  }
  void gaussian_attention_backward(Act dq, Act dk, int ld_qk, Act dv, int ld_v, CAct dout, int ld_out, const float* z,
                                   CAct q, CAct k, CAct v, int64_t B, int T, int H, int D, AttnMask mask,
                                   AttnScore score, GradMode mode) override {
    ThreadScope ts(threads_);
    const int64_t N = B * T, W = int64_t{H} * D;
    const bool c = cpu::any_bf16({dq.t, dk.t, dv.t, dout.t, q.t, k.t, v.t});
    cpu::Stage st(stage_);
    cpu::gaussian_attention_backward(
        st.out_rows(dq, N, W, ld_qk, c, mode), st.out_rows(dk, N, W, ld_qk, c, mode), st.ld_of(c, W, ld_qk),
        st.out_rows(dv, N, W, ld_v, c, mode), st.ld_of(c, W, ld_v), st.in_rows(dout, N, W, ld_out, c),
        st.ld_of(c, W, ld_out), z, st.in_rows(q, N, W, ld_qk, c), st.in_rows(k, N, W, ld_qk, c),
        st.in_rows(v, N, W, ld_v, c), B, T, H, D, mask, score, ws_, mode);
    st.commit();
  }

  // The amplitudes u stay fp32 (backend.h); only the values v may be bf16.
  void pauli_value_forward(Act v, int ld_v, const float* u, int ld_u, const PauliTerm* terms, int64_t N, int H, int D,
                           int C, int n_qubits) override {
    ThreadScope ts(threads_);
    const int64_t W = int64_t{H} * D;
    const bool c = v.t == DType::bf16;
    cpu::Stage st(stage_);
    cpu::pauli_value_forward(st.out_rows(v, N, W, ld_v, c), st.ld_of(c, W, ld_v), u, ld_u, terms, N, H, D, C, n_qubits,
                             ws_);
    st.commit();
  }
  void pauli_value_backward(float* du, int ld_u, CAct dv, int ld_v, const float* u, const PauliTerm* terms, int64_t N,
                            int H, int D, int C, int n_qubits, GradMode mode) override {
    ThreadScope ts(threads_);
    const int64_t W = int64_t{H} * D;
    const bool c = dv.t == DType::bf16;
    cpu::Stage st(stage_);
    cpu::pauli_value_backward(du, ld_u, st.in_rows(dv, N, W, ld_v, c), st.ld_of(c, W, ld_v), u, terms, N, H, D, C,
                              n_qubits, ws_, mode);
  }

  void qisa_a_forward(Act v, int ld_v, CAct x, int ld_x, const float* rx, const float* ry, const float* ry2,
                      const PauliTerm* terms, int64_t N, int H, int D, int C, int n_qubits) override {
    ThreadScope ts(threads_);
    const int64_t W = int64_t{H} * D;
    const bool cv = v.t == DType::bf16, cx = x.t == DType::bf16;
    cpu::Stage st(stage_);
    cpu::qisa_a_forward(st.out_rows(v, N, W, ld_v, cv), st.ld_of(cv, W, ld_v), st.in_rows(x, N, C, ld_x, cx),
                        st.ld_of(cx, C, ld_x), rx, ry, ry2, terms, N, H, D, C, n_qubits, ws_);
    st.commit();
  }
  void qisa_a_backward(Act dx, int ld_x, float* drx, float* dry, float* dry2, CAct dv, int ld_v, CAct x, const float* rx,
                       const float* ry, const float* ry2, const PauliTerm* terms, int64_t N, int H, int D, int C,
                       int n_qubits, GradMode dx_mode, GradMode param_mode) override {
    ThreadScope ts(threads_);
    const int64_t W = int64_t{H} * D;
    const bool cv = dv.t == DType::bf16, cx = cpu::any_bf16({dx.t, x.t});
    cpu::Stage st(stage_);
    cpu::qisa_a_backward(st.out_rows(dx, N, C, ld_x, cx, dx_mode), st.ld_of(cx, C, ld_x), drx, dry, dry2,
                         st.in_rows(dv, N, W, ld_v, cv), st.ld_of(cv, W, ld_v), st.in_rows(x, N, C, ld_x, cx), rx, ry,
                         ry2, terms, N, H, D, C, n_qubits, ws_, dx_mode, param_mode);
    st.commit();
  }

  void cross_entropy_forward(float* losses, CAct logits, const int32_t* targets, int64_t N, int V) override {
    ThreadScope ts(threads_);
    const int64_t rows = cpu::chunk_rows(N, V, logits.t == DType::bf16);
    for (int64_t r0 = 0; r0 < N; r0 += rows) {
      const int64_t n = std::min(rows, N - r0);
      cpu::Stage st(stage_);
      cpu::cross_entropy_forward(losses + r0, st.in(logits + r0 * V, n * V), targets + r0, n, V);
    }
  }
  // In place (dlogits aliases logits) on bf16: the chunk is widened once and rewritten in place.
  void cross_entropy_backward(Act dlogits, CAct logits, const int32_t* targets, int64_t N, int V,
                              float scale) override {
    ThreadScope ts(threads_);
    const bool in_place = dlogits.p == logits.p && dlogits.t == logits.t;
    const int64_t rows = cpu::chunk_rows(N, V, cpu::any_bf16({dlogits.t, logits.t}));
    for (int64_t r0 = 0; r0 < N; r0 += rows) {
      const int64_t n = std::min(rows, N - r0);
      cpu::Stage st(stage_);
      if (in_place) {
        float* g = st.out(dlogits + r0 * V, n * V, GradMode::accumulate);  // holds the logits
        cpu::cross_entropy_backward(g, g, targets + r0, n, V, scale);
      } else {
        const float* l32 = st.in(logits + r0 * V, n * V);
        cpu::cross_entropy_backward(st.out(dlogits + r0 * V, n * V), l32, targets + r0, n, V, scale);
      }
      st.commit();
    }
  }

  void convert(Act dst, CAct src, int64_t n) override {
    ThreadScope ts(threads_);
    cpu::convert(dst, src, n);
  }
  void round_bf16_stochastic(bf16* dst, const float* src, int64_t n, uint64_t seed, uint32_t step,
                             uint64_t elem_offset) override {
    ThreadScope ts(threads_);
    cpu::parallel_chunks(n, cpu::kConvertChunk, [&](int64_t, int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        dst[i] = float_to_bf16_stochastic(
            src[i], philox_bits(seed, kBf16RoundStream, step, elem_offset + static_cast<uint64_t>(i)));
    });
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
  // Elementwise ops over n elements in chunks (one chunk when nothing is bf16): body(stage, i0, m),
  // whose staged outputs are committed after it.
  template <class Body>
  void for_elements(int64_t n, std::initializer_list<DType> types, Body&& body) {
    const int64_t chunk = cpu::chunk_rows(n, 1, cpu::any_bf16(types));
    for (int64_t i0 = 0; i0 < n; i0 += chunk) {
      cpu::Stage st(stage_);
      body(st, i0, std::min(chunk, n - i0));
      st.commit();
    }
  }

  int threads_;
  cpu::Workspace ws_;           // the kernels' scratch
  cpu::Workspace stage_;        // fp32 copies of bf16 activations (bf16_stage.h)
  cpu::Workspace stage_param_;  // the fp32 copy of a bf16 weight, kept over an op's row chunks
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) { return std::make_unique<CpuBackend>(threads); }

}  // namespace qisa
