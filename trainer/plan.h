// The planner behind `qisa plan`: parameter count (exact, from the ParamTable), FLOPs per token
// (trainer/flops.h), tokens per step and memory per GPU of a training run, without allocating
// the model. Pure functions of the config and a few options.
//
// The activation bytes are the GPT's activation arena as GPT::activation_arena lists it (the
// one layout that also allocates it, trainer/model.cpp), for train.recompute as configured.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "io/config.h"
#include "trainer/flops.h"
#include "trainer/model.h"

namespace qisa {

// One buffer of the activation arena, for all the blocks that hold one (`copies`).
struct ArenaBuffer {
  std::string name;     // "ln1", "logits", "dfc_pre", ... (GPT::Acts in trainer/model.cpp)
  std::string shape;    // "[N, C]", N = micro-batch * block_size
  int64_t elements;     // per copy
  int64_t copies;       // n_layer for per-block buffers (1 for most under recompute), else 1
  bool is_int;          // int32 token ids
  bool keeps_fp32;      // LayerNorm statistics and row losses: fp32 under bf16 too
  int64_t total() const { return elements * copies; }
};

// The buffers GPT(cfg, backend, max_batch, ..., recompute) allocates for its activations and
// gradient scratch (everything but the flat params and grads), without the empty ones.
std::vector<ArenaBuffer> activation_arena(const ModelConfig& m, int64_t max_batch, Recompute recompute);
// Their bytes as the GPT allocates them for train.precision `p` (bf16 activations: 2 bytes; the
// buffers that stay fp32, and int32 ids: 4).
int64_t activation_arena_bytes(const ModelConfig& m, int64_t max_batch, Recompute recompute,
                               Precision p = Precision::fp32);

// Precision (fp32 | bf16) is train.precision's (io/config.h).

// A device `qisa plan --device` knows: total memory as nvidia-smi reports it.
struct DeviceSpec {
  std::string name;       // "h100"
  std::string label;      // "NVIDIA H100 80GB"
  double memory_bytes;
};
const std::vector<DeviceSpec>& known_devices();
// Throws qisa::Error listing the known names.
const DeviceSpec& find_device(const std::string& name);

struct PlanOptions {
  int gpus = 1;                     // data-parallel ranks (one per GPU)
  Precision precision = Precision::fp32;
  DeviceSpec device;                // the memory the total is compared with
  double headroom_bytes = 0;        // reserved beyond the plan: CUDA context, workspaces, allocator
};

struct MemoryLine {
  std::string name;    // "weights", "gradients", "optimizer", "zero1_buffers", "activations"
  double bytes;
  std::string note;    // how it is computed
};

struct Plan {
  int64_t params = 0;                                       // exact, ParamTable::total()
  std::vector<std::pair<std::string, int64_t>> param_groups;  // embeddings, attention, mlp, layernorm, head
  int64_t corpus_vocab = 0, vocab = 0;                      // before and after model.vocab_multiple
  FlopBreakdown flops;
  int64_t tokens_per_step = 0;          // batch_size * block_size (global)
  int64_t local_batch = 0, micro_batch = 0, micro_steps = 0;  // per GPU
  int64_t flat = 0, shard = 0;          // flat buffer (padded for ZeRO-1) and this GPU's optimizer shard
  Recompute recompute = Recompute::none;  // train.recompute
  std::vector<ArenaBuffer> arena;
  std::vector<MemoryLine> memory;       // per GPU
  double total_bytes = 0;               // sum of `memory`
  double headroom_bytes = 0;
  double device_bytes = 0;
  bool fits = false;                    // total + headroom <= device
};

// `cfg` as loaded (its model.vocab_size is ignored); corpus_vocab: the corpus's vocab_size,
// rounded up to model.vocab_multiple here. Errors (one line, naming the key) when batch_size
// does not divide over the GPUs or the micro-batch does not divide the per-GPU batch.
Plan make_plan(const Config& cfg, int64_t corpus_vocab, const PlanOptions& opt);

// The parameter group of a canonical name: embeddings | attention | mlp | layernorm | head.
std::string param_group(const std::string& name);

}  // namespace qisa
