#include "trainer/optimizer.h"

#include <algorithm>
#include <cmath>

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

AdamW::AdamW(Backend& be, int64_t n) : be_(be), n_(n), m_(be, static_cast<size_t>(n)), v_(be, static_cast<size_t>(n)) {
  be_.zero(m_.get(), m_.bytes());
  be_.zero(v_.get(), v_.bytes());
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
  be_.adamw_update(params, grads, m_.get(), v_.get(), n_, h);
}

}  // namespace qisa
