// A test double of the cuBLASLt calls kernels/cuda/gemm.cpp makes, for the emulated test build
// (device memory is host memory there). It includes the real cublasLt.h, so the types, enums and
// signatures are the documented ones, and it implements their documented semantics with a plain
// loop in double; it is not the library and knows nothing but these calls:
//  - cublasLtCreate / cublasLtDestroy: a handle; a null handle in cublasLtMatmul is
//    CUBLAS_STATUS_NOT_INITIALIZED ("if cuBLASLt handle has not been initialized").
//  - cublasLtMatmulDescCreate(computeType, scaleType): computeType CUBLAS_COMPUTE_32F or
//    CUBLAS_COMPUTE_32F_FAST_TF32 (computed here at full precision: TF32 only may round inputs),
//    scaleType CUDA_R_32F (alpha, beta are host floats: the default POINTER_MODE_HOST).
//    cublasLtMatmulDescSetAttribute: TRANSA, TRANSB (int32_t cublasOperation_t, default N); "buf
//    is NULL or sizeInBytes doesn't match size of internal storage" is INVALID_VALUE as documented;
//    any other attribute is NOT_SUPPORTED here (a limit of the double, not of cuBLASLt).
//  - cublasLtMatrixLayoutCreate(type, rows, cols, ld): CUBLASLT_ORDER_COL (the default order):
//    element (i, j) of matrix b is at ptr + b*stride + i + j*ld. Types CUDA_R_32F and CUDA_R_16BF.
//    SetAttribute: BATCH_COUNT (int32_t, default 1), STRIDED_BATCH_OFFSET (int64_t elements,
//    default 0), size/NULL rules as above. Create does not check ld (its documented statuses are
//    ALLOC_FAILED and SUCCESS); cublasLtMatmul does.
//  - cublasLtMatmul: D = alpha * op(A) * op(B) + beta * C per batch, op(A) m x k, op(B) k x n,
//    C and D m x n; A's layout is op(A) as stored (k x m when TRANSA = T). INVALID_VALUE ("in
//    conflict or in an impossible configuration") for: null alpha/beta/A/B/C/D/descriptors, ld <
//    rows ("greater or equal to CUBLASLT_MATRIX_LAYOUT_ROWS in case of CUBLASLT_ORDER_COL"),
//    shapes that do not chain, batch counts that differ, C == D with a different layout (in place
//    needs Cdesc == Ddesc), workspace null with a size. NOT_SUPPORTED for a type combination
//    outside cuBLASLt's table for compute 32F / scale 32F: A = B = 32F with C = D = 32F, or A = B
//    = 16BF with C = D = 16BF or 32F (TF32: 32F only). beta == 0: C is not read (cuBLAS documents
//    that C need not hold valid values then), so NaN there does not reach D. Products are summed
//    in double, alpha/beta applied in double, D stored as float or bf16 (nearest even).
//  - cublasLtGetStatusName / cublasLtGetStatusString: the CUBLAS_STATUS_* name and a sentence.
//  - Fault injection (cublaslt_double.h): the nth cublasLtMatmul returns a chosen status.
#include <cublasLt.h>

#include <atomic>
#include <cstring>
#include <vector>

#include "cublaslt_double.h"
#include "kernels/bf16.h"

namespace dbl = qisa::test::cublaslt_double;
static_assert(dbl::kStatusSuccess == CUBLAS_STATUS_SUCCESS && dbl::kStatusInvalidValue == CUBLAS_STATUS_INVALID_VALUE &&
              dbl::kStatusExecutionFailed == CUBLAS_STATUS_EXECUTION_FAILED &&
              dbl::kStatusNotSupported == CUBLAS_STATUS_NOT_SUPPORTED);

struct cublasLtContext {  // incomplete in cublasLt.h: the double's handle
  uint32_t magic = 0x4C544442;  // "LTDB"
};

namespace {

std::atomic<int64_t> g_matmul_calls{0}, g_live{0};
std::atomic<int64_t> g_fail_at{-1};  // the value of g_matmul_calls that fails
std::atomic<int> g_fail_status{CUBLAS_STATUS_SUCCESS};

struct DescState {  // lives in cublasLtMatmulDescOpaque_t::data
  cublasComputeType_t compute;
  cudaDataType_t scale;
  int32_t transa, transb;
};
struct LayoutState {  // lives in cublasLtMatrixLayoutOpaque_t::data
  cudaDataType_t type;
  uint64_t rows, cols;
  int64_t ld;
  int32_t batch;
  int64_t stride;
};
static_assert(sizeof(DescState) <= sizeof(cublasLtMatmulDescOpaque_t));
static_assert(sizeof(LayoutState) <= sizeof(cublasLtMatrixLayoutOpaque_t));

template <class S, class O>
S load_state(const O* o) {
  S s;
  std::memcpy(&s, o->data, sizeof(S));
  return s;
}
template <class S, class O>
void store_state(O* o, const S& s) {
  std::memcpy(o->data, &s, sizeof(S));
}

// Copies buf into field when its size matches, as the documented SetAttribute does.
template <class F>
cublasStatus_t set_field(F& field, const void* buf, size_t bytes) {
  if (!buf || bytes != sizeof(F)) return CUBLAS_STATUS_INVALID_VALUE;
  std::memcpy(&field, buf, sizeof(F));
  return CUBLAS_STATUS_SUCCESS;
}

double load(const void* p, cudaDataType_t t, int64_t i) {
  if (t == CUDA_R_16BF) return qisa::bf16_to_float(static_cast<const qisa::bf16*>(p)[i]);
  return static_cast<const float*>(p)[i];
}
void store(void* p, cudaDataType_t t, int64_t i, double v) {
  if (t == CUDA_R_16BF) static_cast<qisa::bf16*>(p)[i] = qisa::float_to_bf16(static_cast<float>(v));
  else static_cast<float*>(p)[i] = static_cast<float>(v);
}

bool types_supported(cublasComputeType_t compute, cudaDataType_t scale, const LayoutState& a, const LayoutState& b,
                     const LayoutState& c, const LayoutState& d) {
  if (scale != CUDA_R_32F || a.type != b.type || c.type != d.type) return false;
  if (compute == CUBLAS_COMPUTE_32F_FAST_TF32) return a.type == CUDA_R_32F && c.type == CUDA_R_32F;
  if (compute != CUBLAS_COMPUTE_32F) return false;
  if (a.type == CUDA_R_32F) return c.type == CUDA_R_32F;
  return a.type == CUDA_R_16BF && (c.type == CUDA_R_16BF || c.type == CUDA_R_32F);
}

// The shape checks of cublasLtMatmul: ld >= rows, op(A) m x k, op(B) k x n, C = D = m x n.
bool shapes_valid(const DescState& s, const LayoutState& a, const LayoutState& b, const LayoutState& c,
                  const LayoutState& d) {
  for (const LayoutState* l : {&a, &b, &c, &d})
    if (l->ld < 0 || static_cast<uint64_t>(l->ld) < l->rows || l->batch < 1) return false;
  const uint64_t m = d.rows, n = d.cols;
  const uint64_t a_rows = s.transa == CUBLAS_OP_N ? a.rows : a.cols, k = s.transa == CUBLAS_OP_N ? a.cols : a.rows;
  const uint64_t b_rows = s.transb == CUBLAS_OP_N ? b.rows : b.cols, b_cols = s.transb == CUBLAS_OP_N ? b.cols : b.rows;
  if (a_rows != m || b_rows != k || b_cols != n || c.rows != m || c.cols != n) return false;
  return a.batch == d.batch && b.batch == d.batch && c.batch == d.batch;
}

bool same_layout(const LayoutState& x, const LayoutState& y) {
  return x.type == y.type && x.rows == y.rows && x.cols == y.cols && x.ld == y.ld && x.batch == y.batch &&
         x.stride == y.stride;
}

// Element (i, j) of op(X) for matrix `batch` of layout l.
double op_at(const void* x, const LayoutState& l, int32_t trans, int64_t batch, uint64_t i, uint64_t j) {
  const uint64_t r = trans == CUBLAS_OP_N ? i : j, c = trans == CUBLAS_OP_N ? j : i;
  return load(x, l.type, batch * l.stride + static_cast<int64_t>(r) + static_cast<int64_t>(c) * l.ld);
}

void reference_matmul(const DescState& s, float alpha, const void* A, const LayoutState& a, const void* B,
                      const LayoutState& b, float beta, const void* C, const LayoutState& c, void* D,
                      const LayoutState& d) {
  const uint64_t k = s.transa == CUBLAS_OP_N ? a.cols : a.rows;
  for (int64_t bt = 0; bt < d.batch; ++bt) {
    // D may be C: every element is read (when beta != 0) before it is written, by the same step
    for (uint64_t j = 0; j < d.cols; ++j)
      for (uint64_t i = 0; i < d.rows; ++i) {
        double acc = 0.0;
        for (uint64_t l = 0; l < k; ++l) acc += op_at(A, a, s.transa, bt, i, l) * op_at(B, b, s.transb, bt, l, j);
        double v = static_cast<double>(alpha) * acc;
        if (beta != 0.0f) v += static_cast<double>(beta) * op_at(C, c, CUBLAS_OP_N, bt, i, j);
        store(D, d.type, bt * d.stride + static_cast<int64_t>(i) + static_cast<int64_t>(j) * d.ld, v);
      }
  }
}

}  // namespace

namespace qisa::test::cublaslt_double {
void fail_nth_matmul(int nth, int status) {
  g_fail_status = status;
  g_fail_at = g_matmul_calls.load() + nth - 1;
}
int64_t matmul_calls() { return g_matmul_calls.load(); }
int64_t live_objects() { return g_live.load(); }
}  // namespace qisa::test::cublaslt_double

extern "C" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new cublasLtContext;
  ++g_live;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  --g_live;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* desc, cublasComputeType_t compute, cudaDataType_t scale) {
  if (!desc) return CUBLAS_STATUS_INVALID_VALUE;
  *desc = new cublasLtMatmulDescOpaque_t{};
  store_state(*desc, DescState{compute, scale, CUBLAS_OP_N, CUBLAS_OP_N});
  ++g_live;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
  if (desc) --g_live;
  delete desc;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t bytes) {
  if (!desc) return CUBLAS_STATUS_INVALID_VALUE;
  DescState s = load_state<DescState>(desc);
  cublasStatus_t st = CUBLAS_STATUS_NOT_SUPPORTED;
  if (attr == CUBLASLT_MATMUL_DESC_TRANSA) st = set_field(s.transa, buf, bytes);
  if (attr == CUBLASLT_MATMUL_DESC_TRANSB) st = set_field(s.transb, buf, bytes);
  if (st == CUBLAS_STATUS_SUCCESS && (s.transa < CUBLAS_OP_N || s.transa > CUBLAS_OP_T || s.transb < CUBLAS_OP_N ||
                                      s.transb > CUBLAS_OP_T))
    return CUBLAS_STATUS_NOT_SUPPORTED;  // conjugate transposes: not for real types, and not here
  if (st == CUBLAS_STATUS_SUCCESS) store_state(desc, s);
  return st;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* layout, cudaDataType type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
  if (!layout) return CUBLAS_STATUS_INVALID_VALUE;
  if (type != CUDA_R_32F && type != CUDA_R_16BF) return CUBLAS_STATUS_NOT_SUPPORTED;  // the double's limit
  *layout = new cublasLtMatrixLayoutOpaque_t{};
  store_state(*layout, LayoutState{type, rows, cols, ld, 1, 0});
  ++g_live;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
  if (layout) --g_live;
  delete layout;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t layout, cublasLtMatrixLayoutAttribute_t attr,
                                                const void* buf, size_t bytes) {
  if (!layout) return CUBLAS_STATUS_INVALID_VALUE;
  LayoutState s = load_state<LayoutState>(layout);
  cublasStatus_t st = CUBLAS_STATUS_NOT_SUPPORTED;
  if (attr == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT) st = set_field(s.batch, buf, bytes);
  if (attr == CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET) st = set_field(s.stride, buf, bytes);
  if (st == CUBLAS_STATUS_SUCCESS) store_state(layout, s);
  return st;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void* alpha, const void* A,
                              cublasLtMatrixLayout_t Adesc, const void* B, cublasLtMatrixLayout_t Bdesc,
                              const void* beta, const void* C, cublasLtMatrixLayout_t Cdesc, void* D,
                              cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t* /*algo: any*/,
                              void* workspace, size_t workspace_bytes, cudaStream_t /*stream: runs at once*/) {
  const int64_t call = g_matmul_calls++;
  if (call == g_fail_at.load()) {
    g_fail_at = -1;
    return static_cast<cublasStatus_t>(g_fail_status.load());
  }
  if (!handle || handle->magic != cublasLtContext{}.magic) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!desc || !alpha || !beta || !A || !B || !C || !D || !Adesc || !Bdesc || !Cdesc || !Ddesc ||
      (!workspace && workspace_bytes > 0))
    return CUBLAS_STATUS_INVALID_VALUE;
  const DescState s = load_state<DescState>(desc);
  const auto a = load_state<LayoutState>(Adesc), b = load_state<LayoutState>(Bdesc);
  const auto c = load_state<LayoutState>(Cdesc), d = load_state<LayoutState>(Ddesc);
  if (!shapes_valid(s, a, b, c, d)) return CUBLAS_STATUS_INVALID_VALUE;
  if (C == D && !same_layout(c, d)) return CUBLAS_STATUS_INVALID_VALUE;
  if (!types_supported(s.compute, s.scale, a, b, c, d)) return CUBLAS_STATUS_NOT_SUPPORTED;
  float al = 0.0f, be = 0.0f;
  std::memcpy(&al, alpha, sizeof(float));
  std::memcpy(&be, beta, sizeof(float));
  reference_matmul(s, al, A, a, B, b, be, C, c, D, d);
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasLtGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_UNKNOWN";
  }
}
const char* cublasLtGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    default: return "an error in the cuBLASLt test double's status list";
  }
}

}  // extern "C"
