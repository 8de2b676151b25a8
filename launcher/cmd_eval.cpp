// qisa eval MODEL --data CORPUS.h5 [--split val] [--windows N]
#include <cstdio>
#include <nlohmann/json.hpp>

#include "io/corpus.h"
#include "kernels/error.h"
#include "launcher/commands.h"
#include "launcher/numbers.h"
#include "launcher/run_setup.h"
#include "trainer/evaluator.h"
#include "trainer/generate.h"
#include "trainer/model_io.h"

namespace qisa::cli {

void add_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "eval", "Evaluate a model on the first N non-overlapping windows of a split; prints one JSON line (ce, ppl, cer, wer)");
  struct Args {
    std::string model, data, split = "val";
    int64_t windows = 200;
    int64_t batch = 256;
    int64_t gen_prompts = 0, gen_tokens = 32;
    int threads = 0;
    Device device = Device::cpu;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("model", args->model, "model file (RUN_DIR/final.h5) or checkpoint (RUN_DIR/checkpoints/ckpt_*.h5)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--data", args->data, "corpus written by qisa prepare")->required()->check(CLI::ExistingFile);
  cmd->add_option("--split", args->split, "split to evaluate: val or train")->check(CLI::IsMember({"val", "train"}));
  cmd->add_option("--windows", args->windows, "number of windows (offsets 0, T, 2T, ...)")->transform(count_in(1, 100000000));
  cmd->add_option("--batch", args->batch, "windows per forward pass (memory, not results)")->transform(count_in(1, 1000000));
  cmd->add_option("--gen-prompts", args->gen_prompts,
                  "also score generation: this many held-out prompts (block_size tokens at evenly spaced offsets); "
                  "their greedy continuations vs the true text give gen_cer, which no mask can leak into")
      ->transform(count_in(0, 1000000));
  cmd->add_option("--gen-tokens", args->gen_tokens, "tokens generated per prompt")
      ->transform(count_in(1, 1000000))
      ->capture_default_str();
  cmd->add_option("--threads", args->threads, "CPU threads (default: OMP_NUM_THREADS, else the cores this process may use)")
      ->transform(count_in(0, 100000));
  add_device_option(*cmd, args->device);
  cmd->callback([args] {
    auto backend = make_backend(args->device, args->threads, "--device");
    LoadedModel m = load_model(args->model, *backend, args->batch);
    const Vocabulary vocab = check_corpus_fits_model(args->data, m, args->model);
    const std::vector<int32_t> split = read_split(args->data, args->split);
    const EvalResult r = evaluate(*m.model, split, args->windows, vocab);
    nlohmann::json j = nlohmann::json::parse(r.to_json());
    if (args->gen_prompts > 0) j.update(nlohmann::json::parse(
        generation_cer(*m.model, split, args->gen_prompts, args->gen_tokens, vocab).to_json()));
    std::printf("%s\n", j.dump().c_str());
  });
}

}  // namespace qisa::cli
