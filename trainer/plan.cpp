#include "trainer/plan.h"

#include <algorithm>

#include "kernels/backend.h"
#include "kernels/error.h"
#include "trainer/model.h"
#include "trainer/param_table.h"

namespace qisa {

std::vector<ArenaBuffer> activation_arena(const ModelConfig& m, int64_t max_batch, Recompute recompute) {
  QISA_CHECK(max_batch >= 1, "max_batch is " + std::to_string(max_batch), "use at least one sequence");
  std::vector<ArenaBuffer> a;
  for (const auto& it : GPT::activation_arena(m, max_batch, recompute)) {
    if (it.bytes == 0) continue;  // a buffer this attention kind does not use (u, vals for csa)
    // LayerNorm statistics, the attention rows' softmax statistics, the Pauli amplitudes and the
    // losses stay fp32 in a bf16 run (the loss sum is float64: 2 words).
    a.push_back(ArenaBuffer{it.name, it.shape, it.bytes / 4 / it.copies, it.copies, it.is_int, !it.in_act_dtype});
  }
  return a;
}

int64_t activation_arena_bytes(const ModelConfig& m, int64_t max_batch, Recompute recompute, Precision p) {
  return GPT::activation_bytes(m, max_batch, recompute, p);
}


const std::vector<DeviceSpec>& known_devices() {
  constexpr double MiB = 1024.0 * 1024.0;
  static const std::vector<DeviceSpec> devices = {
      {"h100", "NVIDIA H100 80GB", 81559 * MiB},
      {"h200", "NVIDIA H200 141GB", 143771 * MiB},
      {"a100-80", "NVIDIA A100 80GB", 81920 * MiB},
      {"a100-40", "NVIDIA A100 40GB", 40960 * MiB},
  };
  return devices;
}

const DeviceSpec& find_device(const std::string& name) {
  std::string names;
  for (const auto& d : known_devices()) {
    if (d.name == name) return d;
    names += (names.empty() ? "" : ", ") + d.name;
  }
  throw Error("unknown device '" + name + "'", "known devices: " + names + "; or give the memory with --gpu-mem GiB");
}

std::string param_group(const std::string& name) {
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (name.rfind("tok_emb.", 0) == 0 || name.rfind("pos_emb.", 0) == 0) return "embeddings";
  if (name.rfind("head.", 0) == 0) return "head";
  if (has(".attn.")) return "attention";
  if (has(".mlp.")) return "mlp";
  return "layernorm";  // blocks.l.ln1, blocks.l.ln2, ln_f
}

Plan make_plan(const Config& cfg, int64_t corpus_vocab, const PlanOptions& opt) {
  QISA_CHECK(corpus_vocab >= 1, "the plan needs the corpus's vocab_size, got " + std::to_string(corpus_vocab),
             "pass --vocab V (50257 for GPT-2's tokenizer) or prepare data.corpus");
  QISA_CHECK(opt.gpus >= 1, "--gpus is " + std::to_string(opt.gpus), "use at least one GPU");
  Plan p;
  ModelConfig m = cfg.model;
  p.corpus_vocab = corpus_vocab;
  p.vocab = m.vocab_size = padded_vocab_size(corpus_vocab, m.vocab_multiple);

  // Parameters: the table the model would build (names and shapes only; nothing allocated).
  const ParamTable table(m);
  p.params = table.total();
  for (const char* g : {"embeddings", "attention", "mlp", "layernorm", "head"}) p.param_groups.emplace_back(g, 0);
  for (const auto& e : table.entries())
    for (auto& [g, n] : p.param_groups)
      if (g == param_group(e.name)) n += e.numel;
  p.flops = forward_flops(m);

  // The batch over the GPUs, as the trainer splits it (trainer.cpp: local_batch_of, micro_batch_of).
  const int64_t B = cfg.train.batch_size, W = opt.gpus;
  p.tokens_per_step = B * m.block_size;
  QISA_CHECK(B % W == 0,
             cfg.source + ": train.batch_size = " + std::to_string(B) + " is not divisible by --gpus " + std::to_string(W),
             "train.batch_size is the global batch: choose a multiple of the number of GPUs");
  p.local_batch = B / W;
  p.micro_batch = cfg.train.micro_batch_size > 0 ? std::min(cfg.train.micro_batch_size, p.local_batch) : p.local_batch;
  QISA_CHECK(p.local_batch % p.micro_batch == 0,
             cfg.source + ": train.micro_batch_size = " + std::to_string(cfg.train.micro_batch_size) +
                 " does not divide the per-GPU batch " + std::to_string(p.local_batch) + " (train.batch_size " +
                 std::to_string(B) + " / " + std::to_string(W) + " GPUs)",
             "choose a micro-batch size that divides batch_size / GPUs");
  p.micro_steps = p.local_batch / p.micro_batch;

  // Flat buffers as the trainer sizes them: padded to a multiple of the world under ZeRO-1,
  // each rank updating flat / world of them.
  const bool zero1 = cfg.dist.zero == 1;
  const int64_t align = zero1 ? W : 1;
  p.flat = (p.params + align - 1) / align * align;
  p.shard = zero1 ? p.flat / W : p.flat;
  const double flat = static_cast<double>(p.flat), shard = static_cast<double>(p.shard);
  const bool bf16 = opt.precision == Precision::bf16;
  const std::string sharded = zero1 ? " (ZeRO-1: 1/" + std::to_string(W) + " of " + std::to_string(p.flat) + ")" : "";
  // Pauli strings, packed for the kernels: 16 bytes (PauliTerm) each, H*D per block.
  const double pauli =
      m.attention == AttentionKind::csa ? 0.0 : static_cast<double>(m.n_layer) * m.n_embd * sizeof(PauliTerm);

  const std::string plus_pauli = pauli > 0 ? " (+ Pauli strings)" : "";
  if (!bf16) {
    p.memory.push_back({"weights", flat * 4 + pauli, "fp32, " + std::to_string(p.flat) + " floats" + plus_pauli});
    p.memory.push_back({"gradients", flat * 4, "fp32, the whole flat buffer on every GPU"});
    p.memory.push_back({"optimizer", shard * 8, "AdamW m and v, fp32, " + std::to_string(p.shard) + " each" + sharded});
    if (zero1)
      p.memory.push_back({"zero1_buffers", shard * 8, "reduce-scatter output and all-gather input, fp32, one shard each"});
  } else {
    p.memory.push_back({"weights", flat * 6 + pauli,
                        "fp32 masters + bf16 GEMM copy, " + std::to_string(p.flat) + " values each" + plus_pauli});
    p.memory.push_back({"gradients", flat * 4, "fp32 (accumulated over micro-batches), the whole flat buffer"});
    p.memory.push_back({"optimizer", shard * 8, "AdamW m and v, fp32, " + std::to_string(p.shard) + " each" + sharded});
    if (zero1)
      p.memory.push_back({"zero1_buffers", shard * 8, "reduce-scatter output and all-gather input, fp32, one shard each"});
  }
  p.recompute = cfg.train.recompute;
  p.arena = activation_arena(m, p.micro_batch, p.recompute);
  const auto act = static_cast<double>(GPT::activation_bytes(m, p.micro_batch, p.recompute, opt.precision));
  p.memory.push_back({"activations", act,
                      std::string(bf16 ? "bf16 (statistics, Pauli amplitudes, losses fp32)" : "fp32") + ", micro-batch " +
                          std::to_string(p.micro_batch) + " x " + std::to_string(m.block_size) + " tokens" +
                          (p.recompute == Recompute::blocks
                               ? ", train.recompute blocks (block inputs kept; one block's activations)"
                               : "")});
  for (const auto& l : p.memory) p.total_bytes += l.bytes;
  p.headroom_bytes = opt.headroom_bytes;
  p.device_bytes = opt.device.memory_bytes;
  p.fits = p.total_bytes + p.headroom_bytes <= p.device_bytes;
  return p;
}

}  // namespace qisa
