// Linear layer (SPEC §1), PyTorch layout: w [OC, IC].
// Narrow layers (IC and OC up to kLinearSmallMax; the paper models have 16, 32, 64, 65) run on
// a register-blocked kernel of our own: at these widths a GEMM library spends much of its time
// packing operands and handling edges. Wider layers go to OpenBLAS, which runs single-threaded
// (openblas_set_num_threads(1) at backend creation). Either way every call covers a fixed tile
// of rows (its size depends on the problem only), so the same arithmetic happens for any
// OpenMP thread count, and a row's output depends on that row's input only.
// Defined and instantiated (float, double) in linear.cpp: cblas.h stays private to the library.
#pragma once
#include <cstdint>

#include "kernels/backend.h"
#include "kernels/cpu/parallel.h"

namespace qisa::cpu {

inline constexpr int kLinearSmallMax = 128;

// Tell OpenBLAS to use one thread: we parallelise over tiles ourselves.
void blas_single_threaded();

// out [N,OC] = in [N,IC] * w[OC,IC]^T + bias [OC] (bias may be null). ws holds w^T for the
// narrow path; the overload without it allocates one.
template <typename F>
void linear_forward(F* out, const F* in, const F* w, const F* bias, int64_t N, int IC, int OC, Workspace& ws);
template <typename F>
void linear_forward(F* out, const F* in, const F* w, const F* bias, int64_t N, int IC, int OC);

// din [N,IC] += dout * w (din_mode; null: skip); dw [OC,IC] += dout^T * in (param_mode; null:
// skip); dbias [OC] += column sums of dout (param_mode; null: skip). dw and dbias sum over rows:
// one partial per fixed chunk of rows (rows in order within it), combined in chunk order.
template <typename F>
void linear_backward(F* din, F* dw, F* dbias, const F* dout, const F* in, const F* w, int64_t N, int IC, int OC,
                     Workspace& ws, GradMode din_mode, GradMode param_mode);

}  // namespace qisa::cpu
