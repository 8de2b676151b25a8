// AdamW over a flat parameter buffer or a shard of it (SPEC §2), global-norm clipping and the
// LR schedule. The clipping norm is global: the caller sums squares over every shard.
#pragma once
#include <cstdint>

#include "io/config.h"
#include "kernels/backend.h"

namespace qisa {

// Learning rate at optimizer step t (1-based): linear warm-up over warmup_steps, then
// constant, or a cosine or linear decay from lr to min_lr at the last step (train.steps).
double learning_rate(const TrainConfig& cfg, int64_t t);

// Factor to multiply gradients by so that their global norm is at most `clip` (0 = no clipping).
float clip_scale(double global_norm, double clip);

class AdamW {
 public:
  // n: elements this optimizer updates (the whole flat buffer, or one rank's shard).
  AdamW(Backend& be, int64_t n);
  // One update at step t (1-based) with rate lr; gradients are multiplied by grad_scale first.
  void update(float* params, const float* grads, int64_t t, double lr, const TrainConfig& cfg, float grad_scale);
  float* m() { return m_.get(); }
  float* v() { return v_.get(); }
  int64_t size() const { return n_; }

 private:
  Backend& be_;
  int64_t n_;
  Buffer<float> m_, v_;
};

}  // namespace qisa
