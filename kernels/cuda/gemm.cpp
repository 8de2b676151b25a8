// The one caller of cuBLASLt (see gemm.h for the row-major contract).
//
// cuBLASLt is column-major: D (m x n, ldd) = alpha * op(A) (m x k) * op(B) (k x n) + beta * C,
// where a layout's ld is the stride between columns and must be >= its rows. A row-major
// matrix X [r,c] with row stride ld is, as the same bytes, the column-major matrix X^T (c x r,
// ld). So the row-major C [M,N] = op(A) op(B) is computed as the column-major
//   C^T (N x M, ldc) = op(B)^T (N x K) * op(A)^T (K x M):
// cuBLASLt's A is our B (transa = trans_b, ld = ldb), its B is our A (transb = trans_a, ld = lda),
// m = N, n = M, k = K. Stored shapes as column-major layouts (rows x cols, ld):
//   our B: trans_b ? K x N : N x K (ldb)     our A: trans_a ? M x K : K x M (lda)     C: N x M (ldc)
#include "kernels/cuda/gemm.h"

#include <cublasLt.h>

#include <string>
#include <string_view>

#include "kernels/error.h"
#if !defined(QISA_CUBLASLT_DOUBLE)
#include "kernels/cuda/shared_library.h"
#endif

namespace qisa::cuda::inline QISA_GEMM_ABI {
namespace {

// The cuBLASLt entry points this file calls, one list. The product loads libcublasLt when the
// first handle is made (dlopen): the library is 540 MB and its constructors cost every process
// that links it 0.4 s at start (measured on the build VM, 2026-12-07), GPU or not, so `qisa
// --help`, a CPU run and every test binary paid it. The emulated build (QISA_CUBLASLT_DOUBLE)
// links the test double, whose functions the table takes directly.
#define QISA_LT_FUNCTIONS(X)                                                                             \
  X(cublasLtCreate) X(cublasLtDestroy) X(cublasLtGetStatusName) X(cublasLtGetStatusString) X(cublasLtMatmul) \
  X(cublasLtMatmulDescCreate) X(cublasLtMatmulDescDestroy) X(cublasLtMatmulDescSetAttribute)              \
  X(cublasLtMatrixLayoutCreate) X(cublasLtMatrixLayoutDestroy) X(cublasLtMatrixLayoutSetAttribute)

struct LtApi {
#define QISA_LT_MEMBER(name) decltype(&::name) name = nullptr;
  QISA_LT_FUNCTIONS(QISA_LT_MEMBER)
#undef QISA_LT_MEMBER
};

LtApi load_lt() {
  LtApi api;
#if defined(QISA_CUBLASLT_DOUBLE)
#define QISA_LT_BIND(name) api.name = &::name;
#else
  const std::string lib = "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR);
  void* so = open_shared_library(lib, "cuBLASLt, for the CUDA backend's GEMMs",
                                 "it comes with the CUDA toolkit (lib64/) or the nvidia-cublas wheel; add its "
                                 "directory to LD_LIBRARY_PATH, or run on the CPU backend");
  const std::string too_old = "a cuBLASLt older than the CUDA " + std::to_string(CUBLAS_VER_MAJOR) +
                          " headers qisa was built with: install the matching toolkit";
#define QISA_LT_BIND(name) \
  api.name = reinterpret_cast<decltype(api.name)>(shared_library_symbol(so, lib, #name, too_old));
#endif
  QISA_LT_FUNCTIONS(QISA_LT_BIND)
#undef QISA_LT_BIND
  return api;
}

// The table, loaded on first use (a failed load throws and is tried again on the next use).
const LtApi& lt() {
  static const LtApi api = load_lt();
  return api;
}

// Throws unless status is success, one line: "kernels/cuda/gemm.cpp:LINE: cublasLtX(...) failed:
// CUBLAS_STATUS_NAME (status string)" and a hint. `call` is the call's text; its name is kept.
void check_lt(cublasStatus_t status, const char* call, const char* hint,
              SourceLocation loc = SourceLocation::current()) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  const std::string_view text(call);  // "lt().cublasLtX(args)"
  const size_t at = text.find("cublasLt");
  const Error site("", {}, loc);  // where(): the call site, without the build machine's path
  throw Error(site.where() + ": " + std::string(text.substr(at, text.find('(', at) - at)) + "(...) failed: " +
                  lt().cublasLtGetStatusName(status) + " (" + lt().cublasLtGetStatusString(status) + ")",
              hint, loc);
}
#define QISA_LT_CHECK(call, hint) check_lt((call), #call, (hint))

constexpr const char* kHintDesc = "a cuBLASLt descriptor could not be made: out of host memory, or a cuBLASLt build "
                                  "that does not know this attribute";
constexpr const char* kHintMatmul = "INVALID_VALUE/NOT_SUPPORTED: a shape, leading dimension or type combination "
                                    "this cuBLASLt rejects; EXECUTION_FAILED: the GPU failed (check earlier kernels "
                                    "with compute-sanitizer)";

// RAII owners of the two descriptor kinds.
struct MatmulDesc {
  cublasLtMatmulDesc_t d = nullptr;
  MatmulDesc(cublasComputeType_t compute, cudaDataType_t scale) {
    QISA_LT_CHECK(lt().cublasLtMatmulDescCreate(&d, compute, scale), kHintDesc);
  }
  ~MatmulDesc() { (void)lt().cublasLtMatmulDescDestroy(d); }  // documented to return only SUCCESS
  MatmulDesc(const MatmulDesc&) = delete;
  MatmulDesc& operator=(const MatmulDesc&) = delete;
};
struct Layout {
  cublasLtMatrixLayout_t l = nullptr;
  // A column-major rows x cols matrix (stride ld between columns), `batch` of them `stride` apart.
  Layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld, int32_t batch, int64_t stride) {
    QISA_LT_CHECK(
        lt().cublasLtMatrixLayoutCreate(&l, type, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols), ld),
        kHintDesc);
    if (batch == 1) return;
    QISA_LT_CHECK(lt().cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof(batch)),
                  kHintDesc);
    QISA_LT_CHECK(
        lt().cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)),
        kHintDesc);
  }
  ~Layout() { (void)lt().cublasLtMatrixLayoutDestroy(l); }  // documented to return only SUCCESS
  Layout(const Layout&) = delete;
  Layout& operator=(const Layout&) = delete;
};

cudaDataType_t lt_type(DType t) { return t == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F; }
cublasOperation_t lt_op(bool trans) { return trans ? CUBLAS_OP_T : CUBLAS_OP_N; }

std::string shape_text(const GemmOp& op) {
  return "C[" + std::to_string(op.m) + "," + std::to_string(op.n) + "] = op(A) op(B) with K " +
         std::to_string(op.k) + (op.trans_a ? ", A^T" : "") + (op.trans_b ? ", B^T" : "") + ", lda " +
         std::to_string(op.lda) + " ldb " + std::to_string(op.ldb) + " ldc " + std::to_string(op.ldc) + ", batch " +
         std::to_string(op.batch);
}

// Our own checks, in row-major terms, before cuBLASLt sees the op.
void validate(const GemmOp& op) {
  const char* hint = "a caller bug in kernels/cuda: see the contract in kernels/cuda/gemm.h";
  QISA_CHECK(op.m >= 1 && op.n >= 1 && op.k >= 1 && op.batch >= 1, "gemm: empty problem: " + shape_text(op), hint);
  QISA_CHECK(op.a && op.b && op.c, "gemm: null operand: " + shape_text(op), hint);
  QISA_CHECK(op.lda >= (op.trans_a ? op.m : op.k) && op.ldb >= (op.trans_b ? op.k : op.n) && op.ldc >= op.n,
             "gemm: leading dimension below the row width: " + shape_text(op), hint);
  QISA_CHECK(op.c_type == DType::f32 || op.ab_type == DType::bf16,
             "gemm: bf16 C needs bf16 A and B (cuBLASLt has no fp32 x fp32 -> bf16 matmul): " + shape_text(op), hint);
}

}  // namespace

GemmHandle::GemmHandle(CUstream_st* stream, void* workspace, size_t workspace_bytes, bool allow_tf32)
    : stream_(stream), workspace_(workspace), workspace_bytes_(workspace_bytes), allow_tf32_(allow_tf32) {
  cublasLtHandle_t h = nullptr;
  QISA_LT_CHECK(lt().cublasLtCreate(&h), "no usable GPU or CUDA driver for cuBLASLt (see `qisa info`)");
  handle_ = h;
}

// A destructor cannot throw; cublasLtDestroy fails only for a handle never created.
GemmHandle::~GemmHandle() { (void)lt().cublasLtDestroy(handle_); }

void gemm(const GemmHandle& h, const GemmOp& op) {
  validate(op);
  const cublasComputeType_t compute =
      h.allow_tf32() && op.ab_type == DType::f32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  MatmulDesc desc(compute, CUDA_R_32F);  // alpha, beta: host floats (the default pointer mode)
  const int32_t transa = lt_op(op.trans_b), transb = lt_op(op.trans_a);  // swapped: see the top
  QISA_LT_CHECK(lt().cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_TRANSA, &transa, sizeof(transa)),
                kHintDesc);
  QISA_LT_CHECK(lt().cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_TRANSB, &transb, sizeof(transb)),
                kHintDesc);
  const int32_t batch = op.batch;
  // cuBLASLt's A = our B: N x K, stored K x N when trans_b.   cuBLASLt's B = our A: K x M, stored M x K when trans_a.
  const Layout lt_a(lt_type(op.ab_type), op.trans_b ? op.k : op.n, op.trans_b ? op.n : op.k, op.ldb, batch,
                    op.stride_b);
  const Layout lt_b(lt_type(op.ab_type), op.trans_a ? op.m : op.k, op.trans_a ? op.k : op.m, op.lda, batch,
                    op.stride_a);
  const Layout lt_c(lt_type(op.c_type), op.n, op.m, op.ldc, batch, op.stride_c);  // C and D: the same buffer
  QISA_LT_CHECK(lt().cublasLtMatmul(h.get(), desc.d, &op.alpha, op.b, lt_a.l, op.a, lt_b.l, &op.beta, op.c, lt_c.l,
                                    op.c, lt_c.l, /*algo: heuristic*/ nullptr, h.workspace(), h.workspace_bytes(),
                                    h.stream()),
                kHintMatmul);
}

}  // namespace qisa::cuda
