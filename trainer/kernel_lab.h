// The kernel lab (`qisa bench kernels`): times every op of the Backend interface at the shapes
// of a model config, through the interface only, so it runs on any backend (the CPU backend,
// the CUDA backend on a GPU, the emulated CUDA backend in tests). The host never touches backend
// memory: inputs are random values uploaded with Backend::upload.
//
// Timing: `warmup` untimed calls, then `reps` calls enqueued back to back between two
// Backend::synchronize() calls (std::chrono::steady_clock); ms is the MEAN per call over that
// window (launch latency amortised, as in a training step's stream of ops).
// Backward ops run with GradMode::overwrite (the first micro-batch's mode: no gradient is read).
//
// Traffic: `bytes` is the minimum a kernel must move, reads + writes of its operands once each
// (activations at the run's storage size, 2 bytes for bf16 and 4 for fp32; parameters,
// statistics, Pauli amplitudes and losses 4; token ids 4; a PauliTerm 16); the formula of each
// op is a comment in kernel_lab.cpp. FLOPs follow trainer/flops.h (a multiply-add is 2; a GEMM
// 2*N*IC*OC forward and 4*N*IC*OC backward; attention over the B*H*T(T+1)/2 causal pairs).
// Ceilings, measured on the same backend: a device-to-device copy of copy_bytes (GB/s counts
// read + write, 2 x bytes) and a square GEMM (linear_forward, N = IC = OC = gemm_size, in the
// run's activation type). A memory-bound op reports GB/s / copy GB/s, a compute-bound one (the
// GEMMs, attention, the Pauli and QISA-A circuits) TFLOP/s / GEMM TFLOP/s.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/config.h"
#include "kernels/backend.h"

namespace qisa {

struct KernelLabOptions {
  int reps = 10;                          // timed calls per op (>= 1)
  int warmup = 2;                         // untimed calls first (>= 0)
  int64_t gemm_size = 4096;               // the GEMM ceiling: N = IC = OC
  int64_t copy_bytes = int64_t{256} << 20;  // the copy ceiling
  uint64_t seed = 1337;                   // random inputs, token ids, Pauli strings
  bool emulated = false;                  // figures from the CUDA emulator (set by test-side callers)
};

enum class Bound { memory, compute };
const char* to_string(Bound b);

struct KernelTiming {
  std::string kernel;       // "layernorm_forward", "linear_qkv_backward", ...
  double ms = 0;            // mean per call
  double bytes = 0;         // minimum traffic per call
  double flops = 0;         // per call; 0 where not meaningful (memory-bound ops)
  double gbps = 0;          // bytes / s / 1e9
  double tflops = 0;        // flops / s / 1e12
  double fraction_of_ceiling = 0;  // gbps / copy_gbps (memory) or tflops / gemm_tflops (compute)
  Bound bound = Bound::memory;
};

struct KernelLabReport {
  int64_t B = 0, N = 0, V = 0, params = 0;
  int T = 0, C = 0, H = 0, D = 0, n_qubits = 0;
  DType act = DType::f32;
  bool emulated = false;
  double copy_gbps = 0, copy_ms = 0;      // the ceilings and their times per call
  double gemm_tflops = 0, gemm_ms = 0;
  std::vector<KernelTiming> kernels;      // in the order they ran, each name once
};

// Times every op at the shapes of `m` (T = block_size, C = n_embd, H = n_head, D = C/H,
// V = vocab_size, which must be set; N = B*T) with B sequences and activations of type `act`.
// qisa_a forward/backward only when m.attention is qisa_a. Throws qisa::Error on bad options.
KernelLabReport run_kernel_lab(Backend& be, const ModelConfig& m, int64_t B, DType act, const KernelLabOptions& o);

}  // namespace qisa
