// Loss and gradient-norm spike detection (train.spike_factor, train.spike_warmup, train.on_spike).
// A step is a spike when its loss or its global gradient norm exceeds spike_factor times a
// reference: an exponential moving average (decay kSpikeEmaDecay, about the last 50 steps) of
// the values of earlier non-spike steps, bias-corrected as Adam's moments are, so that it is a
// plain average while few steps are in. Detection starts once spike_warmup steps are in. A spike
// does not enter the reference; after kSpikeRestart spikes in a row the level has moved for good
// (or the run diverged: the warnings say so), so the reference starts again, warm-up included.
// The inputs are results of collectives (the same bits on every rank) and the arithmetic is
// plain double, so every rank takes the same decision without talking to the others. The state
// goes into checkpoints, so a resumed run judges the steps after it as the straight run does.
#pragma once
#include <cstdint>
#include <string>

namespace qisa {

inline constexpr double kSpikeEmaDecay = 0.98;
inline constexpr int64_t kSpikeRestart = 10;

struct SpikeState {
  double loss_ema = 0, grad_norm_ema = 0;  // EMAs without bias correction
  int64_t seen = 0;                        // steps in the EMAs since the (re)start
  int64_t in_a_row = 0;                    // spikes since the last non-spike step
  bool operator==(const SpikeState&) const = default;
};

// The verdict on one step.
struct Spike {
  bool loss = false, grad_norm = false;    // which exceeded factor x its reference
  double loss_ref = 0, grad_norm_ref = 0;  // the references it was judged against
  bool restarted = false;                  // the kSpikeRestart-th spike in a row: the reference starts again
  bool any() const { return loss || grad_norm; }
  // "loss 9.1 > 3 x reference 2.5", "gradient norm 51 > 3 x reference 1.2", or both; "" when none.
  std::string describe(double loss_value, double grad_norm_value, double factor) const;
};

class SpikeDetector {
 public:
  // factor 0: off (observe() finds nothing and leaves the state alone); else > 1.
  SpikeDetector(double factor, int64_t warmup) : factor_(factor), warmup_(warmup) {}
  // Judge a step with finite loss and gradient norm, then update the state.
  Spike observe(double loss, double grad_norm);
  const SpikeState& state() const { return state_; }
  void restore(const SpikeState& s) { state_ = s; }

 private:
  double factor_;
  int64_t warmup_;
  SpikeState state_;
};

}  // namespace qisa
