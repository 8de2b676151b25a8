// qisa train CONFIG [a.b=value ...]   (also under mpirun / srun: data-parallel)
#include <cstdio>

#include "launcher/commands.h"
#include "launcher/numbers.h"
#include "launcher/run_setup.h"
#include "trainer/signals.h"
#include "trainer/trainer.h"

namespace qisa::cli {

void add_train(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "train",
      "Train a model from a YAML config; writes LOG_DIR/{config.yaml,metrics.jsonl,final.h5} and checkpoints. Under "
      "mpirun/srun every rank trains its share of each global batch. SIGTERM/SIGUSR1/SIGINT: finish the step, "
      "checkpoint, exit 0 (a second signal exits at once); train.resume=auto continues from the newest checkpoint.");
  struct Args {
    std::string config;
    std::vector<std::string> overrides;
    int threads = 0;
    bool overwrite = false;
    bool quiet = false;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("config", args->config, "YAML config (see configs/)")->required()->check(CLI::ExistingFile);
  cmd->add_option("overrides", args->overrides, "key overrides, e.g. train.steps=100 model.mask=causal");
  cmd->add_option("--threads", args->threads,
                  "CPU threads per rank (same as train.threads=N; default: OMP_NUM_THREADS, else the cores this rank may use)")
      ->transform(count_in(0, 100000));
  cmd->add_flag("--overwrite", args->overwrite, "replace a run already in log.dir (its metrics and checkpoints)");
  cmd->add_flag("--quiet", args->quiet, "no per-step progress lines (metrics.jsonl is still written)");
  cmd->callback([args] {
    Config cfg = load_checked_config(args->config, args->overrides, args->threads);
    auto backend = make_backend(cfg);  // before MPI: a device this build lacks ends the run at once
    with_communicator(cfg, *backend, [&](Communicator& comm, Collectives& coll) {
      RunOptions opt;
      opt.overwrite = args->overwrite;
      opt.quiet = args->quiet;
      RunSummary s = run_training(cfg, *backend, comm, coll, opt);
      if (comm.rank() != 0) return;
      if (s.stopped_by) {
        std::printf("checkpoint: %s\nmetrics:    %s\n", s.last_checkpoint.c_str(), s.metrics_path.c_str());
        return;
      }
      std::printf("%s\n", s.eval.to_json().c_str());
      if (s.resumed_from > 0 && s.resumed_from == s.last.step)  // resumed at train.steps: no step ran here
        std::printf("nothing left to train: resumed at step %lld of %lld; evaluated and wrote the model file again\n",
                    static_cast<long long>(s.resumed_from), static_cast<long long>(cfg.train.steps));
      else
        std::printf("trained to step %lld in %.1f s (final loss %.4f)\n", static_cast<long long>(s.last.step), s.seconds,
                    s.last.loss);
      std::printf("config:     %s\nmetrics:    %s\nmodel:      %s\ncheckpoint: %s\n", s.config_path.c_str(),
                  s.metrics_path.c_str(), s.model_path.c_str(), s.last_checkpoint.c_str());
    });
  });
}

}  // namespace qisa::cli
