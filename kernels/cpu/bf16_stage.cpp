#include "kernels/cpu/bf16_stage.h"

#include <bit>
#include <cstring>

namespace qisa::cpu {

namespace {

// One row of n elements between any two types.
void convert_row(Act dst, CAct src, int64_t n) {
  if (dst.t == src.t) {
    std::memmove(dst.p, src.p, static_cast<size_t>(n) * dtype_bytes(dst.t));
  } else if (dst.t == DType::f32) {
    float* d = static_cast<float*>(dst.p);  // bf16_to_float: the bits moved up
    const bf16* s = static_cast<const bf16*>(src.p);
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) d[i] = std::bit_cast<float>(static_cast<uint32_t>(s[i].bits) << 16);
  } else {
    // float_to_bf16 (round to nearest even, NaN kept quiet) written without a branch, so the
    // loop vectorises; Bf16Ops.EveryOpIsTheFp32OpRoundedOnceBitForBit holds it to the original.
    bf16* d = static_cast<bf16*>(dst.p);
    const float* s = static_cast<const float*>(src.p);
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t u = std::bit_cast<uint32_t>(s[i]);
      const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
      const uint32_t quiet = (u >> 16) | 0x0040u;
      d[i].bits = static_cast<uint16_t>((u & 0x7FFFFFFFu) > 0x7F800000u ? quiet : rounded);
    }
  }
}

}  // namespace

void convert_rows(Act dst, int64_t ldd, CAct src, int64_t lds, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  if (rows == 1 || (ldd == cols && lds == cols)) {  // contiguous: cut into fixed element chunks
    const int64_t n = rows * cols;
    parallel_chunks(n, kConvertChunk, [&](int64_t, int64_t i0, int64_t i1) { convert_row(dst + i0, src + i0, i1 - i0); });
    return;
  }
  const int64_t per_item = std::max<int64_t>(1, kConvertChunk / cols);
  parallel_chunks(rows, per_item, [&](int64_t, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) convert_row(dst + r * ldd, src + r * lds, cols);
  });
}

const float* Stage::in(CAct src, int64_t n) {
  if (src.t == DType::f32 || !src) return static_cast<const float*>(src.p);
  float* s = scratch(n);
  convert(s, src, n);
  return s;
}

float* Stage::out(Act dst, int64_t n, GradMode mode) {
  if (dst.t == DType::f32 || !dst) return static_cast<float*>(dst.p);
  float* s = scratch(n);
  if (mode == GradMode::accumulate) convert(s, dst, n);
  pending_.push_back({dst, s, 1, n, n});
  return s;
}

namespace {
const float* as_f32(CAct a) {
  QISA_CHECK(a.t == DType::f32 || !a, "cpu backend: a bf16 operand was not staged", "this is a bug in the CPU backend");
  return static_cast<const float*>(a.p);
}
}  // namespace

const float* Stage::in_rows(CAct src, int64_t rows, int64_t cols, int64_t ld, bool compact) {
  if (!compact || !src) return as_f32(src);
  float* s = scratch(rows * cols);
  convert_rows(s, cols, src, ld, rows, cols);
  return s;
}

float* Stage::out_rows(Act dst, int64_t rows, int64_t cols, int64_t ld, bool compact, GradMode mode) {
  if (!compact || !dst) return const_cast<float*>(as_f32(dst));
  float* s = scratch(rows * cols);
  if (mode == GradMode::accumulate) convert_rows(s, cols, dst, ld, rows, cols);
  pending_.push_back({dst, s, rows, cols, ld});
  return s;
}

void Stage::commit() {
  for (const Pending& p : pending_) convert_rows(p.dst, p.ld, p.src, p.cols, p.rows, p.cols);
  pending_.clear();
}

}  // namespace qisa::cpu
