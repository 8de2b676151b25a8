// CudaBackend: the Backend interface (kernels/backend.h) over the kernels of kernels/cuda/*.cuh
// and the cuBLASLt wrapper (gemm.h), on one device and one non-blocking stream.
//
// One source, two builds: kernels/cuda/cuda_backend.cu compiles this with nvcc into the product
// (make_cuda_backend); tests/cuda_emu/cuda_backend_emu.cpp compiles it with g++ against the CUDA
// emulator and the test doubles of the runtime and of cuBLASLt, so the emulated tests run every
// line of it on the CPU (the class is in the kernels' ABI namespace, sm or emu, so a binary may
// link both).
//
// Rules of this file:
//  - every runtime call goes through QISA_CUDA_CALL, and every op checks cudaGetLastError after
//    its launches (a bad launch configuration is reported by the op that made it; a fault inside
//    a kernel shows at the next synchronisation: download, synchronize, Event::wait);
//  - an op's activation operands share one storage type (the model's arena has one), else the op
//    refuses with the op's name; parameters, statistics and amplitudes are fp32;
//  - scratch the kernels need (layernorm partials, the bf16 linear's fp32 product, the attention
//    backwards' per-row terms, QISA-A's angle partials, the sum-of-squares partials) comes from
//    one device workspace that grows and is never shrunk (one op uses it at a time).
#pragma once
#include <algorithm>
#include <cstdio>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "kernels/backend.h"
#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/adamw.cuh"
#include "kernels/cuda/attention_csa.cuh"
#include "kernels/cuda/cross_entropy.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/dropout.cuh"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/gaussian_attention.cuh"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/layernorm.cuh"
#include "kernels/cuda/linear.cuh"
#include "kernels/cuda/pauli_value.cuh"
#include "kernels/cuda/qisa_a.cuh"
#include "kernels/error.h"

namespace qisa::cuda::inline QISA_KERNEL_ABI {

inline constexpr size_t kGemmWorkspaceBytes = size_t{32} << 20;  // cuBLASLt's recommendation for Hopper

template <class T>
T* typed(Act a) {
  return static_cast<T*>(a.p);
}
template <class T>
const T* typed(CAct a) {
  return static_cast<const T*>(a.p);
}

// Calls fn(std::type_identity<T>{}) with T the storage type (float or bf16) that op's non-null
// operands share; refuses a mix.
template <class Fn>
void with_storage(const char* op, std::initializer_list<CAct> operands, Fn&& fn) {
  bool seen = false;
  DType t = DType::f32;
  for (const CAct& a : operands) {
    if (!a) continue;
    QISA_CHECK(!seen || a.t == t, std::string("cuda backend: ") + op + " mixes fp32 and bf16 operands",
               "the CUDA kernels take one storage type per op (the model's activation type): convert() the odd "
               "operand first");
    seen = true;
    t = a.t;
  }
  if (t == DType::bf16) fn(std::type_identity<bf16>{});
  else fn(std::type_identity<float>{});
}

// A cudaEvent_t (RAII, timing disabled).
class CudaEvent final : public Event {
 public:
  CudaEvent() { QISA_CUDA_CALL(cudaEventCreateWithFlags(&e_, cudaEventDisableTiming)); }
  ~CudaEvent() override {
    if (const cudaError_t r = cudaEventDestroy(e_); r != cudaSuccess)  // a destructor reports, never throws
      std::fprintf(stderr, "qisa: cudaEventDestroy failed: %s\n", cudaGetErrorName(r));
  }
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  void wait() override { QISA_CUDA_CALL(cudaEventSynchronize(e_)); }
  bool query() override {
    const cudaError_t r = cudaEventQuery(e_);
    if (r == cudaErrorNotReady) return false;
    QISA_CUDA_CALL(r);
    return true;
  }
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

// The cudaEvent_t behind an Event that `who` (a stream of this backend) records or waits on.
inline cudaEvent_t cuda_event_of(Event& e, const char* who) {
  auto* ce = dynamic_cast<CudaEvent*>(&e);
  QISA_CHECK(ce != nullptr, std::string("cuda backend: ") + who + " was given an event made by another backend",
             "make events with the backend whose streams record and wait on them");
  return ce->get();
}

// Device memory owned by the backend itself (the workspace, cuBLASLt's workspace).
class DeviceBytes {
 public:
  DeviceBytes() = default;
  explicit DeviceBytes(size_t bytes) : bytes_(bytes) {
    if (bytes) QISA_CUDA_CALL(cudaMalloc(&p_, bytes));
  }
  ~DeviceBytes() { reset(); }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  DeviceBytes& operator=(DeviceBytes&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  void reset() noexcept {
    if (p_ && cudaFree(p_) != cudaSuccess) std::fprintf(stderr, "qisa: cudaFree of a backend workspace failed\n");
    p_ = nullptr;
    bytes_ = 0;
  }
  void* get() const { return p_; }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// The stream, created first and destroyed last.
class Stream {
 public:
  explicit Stream(int device) {
    QISA_CUDA_CALL(cudaSetDevice(device));
    QISA_CUDA_CALL(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking));
  }
  ~Stream() {
    if (cudaStreamDestroy(s_) != cudaSuccess) std::fprintf(stderr, "qisa: cudaStreamDestroy failed\n");
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

// The communication stream of dist.comm: nccl (Backend::make_side_stream): non-blocking, on the
// backend's device, ordered against the backend's stream through events only.
class CudaSideStream final : public SideStream {
 public:
  explicit CudaSideStream(int device) : stream_(device) {}
  void* native() const override { return stream_.get(); }
  void wait(Event& e) override {
    QISA_CUDA_CALL(cudaStreamWaitEvent(stream_.get(), cuda_event_of(e, "a side stream"), 0));
  }
  void record(Event& e) override { QISA_CUDA_CALL(cudaEventRecord(cuda_event_of(e, "a side stream"), stream_.get())); }

 private:
  Stream stream_;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const CudaOptions& o)
      : device_(o.device), stream_(o.device), gemm_ws_(kGemmWorkspaceBytes),
        gemm_(stream_.get(), gemm_ws_.get(), gemm_ws_.bytes(), o.allow_tf32) {
    cudaDeviceProp prop{};
    QISA_CUDA_CALL(cudaGetDeviceProperties(&prop, device_));
    model_ = prop.name;
  }
  ~CudaBackend() override {
    if (cudaStreamSynchronize(stream_.get()) != cudaSuccess)  // nothing may still use what is freed
      std::fprintf(stderr, "qisa: cuda backend: the stream failed before shutdown\n");
  }

  std::string name() const override { return "cuda:" + std::to_string(device_); }
  std::string device_model() const override { return model_; }
  int threads() const override { return 1; }
  bool host_addressable() const override { return false; }

  // ---- memory
  void* alloc(size_t bytes) override {
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    QISA_CUDA_CALL(cudaMalloc(&p, bytes));
    return p;
  }
  void release(void* p) noexcept override {
    if (!p) return;
    if (const cudaError_t e = cudaFree(p); e != cudaSuccess)
      std::fprintf(stderr, "qisa: cuda backend: cudaFree failed: %s (%s)\n", cudaGetErrorName(e), cudaGetErrorString(e));
  }
  // On the backend's stream, then waited for: host_src may be reused at once, and the copy is
  // ordered after every op enqueued before it.
  void upload(void* dst, const void* host_src, size_t bytes) override {
    if (!bytes) return;
    QISA_CUDA_CALL(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, s()));
    QISA_CUDA_CALL(cudaStreamSynchronize(s()));
  }
  void download(void* host_dst, const void* src, size_t bytes) override {
    if (!bytes) return;
    QISA_CUDA_CALL(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, s()));
    QISA_CUDA_CALL(cudaStreamSynchronize(s()));
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes) QISA_CUDA_CALL(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s()));
  }
  void zero(void* dst, size_t bytes) override {
    if (bytes) QISA_CUDA_CALL(cudaMemsetAsync(dst, 0, bytes, s()));
  }
  void synchronize() override { QISA_CUDA_CALL(cudaStreamSynchronize(s())); }
  std::unique_ptr<Event> make_event() override { return std::make_unique<CudaEvent>(); }
  void record(Event& e) override { QISA_CUDA_CALL(cudaEventRecord(cuda_event_of(e, "record()"), s())); }

  std::unique_ptr<SideStream> make_side_stream() override { return std::make_unique<CudaSideStream>(device_); }

  // ---- ops
  void embedding_forward(Act out, const int32_t* idx, const float* tok, const float* pos, int64_t B, int T,
                         int C) override {
    // The interface has no V: token ids were checked against vocab_size when the corpus was
    // opened (io/corpus); a negative id still gives a NaN row.
    with_storage("embedding_forward", {out}, [&](auto t) {
      using S = typename decltype(t)::type;
      cuda::embedding_forward(typed<S>(out), idx, tok, pos, B, T, C, std::numeric_limits<int>::max(), s());
    });
    launched("embedding_forward");
  }
  void embedding_backward(float* dtok, float* dpos, CAct dout, const int32_t* idx, int64_t B, int T, int C, int V,
                          GradMode mode) override {
    with_storage("embedding_backward", {dout}, [&](auto t) {
      using S = typename decltype(t)::type;
      cuda::embedding_backward(dtok, dpos, typed<S>(dout), idx, B, T, C, V, mode, s());
    });
    launched("embedding_backward");
  }

  void layernorm_forward(Act out, float* mean, float* rstd, CAct in, const float* w, const float* b, int64_t N,
                         int C) override {
    with_storage("layernorm_forward", {out, in}, [&](auto t) {
      using S = typename decltype(t)::type;
      cuda::layernorm_forward(typed<S>(out), mean, rstd, typed<S>(in), w, b, N, C, s());
    });
    launched("layernorm_forward");
  }
  void layernorm_backward(Act din, float* dw, float* db, CAct dout, CAct in, const float* w, const float* mean,
                          const float* rstd, int64_t N, int C, GradMode din_mode, GradMode param_mode) override {
    float* part = workspace<float>(layernorm_backward_workspace(N, C));
    with_storage("layernorm_backward", {din, dout, in}, [&](auto t) {
      using S = typename decltype(t)::type;
      cuda::layernorm_backward(typed<S>(din), dw, db, typed<S>(dout), typed<S>(in), w, mean, rstd, N, C, din_mode,
                               param_mode, part, s());
    });
    launched("layernorm_backward");
  }

  void linear_forward(Act out, CAct in, CAct w, const float* bias, int64_t N, int IC, int OC) override {
    float* scratch = workspace<float>(linear_forward_scratch(out.t, bias != nullptr, N, OC));
    cuda::linear_forward(gemm_, out, in, w, bias, N, IC, OC, scratch);
    launched("linear_forward");
  }
  void linear_backward(Act din, float* dw, float* dbias, CAct dout, CAct in, CAct w, int64_t N, int IC, int OC,
                       GradMode din_mode, GradMode param_mode) override {
    if (dout.t == DType::f32 && w.t == DType::bf16) {
      // The qisa value map under bf16: u and du are fp32 (the amplitudes are), the GEMM operands bf16.
      // cuBLASLt multiplies one type, so du is rounded to bf16 once, as a bf16 GEMM reads it (the CPU
      // backend widens the others instead: the results agree within the bf16 tolerances).
      bf16* g = workspace<bf16>(N * OC);
      cuda::convert(g, static_cast<const float*>(dout.p), N * OC, s());
      dout = g;
    }
    cuda::linear_backward(gemm_, din, dw, dbias, dout, in, w, N, IC, OC, din_mode, param_mode);
    launched("linear_backward");
  }

  void activation_forward(Act out, CAct in, int64_t n, Activation act) override {
    with_storage("activation_forward", {out, in}, [&](auto t) {
      using S = typename decltype(t)::type;
      cuda::activation_forward(typed<S>(out), typed<S>(in), n, act, s());
    });
    launched("activation_forward");
  }
  void activation_backward(Act din, CAct dout, CAct in, int64_t n, Activation act, GradMode mode) override {
    with_storage("activation_backward", {din, dout, in}, [&](auto t) {
      using S = typename decltype(t)::type;
      cuda::activation_backward(typed<S>(din), typed<S>(dout), typed<S>(in), n, act, mode, s());
    });
    launched("activation_backward");
  }

  void dropout_add_forward(Act out, CAct x, CAct y, int64_t n, const Dropout& d) override {
    with_storage("dropout_add_forward", {out, x, y}, [&](auto t) {
      using S = typename decltype(t)::type;
      cuda::dropout_add_forward(typed<S>(out), typed<S>(x), typed<S>(y), n, d, s());
    });
    launched("dropout_add_forward");
  }
  void dropout_add_backward(Act dx, Act dy, CAct dout, int64_t n, const Dropout& d, GradMode mode) override {
    with_storage("dropout_add_backward", {dx, dy, dout}, [&](auto t) {
      using S = typename decltype(t)::type;
      cuda::dropout_add_backward(typed<S>(dx), typed<S>(dy), typed<S>(dout), n, d, mode, s());
    });
    launched("dropout_add_backward");
  }

  // ---- attention: one statistic per row saved; backward's per-row scratch from the workspace
  void csa_forward(Act out, int ld_out, float* lse, CAct q, CAct k, CAct v, int ld_in, int64_t B, int T, int H, int D,
                   float scale, const Dropout& d) override {
    with_storage("csa_forward", {out, q, k, v}, [&](auto t) {
      using S = typename decltype(t)::type;
      cuda::csa_forward(typed<S>(out), ld_out, lse, typed<S>(q), typed<S>(k), typed<S>(v), ld_in, B, T, H, D, scale,
                        d, s());
    });
    launched("csa_forward");
  }
  void csa_backward(Act dq, Act dk, Act dv, CAct dout, int ld_out, const float* lse, CAct q, CAct k, CAct v, int ld_in,
                    int64_t B, int T, int H, int D, float scale, const Dropout& d, GradMode mode) override {
    float* delta = workspace<float>(csa_backward_workspace(B, T, H));
    with_storage("csa_backward", {dq, dk, dv, dout, q, k, v}, [&](auto t) {
      using S = typename decltype(t)::type;
      cuda::csa_backward(typed<S>(dq), typed<S>(dk), typed<S>(dv), typed<S>(dout), ld_out, lse, typed<S>(q),
                         typed<S>(k), typed<S>(v), ld_in, B, T, H, D, scale, d, mode, delta, s());
    });
    launched("csa_backward");
  }
  void gaussian_attention_forward(Act out, int ld_out, float* z, CAct q, CAct k, int ld_qk, CAct v, int ld_v,
                                  int64_t B, int T, int H, int D, AttnMask mask, AttnScore score) override {
    with_storage("gaussian_attention_forward", {out, q, k, v}, [&](auto t) {
      using S = typename decltype(t)::type;
      cuda::gaussian_attention_forward(typed<S>(out), ld_out, z, typed<S>(q), typed<S>(k), ld_qk, typed<S>(v), ld_v,
                                       B, T, H, D, mask, score, s());
    });
    launched("gaussian_attention_forward");
  }
  void gaussian_attention_backward(Act dq, Act dk, int ld_qk, Act dv, int ld_v, CAct dout, int ld_out, const float* z,
                                   CAct q, CAct k, CAct v, int64_t B, int T, int H, int D, AttnMask mask,
                                   AttnScore score, GradMode mode) override {
    float* work = workspace<float>(gaussian_attention_backward_workspace(B, T, H));
    with_storage("gaussian_attention_backward", {dq, dk, dv, dout, q, k, v}, [&](auto t) {
      using S = typename decltype(t)::type;
      cuda::gaussian_attention_backward(typed<S>(dq), typed<S>(dk), ld_qk, typed<S>(dv), ld_v, typed<S>(dout), ld_out,
                                        z, typed<S>(q), typed<S>(k), typed<S>(v), B, T, H, D, mask, score, mode, work,
                                        s());
    });
    launched("gaussian_attention_backward");
  }

  // ---- the QISA value layers: amplitudes fp32; v/dv and x/dx in the activation type
  void pauli_value_forward(Act v, int ld_v, const float* u, int ld_u, const PauliTerm* terms, int64_t N, int H, int D,
                           int C, int n_qubits) override {
    with_storage("pauli_value_forward", {v}, [&](auto t) {
      using S = typename decltype(t)::type;
      cuda::pauli_value_forward(typed<S>(v), ld_v, u, ld_u, terms, N, H, D, C, n_qubits, s());
    });
    launched("pauli_value_forward");
  }
  void pauli_value_backward(float* du, int ld_u, CAct dv, int ld_v, const float* u, const PauliTerm* terms, int64_t N,
                            int H, int D, int C, int n_qubits, GradMode mode) override {
    with_storage("pauli_value_backward", {dv}, [&](auto t) {
      using S = typename decltype(t)::type;
      cuda::pauli_value_backward(du, ld_u, typed<S>(dv), ld_v, u, terms, N, H, D, C, n_qubits, mode, s());
    });
    launched("pauli_value_backward");
  }
  void qisa_a_forward(Act v, int ld_v, CAct x, int ld_x, const float* rx, const float* ry, const float* ry2,
                      const PauliTerm* terms, int64_t N, int H, int D, int C, int n_qubits) override {
    with_storage("qisa_a_forward", {v, x}, [&](auto t) {
      using S = typename decltype(t)::type;
      cuda::qisa_a_forward(typed<S>(v), ld_v, typed<S>(x), ld_x, rx, ry, ry2, terms, N, H, D, C, n_qubits, s());
    });
    launched("qisa_a_forward");
  }
  void qisa_a_backward(Act dx, int ld_x, float* drx, float* dry, float* dry2, CAct dv, int ld_v, CAct x,
                       const float* rx, const float* ry, const float* ry2, const PauliTerm* terms, int64_t N, int H,
                       int D, int C, int n_qubits, GradMode dx_mode, GradMode param_mode) override {
    double* part = workspace<double>(qisa_a_backward_workspace(N, H, n_qubits));
    with_storage("qisa_a_backward", {dx, dv, x}, [&](auto t) {
      using S = typename decltype(t)::type;
      cuda::qisa_a_backward(typed<S>(dx), ld_x, drx, dry, dry2, typed<S>(dv), ld_v, typed<S>(x), rx, ry, ry2, terms, N,
                            H, D, C, n_qubits, dx_mode, param_mode, part, s());
    });
    launched("qisa_a_backward");
  }

  void cross_entropy_forward(float* losses, CAct logits, const int32_t* targets, int64_t N, int V) override {
    with_storage("cross_entropy_forward", {logits}, [&](auto t) {
      using S = typename decltype(t)::type;
      cuda::cross_entropy_forward(losses, typed<S>(logits), targets, N, V, s());
    });
    launched("cross_entropy_forward");
  }
  void cross_entropy_backward(Act dlogits, CAct logits, const int32_t* targets, int64_t N, int V,
                              float scale) override {
    with_storage("cross_entropy_backward", {dlogits, logits}, [&](auto t) {
      using S = typename decltype(t)::type;
      cuda::cross_entropy_backward(typed<S>(dlogits), typed<S>(logits), targets, N, V, scale, s());
    });
    launched("cross_entropy_backward");
  }

  // ---- optimizer and reductions
  void adamw_update(float* params, const float* grads, float* m, float* v, int64_t n, const AdamWHyper& h) override {
    cuda::adamw_update(params, grads, m, v, n, h, s());
    launched("adamw_update");
  }
  void convert(Act dst, CAct src, int64_t n) override {
    with_storage("convert (destination)", {dst}, [&](auto td) {
      with_storage("convert (source)", {src}, [&](auto ts) {
        using D = typename decltype(td)::type;
        using S = typename decltype(ts)::type;
        cuda::convert(typed<D>(dst), typed<S>(src), n, s());
      });
    });
    launched("convert");
  }
  void round_bf16_stochastic(bf16* dst, const float* src, int64_t n, uint64_t seed, uint32_t step,
                             uint64_t elem_offset) override {
    cuda::round_bf16_stochastic(dst, src, n, seed, step, elem_offset, s());
    launched("round_bf16_stochastic");
  }
  void sum_to(double* acc, const float* x, int64_t n, GradMode mode) override {
    cuda::sum_to(acc, x, n, mode, s());
    launched("sum_to");
  }
  double sum_squares(const float* x, int64_t n) override {
    double* ws = workspace<double>(kSumSquaresWorkspace + 1);  // [partials | result]
    cuda::sum_squares(ws + kSumSquaresWorkspace, x, n, ws, s());
    launched("sum_squares");
    double r = 0.0;
    download(&r, ws + kSumSquaresWorkspace, sizeof r);
    return r;
  }
  void scale(float* x, float a, int64_t n) override {
    cuda::scale(x, a, n, s());
    launched("scale");
  }

 private:
  cudaStream_t s() const { return stream_.get(); }

  // After an op's launches: a launch the runtime refused names the op.
  static void launched(const char* op) {
    const cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return;
    throw Error(std::string("cuda backend: ") + op + ": a kernel launch failed: " + cudaGetErrorName(e) + " (" +
                    cudaGetErrorString(e) + ")",
                cuda_hint(e));
  }

  // `count` elements of device scratch (null for 0), valid until the next workspace() call. A
  // larger request waits for the stream (kernels may still read the old block) and reallocates.
  template <class T>
  T* workspace(int64_t count) {
    const size_t bytes = static_cast<size_t>(std::max<int64_t>(count, 0)) * sizeof(T);
    if (bytes == 0) return nullptr;
    if (bytes > ws_.bytes()) {
      const size_t grown = std::max(bytes, ws_.bytes() + ws_.bytes() / 2);
      synchronize();
      ws_.reset();
      ws_ = DeviceBytes(grown);
    }
    return static_cast<T*>(ws_.get());
  }

  int device_;
  std::string model_;
  Stream stream_;
  DeviceBytes gemm_ws_;
  GemmHandle gemm_;
  DeviceBytes ws_;
};

}  // namespace qisa::cuda
