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

}  // namespace qisa
