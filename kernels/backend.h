// The Backend interface: every op of SPEC §1-2 over flat float32 buffers that live where the
// backend computes (host memory for cpu, device memory for cuda). The trainer holds a
// Backend& and never branches on the device.
//
// Conventions (all ops):
//  - Row-major, PyTorch layout: a Linear weight is [out, in]. N = B*T rows of tokens.
//  - Shapes are in the comments; `ld_*` is the row stride (in floats) of a strided operand,
//    so a head can read its D columns out of a wider [N, ld] matrix without a copy.
//  - Forward ops OVERWRITE their outputs.
//  - Backward ops OVERWRITE or ACCUMULATE (+=) each gradient they produce, as their GradMode
//    arguments say (below): no gradient buffer is ever zeroed first. "+=" in the comments below
//    is the accumulate mode; overwrite stores the same value without reading the old contents.
//    A null gradient pointer means "not needed" where the comment says so.
//  - Results do not depend on the number of threads: reductions use a fixed partition.
//  - Ops are enqueued in order on the backend's stream and may return before they finish
//    (cuda); the host learns that work is done only through an Event (or synchronize(), or
//    download(), which waits for everything enqueued before it). The CPU backend runs each op
//    to completion before it returns, so its events are complete when recorded.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "kernels/bf16.h"

namespace qisa {

enum class Activation { relu, gelu };          // gelu = tanh approximation
enum class AttnMask { causal, reference };     // SPEC §1.1

// The score of Gaussian-kernel attention (model.qisa_score), from d2_ij = |q_i - k_j|^2:
//   paper:    p_i = softmax_{j<=i}(exp(-d2_ij))   (SPEC §1.1: the published score; it lies in
//             (0, 1], so a row's weights differ by at most a factor e)
//   gaussian: p_i = softmax_{j<=i}(-scale * d2_ij)  (an RBF kernel; scale > 0, 1/sqrt(D) by default)
enum class QisaScore { paper, gaussian };
struct AttnScore {
  QisaScore kind = QisaScore::paper;
  float scale = 1.0f;  // gaussian only
};

// One Pauli string of n letters packed for the fast path (SPEC §1.2):
//   v = sign * sum_b u_b u_{b^flip} (-1)^popcount(b & phase)
// flip = mask of X/Y letters, phase = mask of Z/Y letters (qubit 0 = most significant bit of
// the amplitude index). sign is +1 (y%4==0), -1 (y%4==2), or 0 when y is odd (Re<u|P|u> = 0
// for real u). For the complex QISA-A state, y_count (number of Y letters) is needed too.
struct PauliTerm {
  uint32_t flip;
  uint32_t phase;
  int32_t sign;     // real-amplitude sign (0 for odd y)
  int32_t y_count;  // number of Y letters: <psi|P|psi> for complex psi carries (-i)^y_count
};

// Counter-based dropout (SPEC §2b). Element e (its index in the GLOBAL batch of this
// optimizer step: sequence, then position, then channel) of site `site` at step `step` is
// kept iff philox_uniform(seed, step, site, e) >= p, and kept values are scaled by 1/(1-p).
// The op's local element i maps to e = elem_offset + i.
struct Dropout {
  float p = 0.0f;            // 0 disables the op (identity)
  uint64_t seed = 0;
  uint32_t step = 0;
  uint32_t site = 0;         // which dropout in the model (block, kind)
  uint64_t elem_offset = 0;  // global index of this call's element 0
  bool active() const { return p > 0.0f; }
};

// How a backward op stores a gradient: overwrite (=, the old contents are never read, so they may
// be garbage or NaN) or accumulate (+=). The first micro-batch of a step overwrites the parameter
// gradients and later ones accumulate; an activation gradient is overwritten by the first op
// that produces it and accumulated by the others (the residual stream, a tensor read twice).
// Ops with input and parameter gradients take one mode for each.
enum class GradMode : uint8_t { overwrite, accumulate };

// Element types of backend buffers. Arithmetic is always fp32; bf16 is storage (kernels/bf16.h).
enum class DType : uint8_t { f32, bf16 };
// The Philox stream (`a` counter word) of the stochastic rounding of bf16 weight copies.
inline constexpr uint32_t kBf16RoundStream = 0x42463136u;  // "BF16"
inline size_t dtype_bytes(DType t) { return t == DType::bf16 ? 2 : 4; }
inline const char* dtype_name(DType t) { return t == DType::bf16 ? "bf16" : "fp32"; }

// An activation operand: a backend pointer and the type of its elements. Ops take activations
// (and their gradients, and the GEMM weight operand) as Act / CAct, so one op serves fp32 and
// bf16 storage; a float* or bf16* converts implicitly, so fp32 callers pass their pointers as
// before. Parameters, parameter gradients and per-row statistics stay float* (always fp32).
// `p + i` moves by i elements of p's type. An op may mix operand types (the arithmetic is fp32
// either way); a bf16 output is rounded to nearest even once, when it is stored.
struct Act {
  void* p = nullptr;
  DType t = DType::f32;
  Act() = default;
  Act(std::nullptr_t) {}
  Act(float* f) : p(f) {}
  Act(bf16* h) : p(h), t(DType::bf16) {}
  Act(void* ptr, DType type) : p(ptr), t(type) {}
  Act operator+(int64_t i) const { return {static_cast<char*>(p) + i * static_cast<int64_t>(dtype_bytes(t)), t}; }
  explicit operator bool() const { return p != nullptr; }
};
struct CAct {
  const void* p = nullptr;
  DType t = DType::f32;
  CAct() = default;
  CAct(std::nullptr_t) {}
  CAct(const float* f) : p(f) {}
  CAct(const bf16* h) : p(h), t(DType::bf16) {}
  CAct(Act a) : p(a.p), t(a.t) {}
  CAct(const void* ptr, DType type) : p(ptr), t(type) {}
  CAct operator+(int64_t i) const {
    return {static_cast<const char*>(p) + i * static_cast<int64_t>(dtype_bytes(t)), t};
  }
  explicit operator bool() const { return p != nullptr; }
};

// A point in a backend's stream (cudaEvent_t on cuda). Backend::record(e) places it after all
// work enqueued so far; a later record moves it.
class Event {
 public:
  virtual ~Event() = default;
  // The host blocks until the work before the last record() is done (at once if never
  // recorded). Throws qisa::Error if that work failed.
  virtual void wait() = 0;
  // True when the work before the last record() is done (or it was never recorded); never blocks.
  virtual bool query() = 0;
};

// A second in-order queue on a device backend (a CUDA stream beside the backend's own), for a
// library that enqueues its own work there (NCCL: so communication runs beside the compute).
// Work on it is ordered against the backend's stream only through events.
class SideStream {
 public:
  virtual ~SideStream() = default;
  // The stream's native handle (cudaStream_t), for the library's calls.
  virtual void* native() const = 0;
  // Work enqueued here later starts after the work before e's last record() (cudaStreamWaitEvent).
  virtual void wait(Event& e) = 0;
  // e marks the work enqueued here so far (cudaEventRecord on this stream).
  virtual void record(Event& e) = 0;
};

struct AdamWHyper {
  float lr, beta1, beta2, eps, weight_decay;
  int64_t step;        // 1-based step count t used for the bias corrections
  float grad_scale;    // gradients are multiplied by this first (global-norm clipping); 1 = off
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  // "cpu", "cuda:0"
  // What the hardware is, as its driver names it ("NVIDIA H100 80GB HBM3"); MFU looks its peak
  // up by this. The CPU backend has no peak table entry.
  virtual std::string device_model() const { return name(); }
  virtual int threads() const = 0;       // worker threads (cpu) or 1

  // ---- memory (bytes). Pointers returned by alloc are owned by the caller; use Buffer.
  virtual void* alloc(size_t bytes) = 0;
  // Memory that reads as zeros. A backend that can (the CPU: calloc, whose large blocks are
  // fresh pages) skips the pass that alloc + zero makes over every byte: at the 124M shape the
  // parameters, gradients and AdamW moments are 2 GB, whose zeroing was most of the start-up.
  virtual void* alloc_zeroed(size_t bytes) {
    void* p = alloc(bytes);
    if (p) zero(p, bytes);
    return p;
  }
  virtual void release(void* p) noexcept = 0;
  // True when the host may read and write this backend's memory directly (cpu); a device
  // backend says false, and its buffers reach host-only code (MPI) through download/upload.
  virtual bool host_addressable() const { return true; }
  // host_src may be reused as soon as upload returns (cudaMemcpy's rule for pageable memory).
  virtual void upload(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void download(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;  // within the backend
  virtual void zero(void* dst, size_t bytes) = 0;
  virtual void synchronize() = 0;  // the host waits for everything enqueued so far

  // ---- events (see Event): make one per use site and record it again each time.
  virtual std::unique_ptr<Event> make_event() = 0;
  virtual void record(Event& e) = 0;
  // A second stream on the backend's device (see SideStream); nullptr for a backend that has
  // none (the CPU, whose ops finish before they return).
  virtual std::unique_ptr<SideStream> make_side_stream() { return nullptr; }

  // ---- embedding: out[b,t,:] = tok[idx[b,t],:] + pos[t,:]
  // out [B,T,C]; idx [B,T] int32 in [0,V); tok [V,C]; pos [>=T,C]
  virtual void embedding_forward(Act out, const int32_t* idx, const float* tok, const float* pos,
                                 int64_t B, int T, int C) = 0;
  // dtok [V,C] += scatter of dout by idx (overwrite: rows no token hits become 0);
  // dpos [T,C] += sum over b of dout (rows >= T of a longer table are not written). mode: both.
  virtual void embedding_backward(float* dtok, float* dpos, CAct dout, const int32_t* idx,
                                  int64_t B, int T, int C, int V, GradMode mode) = 0;

  // ---- layernorm over the last dim, eps 1e-5, affine.
  // out [N,C]; mean, rstd [N] (saved for backward); in [N,C]; w, b [C]
  virtual void layernorm_forward(Act out, float* mean, float* rstd, CAct in, const float* w,
                                 const float* b, int64_t N, int C) = 0;
  // din [N,C] += (din_mode); dw, db [C] += (param_mode)
  virtual void layernorm_backward(Act din, float* dw, float* db, CAct dout, CAct in,
                                  const float* w, const float* mean, const float* rstd, int64_t N, int C,
                                  GradMode din_mode, GradMode param_mode) = 0;

  // ---- linear: out[N,OC] = in[N,IC] * w[OC,IC]^T + bias[OC] (bias may be null). The GEMM
  // operands in and w are fp32 or bf16 (w is then the model's bf16 weight copy); products are
  // summed in fp32 and the bias added in fp32 before out is stored.
  virtual void linear_forward(Act out, CAct in, CAct w, const float* bias,
                              int64_t N, int IC, int OC) = 0;
  // din [N,IC] += dout * w (din may be null); dw [OC,IC] += dout^T * in; dbias [OC] += column sums
  // (dbias null when there is no bias). din: din_mode; dw, dbias: param_mode.
  virtual void linear_backward(Act din, float* dw, float* dbias, CAct dout, CAct in,
                               CAct w, int64_t N, int IC, int OC, GradMode din_mode,
                               GradMode param_mode) = 0;

  // ---- elementwise activation (relu | gelu-tanh): out[i] = act(in[i])
  virtual void activation_forward(Act out, CAct in, int64_t n, Activation act) = 0;
  // din[i] += act'(in[i]) * dout[i]
  virtual void activation_backward(Act din, CAct dout, CAct in, int64_t n,
                                   Activation act, GradMode mode) = 0;

  // ---- residual with dropout: out[i] = x[i] + dropout(y[i]) (out may alias x)
  virtual void dropout_add_forward(Act out, CAct x, CAct y, int64_t n,
                                   const Dropout& d) = 0;
  // dx[i] += dout[i] (dx may be null); dy[i] += dropout(dout[i]) (same mask and scale); mode: both
  virtual void dropout_add_backward(Act dx, Act dy, CAct dout, int64_t n,
                                    const Dropout& d, GradMode mode) = 0;

  // ---- Attention saves one statistic per row ([B,H,T]), never the [B,H,T,T] probabilities:
  // backward recomputes the scores from q and k, and p from the statistic, tile by tile (the
  // flash-attention scheme). Memory saved for backward is O(B*H*T) per layer.

  // ---- classical causal self-attention (SPEC §1.1 csa), per (b, h):
  //   w_ij = (q_i . k_j) * scale, p_i = softmax_{j<=i}(w_i), p = dropout(p), out_i = sum_j p_ij v_j
  // q, k, v: rows of [N, ld_in] with head h at columns h*D .. h*D+D-1 of each.
  // out [N, ld_out], head h at columns h*D. lse [B,H,T]: lse_i = log sum_{j<=i} exp(w_ij), saved
  // for backward (p_ij = exp(w_ij - lse_i)).
  // Dropout element index of p_ij: ((b*H + h)*T + i)*T + j (plus d.elem_offset); backward draws
  // the same mask again from the same counters.
  virtual void csa_forward(Act out, int ld_out, float* lse, CAct q, CAct k,
                           CAct v, int ld_in, int64_t B, int T, int H, int D, float scale,
                           const Dropout& d) = 0;
  // dq, dk, dv share ld_in with q, k, v; all += (mode; only the heads' D columns are written)
  virtual void csa_backward(Act dq, Act dk, Act dv, CAct dout, int ld_out,
                            const float* lse, CAct q, CAct k, CAct v,
                            int ld_in, int64_t B, int T, int H, int D, float scale, const Dropout& d,
                            GradMode mode) = 0;

  // ---- Gaussian-kernel attention (SPEC §1.1 qisa), per (b, h), with the score of AttnScore:
  //   paper: alpha_ij = exp(-|q_i - k_j|^2), p_i = softmax_{j<=i}(alpha_i)
  //   gaussian: p_i = softmax_{j<=i}(-scale |q_i - k_j|^2)
  //   causal: out_i = sum_{j<=i} p_ij v_j;   reference: out_j = sum_{i>=j} p_ij v_i
  // q, k: rows of [N, ld_qk], head h at columns h*D; v: [N, ld_v], head h at columns h*D;
  // out [N, ld_out], head h at columns h*D. z [B,H,T], saved for backward:
  //   paper: the row normaliser z_i = sum_{j<=i} exp(alpha_ij - 1/2) (p_ij = exp(alpha_ij - 1/2) /
  //   z_i; alpha is in (0, 1], so no running maximum is needed; the shift by 1/2 cancels in p);
  //   gaussian: the row's log-sum-exp z_i = log sum_{j<=i} exp(-scale d2_ij) (p_ij = exp(-scale
  //   d2_ij - z_i); forward shifts by the row's maximum).
  virtual void gaussian_attention_forward(Act out, int ld_out, float* z, CAct q,
                                          CAct k, int ld_qk, CAct v, int ld_v,
                                          int64_t B, int T, int H, int D, AttnMask mask, AttnScore score) = 0;
  virtual void gaussian_attention_backward(Act dq, Act dk, int ld_qk, Act dv, int ld_v,
                                           CAct dout, int ld_out, const float* z,
                                           CAct q, CAct k, CAct v,
                                           int64_t B, int T, int H, int D, AttnMask mask, AttnScore score,
                                           GradMode mode) = 0;

  // ---- Pauli value layer (SPEC §1.2), per row n and head h:
  //   v[n, h*D + j] = Re <u_nh|P_hj|u_nh>, u_nh = row n columns h*C .. h*C+C-1 of u, zero-padded
  //   to 2^n_qubits amplitudes (C <= 2^n_qubits).
  // u [N, ld_u] (ld_u >= H*C); v [N, ld_v] (ld_v >= H*D); terms [H*D] (backend memory).
  // The amplitudes u and du are always fp32: v is a quadratic form in them, a sum of many
  // products of small amplitudes that cancel, and bf16 amplitudes would cost v far more than
  // bf16's 3 significant digits (test_kernels_bf16_ops.cpp measures it). v may be bf16.
  virtual void pauli_value_forward(Act v, int ld_v, const float* u, int ld_u, const PauliTerm* terms,
                                   int64_t N, int H, int D, int C, int n_qubits) = 0;
  // du [N, ld_u] += dv-weighted gradient: du_b += sum_j dv_j * 2 s_j (-1)^popc(b&m_j) u_{b^f_j}
  virtual void pauli_value_backward(float* du, int ld_u, CAct dv, int ld_v, const float* u,
                                    const PauliTerm* terms, int64_t N, int H, int D, int C,
                                    int n_qubits, GradMode mode) = 0;

  // ---- QISA-A circuit value (SPEC §1.1 qisa_a), per row n and head h:
  //   psi = pad(x_n / |x_n|); RX(rx[h,w]) then RY(ry[h,w]) on each wire w; CNOT(w, w+1 mod n)
  //   for w = 0..n-1; RY(ry2[h,w]) on each wire; v[n, h*D + j] = <psi|P_hj|psi>.
  // x [N, ld_x] (the same C inputs feed every head); rx, ry, ry2 [H, n_qubits]; terms [H*D].
  // The circuit is simulated in fp32 whatever x's type.
  virtual void qisa_a_forward(Act v, int ld_v, CAct x, int ld_x, const float* rx,
                              const float* ry, const float* ry2, const PauliTerm* terms, int64_t N,
                              int H, int D, int C, int n_qubits) = 0;
  // dx [N, ld_x] += (dx_mode); drx, dry, dry2 [H, n_qubits] += (param_mode; sum over rows,
  // fixed-order reduction)
  virtual void qisa_a_backward(Act dx, int ld_x, float* drx, float* dry, float* dry2, CAct dv,
                               int ld_v, CAct x, const float* rx, const float* ry,
                               const float* ry2, const PauliTerm* terms, int64_t N, int H, int D, int C,
                               int n_qubits, GradMode dx_mode, GradMode param_mode) = 0;

  // ---- softmax cross-entropy (in fp32 whatever the logits' type).
  // losses [N] = -log softmax(logits[n])[targets[n]]
  virtual void cross_entropy_forward(float* losses, CAct logits, const int32_t* targets,
                                     int64_t N, int V) = 0;
  // dlogits [N,V] = (softmax(logits[n]) - onehot(targets[n])) * scale. OVERWRITES, and dlogits
  // may alias logits (in place), unlike the other backward ops.
  virtual void cross_entropy_backward(Act dlogits, CAct logits, const int32_t* targets,
                                      int64_t N, int V, float scale) = 0;

  // ---- optimizer and reductions over flat buffers
  // PyTorch AdamW: p -= lr*wd*p; g = grad*grad_scale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
  // p -= (lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
  virtual void adamw_update(float* params, const float* grads, float* m, float* v, int64_t n,
                            const AdamWHyper& h) = 0;
  // dst[i] = src[i] for n elements of any two types (bf16 destinations: round to nearest even).
  virtual void convert(Act dst, CAct src, int64_t n) = 0;
  // dst[i] = src[i] rounded to bf16 stochastically (kernels/bf16.h) with 16 random bits
  // philox_bits(seed, kBf16RoundStream, step, elem_offset + i): reproducible, and a pure function
  // of the element's index, so any split of the buffer rounds the same way. The bf16 weight copy
  // under train.bf16_rounding: stochastic.
  virtual void round_bf16_stochastic(bf16* dst, const float* src, int64_t n, uint64_t seed, uint32_t step,
                                     uint64_t elem_offset) = 0;
  // acc[0] = (accumulate: acc[0] +) x[0] + x[1] + ... + x[n-1], summed in double in index order.
  // The trainer sums a step's row losses on the device with it and reads the sum once a step
  // (acc is backend memory; n is a micro-batch's rows, so one sequential pass is cheap).
  virtual void sum_to(double* acc, const float* x, int64_t n, GradMode mode) = 0;
  // sum of squares in double, fixed-order (for global-norm clipping)
  virtual double sum_squares(const float* x, int64_t n) = 0;
  // x[i] *= a
  virtual void scale(float* x, float a, int64_t n) = 0;
};

// Buffer(be, n, kZeroed): the elements read as zeros (Backend::alloc_zeroed).
struct Zeroed {};
inline constexpr Zeroed kZeroed{};

// Owns `count` elements of T in a backend's memory (RAII; move-only).
template <typename T>
class Buffer {
 public:
  Buffer() = default;
  Buffer(Backend& be, size_t count)
      : be_(&be), ptr_(count ? static_cast<T*>(be.alloc(count * sizeof(T))) : nullptr), count_(count) {}
  Buffer(Backend& be, size_t count, Zeroed)
      : be_(&be), ptr_(count ? static_cast<T*>(be.alloc_zeroed(count * sizeof(T))) : nullptr), count_(count) {}
  Buffer(Buffer&& o) noexcept : be_(o.be_), ptr_(o.ptr_), count_(o.count_) { o.ptr_ = nullptr; o.count_ = 0; }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) { reset(); be_ = o.be_; ptr_ = o.ptr_; count_ = o.count_; o.ptr_ = nullptr; o.count_ = 0; }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { reset(); }
  void reset() noexcept { if (ptr_) be_->release(ptr_); ptr_ = nullptr; count_ = 0; }
  T* get() const { return ptr_; }
  size_t size() const { return count_; }
  size_t bytes() const { return count_ * sizeof(T); }

 private:
  Backend* be_ = nullptr;
  T* ptr_ = nullptr;
  size_t count_ = 0;
};

// The CPU backend (the reference everyone is checked against). threads <= 0: OpenMP default.
std::unique_ptr<Backend> make_cpu_backend(int threads = 0);

}  // namespace qisa
