// qisa sample MODEL [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K] [--seed S]
#include <cstdio>

#include "io/vocabulary.h"
#include "kernels/error.h"
#include "launcher/commands.h"
#include "launcher/numbers.h"
#include "launcher/run_setup.h"
#include "trainer/generate.h"
#include "trainer/model_io.h"

namespace qisa::cli {

void add_sample(CLI::App& app) {
  auto* cmd = app.add_subcommand("sample", "Generate text from a model: prints the prompt and its continuation");
  struct Args {
    std::string model, prompt = "\n";
    SampleOptions opt;
    int threads = 0;
    Device device = Device::cpu;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("model", args->model, "model file (RUN_DIR/final.h5) or checkpoint")->required()->check(CLI::ExistingFile);
  cmd->add_option("--prompt", args->prompt,
                  "text to continue, encoded with the model's tokenizer (char: its characters must be in the "
                  "vocabulary; gpt2: any UTF-8 text)")
      ->capture_default_str();
  cmd->add_option("--tokens", args->opt.tokens, "tokens to generate")->transform(count_in(1, 10000000))->capture_default_str();
  cmd->add_option("--temperature", args->opt.temperature, "softmax temperature (> 0)")
      ->check(real_in(0, 1000000, true))
      ->capture_default_str();
  cmd->add_option("--top-k", args->opt.top_k, "sample among the k most likely tokens (0 = all)")
      ->transform(count_in(0, 1000000000))
      ->capture_default_str();
  cmd->add_option("--seed", args->opt.seed, "seed of the draws (same seed, same text)")->capture_default_str();
  cmd->add_flag("--greedy", args->opt.greedy, "always take the most likely token");
  cmd->add_option("--threads", args->threads, "CPU threads")->transform(count_in(0, 100000));
  add_device_option(*cmd, args->device);
  cmd->callback([args] {
    auto backend = make_backend(args->device, args->threads, "--device");
    LoadedModel m = load_model(args->model, *backend, 1);
    QISA_CHECK(!m.vocab.empty(), "'" + args->model + "' holds no vocabulary to encode the prompt with",
               "sample from a model written by this version of qisa train");
    QISA_CHECK(padded_vocab_size(m.vocab.size(), m.config.model.vocab_multiple) == m.config.model.vocab_size,
               "'" + args->model + "' has a vocabulary of " + std::to_string(m.vocab.size()) + " tokens but the model " +
                   std::to_string(m.config.model.vocab_size) + " (model.vocab_multiple " +
                   std::to_string(m.config.model.vocab_multiple) + ")",
               "the file is corrupt: train the model again");
    args->opt.vocab_size = m.vocab.size();  // never draw the model's padding ids
    const std::unique_ptr<TextCodec> tok = make_codec(m.vocab, "'" + args->model + "'");
    QISA_CHECK(!args->prompt.empty(), "the prompt is empty", "pass --prompt with at least one character");
    const std::vector<int32_t> prompt = tok->encode(args->prompt);
    const std::vector<int32_t> out = generate(*m.model, prompt, args->opt);
    std::printf("%s%s\n", args->prompt.c_str(), tok->decode(out.data(), out.size()).c_str());
  });
}

}  // namespace qisa::cli
