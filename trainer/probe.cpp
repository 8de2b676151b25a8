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

std::string AttentionProbe::to_json() const {
  nlohmann::json j{{"windows", windows}, {"rows_per_layer", rows}};
  nlohmann::json ls = nlohmann::json::array();
  for (const auto& l : layers)
    ls.push_back({{"mean_entropy", l.mean_entropy}, {"min_entropy", l.min_entropy}, {"max_ratio", l.max_ratio}});
  j["layers"] = ls;
  return j.dump();
}

namespace {

// One row's stats from its scores s_j, j <= i (i + 1 >= 2 of them): softmax, entropy relative to
// uniform, max/min weight.
void add_row(const std::vector<double>& s, AttentionLayerStats& st, double& entropy_sum) {
  const double m = *std::max_element(s.begin(), s.end());
  double z = 0;
  for (double x : s) z += std::exp(x - m);
  double h = 0;
  for (double x : s) {
    const double p = std::exp(x - m) / z;
    if (p > 0) h -= p * std::log(p);
  }
  // max p / min p = exp(max s - min s), kept finite (a weight that underflows to 0 is not infinitely far)
  const double spread = m - *std::min_element(s.begin(), s.end());
  const double rel = h / std::log(static_cast<double>(s.size()));
  entropy_sum += rel;
  st.min_entropy = std::min(st.min_entropy, rel);
  st.max_ratio = std::max(st.max_ratio, std::exp(std::min(spread, 700.0)));
}

}  // namespace

AttentionProbe probe_attention(GPT& model, const std::vector<std::vector<int32_t>>& windows) {
  const ModelConfig& m = model.config();
  const int T = m.block_size, C = m.n_embd, H = m.n_head, D = m.head_dim();
  const bool csa = m.attention == AttentionKind::csa;
  const double scale = 1.0 / std::sqrt(static_cast<double>(C));  // csa's 1/sqrt(C) (SPEC)
  const AttnScore score = m.attn_score();  // qisa, qisa_a: the model's score
  const bool paper = score.kind == QisaScore::paper;
  const double gscale = score.scale;
  AttentionProbe r;
  r.layers.assign(static_cast<size_t>(m.n_layer), AttentionLayerStats{});
  std::vector<double> sums(static_cast<size_t>(m.n_layer), 0.0), s;
  for (const auto& w : windows) {
    QISA_CHECK(static_cast<int>(w.size()) == T, "probe window of " + std::to_string(w.size()) + " tokens",
               "windows must have block_size tokens");
    model.forward(w.data(), nullptr, 1, T, StepContext{});
    for (int l = 0; l < m.n_layer; ++l) {
      const GPT::QueryKeys qk = model.query_keys_host(l);
      for (int h = 0; h < H; ++h)
        for (int i = 1; i < T; ++i) {
          s.assign(static_cast<size_t>(i + 1), 0.0);
          const float* q = qk.q.data() + static_cast<int64_t>(i) * C + h * D;
          for (int j = 0; j <= i; ++j) {
            const float* k = qk.k.data() + static_cast<int64_t>(j) * C + h * D;
            double dot = 0, d2 = 0;
            for (int d = 0; d < D; ++d) dot += double(q[d]) * k[d], d2 += (double(q[d]) - k[d]) * (double(q[d]) - k[d]);
            s[static_cast<size_t>(j)] = csa ? dot * scale : paper ? std::exp(-d2) : -gscale * d2;
          }
          add_row(s, r.layers[static_cast<size_t>(l)], sums[static_cast<size_t>(l)]);
        }
    }
    ++r.windows;
  }
  r.rows = r.windows * H * (T - 1);
  for (size_t l = 0; l < r.layers.size(); ++l) r.layers[l].mean_entropy = r.rows ? sums[l] / r.rows : 0.0;
  return r;
}

}  // namespace qisa
