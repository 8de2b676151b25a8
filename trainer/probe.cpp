#include "trainer/probe.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "kernels/error.h"

namespace qisa {

std::string LeakResult::to_json() const {
  nlohmann::json j{{"max_abs_delta", max_abs_delta}, {"windows", windows}, {"positions", positions},
                   {"by_position", by_position}};
  return j.dump();
}

LeakResult probe_leak(GPT& model, const std::vector<std::vector<int32_t>>& windows) {
  const int T = model.config().block_size;
  const int64_t V = model.config().vocab_size;
  QISA_CHECK(V >= 2, "the probe needs a vocabulary of at least 2 tokens", "use a corpus with more than one character");
  LeakResult r;
  r.by_position.assign(static_cast<size_t>(T), 0.0);
  // Every variant runs alone, as the window did: a matmul may round a row differently at
  // another row position of a batch, and that would read as a leak of ~1e-6.
  std::vector<int32_t> x(static_cast<size_t>(T));
  for (const auto& w : windows) {
    QISA_CHECK(static_cast<int>(w.size()) == T, "probe window of " + std::to_string(w.size()) + " tokens",
               "windows must have block_size tokens");
    model.forward(w.data(), nullptr, 1, T, StepContext{});
    const std::vector<float> base = model.logits_host();
    for (int t = 1; t < T; ++t) {
      x = w;
      x[t] = static_cast<int32_t>((w[t] + 1) % V);
      model.forward(x.data(), nullptr, 1, T, StepContext{});
      const std::vector<float> logits = model.logits_host();
      double d = 0;
      for (int64_t i = 0; i < static_cast<int64_t>(t) * V; ++i)  // positions 0..t-1
        d = std::max(d, static_cast<double>(std::fabs(logits[i] - base[i])));
      r.by_position[t] = std::max(r.by_position[t], d);
      r.max_abs_delta = std::max(r.max_abs_delta, d);
      ++r.positions;
    }
    ++r.windows;
  }
  return r;
}

}  // namespace qisa
