// bf16 operands on the CPU backend (backend.h: Act, CAct). The fp32 kernels run on fp32 views:
//  - an fp32 operand is used in place (no copy: an fp32 run executes exactly what it did before
//    bf16 existed);
//  - a bf16 input is widened into scratch (exact: every bf16 is a float);
//  - a bf16 output is computed in fp32 scratch and rounded to nearest even once, at commit();
//    an accumulated bf16 output is widened first, so old + new is rounded once.
// These are the numbers of a kernel that loads bf16, computes in fp32 and stores bf16 (the GPU's),
// up to summation order. Strided operands (attention heads, Pauli values) are staged as compact
// [rows, cols] copies when any operand of the op is bf16, so all of them share one row stride.
// The big ops work in row chunks of at most kStageBytes of fp32 per operand (chunk_rows: fixed by
// the shape), so the scratch does not undo what bf16 storage saves.
#pragma once
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/parallel.h"

namespace qisa::cpu {

inline constexpr int64_t kStageBytes = int64_t{32} << 20;  // fp32 scratch per staged operand and chunk
inline constexpr int64_t kConvertChunk = 16384;             // elements per work item of a conversion

// Rows per chunk when the widest operand row has row_floats elements: all rows when nothing is
// bf16 (one call, as an fp32 run always made), else at most kStageBytes per operand.
inline int64_t chunk_rows(int64_t rows, int64_t row_floats, bool any_bf16) {
  if (!any_bf16) return std::max<int64_t>(rows, 1);
  return std::clamp<int64_t>(kStageBytes / (4 * std::max<int64_t>(row_floats, 1)), 1, std::max<int64_t>(rows, 1));
}

// dst[i] = src[i] for n elements of any two types (bf16 destinations round to nearest even).
// Rows of a strided operand: rows x cols from stride lds to stride ldd.
void convert_rows(Act dst, int64_t ldd, CAct src, int64_t lds, int64_t rows, int64_t cols);
inline void convert(Act dst, CAct src, int64_t n) { convert_rows(dst, n, src, n, 1, n); }

inline bool any_bf16(std::initializer_list<DType> types) {
  for (DType t : types)
    if (t == DType::bf16) return true;
  return false;
}

// One op's staged operands. Scratch comes from its own Workspace (slots counted from 0 per
// Stage), so it never clashes with the kernels' scratch; make one Stage per op call (or chunk).
class Stage {
 public:
  explicit Stage(Workspace& ws) : ws_(ws) {}
  Stage(const Stage&) = delete;
  Stage& operator=(const Stage&) = delete;

  // Contiguous n elements: an fp32 view.
  const float* in(CAct src, int64_t n);
  // An output of n elements: where the kernel writes fp32. accumulate: holds the old values.
  float* out(Act dst, int64_t n, GradMode mode = GradMode::overwrite);
  // Strided rows x cols at stride ld. compact: a compact [rows, cols] fp32 copy (stride cols);
  // else the operand itself (it must be fp32), at its own stride. Operands that share a stride
  // argument of the kernel are compacted together (ld_of tells the stride to pass).
  const float* in_rows(CAct src, int64_t rows, int64_t cols, int64_t ld, bool compact);
  float* out_rows(Act dst, int64_t rows, int64_t cols, int64_t ld, bool compact, GradMode mode = GradMode::overwrite);
  static int ld_of(bool compact, int64_t cols, int ld) { return compact ? static_cast<int>(cols) : ld; }
  // Stores every staged output into its destination (bf16: rounded to nearest even).
  void commit();

 private:
  struct Pending {
    Act dst;
    const float* src;
    int64_t rows, cols, ld;
  };
  float* scratch(int64_t n) { return ws_.get<float>(slot_++, static_cast<size_t>(n), "bf16 staging"); }
  Workspace& ws_;
  int slot_ = 0;
  std::vector<Pending> pending_;
};

}  // namespace qisa::cpu
