// AdamW over the flat parameter buffer (SPEC §2), global-norm clipping and the LR schedule.
#pragma once
#include <cstdint>

#include "io/config.h"
#include "kernels/backend.h"

namespace qisa {

// Learning rate at optimizer step t (1-based): linear warm-up over warmup_steps, then
// constant, or cosine decay from lr to min_lr at the last step.
double learning_rate(const TrainConfig& cfg, int64_t t);

class AdamW {
 public:
  AdamW(Backend& be, int64_t n);
  // One update at step t (1-based) with rate lr. Clips the gradients to global norm `clip`
  // (0 = no clipping) and returns the norm before clipping.
  double step(float* params, const float* grads, int64_t t, double lr, const TrainConfig& cfg);
  float* m() { return m_.get(); }
  float* v() { return v_.get(); }
  int64_t size() const { return n_; }

 private:
  Backend& be_;
  int64_t n_;
  Buffer<float> m_, v_;
};

}  // namespace qisa
