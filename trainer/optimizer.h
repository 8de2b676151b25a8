// AdamW over a flat parameter buffer or a shard of it (SPEC §2), global-norm clipping and the
// LR schedule. The clipping norm is global: the caller sums squares over every shard.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/config.h"
#include "kernels/backend.h"
#include "trainer/param_table.h"

namespace qisa {

// Learning rate at optimizer step t (1-based): linear warm-up over warmup_steps, then
// constant, or a cosine or linear decay from lr to min_lr at the last step (train.steps).
double learning_rate(const TrainConfig& cfg, int64_t t);

// Factor to multiply gradients by so that their global norm is at most `clip` (0 = no clipping).
float clip_scale(double global_norm, double clip);

// Whether AdamW's decoupled weight decay applies to a parameter (train.weight_decay_on): every
// one (all), or only the weight matrices (matrices): the `.weight` tensors of >= 2 dims, i.e.
// Linear weights, embeddings and the [H,C,C] QISA value maps; not biases, LayerNorm weights
// or the QISA-A angles (which are [H,n] but no matrix).
bool decays(const ParamEntry& e, const std::string& weight_decay_on);

// A run of the optimizer's elements that weight decay treats alike; begin is relative to the
// first element the optimizer updates.
struct DecaySpan {
  int64_t begin = 0, size = 0;
  bool decay = true;
  bool operator==(const DecaySpan&) const = default;
};
// Elements [begin, begin + n) of the flat buffer (all of it, or a ZeRO-1 shard that may cut
// tensors anywhere) as spans in order, neighbours alike merged. Elements past the table (the
// zero padding of ZeRO-1) do not decay.
std::vector<DecaySpan> decay_spans(const ParamTable& table, int64_t begin, int64_t n,
                                   const std::string& weight_decay_on);

class AdamW {
 public:
  // n: elements this optimizer updates (the whole flat buffer, or one rank's shard). spans:
  // where weight decay applies (decay_spans); empty = everywhere.
  AdamW(Backend& be, int64_t n, std::vector<DecaySpan> spans = {});
  // One update at step t (1-based) with rate lr; gradients are multiplied by grad_scale first.
  void update(float* params, const float* grads, int64_t t, double lr, const TrainConfig& cfg, float grad_scale);
  float* m() { return m_.get(); }
  float* v() { return v_.get(); }
  int64_t size() const { return n_; }

 private:
  Backend& be_;
  int64_t n_;
  std::vector<DecaySpan> spans_;
  Buffer<float> m_, v_;
};

}  // namespace qisa
