#include "trainer/param_table.h"

#include "kernels/error.h"

namespace qisa {

std::string block_param(int layer, const std::string& rest) {
  return "blocks." + std::to_string(layer) + "." + rest;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ",";
    out += std::to_string(shape[i]);
  }
  out += "]";
  return out;
}

void ParamTable::add(std::string name, std::vector<int64_t> shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  entries_.push_back(ParamEntry{std::move(name), std::move(shape), total_, n});
  total_ += n;
}

ParamTable::ParamTable(const ModelConfig& m) {
  const int64_t V = m.vocab_size, C = m.n_embd, H = m.n_head, nq = m.n_qubits();
  QISA_CHECK(V > 0, "model vocab_size is " + std::to_string(V), "vocab_size comes from the corpus; prepare it first");
  QISA_CHECK(m.qisa_value == QisaValue::per_head || m.attention == AttentionKind::qisa,
             std::string("model.qisa_value = shared with attention ") + to_string(m.attention),
             "a shared value map exists only for attention qisa");
  add("tok_emb.weight", {V, C});
  add("pos_emb.weight", {m.block_size, C});
  for (int l = 0; l < m.n_layer; ++l) {
    add(block_param(l, "ln1.weight"), {C});
    add(block_param(l, "ln1.bias"), {C});
    add(block_param(l, "attn.q.weight"), {C, C});  // H*D == C
    add(block_param(l, "attn.k.weight"), {C, C});
    switch (m.attention) {
      case AttentionKind::csa:
        add(block_param(l, "attn.v.weight"), {C, C});
        break;
      case AttentionKind::qisa:
        add(block_param(l, "attn.q.bias"), {C});
        add(block_param(l, "attn.k.bias"), {C});
        if (m.qisa_value == QisaValue::shared)
          add(block_param(l, "attn.v.weight"), {C, C});  // one L per block, measured by every head
        else
          add(block_param(l, "attn.v.weight"), {H, C, C});  // L_h per head (the paper)
        break;
      case AttentionKind::qisa_a:
        add(block_param(l, "attn.q.bias"), {C});
        add(block_param(l, "attn.k.bias"), {C});
        add(block_param(l, "attn.v.rx"), {H, nq});
        add(block_param(l, "attn.v.ry"), {H, nq});
        add(block_param(l, "attn.v.ry2"), {H, nq});
        break;
    }
    add(block_param(l, "attn.proj.weight"), {C, C});
    add(block_param(l, "attn.proj.bias"), {C});
    add(block_param(l, "ln2.weight"), {C});
    add(block_param(l, "ln2.bias"), {C});
    add(block_param(l, "mlp.fc.weight"), {4 * C, C});
    add(block_param(l, "mlp.fc.bias"), {4 * C});
    add(block_param(l, "mlp.proj.weight"), {C, 4 * C});
    add(block_param(l, "mlp.proj.bias"), {C});
  }
  add("ln_f.weight", {C});
  add("ln_f.bias", {C});
  add("head.weight", {V, C});
  add("head.bias", {V});
}

bool ParamTable::has(const std::string& name) const {
  for (auto& e : entries_)
    if (e.name == name) return true;
  return false;
}

const ParamEntry& ParamTable::at(const std::string& name) const {
  for (auto& e : entries_)
    if (e.name == name) return e;
  throw Error("no parameter named '" + name + "' in this model",
              "the file was written for a different attention kind or number of layers");
}

}  // namespace qisa
