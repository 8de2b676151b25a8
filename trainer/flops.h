// The FLOP model: forward FLOPs per token of a GPT (SPEC §1), by component, for the model of
// a ModelConfig at context length T = block_size. A pure function: nothing is allocated.
//
// Conventions (what `qisa plan` prints, and what the tests hold the numbers to):
//  - A multiply-add is 2 FLOPs; a GEMM [m,k] x [k,n] is 2*m*n*k. Per token this makes every
//    Linear 2 * in * out. Bias adds, LayerNorm, activations, residual adds, dropout, the
//    softmax (exp, max, sum, scale) and the cross-entropy are NOT counted: they are O(C) per
//    token, as in the usual 6N + 12 L H Q T estimate (Kaplan et al. 2020, PaLM App. B,
//    nanoGPT's estimate_mfu), which counts matrix products only.
//  - Embeddings: 0 (a table lookup and an add).
//  - Attention pairs: the kernels compute only the pairs j <= i of a sequence (causal; the
//    `reference` mask uses the same lower triangle, transposed), T(T+1)/2 per sequence of T
//    tokens, so a token averages (T+1)/2 pairs. The standard formula counts all T*T, twice
//    ours for large T.
//  - csa: scores q_i . k_j cost 2D per pair and head; the weighted sum 2D per pair and head.
//  - qisa / qisa_a: the Gaussian kernel |q_i - k_j|^2 costs 3D per pair and head (subtract,
//    square, add); the weighted sum 2D.
//  - qisa value map: u = a L_h^T, 2*C*C per head and token (model.qisa_value: per_head), or
//    u = a L^T, 2*C*C once per token and layer (shared: the FLOPs of csa's value projection).
//  - Pauli measurement (SPEC §1.2 fast path): per head, D strings x N = 2^n amplitudes x 3
//    FLOPs (u_b * u_{b^f}, the sign, the accumulate). The CPU kernel skips the zero padding
//    b >= C and folds the symmetric pairs, so it does fewer; this is the formula's count.
//  - QISA-A circuit, per head and token: 3n rotations (RX, RY, RY2 on every wire) on a complex
//    state of N amplitudes at 6 FLOPs per amplitude (each output amplitude is a complex
//    combination of two: 4 real multiplies and 2 adds), CNOTs 0 (a permutation); the
//    measurement of D strings x N amplitudes at 5 FLOPs (Re or Im of conj(psi_b) psi_p: 3,
//    the sign and the accumulate: 2); plus the amplitude encoding a / |a|, 3C once per token
//    and layer (square-accumulate and divide), shared by the heads.
//  - LM head: 2*C*V with V the model's (padded) vocab_size: the padded logits are computed.
//  - Training = 3 x forward (backward = 2 x forward: the gradients of the inputs and of the
//    weights of every product). Recomputation, if ever used, would come on top.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/config.h"

namespace qisa {

struct FlopTerm {
  std::string name;    // "attn.qkv", "mlp.fc", "head", ...
  double per_token;    // forward FLOPs per token, summed over the layers
  std::string what;    // the formula, for the plan's output
};

struct FlopBreakdown {
  std::vector<FlopTerm> terms;   // forward, every component (embedding 0 included)
  double pairs_per_token = 0;    // (T+1)/2 attention pairs per token and head
  double forward() const;        // sum of the terms
  double training() const { return 3.0 * forward(); }
  double term(const std::string& name) const;  // 0 when the model has no such term
};

// Forward FLOPs per token of `m` over a full window of T = m.block_size tokens. m.vocab_size
// must be set (the padded one: what the model computes).
FlopBreakdown forward_flops(const ModelConfig& m);

// The standard estimate of training FLOPs per token, 6 N + 12 L C T, with N the parameters
// other than the embeddings (tok_emb, pos_emb) and all T*T attention pairs counted (nanoGPT's
// estimate_mfu; PaLM's 6N + 12 L H Q T with H Q = C). For comparison only.
double standard_training_flops(const ModelConfig& m, int64_t non_embedding_params);

// ---- MFU: model FLOPs utilisation = (training FLOPs per token x tokens/s) / (ranks x peak).
// The FLOPs are the model's (forward_flops().training()): recomputation is not counted, as in
// PaLM's definition, so MFU does not reward extra work.

// The precision of a run's matrix math; a datasheet quotes one peak per mode. tf32 is fp32
// storage on tensor cores, so this is not plan.h's Precision (storage: fp32 | bf16). The
// trainer passes the run's precision (train.precision: fp32 or bf16).
enum class MathPrecision { fp32, tf32, bf16 };
const char* to_string(MathPrecision p);
// The matrix math of a run with train.precision p (fp32 GEMMs are quoted at the fp32 peak).
inline MathPrecision math_precision(Precision p) { return p == Precision::bf16 ? MathPrecision::bf16 : MathPrecision::fp32; }

// Dense (no sparsity) peak FLOP/s of a GPU, per math mode, from NVIDIA's datasheets.
struct DevicePeak {
  std::string match;   // a device name containing this (case-insensitive) is this device
  std::string label;   // "H100 SXM"
  double bf16, tf32, fp32;  // FLOP/s: tensor-core bf16 and tf32, and plain fp32 (CUDA cores)
};
// Most specific first ("H100 PCIe" before "H100").
const std::vector<DevicePeak>& device_peaks();
// The entry for a device name as the backend reports it ("NVIDIA H100 80GB HBM3"), or null.
const DevicePeak* find_device_peak(const std::string& device_name);
// Its peak for `math`.
double peak_for(const DevicePeak& d, MathPrecision math);

// One rank's peak for MFU: `override_tflops` (train.peak_tflops) when > 0, else the table's
// entry for the device and the run's math precision, else unknown (flops 0). `note` says
// which, for the log.
struct RankPeak {
  double flops = 0;
  std::string note;  // "989.4 TFLOP/s per rank (H100 SXM, bf16)", "unknown for 'cpu': ..."
};
RankPeak resolve_peak(double override_tflops, const std::string& device_model, MathPrecision math);

// MFU of a step; 0 when the peak is unknown (<= 0).
double model_flops_utilization(double training_flops_per_token, double tokens_per_s, int ranks,
                               double peak_flops_per_rank);

}  // namespace qisa
