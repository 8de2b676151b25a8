// Token + position embedding (SPEC §1): out[b,t,:] = tok[idx[b,t],:] + pos[t,:].
#pragma once
#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/cpu/parallel.h"
#include "kernels/error.h"

namespace qisa::cpu {

inline void check_embedding_args(const int32_t* idx, int64_t B, int T, int C) {
  QISA_CHECK(B >= 0 && T >= 1 && C >= 1,
             "embedding shape B=" + std::to_string(B) + " T=" + std::to_string(T) + " C=" + std::to_string(C),
             "B >= 0, T >= 1, C >= 1");
  for (int64_t i = 0; i < B * T; ++i)
    QISA_CHECK(idx[i] >= 0, "token id " + std::to_string(idx[i]) + " at position " + std::to_string(i),
               "token ids are in [0, vocab_size)");
}

// out [B,T,C]; idx [B,T] in [0,V); tok [V,C]; pos [>=T,C]
template <typename F>
void embedding_forward(F* out, const int32_t* idx, const F* tok, const F* pos, int64_t B, int T, int C) {
  check_embedding_args(idx, B, T, C);
  const int64_t N = B * T;
  parallel_chunks(N, 256, [&](int64_t, int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const F* tr = tok + static_cast<int64_t>(idx[n]) * C;
      const F* pr = pos + (n % T) * C;
      F* o = out + n * C;
#pragma omp simd
      for (int c = 0; c < C; ++c) o[c] = tr[c] + pr[c];
    }
  });
}

// dtok [V,C] += scatter of dout by idx; dpos [T,C] += sum over b of dout. Either may be null.
// Overwrite: dpos rows are stored; dtok (V rows, V >= every id) is cleared first, then
// accumulated, since a row no token hits must read 0. dpos: one thread per column block of t,
// summing b in order. dtok: a scatter whose rows can collide, done serially in row order (N*C
// adds, cheap) so every sum has one fixed order.
template <typename F>
void embedding_backward(F* dtok, F* dpos, const F* dout, const int32_t* idx, int64_t B, int T, int C, int64_t V,
                        GradMode mode) {
  check_embedding_args(idx, B, T, C);
  const bool add = mode == GradMode::accumulate;
  if (dpos) {
    parallel_for(T, [&](int64_t t) {
      F* dp = dpos + t * C;
      if (!add)
        for (int c = 0; c < C; ++c) dp[c] = F(0);
      for (int64_t b = 0; b < B; ++b) {
        const F* g = dout + (b * T + t) * C;
#pragma omp simd
        for (int c = 0; c < C; ++c) dp[c] += g[c];
      }
    });
  }
  if (dtok) {
    if (!add)
      parallel_chunks(V * C, 1 << 16, [&](int64_t, int64_t e0, int64_t e1) {
        for (int64_t e = e0; e < e1; ++e) dtok[e] = F(0);
      });
    for (int64_t n = 0; n < B * T; ++n) {
      QISA_CHECK(idx[n] < V, "token id " + std::to_string(idx[n]) + " at position " + std::to_string(n),
                 "token ids are in [0, vocab_size = " + std::to_string(V) + ")");
      F* dt = dtok + static_cast<int64_t>(idx[n]) * C;
      const F* g = dout + n * C;
#pragma omp simd
      for (int c = 0; c < C; ++c) dt[c] += g[c];
    }
  }
}

}  // namespace qisa::cpu
