#include "kernels/cpu/linear.h"

#include <cblas.h>

#include <algorithm>
#include <string>

#include "kernels/cpu/simd.h"
#include "kernels/error.h"

namespace qisa::cpu {

namespace {

// Work items: a fixed grid that depends on the problem's shape only (never on the thread
// count), so every element is computed by the same calls for any number of threads.
//   forward, din:  (row tile of kRowTile rows) x (column tile: col_tile())
//   dw, dbias:     (row chunk: one partial, combined in chunk order) x (col_tile() rows of dw)
// Column tiles let both cores work on a GEMM with few rows (e.g. B=4 x T=64 = 256 rows); they
// are only as many as needed for kMinItems items, and at least kMinColTile wide: every tile's
// GEMM call packs the whole [rows, K] operand again (256-column tiles everywhere cost 12% of a
// 124M-shape step on one thread; 96-column tiles of din, whose K is the vocabulary, 5%). With
// 512 as the least width, the 768-wide GEMMs of GPT-2 124M (attention and MLP projections
// forward, every din of width C, the head's din) were one item, half a step's FLOPs on one core
// (B4 T64 on 2 threads: 1.20 -> 1.05 s/step with 192; 1 thread unchanged).
constexpr int64_t kRowTile = 512;         // rows per forward / din work item
constexpr int64_t kMinItems = 8;          // work items a wide GEMM is cut into, where columns allow
constexpr int64_t kMinColTile = 192;      // columns per tile, at least
constexpr int64_t kMinReduceRows = 2048;  // rows per dw/dbias partial (at least)
constexpr int64_t kMaxReduceParts = 8;    // at most this many partials (bounds scratch for big N)
constexpr int64_t kCombineItem = 65536;   // elements per work item when partials are combined

// Columns per tile for a rows x cols GEMM whose rows make ceil(rows / row_tile) items: all of
// them when those are kMinItems or more, else enough tiles for kMinItems items in all.
int64_t col_tile(int64_t rows, int64_t row_tile, int64_t cols) {
  const int64_t row_items = std::max<int64_t>(1, ceil_div(rows, row_tile));
  if (row_items >= kMinItems) return cols;
  const int64_t tiles = std::min(ceil_div(kMinItems, row_items), std::max<int64_t>(1, cols / kMinColTile));
  return ceil_div(cols, tiles);
}

// body(r0, r1, c0, c1) for every tile of a rows x cols grid of rt x ct tiles, in parallel.
template <class Body>
void parallel_grid(int64_t rows, int64_t rt, int64_t cols, int64_t ct, Body&& body) {
  const int64_t nr = ceil_div(rows, rt), nc = ceil_div(cols, ct);
  parallel_for(nr * nc, [&](int64_t it) {
    const int64_t r = it / nc, c = it % nc;
    body(r * rt, std::min(rows, (r + 1) * rt), c * ct, std::min(cols, (c + 1) * ct));
  });
}

// ---------------------------------------------------------------- OpenBLAS (wide layers)

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

// ---------------------------------------------------------------- register-blocked (narrow layers)
//
// One product shape serves all three GEMMs: rows r of C, each a sum over k of a scalar of A
// times a row of B (a pack-aligned row of at most kLinearSmallMax entries, in L1):
//   forward  out[n, :]  = bias + sum_i in[n, i] * w^T[i, :]
//   din      din[n, :] += sum_o dout[n, o] * w[o, :]
//   dw       dw[o, :]   = sum_n dout[n, o] * in[n, :]    (per chunk of rows n)
// MR rows x NR packs of C are summed in registers over k (in k order), each B row load
// feeding MR rows.

constexpr int kMR = 6;  // rows per register block: 6 x 2 packs = 12 sums + 2 B packs + 1 broadcast

// C[r*ldc + j*W ..] = init + sum_{k<K} A[r*ar + k*ak] * B[k*ldb + j*W ..] for r < MR, j < NR;
// init = C itself (kAccum), else bias[j*W ..] (or 0 if null).
template <typename F, int MR, int NR, bool kAccum>
QISA_INLINE void block(F* C, int64_t ldc, const F* A, int64_t ar, int64_t ak, const F* B, int64_t ldb, int64_t K,
                       const F* bias) {
  constexpr int L = kPackLanes<F>;
  Pack<F> acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j)
      acc[r][j] = kAccum ? pack_load(C + r * ldc + j * L) : (bias ? pack_load(bias + j * L) : Pack<F>{});
  for (int64_t k = 0; k < K; ++k) {
    Pack<F> b[NR];
    for (int j = 0; j < NR; ++j) b[j] = pack_load(B + k * ldb + j * L);
    for (int r = 0; r < MR; ++r) {
      const F a = A[r * ar + k * ak];
      for (int j = 0; j < NR; ++j) acc[r][j] += a * b[j];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j) pack_store(C + r * ldc + j * L, acc[r][j]);
}

// C rows [0, R) x columns [0, M) by blocks: rows in groups of kMR (then 4, 2, 1), columns
// in blocks of 2 packs (then 1). B rows hold Mp = M rounded up to a pack (zero padded), bias
// too. A column block that ends past M (M not a whole number of packs) runs on a small buffer
// so that nothing past column M of C is read or written.
template <typename F, bool kAccum>
void product(F* C, int64_t ldc, const F* A, int64_t ar, int64_t ak, const F* B, int64_t ldb, int64_t K, int M,
             int64_t R, const F* bias) {
  constexpr int L = kPackLanes<F>;
  const int Mp = (M + L - 1) / L * L;
  auto rows_block = [&]<int MR, int NR>(int64_t r0, int c0) {
    const F* Ar = A + r0 * ar;
    const F* bc = bias ? bias + c0 : nullptr;
    F* Cr = C + r0 * ldc + c0;
    if (c0 + NR * L <= M) {
      block<F, MR, NR, kAccum>(Cr, ldc, Ar, ar, ak, B + c0, ldb, K, bc);
      return;
    }
    F buf[MR * NR * L] = {};
    const int m = M - c0;
    if (kAccum)
      for (int r = 0; r < MR; ++r) std::copy(Cr + r * ldc, Cr + r * ldc + m, buf + r * NR * L);
    block<F, MR, NR, kAccum>(buf, NR * L, Ar, ar, ak, B + c0, ldb, K, bc);
    for (int r = 0; r < MR; ++r) std::copy(buf + r * NR * L, buf + r * NR * L + m, Cr + r * ldc);
  };
  auto rows = [&]<int MR>(int64_t r0) {
    int c0 = 0;
    for (; c0 + 2 * L <= Mp; c0 += 2 * L) rows_block.template operator()<MR, 2>(r0, c0);
    if (c0 < Mp) rows_block.template operator()<MR, 1>(r0, c0);
  };
  // the rest in blocks of 4, 2, 1 rows: a lone row over a long K (dw of a few outputs) would
  // leave only NR sums in flight
  int64_t r0 = 0;
  for (; r0 + kMR <= R; r0 += kMR) rows.template operator()<kMR>(r0);
  if (r0 + 4 <= R) rows.template operator()<4>(r0), r0 += 4;
  if (r0 + 2 <= R) rows.template operator()<2>(r0), r0 += 2;
  if (r0 < R) rows.template operator()<1>(r0);
}

// dst [rows][ld_dst] = src [rows][cols] with zero columns from cols on; transposed (dst [cols]
// [ld_dst], dst[c][r] = src[r][c], zero from r = rows on) when `transpose`.
template <typename F>
void pad_copy(F* dst, const F* src, int rows, int cols, int ld_dst, bool transpose) {
  auto at = [&](int64_t r, int64_t c) { return src[r * cols + c]; };
  if (transpose) {
    for (int c = 0; c < cols; ++c)
      for (int r = 0; r < ld_dst; ++r) dst[static_cast<int64_t>(c) * ld_dst + r] = r < rows ? at(r, c) : F(0);
  } else {
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < ld_dst; ++c) dst[static_cast<int64_t>(r) * ld_dst + c] = c < cols ? at(r, c) : F(0);
  }
}

template <typename F>
int padded(int n) {
  constexpr int L = kPackLanes<F>;
  return (n + L - 1) / L * L;
}

bool narrow(int IC, int OC) { return IC <= kLinearSmallMax && OC <= kLinearSmallMax; }

void check_linear(int64_t N, int IC, int OC) {
  QISA_CHECK(N >= 0 && IC >= 1 && OC >= 1,
             "linear shape N=" + std::to_string(N) + " IC=" + std::to_string(IC) + " OC=" + std::to_string(OC),
             "N >= 0, in and out features >= 1");
  QISA_CHECK(N <= 0x7fffffff, "linear with " + std::to_string(N) + " rows", "at most 2^31-1 rows per call (BLAS int)");
}

}  // namespace

void blas_single_threaded() { openblas_set_num_threads(1); }

template <typename F>
void linear_forward(F* out, const F* in, const F* w, const F* bias, int64_t N, int IC, int OC, Workspace& ws) {
  check_linear(N, IC, OC);
  if (narrow(IC, OC)) {
    const int OCp = padded<F>(OC);
    // [IC][OCp] w^T, then [OCp] bias
    F* wT = ws.get<F>(0, static_cast<size_t>(IC + 1) * OCp, "linear forward transposed weights");
    pad_copy(wT, w, OC, IC, OCp, true);
    F* bp = nullptr;
    if (bias) {
      bp = wT + static_cast<int64_t>(IC) * OCp;
      pad_copy(bp, bias, 1, OC, OCp, false);
    }
    parallel_chunks(N, kRowTile, [&](int64_t, int64_t n0, int64_t n1) {
      product<F, false>(out + n0 * OC, OC, in + n0 * IC, IC, 1, wT, OCp, IC, OC, n1 - n0, bp);
    });
    return;
  }
  parallel_grid(N, kRowTile, OC, col_tile(N, kRowTile, OC), [&](int64_t n0, int64_t n1, int64_t c0, int64_t c1) {
    F* o = out + n0 * OC + c0;
    if (bias) {
      for (int64_t n = n0; n < n1; ++n)
        for (int64_t c = c0; c < c1; ++c) out[n * OC + c] = bias[c];
    }
    gemm(false, true, n1 - n0, c1 - c0, IC, F(1), in + n0 * IC, IC, w + c0 * IC, IC, bias ? F(1) : F(0), o, OC);
  });
}

template <typename F>
void linear_forward(F* out, const F* in, const F* w, const F* bias, int64_t N, int IC, int OC) {
  Workspace ws;
  linear_forward(out, in, w, bias, N, IC, OC, ws);
}

template <typename F>
void linear_backward(F* din, F* dw, F* dbias, const F* dout, const F* in, const F* w, int64_t N, int IC, int OC,
                     Workspace& ws, GradMode din_mode, GradMode param_mode) {
  check_linear(N, IC, OC);
  const bool din_add = din_mode == GradMode::accumulate, param_add = param_mode == GradMode::accumulate;
  if (N == 0) {  // no rows: the sums over rows are empty, so an overwritten gradient is 0
    if (!param_add && dw) std::fill_n(dw, static_cast<int64_t>(OC) * IC, F(0));
    if (!param_add && dbias) std::fill_n(dbias, OC, F(0));
    return;
  }
  constexpr int L = kPackLanes<F>;
  const bool small = narrow(IC, OC);
  const int ICp = padded<F>(IC);
  if (din) {
    if (small) {
      const F* wp = w;  // rows of w are the B rows; padded when IC is not a whole number of packs
      if (ICp != IC) {
        F* p = ws.get<F>(1, static_cast<size_t>(OC) * ICp, "linear backward padded weights");
        pad_copy(p, w, OC, IC, ICp, false);
        wp = p;
      }
      parallel_chunks(N, kRowTile, [&](int64_t, int64_t n0, int64_t n1) {
        if (din_add)
          product<F, true>(din + n0 * IC, IC, dout + n0 * OC, OC, 1, wp, ICp, OC, IC, n1 - n0, nullptr);
        else
          product<F, false>(din + n0 * IC, IC, dout + n0 * OC, OC, 1, wp, ICp, OC, IC, n1 - n0, nullptr);
      });
    } else {
      parallel_grid(N, kRowTile, IC, col_tile(N, kRowTile, IC), [&](int64_t n0, int64_t n1, int64_t c0, int64_t c1) {
        gemm(false, false, n1 - n0, c1 - c0, OC, F(1), dout + n0 * OC, OC, w + c0, IC, din_add ? F(1) : F(0),
             din + n0 * IC + c0, IC);
      });
    }
  }
  if (!dw && !dbias) return;
  // Partials: chunk size from N alone (>= kMinReduceRows, at most kMaxReduceParts chunks).
  const int64_t chunk = std::max(kMinReduceRows, ceil_div(N, kMaxReduceParts));
  const int64_t parts = ceil_div(N, chunk);
  const int64_t ldp = small ? ICp : IC;  // row stride of a dw partial
  const int64_t wsz = dw ? static_cast<int64_t>(OC) * ldp : 0;
  const int64_t bsz = dbias ? OC : 0;
  // One chunk of a wide layer, overwritten: its GEMM writes dw itself (the bits a partial would
  // hold, without a copy of OC x IC on one thread; the head's is 155 MB at GPT-2's shapes).
  const bool direct_dw = dw && !small && parts == 1 && !param_add;
  F* part = ws.get<F>(0, static_cast<size_t>(parts * ((direct_dw ? 0 : wsz) + bsz)),
                      "linear backward weight-gradient partials");
  const int64_t pstride = (direct_dw ? 0 : wsz) + bsz;  // one chunk's partials
  // the narrow path reads `in` rows as packs: copied to rows of ICp when IC is not a whole number
  const bool pad_in = small && dw && ICp != IC;
  F* in_pad = pad_in ? ws.get<F>(2, static_cast<size_t>(max_threads() * chunk * ICp), "linear backward padded inputs")
                     : nullptr;
  // the narrow path takes all OC columns at once (OC <= kLinearSmallMax)
  parallel_grid(N, chunk, OC, small ? OC : col_tile(N, chunk, OC), [&](int64_t n0, int64_t n1, int64_t o0, int64_t o1) {
    const int64_t it = n0 / chunk;
    F* pw = direct_dw ? dw : part + it * pstride;
    F* pb = part + it * pstride + (direct_dw ? 0 : wsz);
    if (dw && small) {
      const F* x = in + n0 * IC;
      if (pad_in) {
        F* p = in_pad + thread_index() * chunk * ICp;
        pad_copy(p, x, static_cast<int>(n1 - n0), IC, ICp, false);
        x = p;
      }
      product<F, false>(pw, ldp, dout + n0 * OC, 1, OC, x, ldp, n1 - n0, ICp, OC, nullptr);
    } else if (dw) {
      gemm(true, false, o1 - o0, IC, n1 - n0, F(1), dout + n0 * OC + o0, OC, in + n0 * IC, IC, F(0), pw + o0 * IC, IC);
    }
    if (dbias) {  // columns [o0, o1) of this chunk's partial
      for (int64_t c = o0; c < o1; ++c) pb[c] = 0;
      int64_t c0 = o0;
      for (; c0 + L <= o1; c0 += L) {  // whole packs: column sums in registers, rows in order
        Pack<F> s = {};
        for (int64_t n = n0; n < n1; ++n) s += pack_load(dout + n * OC + c0);
        pack_store(pb + c0, s);
      }
      for (int64_t n = n0; n < n1; ++n)
        for (int64_t c = c0; c < o1; ++c) pb[c] += dout[n * OC + c];
    }
  });
  // Combine in chunk order, then add to (or write) the caller's gradient once: each element's
  // sum in the same order whatever thread does it.
  parallel_chunks(pstride, kCombineItem, [&](int64_t, int64_t e0, int64_t e1) {
    for (int64_t it = 1; it < parts; ++it) {
      F* p0 = part;
      const F* pi = part + it * pstride;
      for (int64_t e = e0; e < e1; ++e) p0[e] += pi[e];
    }
  });
  if (dw && !direct_dw)
    parallel_chunks(OC, std::max<int64_t>(1, kCombineItem / IC), [&](int64_t, int64_t r0, int64_t r1) {
      for (int64_t o = r0; o < r1; ++o) {
        F* d = dw + o * IC;
        const F* p = part + o * ldp;
        if (param_add)
          for (int i = 0; i < IC; ++i) d[i] += p[i];
        else
          std::copy_n(p, IC, d);
      }
    });
  if (dbias) {
    const F* pb = part + (direct_dw ? 0 : wsz);
    for (int c = 0; c < OC; ++c) dbias[c] = param_add ? dbias[c] + pb[c] : pb[c];
  }
}

template void linear_forward<float>(float*, const float*, const float*, const float*, int64_t, int, int, Workspace&);
template void linear_forward<double>(double*, const double*, const double*, const double*, int64_t, int, int,
                                     Workspace&);
template void linear_forward<float>(float*, const float*, const float*, const float*, int64_t, int, int);
template void linear_forward<double>(double*, const double*, const double*, const double*, int64_t, int, int);
template void linear_backward<float>(float*, float*, float*, const float*, const float*, const float*, int64_t, int,
                                     int, Workspace&, GradMode, GradMode);
template void linear_backward<double>(double*, double*, double*, const double*, const double*, const double*,
                                      int64_t, int, int, Workspace&, GradMode, GradMode);

}  // namespace qisa::cpu
