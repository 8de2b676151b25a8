// The leak probe: does a position read tokens after it? For each window and each position
// t >= 1, change the token at t and measure the largest change of the logits at positions
// < t. A causal model gives exactly 0; the paper's `reference` mask does not.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "trainer/model.h"

namespace qisa {

struct LeakResult {
  double max_abs_delta = 0;   // over all windows, changed positions t and earlier positions
  int64_t windows = 0;
  int64_t positions = 0;      // (window, t) pairs tested
  std::vector<double> by_position;  // [T]: max delta when the token at t is changed
  std::string to_json() const;
};

// windows: each block_size tokens.
LeakResult probe_leak(GPT& model, const std::vector<std::vector<int32_t>>& windows);

// The attention probe: how far from uniform are a trained model's attention rows? For every
// window, block, head and row i >= 1, the row p_i over its i+1 visible positions j <= i (SPEC
// §1.1: csa softmax(q.k / sqrt(C)); qisa and qisa_a softmax(exp(-|q-k|^2)), or softmax(-s |q-k|^2)
// with model.qisa_score gaussian), recomputed in
// float64 from the queries and keys the model's forward produced. The `reference` mask applies
// the same rows transposed, so its rows are probed the same way.
//   entropy: H(p_i) / log(i+1), 1 for a uniform row, 0 for one-hot; the mean over rows
//   max_ratio: max_j p_ij / min_j p_ij = exp(max_j s_ij - min_j s_ij), the largest over rows
//   (at most e^700); the paper's score keeps it <= e
struct AttentionLayerStats {
  double mean_entropy = 0, min_entropy = 1, max_ratio = 1;
};
struct AttentionProbe {
  std::vector<AttentionLayerStats> layers;  // [n_layer]
  int64_t windows = 0, rows = 0;            // rows per layer
  std::string to_json() const;
};
AttentionProbe probe_attention(GPT& model, const std::vector<std::vector<int32_t>>& windows);

}  // namespace qisa
