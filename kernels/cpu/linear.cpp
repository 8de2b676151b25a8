#include "kernels/cpu/linear.h"

#include <cblas.h>

#include <string>

#include "kernels/error.h"

namespace qisa::cpu {

namespace {

constexpr int64_t kRowTile = 512;        // rows per forward / din GEMM call
constexpr int64_t kMinReduceRows = 2048;  // rows per dw/dbias partial (at least)
constexpr int64_t kMaxReduceParts = 8;    // at most this many partials (bounds scratch for big N)

// Row-major C[M,N] = alpha op(A) op(B) + beta C.
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(M),
              static_cast<int>(N), static_cast<int>(K), alpha, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta,
              C, static_cast<int>(ldc));
}
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
          const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(M),
              static_cast<int>(N), static_cast<int>(K), alpha, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta,
              C, static_cast<int>(ldc));
}

void check_linear(int64_t N, int IC, int OC) {
  QISA_CHECK(N >= 0 && IC >= 1 && OC >= 1,
             "linear shape N=" + std::to_string(N) + " IC=" + std::to_string(IC) + " OC=" + std::to_string(OC),
             "N >= 0, in and out features >= 1");
  QISA_CHECK(N <= 0x7fffffff, "linear with " + std::to_string(N) + " rows", "at most 2^31-1 rows per call (BLAS int)");
}

}  // namespace

void blas_single_threaded() { openblas_set_num_threads(1); }

template <typename F>
void linear_forward(F* out, const F* in, const F* w, const F* bias, int64_t N, int IC, int OC) {
  check_linear(N, IC, OC);
  parallel_chunks(N, kRowTile, [&](int64_t, int64_t n0, int64_t n1) {
    F* o = out + n0 * OC;
    if (bias) {
      for (int64_t n = n0; n < n1; ++n)
        for (int c = 0; c < OC; ++c) out[n * OC + c] = bias[c];
    }
    gemm(false, true, n1 - n0, OC, IC, F(1), in + n0 * IC, IC, w, IC, bias ? F(1) : F(0), o, OC);
  });
}

template <typename F>
void linear_backward(F* din, F* dw, F* dbias, const F* dout, const F* in, const F* w, int64_t N, int IC, int OC,
                     Workspace& ws) {
  check_linear(N, IC, OC);
  if (N == 0) return;
  if (din) {
    parallel_chunks(N, kRowTile, [&](int64_t, int64_t n0, int64_t n1) {
      gemm(false, false, n1 - n0, IC, OC, F(1), dout + n0 * OC, OC, w, IC, F(1), din + n0 * IC, IC);
    });
  }
  if (!dw && !dbias) return;
  // Partials: chunk size from N alone (>= kMinReduceRows, at most kMaxReduceParts chunks).
  const int64_t chunk = std::max(kMinReduceRows, ceil_div(N, kMaxReduceParts));
  const int64_t parts = ceil_div(N, chunk);
  const int64_t wsz = dw ? static_cast<int64_t>(OC) * IC : 0;
  const int64_t bsz = dbias ? OC : 0;
  F* part = ws.get<F>(0, static_cast<size_t>(parts * (wsz + bsz)));
  parallel_chunks(N, chunk, [&](int64_t it, int64_t n0, int64_t n1) {
    F* pw = part + it * (wsz + bsz);
    F* pb = pw + wsz;
    if (dw) gemm(true, false, OC, IC, n1 - n0, F(1), dout + n0 * OC, OC, in + n0 * IC, IC, F(0), pw, IC);
    if (dbias) {
      for (int c = 0; c < OC; ++c) pb[c] = 0;
      for (int64_t n = n0; n < n1; ++n) {
        const F* g = dout + n * OC;
#pragma omp simd
        for (int c = 0; c < OC; ++c) pb[c] += g[c];
      }
    }
  });
  // Combine in chunk order, then add to the caller's gradient once.
  for (int64_t it = 1; it < parts; ++it) {
    F* p0 = part;
    const F* pi = part + it * (wsz + bsz);
    for (int64_t e = 0; e < wsz + bsz; ++e) p0[e] += pi[e];
  }
  if (dw)
    for (int64_t e = 0; e < wsz; ++e) dw[e] += part[e];
  if (dbias)
    for (int c = 0; c < OC; ++c) dbias[c] += part[wsz + c];
}

template void linear_forward<float>(float*, const float*, const float*, const float*, int64_t, int, int);
template void linear_forward<double>(double*, const double*, const double*, const double*, int64_t, int, int);
template void linear_backward<float>(float*, float*, float*, const float*, const float*, const float*, int64_t, int,
                                     int, Workspace&);
template void linear_backward<double>(double*, double*, double*, const double*, const double*, const double*,
                                      int64_t, int, int, Workspace&);

}  // namespace qisa::cpu
