// Residual add with counter-based dropout (SPEC §2b; CPU contract: kernels/cpu/dropout.h and
// backend.h Dropout). Element i of the call is global element e = d.elem_offset + i; it is kept
// iff philox_uniform(d.seed, d.step, d.site, e) >= p, and kept values are scaled by 1/(1-p).
// One thread per Philox block (4 consecutive global elements, one philox4x32 call), grid-stride:
//   for blk in [e0/4, (e0+n-1)/4]:  r = philox4x32(blk, step, site; seed)
//     for w in 0..3 with e = 4 blk + w in [e0, e0+n):  i = e - e0
//       forward:  out[i] = x[i] + y[i] * m(r[w])             (out may alias x)
//       backward: dx[i] (=|+=) dout[i];  dy[i] (=|+=) dout[i] * m(r[w])
//   m = kept ? 1/(1-p) : 0, and 1 when p == 0. The same bits as the CPU backend's for any split,
//   and the same expressions, so the results agree bit for bit where the compilers contract
//   products into FMAs alike.
// T: float or bf16 storage (fp32 arithmetic). out, x, y, dout, dx, dy [n].
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/cuda/device.h"
#include "kernels/error.h"
#include "kernels/philox.h"

namespace qisa::cuda::inline QISA_KERNEL_ABI {

inline constexpr int kDropThreads = 256;
inline constexpr int64_t kDropMaxBlocks = 4096;

// The dropout multiplier of word `bits` (exactly the CPU's dropout_keep test).
__device__ __forceinline__ float dropout_mult(uint32_t bits, float p, float scale) {
  return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f) >= p ? scale : 0.0f;
}

// Runs f(i, mult) for every element of the call, one Philox block per thread.
template <class F>
__device__ __forceinline__ void for_dropout_elements(int64_t n, const Dropout& d, float scale, F f) {
  const uint64_t e0 = d.elem_offset, b0 = e0 >> 2, b1 = (e0 + static_cast<uint64_t>(n) - 1) >> 2;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t blk = b0 + static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; blk <= b1; blk += stride) {
    Philox4 r{{0, 0, 0, 0}};
    if (d.p > 0.0f) r = philox4x32(static_cast<uint32_t>(blk), static_cast<uint32_t>(blk >> 32), d.step, d.site, d.seed);
    for (int w = 0; w < 4; ++w) {
      const uint64_t e = 4 * blk + static_cast<uint64_t>(w);
      if (e < e0 || e - e0 >= static_cast<uint64_t>(n)) continue;
      f(static_cast<int64_t>(e - e0), d.p > 0.0f ? dropout_mult(r.v[w], d.p, scale) : 1.0f);
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kDropThreads)
    dropout_add_forward_kernel(T* out, const T* x, const T* y, int64_t n, Dropout d, float scale) {
  for_dropout_elements(n, d, scale, [&](int64_t i, float m) {
    store_f(out, i, load_f(x, i) + load_f(y, i) * m);  // y * 1 is exact: p == 0 adds y as it is
  });
}

template <typename T>
__global__ void __launch_bounds__(kDropThreads)
    dropout_add_backward_kernel(T* dx, T* dy, const T* dout, int64_t n, Dropout d, float scale, bool add) {
  for_dropout_elements(n, d, scale, [&](int64_t i, float m) {
    const float g = load_f(dout, i);
    if (dx) store_f(dx, i, add ? load_f(dx, i) + g : g);
    // Two stores, as the CPU loop has: `old + g * m` in one expression may be contracted into
    // an FMA (g++ does for C++ on FMA hardware, nvcc with --fmad=true), and the CPU's is.
    if (dy && add) store_f(dy, i, load_f(dy, i) + g * m);
    if (dy && !add) store_f(dy, i, g * m);
  });
}

inline float dropout_scale_checked(const Dropout& d) {
  QISA_CHECK(d.p >= 0.0f && d.p < 1.0f, "dropout p = " + std::to_string(d.p), "dropout probability is in [0, 1)");
  return 1.0f / (1.0f - d.p);
}

inline dim3 dropout_grid(int64_t n, const Dropout& d) {
  const int64_t blocks = static_cast<int64_t>(((d.elem_offset + static_cast<uint64_t>(n) - 1) >> 2) -
                                              (d.elem_offset >> 2)) + 1;
  return dim3(static_cast<unsigned>(std::min(ceil_div_i64(blocks, kDropThreads), kDropMaxBlocks)));
}

template <typename T>
void dropout_add_forward(T* out, const T* x, const T* y, int64_t n, const Dropout& d, cudaStream_t stream) {
  const float scale = dropout_scale_checked(d);
  if (n <= 0) return;
  QISA_LAUNCH(dropout_add_forward_kernel<T>, dropout_grid(n, d), dim3(kDropThreads), 0, stream, out, x, y, n, d,
              scale);
}

template <typename T>
void dropout_add_backward(T* dx, T* dy, const T* dout, int64_t n, const Dropout& d, GradMode mode,
                          cudaStream_t stream) {
  const float scale = dropout_scale_checked(d);
  if (n <= 0) return;
  QISA_LAUNCH(dropout_add_backward_kernel<T>, dropout_grid(n, d), dim3(kDropThreads), 0, stream, dx, dy, dout, n, d,
              scale, mode == GradMode::accumulate);
}

}  // namespace qisa::cuda
