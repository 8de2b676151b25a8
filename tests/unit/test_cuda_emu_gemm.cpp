// The row-major cuBLASLt wrapper (kernels/cuda/gemm.cpp) and the linear op on top of it
// (kernels/cuda/linear.cuh), run against the cuBLASLt test double (tests/cuda_emu/cublaslt_double.cpp,
// the documented column-major semantics) and the CUDA emulator:
//  - gemm vs a plain row-major loop: all four transpose pairs, odd M,N,K, leading dimensions
//    wider than the rows (the padding must stay untouched), strided batches, alpha and beta,
//    fp32 and bf16 inputs, fp32 and bf16 C. C starts as NaN: beta = 0 must overwrite it, since
//    cuBLAS documents that C is not read when beta is 0;
//  - linear forward/backward vs the CPU backend, both GradModes, with and without bias;
//  - an injected cublasLtMatmul failure and a bad leading dimension end in qisa::Error.
// Tolerances (max|got - want| / max|want|): fp32 outputs 1e-5 (the double sums in double, the CPU
// and the reference in fp32/double: only the summation order differs); bf16 outputs 8e-3 (a value
// that differs in its last fp32 bits may round to the neighbouring bf16, one ulp = 2^-8 relative).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "bf16_values.h"
#include "cublaslt_double.h"
#include "kernels/backend.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/linear.cuh"
#include "kernels/error.h"
#include "test_util.h"

namespace {

using qisa::bf16;
using qisa::DType;
using qisa::GradMode;
using qisa::cuda::GemmHandle;
using qisa::cuda::GemmOp;
using qisa::test::from_f;
using qisa::test::kModes;
using qisa::test::max_rel_err;
using qisa::test::mode_name;
using qisa::test::to_f;
using qisa::test::widen;
namespace dbl = qisa::test::cublaslt_double;

template <class T>
constexpr DType dtype_of = std::is_same_v<T, float> ? DType::f32 : DType::bf16;
template <class T>
constexpr double kTol = std::is_same_v<T, float> ? 1e-5 : 8e-3;

template <class T>
std::vector<T> random_t(std::mt19937_64& rng, size_t n) {
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<T> v(n);
  for (auto& x : v) x = from_f<T>(d(rng));
  return v;
}
int count_nan(const std::vector<float>& v) {
  int n = 0;
  for (float x : v) n += std::isnan(x);
  return n;
}


// A row-major GEMM problem with padded rows: stored widths and leading dimensions.
struct Problem {
  int64_t M, N, K;
  bool ta, tb;
  int64_t pad_a, pad_b, pad_c;  // extra elements per stored row (distinct, so swapped lds show)
  int64_t a_rows() const { return ta ? K : M; }
  int64_t a_cols() const { return ta ? M : K; }
  int64_t b_rows() const { return tb ? N : K; }
  int64_t b_cols() const { return tb ? K : N; }
  int64_t lda() const { return a_cols() + pad_a; }
  int64_t ldb() const { return b_cols() + pad_b; }
  int64_t ldc() const { return N + pad_c; }
  std::string text() const {
    return "M " + std::to_string(M) + " N " + std::to_string(N) + " K " + std::to_string(K) + (ta ? " A^T" : "") +
           (tb ? " B^T" : "") + " lda " + std::to_string(lda()) + " ldb " + std::to_string(ldb()) + " ldc " +
           std::to_string(ldc());
  }
};

// C [M,N] (ldc) = alpha op(A) op(B) + beta C, plain loops in double, for matrix `batch`.
template <class T, class TC>
void reference_gemm(const Problem& p, float alpha, float beta, const T* A, const T* B, TC* C) {
  for (int64_t i = 0; i < p.M; ++i)
    for (int64_t j = 0; j < p.N; ++j) {
      double acc = 0.0;
      for (int64_t l = 0; l < p.K; ++l) {
        const double a = to_f(p.ta ? A[l * p.lda() + i] : A[i * p.lda() + l]);
        const double b = to_f(p.tb ? B[j * p.ldb() + l] : B[l * p.ldb() + j]);
        acc += a * b;
      }
      double v = alpha * acc;
      if (beta != 0.0f) v += beta * static_cast<double>(to_f(C[i * p.ldc() + j]));
      C[i * p.ldc() + j] = from_f<TC>(static_cast<float>(v));
    }
}

GemmOp make_op(const Problem& p, float alpha, float beta, const void* A, const void* B, void* C, DType ab, DType c) {
  GemmOp op;
  op.trans_a = p.ta, op.trans_b = p.tb, op.m = p.M, op.n = p.N, op.k = p.K, op.alpha = alpha, op.beta = beta;
  op.a = A, op.lda = p.lda(), op.b = B, op.ldb = p.ldb(), op.c = C, op.ldc = p.ldc(), op.ab_type = ab, op.c_type = c;
  return op;
}

std::vector<Problem> problems() {
  std::vector<Problem> r;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      r.push_back({7, 13, 5, ta, tb, 3, 1, 2});
      r.push_back({33, 1, 17, ta, tb, 1, 4, 3});
      r.push_back({1, 9, 4, ta, tb, 2, 0, 5});
    }
  return r;
}

// (AB, C) storage pairs: fp32 x fp32 -> fp32, bf16 x bf16 -> fp32, bf16 x bf16 -> bf16.
template <class AB, class C>
struct Types {
  using ab = AB;
  using c = C;
};
template <class P>
class CudaEmuGemm : public ::testing::Test {
 protected:
  uint64_t seed = qisa::test::fresh_seed();
  std::mt19937_64 rng{seed};
};
using GemmTypes = ::testing::Types<Types<float, float>, Types<bf16, float>, Types<bf16, bf16>>;
TYPED_TEST_SUITE(CudaEmuGemm, GemmTypes);

TYPED_TEST(CudaEmuGemm, MatchesRowMajorReferenceForEveryTransposePair) {
  using AB = typename TypeParam::ab;
  using TC = typename TypeParam::c;
  SCOPED_TRACE("seed " + std::to_string(this->seed));
  GemmHandle h;
  for (const Problem& p : problems())
    for (float beta : {0.0f, 1.5f}) {
      SCOPED_TRACE(p.text() + " beta " + std::to_string(beta));
      const auto A = random_t<AB>(this->rng, p.a_rows() * p.lda()), B = random_t<AB>(this->rng, p.b_rows() * p.ldb());
      // beta 0: C is NaN and must be overwritten; else random. Padding columns are NaN in both.
      std::vector<TC> C(p.M * p.ldc(), from_f<TC>(NAN));
      if (beta != 0.0f)
        for (int64_t i = 0; i < p.M; ++i)
          for (int64_t j = 0; j < p.N; ++j) C[i * p.ldc() + j] = from_f<TC>(std::uniform_real_distribution<float>(-1, 1)(this->rng));
      auto want = C;
      qisa::cuda::gemm(h, make_op(p, 0.75f, beta, A.data(), B.data(), C.data(), dtype_of<AB>, dtype_of<TC>));
      reference_gemm(p, 0.75f, beta, A.data(), B.data(), want.data());
      const auto got = widen(C), ref = widen(want);
      EXPECT_EQ(count_nan(got), p.M * p.pad_c) << "NaN left in the product or padding overwritten";
      for (size_t i = 0; i < got.size(); ++i)
        if (std::isnan(ref[i])) {
          EXPECT_TRUE(std::isnan(got[i])) << "padding element " << i << " written";
        }
      EXPECT_LE(max_rel_err(got, ref), kTol<TC>);
    }
}

TYPED_TEST(CudaEmuGemm, StridedBatchesMatchOneGemmPerMatrix) {
  using AB = typename TypeParam::ab;
  using TC = typename TypeParam::c;
  SCOPED_TRACE("seed " + std::to_string(this->seed));
  constexpr int kBatch = 3;
  constexpr int64_t kGap = 5;  // elements between two matrices of a batch, left untouched
  GemmHandle h;
  for (const Problem& p : {Problem{6, 11, 3, false, true, 2, 1, 3}, Problem{5, 7, 9, true, false, 1, 3, 0}}) {
    SCOPED_TRACE(p.text());
    const int64_t sa = p.a_rows() * p.lda() + kGap, sb = p.b_rows() * p.ldb() + kGap, sc = p.M * p.ldc() + kGap;
    const auto A = random_t<AB>(this->rng, kBatch * sa), B = random_t<AB>(this->rng, kBatch * sb);
    auto C = random_t<TC>(this->rng, kBatch * sc);
    auto want = C;
    GemmOp op = make_op(p, -1.25f, 0.5f, A.data(), B.data(), C.data(), dtype_of<AB>, dtype_of<TC>);
    op.batch = kBatch, op.stride_a = sa, op.stride_b = sb, op.stride_c = sc;
    qisa::cuda::gemm(h, op);
    for (int b = 0; b < kBatch; ++b) {
      reference_gemm(p, -1.25f, 0.5f, A.data() + b * sa, B.data() + b * sb, want.data() + b * sc);
      for (int64_t i = 0; i < p.M; ++i)  // the reference must not touch padding or gaps either
        for (int64_t j = p.N; j < p.ldc(); ++j) ASSERT_EQ(to_f(want[b * sc + i * p.ldc() + j]), to_f(C[b * sc + i * p.ldc() + j]));
    }
    const auto got = widen(C), ref = widen(want);
    ASSERT_EQ(count_nan(got), 0);
    EXPECT_LE(max_rel_err(got, ref), kTol<TC>);
    for (int b = 0; b < kBatch; ++b)
      for (int64_t g = sc - kGap; g < sc; ++g) EXPECT_EQ(got[b * sc + g], ref[b * sc + g]) << "gap written";
  }
}

TEST(CudaEmuGemmErrors, InjectedMatmulFailureNamesTheCallTheStatusAndAHint) {
  GemmHandle h;
  const Problem p{3, 4, 5, false, false, 0, 0, 0};
  std::vector<float> A(15, 1.0f), B(20, 1.0f), C(12, NAN);
  dbl::fail_nth_matmul(1);
  try {
    qisa::cuda::gemm(h, make_op(p, 1.0f, 0.0f, A.data(), B.data(), C.data(), DType::f32, DType::f32));
    FAIL() << "no qisa::Error";
  } catch (const qisa::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(": cublasLtMatmul(...) failed: CUBLAS_STATUS_EXECUTION_FAILED"), std::string::npos) << what;
    EXPECT_NE(what.find("CUBLAS_STATUS_EXECUTION_FAILED"), std::string::npos) << what;
    EXPECT_EQ(what.rfind("kernels/cuda/gemm.cpp:", 0), 0u) << what;
    EXPECT_NE(e.hint().find("EXECUTION_FAILED"), std::string::npos) << e.hint();
    EXPECT_EQ(e.message().find('\n'), std::string::npos) << "one line";
  }
  EXPECT_EQ(count_nan(C), 12) << "a failed matmul wrote C";
  qisa::cuda::gemm(h, make_op(p, 1.0f, 0.0f, A.data(), B.data(), C.data(), DType::f32, DType::f32));
  EXPECT_EQ(C, std::vector<float>(12, 5.0f)) << "the fault fires once";
}

TEST(CudaEmuGemmErrors, InjectedFailureOfTheWeightGradientGemmReachesTheCaller) {
  GemmHandle h;
  constexpr int64_t N = 4;
  constexpr int IC = 3, OC = 2;
  std::vector<float> dout(N * OC, 1.0f), in(N * IC, 1.0f), w(OC * IC, 1.0f), din(N * IC), dw(OC * IC);
  dbl::fail_nth_matmul(2, dbl::kStatusNotSupported);  // 1: din, 2: dw
  try {
    qisa::cuda::linear_backward(h, din.data(), dw.data(), nullptr, dout.data(), in.data(), w.data(), N, IC, OC,
                                GradMode::overwrite, GradMode::overwrite);
    FAIL() << "no qisa::Error";
  } catch (const qisa::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cublasLtMatmul("), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("CUBLAS_STATUS_NOT_SUPPORTED"), std::string::npos) << e.what();
  }
}

TEST(CudaEmuGemmErrors, LeadingDimensionBelowTheRowWidthIsRejected) {
  GemmHandle h;
  std::vector<float> A(64, 1.0f), B(64, 1.0f), C(64, NAN);
  for (int which = 0; which < 3; ++which) {
    GemmOp op = make_op(Problem{3, 4, 5, false, false, 0, 0, 0}, 1.0f, 0.0f, A.data(), B.data(), C.data(), DType::f32,
                        DType::f32);
    (which == 0 ? op.lda : which == 1 ? op.ldb : op.ldc) -= 1;
    const int64_t calls = dbl::matmul_calls();
    try {
      qisa::cuda::gemm(h, op);
      FAIL() << "ld " << which << " accepted";
    } catch (const qisa::Error& e) {
      EXPECT_NE(std::string(e.what()).find("leading dimension"), std::string::npos) << e.what();
    }
    EXPECT_EQ(dbl::matmul_calls(), calls) << "rejected before cuBLASLt";
  }
  EXPECT_EQ(count_nan(C), 64);
}

TEST(CudaEmuGemmErrors, HandlesAndDescriptorsAreReleased) {
  const int64_t before = dbl::live_objects();
  {
    GemmHandle h;
    std::vector<float> A(6, 1.0f), B(6, 1.0f), C(4);
    const Problem p{2, 2, 3, false, false, 0, 0, 0};
    qisa::cuda::gemm(h, make_op(p, 1.0f, 0.0f, A.data(), B.data(), C.data(), DType::f32, DType::f32));
    dbl::fail_nth_matmul(1);
    EXPECT_THROW(qisa::cuda::gemm(h, make_op(p, 1.0f, 0.0f, A.data(), B.data(), C.data(), DType::f32, DType::f32)),
                 qisa::Error);
    EXPECT_EQ(dbl::live_objects(), before + 1) << "descriptors of a gemm outlive it";
  }
  EXPECT_EQ(dbl::live_objects(), before);
}

// ---- the linear op vs the CPU backend

template <class T>
class CudaEmuLinear : public ::testing::Test {
 protected:
  std::unique_ptr<qisa::Backend> cpu = qisa::make_cpu_backend(1);
  uint64_t seed = qisa::test::fresh_seed();
  std::mt19937_64 rng{seed};
};
using StorageTypes = ::testing::Types<float, bf16>;
TYPED_TEST_SUITE(CudaEmuLinear, StorageTypes);

struct LinearShape {
  int64_t N;
  int IC, OC;
};
const LinearShape kLinearShapes[] = {{37, 13, 7}, {5, 33, 1}, {64, 16, 65}};

TYPED_TEST(CudaEmuLinear, ForwardMatchesCpu) {
  using T = TypeParam;
  SCOPED_TRACE("seed " + std::to_string(this->seed));
  GemmHandle h;
  for (auto [N, IC, OC] : kLinearShapes)
    for (bool with_bias : {false, true}) {
      SCOPED_TRACE("N " + std::to_string(N) + " IC " + std::to_string(IC) + " OC " + std::to_string(OC) +
                   (with_bias ? " bias" : ""));
      const auto in = random_t<T>(this->rng, N * IC), w = random_t<T>(this->rng, OC * IC);
      const auto bias = qisa::test::random_vector<float>(this->rng, OC);
      const float* b = with_bias ? bias.data() : nullptr;
      std::vector<T> out(N * OC, from_f<T>(NAN)), want(N * OC, from_f<T>(NAN));
      std::vector<float> scratch(qisa::cuda::linear_forward_scratch(dtype_of<T>, with_bias, N, OC), NAN);
      qisa::cuda::linear_forward(h, out.data(), in.data(), w.data(), b, N, IC, OC, scratch.data());
      this->cpu->linear_forward(want.data(), in.data(), w.data(), b, N, IC, OC);
      ASSERT_EQ(count_nan(widen(out)), 0);
      EXPECT_LE(max_rel_err(widen(out), widen(want)), kTol<T>);
    }
}

TYPED_TEST(CudaEmuLinear, BackwardMatchesCpuInBothModes) {
  using T = TypeParam;
  SCOPED_TRACE("seed " + std::to_string(this->seed));
  GemmHandle h;
  for (auto [N, IC, OC] : kLinearShapes)
    for (GradMode dm : kModes)
      for (GradMode pm : kModes)
        for (bool with_din : {true, false}) {
          if (!with_din && dm == GradMode::accumulate) continue;  // no din: its mode means nothing
          SCOPED_TRACE("N " + std::to_string(N) + " IC " + std::to_string(IC) + " OC " + std::to_string(OC) + " din " +
                       (with_din ? mode_name(dm) : "null") + " params " + mode_name(pm));
          const auto dout = random_t<T>(this->rng, N * OC), in = random_t<T>(this->rng, N * IC);
          const auto w = random_t<T>(this->rng, OC * IC);
          auto din = dm == GradMode::overwrite ? std::vector<T>(N * IC, from_f<T>(NAN)) : random_t<T>(this->rng, N * IC);
          auto dw = pm == GradMode::overwrite ? std::vector<float>(OC * IC, NAN)
                                              : qisa::test::random_vector<float>(this->rng, OC * IC);
          auto db = pm == GradMode::overwrite ? std::vector<float>(OC, NAN) : qisa::test::random_vector<float>(this->rng, OC);
          auto want_din = din;
          auto want_dw = dw, want_db = db;
          T* din_p = with_din ? din.data() : nullptr;
          T* want_din_p = with_din ? want_din.data() : nullptr;
          qisa::cuda::linear_backward(h, din_p, dw.data(), db.data(), dout.data(), in.data(), w.data(), N, IC, OC, dm, pm);
          this->cpu->linear_backward(want_din_p, want_dw.data(), want_db.data(), dout.data(), in.data(), w.data(), N, IC,
                                     OC, dm, pm);
          ASSERT_EQ(count_nan(dw) + count_nan(db), 0);
          EXPECT_LE(max_rel_err(dw, want_dw), 1e-5);
          EXPECT_LE(max_rel_err(db, want_db), 1e-5);
          if (with_din) {
            ASSERT_EQ(count_nan(widen(din)), 0);
            EXPECT_LE(max_rel_err(widen(din), widen(want_din)), kTol<T>);
          } else {
            EXPECT_EQ(count_nan(widen(din)), dm == GradMode::overwrite ? N * IC : 0) << "din written though null";
          }
        }
}

// Thread (x,0) adds the kBiasRows partials of its column only after the barrier: without it,
// the early threads read partials not yet written (NaN shared memory in the emulator).
TEST(CudaEmuLinearBias, BiasGradientIsBitwiseRepeatableAndBreaksWithoutItsBarrier) {
  const uint64_t seed = qisa::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  constexpr int64_t N = 45;
  constexpr int OC = 37;  // two blocks, the second partial
  const auto dout = random_t<float>(rng, N * OC);
  std::vector<float> db(OC, NAN), again(OC, NAN), bad(OC, NAN);
  qisa::cuda::bias_grad(db.data(), dout.data(), N, OC, GradMode::overwrite, nullptr);
  qisa::cuda::bias_grad(again.data(), dout.data(), N, OC, GradMode::overwrite, nullptr);
  EXPECT_EQ(0, std::memcmp(db.data(), again.data(), sizeof(float) * OC)) << "not bitwise repeatable";
  {
    qisa::emu::SkipBarriers skip(qisa::emu::kAllBarriers);
    qisa::cuda::bias_grad(bad.data(), dout.data(), N, OC, GradMode::overwrite, nullptr);
  }
  EXPECT_NE(0, std::memcmp(db.data(), bad.data(), sizeof(float) * OC))
      << "bias_grad_kernel gave the right sums without its __syncthreads()";
}

TEST(CudaEmuLinearErrors, MixedOperandTypesAreRejected) {
  GemmHandle h;
  std::vector<float> in(6, 1.0f), out(4);
  std::vector<bf16> w(6, qisa::float_to_bf16(1.0f));
  EXPECT_THROW(qisa::cuda::linear_forward(h, out.data(), in.data(), w.data(), nullptr, 2, 3, 2, nullptr), qisa::Error);
}

}  // namespace
