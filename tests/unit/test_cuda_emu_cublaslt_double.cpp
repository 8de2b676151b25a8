// The cuBLASLt test double itself (tests/cuda_emu/cublaslt_double.cpp), called as cuBLASLt is
// documented, in column-major terms and without our wrapper: a hand-computed product, the
// transpose attributes, and the rejections the wrapper's tests rely on. If the double were
// wrong the same way as the wrapper's mapping, the wrapper tests could pass; these pin the
// double to the documentation. Includes the real cublasLt.h (not the CUDA emulator).
#include <cublasLt.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace {

struct Lt {
  cublasLtHandle_t h = nullptr;
  cublasLtMatmulDesc_t d = nullptr;
  Lt() {
    EXPECT_EQ(cublasLtCreate(&h), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
  }
  ~Lt() {
    cublasLtMatmulDescDestroy(d);
    cublasLtDestroy(h);
  }
};
cublasLtMatrixLayout_t layout(cudaDataType t, uint64_t rows, uint64_t cols, int64_t ld) {
  cublasLtMatrixLayout_t l = nullptr;
  EXPECT_EQ(cublasLtMatrixLayoutCreate(&l, t, rows, cols, ld), CUBLAS_STATUS_SUCCESS);
  return l;
}

// A (2 x 3, ld 2) = [1 3 5; 2 4 6] column-major; B (3 x 1) = [1; 1; 2]: A B = [14; 18].
TEST(CublasLtDouble, ColumnMajorProductAndTransposeAttribute) {
  Lt lt;
  const std::vector<float> A = {1, 2, 3, 4, 5, 6}, B = {1, 1, 2};
  std::vector<float> D(2, NAN);
  auto la = layout(CUDA_R_32F, 2, 3, 2), lb = layout(CUDA_R_32F, 3, 1, 3), ld = layout(CUDA_R_32F, 2, 1, 2);
  const float alpha = 1.0f, beta = 0.0f;
  EXPECT_EQ(cublasLtMatmul(lt.h, lt.d, &alpha, A.data(), la, B.data(), lb, &beta, D.data(), ld, D.data(), ld, nullptr,
                           nullptr, 0, nullptr),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(D, (std::vector<float>{14, 18}));
  // The same bytes as a 3 x 2 matrix (ld 3) [1 4; 2 5; 3 6], transposed: [1 2 3; 4 5 6] B = [9; 21].
  const int32_t t = CUBLAS_OP_T;
  ASSERT_EQ(cublasLtMatmulDescSetAttribute(lt.d, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof(t)), CUBLAS_STATUS_SUCCESS);
  auto la_t = layout(CUDA_R_32F, 3, 2, 3);
  EXPECT_EQ(cublasLtMatmul(lt.h, lt.d, &alpha, A.data(), la_t, B.data(), lb, &beta, D.data(), ld, D.data(), ld,
                           nullptr, nullptr, 0, nullptr),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(D, (std::vector<float>{9, 21}));
  for (auto l : {la, lb, ld, la_t}) cublasLtMatrixLayoutDestroy(l);
}

TEST(CublasLtDouble, RejectsWhatTheLibraryRejects) {
  Lt lt;
  std::vector<float> A(16, 1.0f), B(16, 1.0f), D(16, NAN);
  const float alpha = 1.0f, beta = 0.0f;
  auto run = [&](cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t ld) {
    return cublasLtMatmul(lt.h, lt.d, &alpha, A.data(), la, B.data(), lb, &beta, D.data(), ld, D.data(), ld, nullptr,
                          nullptr, 0, nullptr);
  };
  auto ok_a = layout(CUDA_R_32F, 3, 2, 3), ok_b = layout(CUDA_R_32F, 2, 2, 2), ok_d = layout(CUDA_R_32F, 3, 2, 3);
  EXPECT_EQ(run(ok_a, ok_b, ok_d), CUBLAS_STATUS_SUCCESS);
  auto bad_ld = layout(CUDA_R_32F, 3, 2, 2);  // ld < rows (column-major)
  EXPECT_EQ(run(bad_ld, ok_b, ok_d), CUBLAS_STATUS_INVALID_VALUE);
  auto bad_k = layout(CUDA_R_32F, 3, 2, 3), b_k3 = layout(CUDA_R_32F, 3, 2, 3);  // k 2 vs 3
  EXPECT_EQ(run(bad_k, b_k3, ok_d), CUBLAS_STATUS_INVALID_VALUE);
  auto b_bf16 = layout(CUDA_R_16BF, 2, 2, 2);  // fp32 x bf16: not in the type table
  EXPECT_EQ(run(ok_a, b_bf16, ok_d), CUBLAS_STATUS_NOT_SUPPORTED);
  const int32_t two = 2;
  EXPECT_EQ(cublasLtMatrixLayoutSetAttribute(ok_b, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &two, sizeof(two)),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(run(ok_a, ok_b, ok_d), CUBLAS_STATUS_INVALID_VALUE);  // batch counts differ
  const int64_t wide = 2;
  EXPECT_EQ(cublasLtMatrixLayoutSetAttribute(ok_b, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &wide, sizeof(wide)),
            CUBLAS_STATUS_INVALID_VALUE);  // wrong size for an int32_t attribute
  EXPECT_EQ(cublasLtMatmul(nullptr, lt.d, &alpha, A.data(), ok_a, B.data(), b_k3, &beta, D.data(), ok_d, D.data(), ok_d,
                           nullptr, nullptr, 0, nullptr),
            CUBLAS_STATUS_NOT_INITIALIZED);
  for (auto l : {ok_a, ok_b, ok_d, bad_ld, bad_k, b_k3, b_bf16}) cublasLtMatrixLayoutDestroy(l);
}

}  // namespace
