#include "trainer/optimizer.h"

#include <algorithm>
#include <cmath>

#include "kernels/error.h"

namespace qisa {

double learning_rate(const TrainConfig& cfg, int64_t t) {
  if (cfg.warmup_steps > 0 && t <= cfg.warmup_steps)
    return cfg.lr * static_cast<double>(t) / static_cast<double>(cfg.warmup_steps);
  if (cfg.lr_schedule == "cosine") {
    const double span = static_cast<double>(std::max<int64_t>(1, cfg.steps - cfg.warmup_steps));
    const double progress = std::clamp(static_cast<double>(t - cfg.warmup_steps) / span, 0.0, 1.0);
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + std::cos(3.14159265358979323846 * progress));
  }
  if (cfg.lr_schedule == "linear") {
    const double span = static_cast<double>(std::max<int64_t>(1, cfg.steps - cfg.warmup_steps));
    const double progress = std::clamp(static_cast<double>(t - cfg.warmup_steps) / span, 0.0, 1.0);
    return cfg.lr + (cfg.min_lr - cfg.lr) * progress;
  }
  return cfg.lr;
}

bool decays(const ParamEntry& e, const std::string& weight_decay_on) {
  if (weight_decay_on == "all") return true;
  const std::string suffix = ".weight";
  const bool weight = e.name.size() > suffix.size() && e.name.compare(e.name.size() - suffix.size(), suffix.size(), suffix) == 0;
  return weight && e.shape.size() >= 2;
}

std::vector<DecaySpan> decay_spans(const ParamTable& table, int64_t begin, int64_t n, const std::string& weight_decay_on) {
  if (weight_decay_on == "all") return {DecaySpan{0, n, true}};  // one call, as ever
  std::vector<DecaySpan> out;
  auto add = [&](int64_t lo, int64_t hi, bool decay) {  // absolute [lo, hi), clipped to the range
    lo = std::max(lo, begin), hi = std::min(hi, begin + n);
    if (lo >= hi) return;
    if (!out.empty() && out.back().decay == decay && out.back().begin + out.back().size == lo - begin)
      out.back().size += hi - lo;
    else
      out.push_back(DecaySpan{lo - begin, hi - lo, decay});
  };
  for (const auto& e : table.entries()) add(e.offset, e.offset + e.numel, decays(e, weight_decay_on));
  add(table.total(), begin + n, false);  // padding: zeros, nothing to decay
  return out;
}

AdamW::AdamW(Backend& be, int64_t n, std::vector<DecaySpan> spans)
    : be_(be),
      n_(n),
      spans_(std::move(spans)),
      m_(be, static_cast<size_t>(n), kZeroed),
      v_(be, static_cast<size_t>(n), kZeroed) {
  if (spans_.empty()) spans_.push_back(DecaySpan{0, n, true});
  int64_t covered = 0;
  for (const auto& s : spans_) {
    QISA_CHECK(s.begin == covered && s.size >= 0, "AdamW decay spans leave a gap or overlap at element " + std::to_string(covered),
               "build them with decay_spans()");
    covered += s.size;
  }
  QISA_CHECK(covered == n, "AdamW decay spans cover " + std::to_string(covered) + " of " + std::to_string(n) + " elements",
             "build them with decay_spans() over the optimizer's range");
}

float clip_scale(double global_norm, double clip) {
  if (clip > 0.0 && global_norm > clip) return static_cast<float>(clip / (global_norm + 1e-6));
  return 1.0f;
}

void AdamW::update(float* params, const float* grads, int64_t t, double lr, const TrainConfig& cfg, float grad_scale) {
  AdamWHyper h{static_cast<float>(lr),
               static_cast<float>(cfg.beta1),
               static_cast<float>(cfg.beta2),
               static_cast<float>(cfg.eps),
               static_cast<float>(cfg.weight_decay),
               t,
               grad_scale};
  // AdamW is elementwise: one call per span gives the same bits as one call over everything.
  for (const auto& s : spans_) {
    if (s.size == 0) continue;
    AdamWHyper hs = h;
    if (!s.decay) hs.weight_decay = 0.0f;  // p *= 1 - lr*0: exactly p
    be_.adamw_update(params + s.begin, grads + s.begin, m_.get() + s.begin, v_.get() + s.begin, s.size, hs);
  }
}

}  // namespace qisa
