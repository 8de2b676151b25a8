// Token + position embedding (SPEC §1; CPU contract: kernels/cpu/embedding.h).
//   forward:  out[n, c] = tok[idx[n], c] + pos[n % T, c]          one thread per element, grid-stride
//   backward: dpos[t, c] (=|+=) sum over b = 0..B-1 of dout[b*T + t, c]   one thread per (t, c)
//             dtok[v, c] (=|+=) sum over the rows n with idx[n] == v of dout[n, c], in row order:
//               one thread per column c: (overwrite: zero column c of every row v), then
//               for n = 0..N-1: dtok[idx[n], c] += dout[n, c]
//             Colliding rows are summed in one fixed order without atomics, the CPU's order, so the
//             sums agree with the CPU backend bit for bit. Parallel over C only: a first version.
// Shapes: idx [B*T] int32 in [0, V); tok, dtok [V, C]; pos [>= T, C], dpos [T, C] (fp32);
// out, dout [B*T, C] (T storage: float or bf16). A token id outside [0, V) is not read: forward
// stores NaN for its row, backward skips it (the CPU backend throws; a kernel cannot).
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/cuda/device.h"
#include "kernels/error.h"

namespace qisa::cuda::inline QISA_KERNEL_ABI {

inline constexpr int kEmbThreads = 256;
inline constexpr int64_t kEmbMaxBlocks = 4096;

template <typename T>
__global__ void __launch_bounds__(kEmbThreads)
    embedding_forward_kernel(T* out, const int32_t* idx, const float* tok, const float* pos, int64_t N, int T_, int C,
                             int V) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < N * C; e += stride) {
    const int64_t n = e / C;
    const int c = static_cast<int>(e % C);
    const int32_t v = idx[n];
    store_f(out, e, v >= 0 && v < V ? tok[static_cast<int64_t>(v) * C + c] + pos[(n % T_) * C + c] : NAN);
  }
}

template <typename T>
__global__ void __launch_bounds__(kEmbThreads)
    embedding_backward_dpos_kernel(float* dpos, const T* dout, int64_t B, int T_, int C, bool add) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;  // t * C + c
  if (e >= static_cast<int64_t>(T_) * C) return;
  float s = add ? dpos[e] : 0.0f;
  for (int64_t b = 0; b < B; ++b) s += load_f(dout, b * T_ * C + e);
  dpos[e] = s;
}

template <typename T>
__global__ void __launch_bounds__(kEmbThreads)
    embedding_backward_dtok_kernel(float* dtok, const T* dout, const int32_t* idx, int64_t N, int C, int V, bool add) {
  const int c = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (c >= C) return;
  if (!add)
    for (int64_t v = 0; v < V; ++v) dtok[v * C + c] = 0.0f;
  for (int64_t n = 0; n < N; ++n) {
    const int32_t v = idx[n];
    if (v >= 0 && v < V) dtok[static_cast<int64_t>(v) * C + c] += load_f(dout, n * C + c);
  }
}

inline void check_embedding_shape(int64_t B, int T, int C, int V) {
  QISA_CHECK(B >= 0 && T >= 1 && C >= 1 && V >= 1,
             "cuda embedding shape B=" + std::to_string(B) + " T=" + std::to_string(T) + " C=" + std::to_string(C) +
                 " V=" + std::to_string(V),
             "B >= 0, T >= 1, C >= 1, vocab_size >= 1");
}

// V: the rows of tok (token ids at or above it give NaN rows).
template <typename T>
void embedding_forward(T* out, const int32_t* idx, const float* tok, const float* pos, int64_t B, int T_, int C,
                       int V, cudaStream_t stream) {
  check_embedding_shape(B, T_, C, V);
  const int64_t n = B * T_ * C;
  if (n == 0) return;
  const dim3 grid(static_cast<unsigned>(std::min(ceil_div_i64(n, kEmbThreads), kEmbMaxBlocks)));
  QISA_LAUNCH(embedding_forward_kernel<T>, grid, dim3(kEmbThreads), 0, stream, out, idx, tok, pos, B * T_, T_, C, V);
}

// dtok, dpos: either may be null. mode: both.
template <typename T>
void embedding_backward(float* dtok, float* dpos, const T* dout, const int32_t* idx, int64_t B, int T_, int C, int V,
                        GradMode mode, cudaStream_t stream) {
  check_embedding_shape(B, T_, C, V);
  const bool add = mode == GradMode::accumulate;
  if (dpos) {
    const dim3 grid(static_cast<unsigned>(ceil_div_i64(static_cast<int64_t>(T_) * C, kEmbThreads)));
    QISA_LAUNCH(embedding_backward_dpos_kernel<T>, grid, dim3(kEmbThreads), 0, stream, dpos, dout, B, T_, C, add);
  }
  if (dtok) {
    const dim3 grid(static_cast<unsigned>(ceil_div_i64(C, kEmbThreads)));
    QISA_LAUNCH(embedding_backward_dtok_kernel<T>, grid, dim3(kEmbThreads), 0, stream, dtok, dout, idx, B * T_, C, V,
                add);
  }
}

}  // namespace qisa::cuda
