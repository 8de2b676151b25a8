// qisa probe-leak MODEL [--data CORPUS.h5]: does a position read later tokens?
// qisa probe-attention MODEL [--data CORPUS.h5]: how far from uniform are the attention rows?
#include <algorithm>
#include <cstdio>
#include <random>

#include "io/corpus.h"
#include "kernels/error.h"
#include "launcher/commands.h"
#include "launcher/numbers.h"
#include "launcher/run_setup.h"
#include "trainer/model_io.h"
#include "trainer/probe.h"

namespace qisa::cli {

namespace {

// What both probes take: a model, windows from a corpus split or random tokens, a backend.
struct ProbeArgs {
  std::string model, data, split = "val";
  int64_t windows = 8;
  uint64_t seed = 1;
  int threads = 0;
  Device device = Device::cpu;
};

void add_probe_options(CLI::App& cmd, ProbeArgs& a) {
  cmd.add_option("model", a.model, "model file (RUN_DIR/final.h5) or checkpoint (RUN_DIR/checkpoints/ckpt_*.h5)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd.add_option("--data", a.data, "corpus to take windows from (default: random tokens)")->check(CLI::ExistingFile);
  cmd.add_option("--split", a.split, "split the windows come from")->check(CLI::IsMember({"val", "train"}));
  cmd.add_option("--windows", a.windows, "number of windows to probe")->transform(count_in(1, 100000000));
  cmd.add_option("--seed", a.seed, "seed of the random windows (without --data)");
  cmd.add_option("--threads", a.threads, "CPU threads")->transform(count_in(0, 100000));
  add_device_option(cmd, a.device);
}

// Consecutive block_size windows from the start of the split, or random tokens of the model's
// vocabulary (without --data).
std::vector<std::vector<int32_t>> probe_windows(const ProbeArgs& a, const LoadedModel& m) {
  const int T = m.config.model.block_size;
  const int64_t V = m.config.model.vocab_size;
  std::vector<std::vector<int32_t>> windows;
  if (!a.data.empty()) {
    check_corpus_fits_model(a.data, m, a.model);
    const std::vector<int32_t> split = read_split(a.data, a.split);
    for (int64_t w = 0; w < a.windows && (w + 1) * T <= static_cast<int64_t>(split.size()); ++w)
      windows.emplace_back(split.begin() + w * T, split.begin() + (w + 1) * T);
    QISA_CHECK(!windows.empty(), "split '" + a.split + "' of '" + a.data + "' is shorter than one window",
               "use a larger split");
    return windows;
  }
  std::mt19937_64 rng(a.seed);
  // the tokenizer's ids: not the padding ids of model.vocab_multiple
  const int64_t real = m.vocab.empty() ? V : std::min<int64_t>(V, m.vocab.size());
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(real - 1));
  for (int64_t w = 0; w < a.windows; ++w) {
    std::vector<int32_t> win(static_cast<size_t>(T));
    for (auto& t : win) t = tok(rng);
    windows.push_back(std::move(win));
  }
  return windows;
}

}  // namespace

void add_probe_leak(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "probe-leak",
      "Change the token at position t and report the largest change of the logits at positions < t; prints JSON "
      "{\"max_abs_delta\": ...}. Exactly 0 for a causal model");
  auto args = std::make_shared<ProbeArgs>();
  add_probe_options(*cmd, *args);
  cmd->callback([args] {
    auto backend = make_backend(args->device, args->threads, "--device");
    LoadedModel m = load_model(args->model, *backend, 1);  // the probe runs one window at a time
    std::printf("%s\n", probe_leak(*m.model, probe_windows(*args, m)).to_json().c_str());
  });
}

void add_probe_attention(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "probe-attention",
      "How far from uniform are the model's attention rows? Per block: the mean over rows of the entropy relative to "
      "a uniform row (1 = uniform, 0 = one token), its minimum, and the largest max/min weight ratio of a row (the "
      "paper's qisa score keeps it <= e = 2.718); prints JSON");
  auto args = std::make_shared<ProbeArgs>();
  add_probe_options(*cmd, *args);
  cmd->callback([args] {
    auto backend = make_backend(args->device, args->threads, "--device");
    LoadedModel m = load_model(args->model, *backend, 1);
    std::printf("%s\n", probe_attention(*m.model, probe_windows(*args, m)).to_json().c_str());
  });
}

}  // namespace qisa::cli
