// qisa probe-leak MODEL [--data CORPUS.h5]
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

void add_probe_leak(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "probe-leak",
      "Change the token at position t and report the largest change of the logits at positions < t; prints JSON "
      "{\"max_abs_delta\": ...}. Exactly 0 for a causal model");
  struct Args {
    std::string model, data, split = "val";
    int64_t windows = 8;
    uint64_t seed = 1;
    int threads = 0;
    Device device = Device::cpu;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("model", args->model, "model file (RUN_DIR/final.h5) or checkpoint (RUN_DIR/checkpoints/ckpt_*.h5)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--data", args->data, "corpus to take windows from (default: random tokens)")->check(CLI::ExistingFile);
  cmd->add_option("--split", args->split, "split the windows come from")->check(CLI::IsMember({"val", "train"}));
  cmd->add_option("--windows", args->windows, "number of windows to probe")->transform(count_in(1, 100000000));
  cmd->add_option("--seed", args->seed, "seed of the random windows (without --data)");
  cmd->add_option("--threads", args->threads, "CPU threads")->transform(count_in(0, 100000));
  add_device_option(*cmd, args->device);
  cmd->callback([args] {
    auto backend = make_backend(args->device, args->threads, "--device");
    LoadedModel m = load_model(args->model, *backend, 1);  // the probe runs one window at a time
    const int T = m.config.model.block_size;
    const int64_t V = m.config.model.vocab_size;
    std::vector<std::vector<int32_t>> windows;
    if (!args->data.empty()) {
      check_corpus_fits_model(args->data, m, args->model);
      const std::vector<int32_t> split = read_split(args->data, args->split);
      for (int64_t w = 0; w < args->windows && (w + 1) * T <= static_cast<int64_t>(split.size()); ++w)
        windows.emplace_back(split.begin() + w * T, split.begin() + (w + 1) * T);
      QISA_CHECK(!windows.empty(), "split '" + args->split + "' of '" + args->data + "' is shorter than one window",
                 "use a larger split");
    } else {
      std::mt19937_64 rng(args->seed);
      // the tokenizer's ids: not the padding ids of model.vocab_multiple
      const int64_t real = m.vocab.empty() ? V : std::min<int64_t>(V, m.vocab.size());
      std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(real - 1));
      for (int64_t w = 0; w < args->windows; ++w) {
        std::vector<int32_t> win(static_cast<size_t>(T));
        for (auto& t : win) t = tok(rng);
        windows.push_back(std::move(win));
      }
    }
    std::printf("%s\n", probe_leak(*m.model, windows).to_json().c_str());
  });
}

}  // namespace qisa::cli
