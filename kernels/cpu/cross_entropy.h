// Softmax cross-entropy over rows of logits [N, V] (SPEC §1), max-subtracted for stability.
// A row's max and sum run over whole Packs (independent lanes, then pack_max / pack_sum), then
// the tail: a lane-serial loop over V would be one long dependency chain per row.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/simd.h"
#include "kernels/error.h"

namespace qisa::cpu {

// Rows per work item: about kCrossEntropyItem logits (rows are independent, so any split gives
// the same bits; 256 rows of a 50k vocabulary were one item, and one core did a whole batch).
inline constexpr int64_t kCrossEntropyItem = 65536;
inline int64_t cross_entropy_rows(int V) { return std::max<int64_t>(1, kCrossEntropyItem / V); }

inline void check_cross_entropy(const int32_t* targets, int64_t N, int V) {
  QISA_CHECK(N >= 0 && V >= 1, "cross-entropy shape N=" + std::to_string(N) + " V=" + std::to_string(V),
             "N >= 0, vocab_size >= 1");
  for (int64_t n = 0; n < N; ++n)
    QISA_CHECK(targets[n] >= 0 && targets[n] < V,
               "target " + std::to_string(targets[n]) + " at row " + std::to_string(n) + " is outside [0, " +
                   std::to_string(V) + ")",
               "targets are token ids below vocab_size");
}

// max of l[0..V): exact, so the order (packs, then lanes, then the tail) does not matter.
template <typename F>
inline F row_max(const F* l, int V) {
  constexpr int L = kPackLanes<F>;
  F m = l[0];
  int j = 0;
  if (V >= L) {
    Pack<F> mv = pack_load(l);
    for (j = L; j + L <= V; j += L) {
      const Pack<F> x = pack_load(l + j);
      mv = mv < x ? x : mv;
    }
    for (int k = 0; k < L; ++k) m = std::max(m, mv[k]);
  }
  for (; j < V; ++j) m = std::max(m, l[j]);
  return m;
}

// sum of exp(l[j] - mx) over j < V: pack-wise partial sums, pack_sum, then the tail in order.
// e (V entries, may be l itself) receives the exps when kStore.
template <typename F, bool kStore>
inline F exp_sum(F* e, const F* l, F mx, int V) {
  constexpr int L = kPackLanes<F>;
  Pack<F> acc = {};
  int j = 0;
  for (; j + L <= V; j += L) {
    F x[L];
#pragma omp simd
    for (int k = 0; k < L; ++k) x[k] = exp_t<F>(l[j + k] - mx);
    const Pack<F> xv = pack_load(x);
    acc += xv;
    if (kStore) pack_store(e + j, xv);
  }
  F s = pack_sum<F>(acc);
  for (; j < V; ++j) {
    const F x = exp_t<F>(l[j] - mx);
    s += x;
    if (kStore) e[j] = x;
  }
  return s;
}

// losses [N] = -log softmax(logits[n])[targets[n]] = log(sum_j exp(l_j - max)) + max - l_target
template <typename F>
void cross_entropy_forward(F* losses, const F* logits, const int32_t* targets, int64_t N, int V) {
  check_cross_entropy(targets, N, V);
  parallel_chunks(N, cross_entropy_rows(V), [&](int64_t, int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const F* l = logits + n * V;
      const F mx = row_max(l, V);
      const F s = exp_sum<F, false>(nullptr, l, mx, V);
      losses[n] = std::log(s) + mx - l[targets[n]];
    }
  });
}

// dlogits [N,V] = (softmax(logits[n]) - onehot(targets[n])) * scale. OVERWRITES; dlogits may
// alias logits (each element is read before it is written).
template <typename F>
void cross_entropy_backward(F* dlogits, const F* logits, const int32_t* targets, int64_t N, int V, F scale) {
  check_cross_entropy(targets, N, V);
  parallel_chunks(N, cross_entropy_rows(V), [&](int64_t, int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const F* l = logits + n * V;
      F* d = dlogits + n * V;
      const F mx = row_max(l, V);
      const F s = exp_sum<F, true>(d, l, mx, V);  // the exps go straight into d (in place is fine)
      const F inv = F(1) / s, sc = scale;  // sc: a local, stores through d could alias a captured F
      const int t = targets[n];
      const F pt = d[t] * inv;
#pragma omp simd
      for (int j = 0; j < V; ++j) d[j] = d[j] * inv * sc;
      d[t] = (pt - F(1)) * sc;
    }
  });
}

}  // namespace qisa::cpu
