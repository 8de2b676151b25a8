// The linear layer (backend.h linear_forward / linear_backward) on the cuBLASLt GEMM of
// kernels/cuda/gemm.h, plus two small kernels. PyTorch layout, row-major:
//   forward   out [N,OC]  = in [N,IC] * w [OC,IC]^T (+ bias [OC])  gemm M=N  N=OC K=IC, B^T
//   backward  din [N,IC] (+)= dout [N,OC] * w [OC,IC]              gemm M=N  N=IC K=OC
//             dw [OC,IC] (+)= dout^T [OC,N] * in [N,IC]            gemm M=OC N=IC K=N, A^T
//             dbias [OC] (+)= column sums of dout                  bias_grad_kernel
// overwrite: beta 0 (the old contents are not read); accumulate: beta 1. The GEMM operands of
// one product must have the same type (fp32 or bf16; cuBLASLt has no mixed fp32 x bf16).
// Kernels:
//   add_bias_kernel   out[r,c] = acc[r,c] + bias[c] in fp32, stored once (bf16: nearest even)   grid-stride
//   bias_grad_kernel  block (kBiasCols x kBiasRows), one block per kBiasCols columns: thread
//                     (x,y) sums rows y, y+kBiasRows, ... of column c in fp32; after one barrier
//                     thread (x,0) adds the kBiasRows partials in order. No atomics: the same
//                     inputs give the same bits.
#pragma once
#include <cstdint>

#include "kernels/backend.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/gemm.h"
#include "kernels/error.h"

namespace qisa::cuda::inline QISA_KERNEL_ABI {

inline constexpr int kBiasCols = 32;  // columns per block: a warp reads 32 consecutive floats of a row
inline constexpr int kBiasRows = 8;   // row lanes per block

template <typename T>
__global__ void __launch_bounds__(kEltThreads)
    add_bias_kernel(T* out, const float* acc, const float* bias, int64_t N, int OC) {
  const int64_t n = N * OC, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    store_f(out, i, acc[i] + bias[i % OC]);
}

// db [OC] (+)= sum over rows of dout [N,OC]
template <typename T>
__global__ void __launch_bounds__(kBiasCols* kBiasRows)
    bias_grad_kernel(float* db, const T* dout, int64_t N, int OC, bool accumulate) {
  QISA_SHARED(float, part, kBiasRows * kBiasCols);  // [kBiasRows][kBiasCols]
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kBiasCols + tx;
  float s = 0.0f;
  if (c < OC)
    for (int64_t r = ty; r < N; r += kBiasRows) s += load_f(dout, r * OC + c);
  part[ty * kBiasCols + tx] = s;
  QISA_SYNCTHREADS();  // every partial is written
  if (ty != 0 || c >= OC) return;
  float t = 0.0f;
  for (int j = 0; j < kBiasRows; ++j) t += part[j * kBiasCols + tx];
  db[c] = accumulate ? db[c] + t : t;
}

template <typename T>
void bias_grad(float* db, const T* dout, int64_t N, int OC, GradMode mode, cudaStream_t stream) {
  QISA_LAUNCH(bias_grad_kernel<T>, dim3(static_cast<unsigned>(ceil_div_i64(OC, kBiasCols))), dim3(kBiasCols, kBiasRows),
              0, stream, db, dout, N, OC, mode == GradMode::accumulate);
}

inline void check_same_type(CAct a, CAct b, const char* what) {
  QISA_CHECK(a.t == b.t, std::string("linear: ") + what + " mixes " + dtype_name(a.t) + " and " + dtype_name(b.t),
             "cuBLASLt multiplies fp32 x fp32 or bf16 x bf16 only: convert one operand first");
}

// Floats of scratch linear_forward needs: N*OC when out is bf16 and there is a bias (the fp32
// GEMM result, so that the bias is added in fp32 before the one rounding), else 0.
inline int64_t linear_forward_scratch(DType out, bool has_bias, int64_t N, int OC) {
  return out == DType::bf16 && has_bias ? N * OC : 0;
}

// out [N,OC] = in [N,IC] * w [OC,IC]^T + bias [OC] (bias may be null); scratch: see above.
inline void linear_forward(const GemmHandle& h, Act out, CAct in, CAct w, const float* bias, int64_t N, int IC, int OC,
                           float* scratch) {
  if (N == 0) return;
  check_same_type(in, w, "in x w^T");
  const bool via_scratch = linear_forward_scratch(out.t, bias != nullptr, N, OC) > 0;
  QISA_CHECK(!via_scratch || scratch, "linear_forward: bf16 out with a bias needs N*OC floats of scratch",
             "pass linear_forward_scratch() floats");
  GemmOp op;
  op.m = N, op.n = OC, op.k = IC, op.trans_b = true;
  op.a = in.p, op.lda = IC, op.b = w.p, op.ldb = IC, op.ab_type = in.t;
  op.c = via_scratch ? scratch : out.p, op.ldc = OC, op.c_type = via_scratch ? DType::f32 : out.t;
  gemm(h, op);
  if (!bias) return;
  cudaStream_t stream = h.stream();
  const float* acc = via_scratch ? scratch : static_cast<const float*>(out.p);
  if (out.t == DType::bf16)
    QISA_LAUNCH(add_bias_kernel<bf16>, elementwise_grid(N * OC), dim3(kEltThreads), 0, stream,
                static_cast<bf16*>(out.p), acc, bias, N, OC);
  else
    QISA_LAUNCH(add_bias_kernel<float>, elementwise_grid(N * OC), dim3(kEltThreads), 0, stream,
                static_cast<float*>(out.p), acc, bias, N, OC);
}

// din [N,IC] (+)= dout * w (din may be null); dw [OC,IC] (+)= dout^T * in (dw may be null);
// dbias [OC] (+)= column sums of dout (null: no bias). din: din_mode; dw, dbias: param_mode.
inline void linear_backward(const GemmHandle& h, Act din, float* dw, float* dbias, CAct dout, CAct in, CAct w,
                            int64_t N, int IC, int OC, GradMode din_mode, GradMode param_mode) {
  auto beta = [](GradMode m) { return m == GradMode::accumulate ? 1.0f : 0.0f; };
  QISA_CHECK(N >= 1, "linear_backward: no rows", "N = B*T must be at least 1");
  if (din) {
    check_same_type(dout, w, "dout x w");
    GemmOp op;
    op.m = N, op.n = IC, op.k = OC, op.beta = beta(din_mode);
    op.a = dout.p, op.lda = OC, op.b = w.p, op.ldb = IC, op.ab_type = dout.t;
    op.c = din.p, op.ldc = IC, op.c_type = din.t;
    gemm(h, op);
  }
  if (dw) {
    check_same_type(dout, in, "dout^T x in");
    GemmOp op;
    op.m = OC, op.n = IC, op.k = N, op.trans_a = true, op.beta = beta(param_mode);
    op.a = dout.p, op.lda = OC, op.b = in.p, op.ldb = IC, op.ab_type = dout.t;
    op.c = dw, op.ldc = IC;
    gemm(h, op);
  }
  if (!dbias) return;
  if (dout.t == DType::bf16) bias_grad(dbias, static_cast<const bf16*>(dout.p), N, OC, param_mode, h.stream());
  else bias_grad(dbias, static_cast<const float*>(dout.p), N, OC, param_mode, h.stream());
}

}  // namespace qisa::cuda
