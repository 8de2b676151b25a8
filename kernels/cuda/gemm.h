// Row-major GEMM on cuBLASLt. kernels/cuda/gemm.cpp is the only file of qisa that calls
// cuBLASLt: this header speaks our terms (row-major, PyTorch layout, DType) and needs no CUDA
// header, so kernel headers and the emulated tests (tests/cuda_emu) include it freely.
//
//   C [M,N] (row-major, row stride ldc) = alpha * op(A) [M,K] * op(B) [K,N] + beta * C
//     op(A) = A, stored [M,K] (lda >= K), or A^T when trans_a, stored [K,M] (lda >= M)
//     op(B) = B, stored [K,N] (ldb >= N), or B^T when trans_b, stored [N,K] (ldb >= K)
//   A and B: fp32 or bf16 (both the same); C: fp32, or bf16 when A and B are bf16 (rounded to
//   nearest even once, when stored). Products are summed in fp32 (CUBLAS_COMPUTE_32F; TF32 only
//   when GemmHandle's allow_tf32 says so). beta == 0: C is not read (it may hold NaN).
//   Batched: `batch` independent problems, problem i on A + i*stride_a, B + i*stride_b,
//   C + i*stride_c (strides in elements).
// Every failing cuBLASLt call throws qisa::Error naming file:line, the call, the status and a hint.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/backend.h"

struct CUstream_st;      // cudaStream_t     = CUstream_st*     (driver_types.h)
struct cublasLtContext;  // cublasLtHandle_t = cublasLtContext* (cublasLt.h)

// The emulated test build compiles gemm.cpp against a test double of cuBLASLt; its own
// namespace keeps it apart from qisa_cuda's real build when one test binary links both.
#if defined(QISA_CUBLASLT_DOUBLE)
#define QISA_GEMM_ABI lt_double
#else
#define QISA_GEMM_ABI lt
#endif

namespace qisa::cuda::inline QISA_GEMM_ABI {

struct GemmOp {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  float alpha = 1.0f, beta = 0.0f;
  const void* a = nullptr;
  int64_t lda = 0;
  const void* b = nullptr;
  int64_t ldb = 0;
  void* c = nullptr;
  int64_t ldc = 0;
  DType ab_type = DType::f32;  // A and B
  DType c_type = DType::f32;   // C (read when beta != 0, and written)
  int batch = 1;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
};

// A cuBLASLt handle (RAII) with the stream the GEMMs run on and the workspace they may use.
class GemmHandle {
 public:
  explicit GemmHandle(CUstream_st* stream = nullptr, void* workspace = nullptr, size_t workspace_bytes = 0,
                      bool allow_tf32 = false);
  ~GemmHandle();
  GemmHandle(const GemmHandle&) = delete;
  GemmHandle& operator=(const GemmHandle&) = delete;

  cublasLtContext* get() const { return handle_; }
  CUstream_st* stream() const { return stream_; }
  void* workspace() const { return workspace_; }
  size_t workspace_bytes() const { return workspace_bytes_; }
  bool allow_tf32() const { return allow_tf32_; }

 private:
  cublasLtContext* handle_ = nullptr;
  CUstream_st* stream_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  bool allow_tf32_ = false;
};

// Enqueues op on h's stream. Throws qisa::Error for an invalid op (checked here first) and for
// any cuBLASLt status other than success.
void gemm(const GemmHandle& h, const GemmOp& op);

}  // namespace qisa::cuda
