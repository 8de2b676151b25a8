// Linear layer over OpenBLAS (SPEC §1), PyTorch layout: w [OC, IC].
// Every GEMM call covers a fixed tile of rows (its size depends on the problem only), and
// OpenBLAS itself runs single-threaded (openblas_set_num_threads(1) at backend creation), so
// the same calls with the same operands happen for any OpenMP thread count.
// Defined and instantiated (float, double) in linear.cpp: cblas.h stays private to the library.
#pragma once
#include <cstdint>

#include "kernels/cpu/parallel.h"

namespace qisa::cpu {

// Tell OpenBLAS to use one thread: we parallelise over tiles ourselves.
void blas_single_threaded();

// out [N,OC] = in [N,IC] * w[OC,IC]^T + bias [OC] (bias may be null)
template <typename F>
void linear_forward(F* out, const F* in, const F* w, const F* bias, int64_t N, int IC, int OC);

// din [N,IC] += dout * w (null: skip); dw [OC,IC] += dout^T * in (null: skip);
// dbias [OC] += column sums of dout (null: skip). dw and dbias sum over rows: one partial per
// fixed chunk of rows, combined in chunk order.
template <typename F>
void linear_backward(F* din, F* dw, F* dbias, const F* dout, const F* in, const F* w, int64_t N, int IC, int OC,
                     Workspace& ws);

}  // namespace qisa::cpu
