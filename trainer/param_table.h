// The canonical parameter table (SPEC §3): every parameter's name, shape and offset into ONE
// flat float buffer. Gradients and AdamW moments use the same offsets, so one collective moves
// every gradient, checkpoints write the table, and a device backend mirrors it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/config.h"

namespace qisa {

struct ParamEntry {
  std::string name;             // e.g. "blocks.3.attn.q.weight"
  std::vector<int64_t> shape;   // SPEC shape, PyTorch layout ([out, in] for Linear weights)
  int64_t offset = 0;           // in floats, into the flat buffer
  int64_t numel = 0;
};

class ParamTable {
 public:
  // Layout for a model. Within a block the attention weights that one fused matmul reads are
  // adjacent: csa q,k,v weights ([3C, C] together); qisa/qisa_a q,k weights ([2C, C]) and
  // q,k biases ([2C]).
  explicit ParamTable(const ModelConfig& m);

  const std::vector<ParamEntry>& entries() const { return entries_; }
  int64_t total() const { return total_; }
  const ParamEntry& at(const std::string& name) const;  // throws qisa::Error naming the name
  bool has(const std::string& name) const;
  int64_t offset(const std::string& name) const { return at(name).offset; }

 private:
  void add(std::string name, std::vector<int64_t> shape);
  std::vector<ParamEntry> entries_;
  int64_t total_ = 0;
};

// "blocks.<l>.<rest>"
std::string block_param(int layer, const std::string& rest);
// "[4,16]": a shape for messages.
std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace qisa
