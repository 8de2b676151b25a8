// qisa plan CONFIG [key=value ...] [--gpus N] [--device NAME | --gpu-mem GiB] [--precision fp32|bf16] [--json]:
// parameters, FLOPs, tokens per step and memory per GPU of a training run, and whether it fits.
// Nothing is allocated: the numbers come from the parameter table, the FLOP model
// (trainer/flops.h) and the activation arena's sizing (trainer/plan.h).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/corpus.h"
#include "kernels/error.h"
#include "launcher/commands.h"
#include "launcher/numbers.h"
#include "trainer/plan.h"

namespace qisa::cli {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr double kDefaultHeadroomGiB = 2.0;

// What the memory lines assume; printed with the plan and in its JSON.
std::vector<std::string> assumptions(Precision p) {
  std::vector<std::string> a = {
      "a GPU backend that keeps the CPU trainer's buffers: the flat parameters and gradients, AdamW m and v (a 1/N "
      "shard each with dist.zero=1, plus a shard-sized reduce-scatter output and all-gather input), and the GPT's "
      "activation arena for one micro-batch (every block's saved activations, the logits, one block's gradient scratch)",
      "headroom: CUDA context (~0.5-1 GiB), cuBLAS and NCCL workspaces and buffers, kernel scratch and allocator "
      "slack; an estimate, set with --headroom GiB"};
  if (p == Precision::bf16)
    a.push_back("bf16 (train.precision bf16): fp32 master weights on every GPU and a bf16 copy for the GEMMs, AdamW m "
                "and v fp32 (sharded under ZeRO-1), fp32 gradients (accumulated over micro-batches), bf16 activations "
                "except the LayerNorm and attention row statistics, the Pauli amplitudes and the row losses (fp32) "
                "and the token ids (int32)");
  else
    a.push_back("fp32 everywhere (train.precision fp32)");
  return a;
}

std::string with_commas(int64_t v) {
  std::string s = std::to_string(v < 0 ? -v : v), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i > 0 && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return v < 0 ? "-" + out : out;
}

std::string sci(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3e", v);
  return buf;
}

// GiB with two decimals; MiB or KiB below 1 GiB (a small model's lines are not all 0.00 GiB).
std::string gib(double bytes) {
  char buf[32];
  if (bytes >= kGiB || bytes == 0)
    std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / kGiB);
  else if (bytes >= 1024.0 * 1024.0)
    std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024.0));
  else
    std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024.0);
  return buf;
}

// Words of `text` in lines of at most `width` columns, the lines after the first indented by
// `indent` spaces (the first line is printed after a label of that width).
std::string wrap(const std::string& text, size_t width, size_t indent) {
  std::string out, line;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(' ', start);
    if (end == std::string::npos) end = text.size();
    const std::string word = text.substr(start, end - start);
    if (!line.empty() && indent + line.size() + 1 + word.size() > width) {
      out += line + "\n" + std::string(indent, ' ');
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
    start = end + 1;
  }
  return out + line;
}

}  // namespace

void add_plan(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "plan",
      "Plan a training run without allocating it: exact parameter count (by group), FLOPs per token (forward and "
      "training = 3x forward), tokens per step, and memory per GPU (weights, gradients, AdamW state, activations of "
      "one micro-batch) with a verdict: fits or does not fit the device. Assumes a GPU backend that keeps the CPU "
      "trainer's buffers (listed with the plan), fp32 or --precision bf16, and --headroom GiB for the CUDA context "
      "and workspaces");
  struct Args {
    std::string config;
    std::vector<std::string> overrides;
    int gpus = 1;
    std::string device = "h100";
    double gpu_mem_gib = 0;
    double headroom_gib = kDefaultHeadroomGiB;
    std::string precision;  // "": the config's train.precision
    int64_t vocab = 0;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("config", a->config, "YAML config")->required()->check(CLI::ExistingFile);
  cmd->add_option("overrides", a->overrides, "key overrides, e.g. train.micro_batch_size=8 dist.zero=1");
  cmd->add_option("--gpus", a->gpus, "data-parallel GPUs (ranks): train.batch_size is split over them")
      ->transform(count_in(1, 10000000))
      ->capture_default_str();
  std::string devices;
  for (const auto& d : known_devices())
    devices += (devices.empty() ? "" : ", ") + d.name + " (" +
               std::to_string(static_cast<int64_t>(d.memory_bytes / (1024 * 1024))) + " MiB)";
  cmd->add_option("--device", a->device, "GPU whose memory (as nvidia-smi reports it) the plan is held against: " + devices)
      ->capture_default_str();
  cmd->add_option("--gpu-mem", a->gpu_mem_gib, "GPU memory in GiB (overrides --device's)")->check(real_in(0, 1048576, true));
  cmd->add_option("--headroom", a->headroom_gib,
                  "GiB kept free beyond the plan: CUDA context, cuBLAS/NCCL workspaces, allocator slack")
      ->check(real_in(0, 1048576))
      ->capture_default_str();
  cmd->add_option("--precision", a->precision,
                  "fp32, or bf16 mixed precision (fp32 master weights, AdamW state and gradients, a bf16 weight copy, "
                  "bf16 activations with fp32 statistics and losses); default: the config's train.precision")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  cmd->add_option("--vocab", a->vocab,
                  "the corpus's vocab_size (before model.vocab_multiple); default: read from data.corpus. GPT-2's BPE: 50257")
      ->transform(count_in(1, 1000000000));
  cmd->add_flag("--json", a->json, "print one JSON object instead of the table");
  cmd->callback([a] {
    const Config cfg = load_config(a->config, a->overrides);
    int64_t vocab = a->vocab;
    if (vocab == 0) {
      std::error_code ec;
      QISA_CHECK(std::filesystem::exists(cfg.data.corpus, ec),
                 cfg.source + ": data.corpus = '" + cfg.data.corpus + "' does not exist: the plan needs its vocab_size",
                 "pass --vocab V (50257 for GPT-2's tokenizer), or prepare the corpus first");
      try {
        vocab = read_corpus_info(cfg.data.corpus).vocab_size;
      } catch (const Error& e) {
        throw Error(cfg.source + ": data.corpus = '" + cfg.data.corpus + "': " + e.what(), e.hint());
      }
    }
    PlanOptions opt;
    opt.gpus = a->gpus;
    opt.precision = a->precision.empty() ? cfg.train.precision
                    : a->precision == "bf16"  ? Precision::bf16
                                              : Precision::fp32;
    opt.device = find_device(a->device);
    if (a->gpu_mem_gib > 0) {
      char label[64];
      std::snprintf(label, sizeof label, "%g GiB (--gpu-mem)", a->gpu_mem_gib);
      opt.device = DeviceSpec{"custom", label, a->gpu_mem_gib * kGiB};
    }
    opt.headroom_bytes = a->headroom_gib * kGiB;
    const Plan p = make_plan(cfg, vocab, opt);
    const ModelConfig& m = cfg.model;
    int64_t embedding_params = 0;
    for (const auto& [g, n] : p.param_groups)
      if (g == "embeddings") embedding_params = n;
    ModelConfig padded = m;
    padded.vocab_size = p.vocab;
    const double standard = standard_training_flops(padded, p.params - embedding_params);
    const double step_flops = p.flops.training() * static_cast<double>(p.tokens_per_step);

    if (a->json) {
      nlohmann::json groups = nlohmann::json::object(), terms = nlohmann::json::object(),
                     mem = nlohmann::json::object(), arena = nlohmann::json::array();
      for (const auto& [g, n] : p.param_groups) groups[g] = n;
      for (const auto& t : p.flops.terms) terms[t.name] = t.per_token;
      for (const auto& l : p.memory) mem[l.name] = l.bytes;
      mem["total"] = p.total_bytes;
      mem["headroom"] = p.headroom_bytes;
      for (const auto& b : p.arena)
        arena.push_back({{"name", b.name}, {"shape", b.shape}, {"elements", b.elements}, {"copies", b.copies}});
      nlohmann::json j{
          {"config", cfg.source},
          {"attention", to_string(m.attention)},
          {"mask", to_string(m.mask)},
          {"n_layer", m.n_layer},
          {"n_head", m.n_head},
          {"n_embd", m.n_embd},
          {"block_size", m.block_size},
          {"corpus_vocab_size", p.corpus_vocab},
          {"vocab_size", p.vocab},
          {"vocab_multiple", m.vocab_multiple},
          {"params", p.params},
          {"param_groups", groups},
          {"flops_per_token",
           {{"forward", p.flops.forward()},
            {"training", p.flops.training()},
            {"standard_6n_12lct", standard},
            {"attention_pairs_per_token", p.flops.pairs_per_token},
            {"forward_by_component", terms}}},
          {"training_flops_per_step", step_flops},
          {"tokens_per_step", p.tokens_per_step},
          {"gpus", a->gpus},
          {"batch_size", cfg.train.batch_size},
          {"batch_per_gpu", p.local_batch},
          {"micro_batch", p.micro_batch},
          {"micro_steps", p.micro_steps},
          {"zero", cfg.dist.zero},
          {"precision", to_string(opt.precision)},
          {"flat_params", p.flat},
          {"optimizer_shard", p.shard},
          {"memory_bytes_per_gpu", mem},
          {"activation_arena", arena},
          {"device", {{"name", opt.device.name}, {"label", opt.device.label}, {"memory_bytes", p.device_bytes}}},
          {"fits", p.fits},
          {"assumptions", assumptions(opt.precision)}};
      std::printf("%s\n", j.dump().c_str());
      return;
    }

    std::printf("qisa plan: %s\n", cfg.source.c_str());
    std::printf("model          %s attention, %s mask, L=%d H=%d C=%d T=%d, vocab %lld", to_string(m.attention),
                to_string(m.mask), m.n_layer, m.n_head, m.n_embd, m.block_size, static_cast<long long>(p.corpus_vocab));
    if (p.vocab != p.corpus_vocab)
      std::printf(" -> %lld (model.vocab_multiple %d)", static_cast<long long>(p.vocab), m.vocab_multiple);
    std::printf("\nparameters     %s (exact)\n", with_commas(p.params).c_str());
    for (const auto& [g, n] : p.param_groups)
      std::printf("  %-12s %15s  %5.1f%%\n", g.c_str(), with_commas(n).c_str(), 100.0 * n / p.params);
    std::printf("FLOPs/token    forward %s, training %s (3 x forward); standard 6N+12LCT: %s\n",
                sci(p.flops.forward()).c_str(), sci(p.flops.training()).c_str(), sci(standard).c_str());
    for (const auto& t : p.flops.terms)
      std::printf("  %-12s %11s  %5.1f%%  %s\n", t.name.c_str(), sci(t.per_token).c_str(),
                  100.0 * t.per_token / p.flops.forward(), t.what.c_str());
    std::printf("  (matrix products only; attention counts the (T+1)/2 = %g causal pairs a token has on average)\n",
                p.flops.pairs_per_token);
    std::printf("tokens/step    %s (train.batch_size %lld x block_size %d); per GPU %lld sequences = %lld micro-batch%s "
                "of %lld (%d GPU%s)\n",
                with_commas(p.tokens_per_step).c_str(), static_cast<long long>(cfg.train.batch_size), m.block_size,
                static_cast<long long>(p.local_batch), static_cast<long long>(p.micro_steps),
                p.micro_steps == 1 ? "" : "es", static_cast<long long>(p.micro_batch), a->gpus, a->gpus == 1 ? "" : "s");
    std::printf("FLOPs/step     %s training (%s per GPU)\n", sci(step_flops).c_str(), sci(step_flops / a->gpus).c_str());
    std::printf("memory/GPU     %s, %d GPU%s, dist.zero %d\n", to_string(opt.precision), a->gpus, a->gpus == 1 ? "" : "s",
                cfg.dist.zero);
    for (const auto& l : p.memory)
      std::printf("  %-13s %10s  %s\n", l.name.c_str(), gib(l.bytes).c_str(), l.note.c_str());
    std::printf("  %-13s %10s\n", "total", gib(p.total_bytes).c_str());
    std::printf("  %-13s %10s  CUDA context, cuBLAS/NCCL workspaces, allocator slack (an estimate; --headroom)\n",
                "headroom", gib(p.headroom_bytes).c_str());
    std::printf("device         %s: %s\n", opt.device.label.c_str(), gib(p.device_bytes).c_str());
    const double need = p.total_bytes + p.headroom_bytes;
    if (p.fits)
      std::printf("verdict        fits: %s of %s (%s to spare)\n", gib(need).c_str(), gib(p.device_bytes).c_str(),
                  gib(p.device_bytes - need).c_str());
    else {
      std::string hint = "a smaller train.micro_batch_size";
      if (cfg.dist.zero == 0) hint += ", dist.zero=1 with --gpus > 1";
      else if (a->gpus == 1) hint += ", more GPUs (dist.zero=1 on one GPU shards nothing and adds its buffers)";
      else hint += ", more GPUs";
      if (opt.precision == Precision::fp32) hint += ", --precision bf16";
      const std::string verdict = "does not fit: " + gib(need) + " needed, " + gib(p.device_bytes) + " available (" +
                                  gib(need - p.device_bytes) + " short); try " + hint;
      std::printf("verdict        %s\n", wrap(verdict, 100, 15).c_str());
    }
    const auto assumed = assumptions(opt.precision);
    for (size_t i = 0; i < assumed.size(); ++i)
      std::printf("%s%s\n", i == 0 ? "assumes        " : "               ", wrap(assumed[i], 100, 15).c_str());
  });
}

}  // namespace qisa::cli
