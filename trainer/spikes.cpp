#include "trainer/spikes.h"

#include <cmath>
#include <cstdio>

namespace qisa {

namespace {
std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}
}  // namespace

std::string Spike::describe(double loss_value, double grad_norm_value, double factor) const {
  std::string out;
  auto add = [&](const char* what, double value, double ref) {
    out += (out.empty() ? "" : ", ") + std::string(what) + " " + number(value) + " > " + number(factor) +
           " x reference " + number(ref);
  };
  if (loss) add("loss", loss_value, loss_ref);
  if (grad_norm) add("gradient norm", grad_norm_value, grad_norm_ref);
  return out;
}

Spike SpikeDetector::observe(double loss, double grad_norm) {
  Spike s;
  if (factor_ <= 0) return s;
  SpikeState& st = state_;
  if (st.seen >= warmup_) {
    const double correction = 1.0 - std::pow(kSpikeEmaDecay, static_cast<double>(st.seen));
    s.loss_ref = st.loss_ema / correction;
    s.grad_norm_ref = st.grad_norm_ema / correction;
    s.loss = loss > factor_ * s.loss_ref;
    s.grad_norm = grad_norm > factor_ * s.grad_norm_ref;
  }
  if (s.any()) {
    if (++st.in_a_row >= kSpikeRestart) {
      st = SpikeState{};
      s.restarted = true;
    }
    return s;
  }
  st.in_a_row = 0;
  st.loss_ema = kSpikeEmaDecay * st.loss_ema + (1.0 - kSpikeEmaDecay) * loss;
  st.grad_norm_ema = kSpikeEmaDecay * st.grad_norm_ema + (1.0 - kSpikeEmaDecay) * grad_norm;
  ++st.seen;
  return s;
}

}  // namespace qisa
