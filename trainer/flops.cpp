#include "trainer/flops.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "kernels/error.h"

namespace qisa {

double FlopBreakdown::forward() const {
  double s = 0;
  for (const auto& t : terms) s += t.per_token;
  return s;
}

double FlopBreakdown::term(const std::string& name) const {
  for (const auto& t : terms)
    if (t.name == name) return t.per_token;
  return 0.0;
}

FlopBreakdown forward_flops(const ModelConfig& m) {
  QISA_CHECK(m.vocab_size > 0, "the FLOP model needs vocab_size", "vocab_size comes from the corpus");
  QISA_CHECK(m.n_head >= 1 && m.n_embd % m.n_head == 0, "n_embd is not divisible by n_head", "check the config");
  const double C = m.n_embd, H = m.n_head, D = m.head_dim(), L = m.n_layer, T = m.block_size,
               V = static_cast<double>(m.vocab_size);
  const int nq = m.n_qubits();
  const double N = static_cast<double>(int64_t{1} << nq);  // amplitudes
  const double P = (T + 1) / 2;                            // attention pairs per token (causal triangle)
  FlopBreakdown f;
  f.pairs_per_token = P;
  auto add = [&](const char* name, double per_layer, const char* what) {
    f.terms.push_back(FlopTerm{name, L * per_layer, what});
  };
  f.terms.push_back(FlopTerm{"embedding", 0.0, "table lookup: 0"});
  switch (m.attention) {
    case AttentionKind::csa:
      add("attn.qk", 2 * C * 2 * C, "L * 2*C*2C (q, k)");
      add("attn.v", 2 * C * C, "L * 2*C*C");
      add("attn.scores", 2 * D * P * H, "L * H * 2D * (T+1)/2 (q.k, causal pairs)");
      break;
    case AttentionKind::qisa:
      add("attn.qk", 2 * C * 2 * C, "L * 2*C*2C (q, k)");
      if (m.qisa_value == QisaValue::shared)
        add("attn.v", 2 * C * C, "L * 2*C*C (u = a L^T, shared by the heads)");
      else
        add("attn.v", H * 2 * C * C, "L * H * 2*C*C (u = a L_h^T, per head)");
      add("attn.pauli", H * D * N * 3, "L * H * D strings * N amplitudes * 3");
      add("attn.scores", 3 * D * P * H, "L * H * 3D * (T+1)/2 (|q-k|^2, causal pairs)");
      break;
    case AttentionKind::qisa_a:
      add("attn.qk", 2 * C * 2 * C, "L * 2*C*2C (q, k)");
      add("attn.circuit", 3 * C + H * 3 * nq * N * 6,
          "L * (3C encode + H * 3n rotations * N amplitudes * 6)");
      add("attn.pauli", H * D * N * 5, "L * H * D strings * N amplitudes * 5 (complex)");
      add("attn.scores", 3 * D * P * H, "L * H * 3D * (T+1)/2 (|q-k|^2, causal pairs)");
      break;
  }
  add("attn.wsum", 2 * D * P * H, "L * H * 2D * (T+1)/2 (sum_j p_ij v_j)");
  add("attn.proj", 2 * C * C, "L * 2*C*C");
  add("mlp.fc", 2 * C * 4 * C, "L * 2*C*4C");
  add("mlp.proj", 2 * 4 * C * C, "L * 2*4C*C");
  f.terms.push_back(FlopTerm{"head", 2 * C * V, "2*C*V (V padded)"});
  return f;
}

double standard_training_flops(const ModelConfig& m, int64_t non_embedding_params) {
  return 6.0 * static_cast<double>(non_embedding_params) +
         12.0 * m.n_layer * static_cast<double>(m.n_embd) * m.block_size;
}

const std::vector<DevicePeak>& device_peaks() {
  // Dense tensor-core peaks of the datasheets (the "with sparsity" figures halved).
  static const std::vector<DevicePeak> table = {
      {"H100 PCIe", "H100 PCIe", 756.0e12, 378.0e12, 51.2e12},
      {"H100 NVL", "H100 NVL", 835.0e12, 417.5e12, 60.0e12},
      {"H100", "H100 SXM", 989.4e12, 494.7e12, 66.9e12},  // "NVIDIA H100 80GB HBM3"
      {"H200", "H200 SXM", 989.4e12, 494.7e12, 66.9e12},  // the H100's compute, more memory
      {"A100", "A100 SXM", 312.0e12, 156.0e12, 19.5e12},
  };
  return table;
}

const DevicePeak* find_device_peak(const std::string& device_name) {
  auto lower = [](std::string x) {
    std::transform(x.begin(), x.end(), x.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    return x;
  };
  const std::string name = lower(device_name);
  for (const auto& d : device_peaks())
    if (name.find(lower(d.match)) != std::string::npos) return &d;
  return nullptr;
}

const char* to_string(MathPrecision p) {
  switch (p) {
    case MathPrecision::fp32: return "fp32";
    case MathPrecision::tf32: return "tf32";
    case MathPrecision::bf16: return "bf16";
  }
  return "?";
}

double peak_for(const DevicePeak& d, MathPrecision math) {
  switch (math) {
    case MathPrecision::fp32: return d.fp32;
    case MathPrecision::tf32: return d.tf32;
    case MathPrecision::bf16: return d.bf16;
  }
  return 0.0;
}

RankPeak resolve_peak(double override_tflops, const std::string& device_model, MathPrecision math) {
  auto per_rank = [](double flops) {
    char b[48];
    std::snprintf(b, sizeof b, "%g TFLOP/s per rank", flops / 1e12);
    return std::string(b);
  };
  RankPeak p;
  if (override_tflops > 0) {
    p.flops = override_tflops * 1e12;
    p.note = per_rank(p.flops) + " (train.peak_tflops)";
  } else if (const DevicePeak* d = find_device_peak(device_model)) {
    p.flops = peak_for(*d, math);
    p.note = per_rank(p.flops) + " (" + d->label + ", " + to_string(math) + ")";
  } else {
    p.note = "unknown for '" + device_model + "': no MFU (set train.peak_tflops to report one)";
  }
  return p;
}

double model_flops_utilization(double training_flops_per_token, double tokens_per_s, int ranks,
                               double peak_flops_per_rank) {
  if (peak_flops_per_rank <= 0 || ranks < 1) return 0.0;
  return training_flops_per_token * tokens_per_s / (static_cast<double>(ranks) * peak_flops_per_rank);
}

}  // namespace qisa
