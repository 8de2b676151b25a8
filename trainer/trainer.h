// The step loop: sample windows, forward/backward over micro-batches into one gradient
// buffer, clip, AdamW; metrics, periodic eval, and the final model file.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/config.h"
#include "trainer/evaluator.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"
#include "trainer/sampler.h"

namespace qisa {

struct StepStats {
  int64_t step = 0;        // the optimizer step just taken (1-based)
  double loss = 0;         // mean loss over the global batch
  double lr = 0;
  double grad_norm = 0;    // before clipping
  double ms = 0;           // wall time of the step
  double tokens_per_s = 0;
};

class Trainer {
 public:
  // Loads the corpus named by cfg.data.corpus (cfg must already be checked against it),
  // builds and initialises the model from train.seed.
  Trainer(const Config& cfg, Backend& backend);

  StepStats step();                 // one optimizer step
  EvalResult evaluate();            // eval.windows validation windows
  int64_t steps_done() const { return step_; }
  const Config& config() const { return cfg_; }
  GPT& model() { return *model_; }
  const std::vector<std::string>& vocab() const { return vocab_; }
  int64_t micro_batch() const { return micro_; }

 private:
  Config cfg_;
  Backend& be_;
  std::vector<int32_t> train_, val_;
  std::vector<std::string> vocab_;
  int64_t micro_;
  std::unique_ptr<GPT> model_;
  std::unique_ptr<AdamW> opt_;
  RandomWindowSampler sampler_;
  int64_t step_ = 0;
  std::vector<int64_t> offsets_;
  std::vector<int32_t> x_, y_;
};

struct RunOptions {
  bool overwrite = false;  // allow a log.dir that already holds a run
  bool quiet = false;      // no per-step lines (metrics are still written)
};

struct RunSummary {
  std::string dir, config_path, metrics_path, model_path;
  EvalResult eval;
  StepStats last;
  double seconds = 0;
};

// The whole `qisa train`: resolved config printed and saved in log.dir, metrics.jsonl,
// periodic eval, final.h5, one summary. Progress goes to stdout.
RunSummary run_training(const Config& cfg, Backend& backend, const RunOptions& opt);

}  // namespace qisa
