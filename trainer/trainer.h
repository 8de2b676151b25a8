// The data-parallel step loop. Each rank samples its slice of the global batch, reads only
// those windows, runs forward/backward over micro-batches into one flat gradient buffer;
// gradients are summed across ranks (all-reduce in buckets, or ZeRO-1 reduce-scatter), then
// clip (global norm) and AdamW (replicated, or on this rank's shard followed by an
// all-gather of the parameters). Checkpoints hold everything needed to continue exactly,
// on any number of ranks.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/config.h"
#include "io/corpus_reader.h"
#include "trainer/comm/collectives.h"
#include "trainer/comm/communicator.h"
#include "trainer/evaluator.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"
#include "trainer/sampler.h"
#include "trainer/spikes.h"

namespace qisa {

struct StepStats {
  int64_t step = 0;        // the optimizer step just taken (1-based)
  double loss = 0;         // mean loss over the global batch
  double lr = 0;
  double grad_norm = 0;    // before clipping
  double ms = 0;           // wall time of the step
  double data_ms = 0;      // sampling and reading windows
  double compute_ms = 0;   // forward, backward, optimizer
  double comm_ms = 0;      // waiting for collectives
  // The gradient all-reduce (dist.zero 0, more than one rank): from the first bucket's launch to
  // the last one's completion as the host sees it, and the host's time inside the collectives'
  // calls meanwhile (launches and polls during backward, the wait after it): the part not hidden
  // behind compute. NCCL's launches and polls take microseconds, so there it is the final wait;
  // MPI progresses a non-blocking all-reduce inside those calls, on the host's own core. 0 when
  // there was none.
  double allreduce_ms = 0;
  double allreduce_exposed_ms = 0;
  double tokens_per_s = 0; // global tokens / wall time
  int stop_signal = 0;     // a stop signal reached some rank during this step (agreed by all)
  // What was NaN or Inf after the all-reduce (the same on every rank), e.g. "gradient norm = nan";
  // "" when the step was finite. Then `skipped` tells whether train.on_nonfinite = skip dropped
  // the update (the step counts as done) or the step was not taken (stop: steps_done() is
  // still step - 1 and the state is the one before it).
  std::string nonfinite;
  bool skipped = false;
  int64_t skipped_total = 0;  // steps skipped so far in the run, this one included
  // A finite step whose loss or gradient norm exceeded train.spike_factor x its reference
  // (trainer/spikes.h; decided alike on every rank). spike_skipped: train.on_spike = skip
  // dropped its update (the step counts as done, as a skipped non-finite one).
  Spike spike;
  bool spike_skipped = false;
  int64_t spikes_total = 0, skipped_spikes_total = 0;  // so far in the run, this step included
};

class Trainer {
 public:
  // Reads the corpus metadata named by cfg.data.corpus (cfg must be checked against it),
  // builds the model (sized for the micro-batch) and initialises it from train.seed. comm
  // carries control (loss, norms, checkpoints); coll, over the same ranks and on backend's
  // memory, the gradients and ZeRO-1 parameters (make_collectives(comm, backend)).
  Trainer(const Config& cfg, Backend& backend, Communicator& comm, Collectives& coll);

  StepStats step();                 // one optimizer step (collective)
  EvalResult evaluate();            // eval.windows validation windows, split over the ranks (collective)
  // Collective: rank 0 writes `path` through a bounded buffer, gathering ZeRO shards. Returns
  // "" when the checkpoint was written, else why not (one line, e.g. ending in "No space left
  // on device"): the same on every rank. A failed write removes its temporary file and leaves
  // every earlier checkpoint as it was; the ranks go on with the gather, so none is left waiting.
  std::string save_checkpoint(const std::string& path);
  // Collective: every rank reads `path` (parameters, Pauli strings, its share of the AdamW
  // state, the step). Differences of the config outside model.* are reported via `warn`.
  void load_checkpoint(const std::string& path, const std::function<void(const std::string&)>& warn);

  int64_t steps_done() const { return step_; }
  int64_t skipped_nonfinite() const { return skipped_; }  // steps whose update was skipped
  int64_t spikes() const { return spikes_; }                  // spikes found (train.spike_factor)
  int64_t skipped_spikes() const { return skipped_spikes_; }  // of those, skipped (train.on_spike: skip)
  const SpikeDetector& spike_detector() const { return spike_detector_; }
  // AdamW updates applied: its bias-correction step counter (skipped steps do not count).
  int64_t optimizer_steps() const { return step_ - skipped_ - skipped_spikes_; }
  const Config& config() const { return cfg_; }
  GPT& model() { return *model_; }
  const Vocabulary& vocab() const { return vocab_; }
  int64_t micro_batch() const { return micro_; }
  int64_t local_batch() const { return local_batch_; }
  int64_t corpus_tokens_read() const { return train_.tokens_read(); }

 private:
  void reduce_gradients(StepStats& s);
  void poison_gradients(int64_t t);
  double gradient_norm(StepStats& s);
  void optimizer_step(StepStats& s, int64_t t);
  void round_weight_copy(int64_t t);
  void launch_ready_buckets(int64_t ready_from);

  Config cfg_;
  Backend& be_;
  Communicator& comm_;
  Collectives& coll_;
  int rank_, world_;
  CorpusReader train_;
  std::vector<int32_t> val_;  // the tokens of the eval windows (all ranks; each scores its share)
  Vocabulary vocab_;
  int64_t local_batch_, micro_;
  std::unique_ptr<WindowSampler> sampler_;
  std::unique_ptr<GPT> model_;
  // The optimizer updates [shard_begin_, shard_begin_ + shard_size_) of the flat buffer:
  // everything with dist.zero=0, this rank's 1/world with ZeRO-1.
  int64_t shard_begin_ = 0, shard_size_ = 0;
  std::unique_ptr<AdamW> opt_;
  Buffer<float> shard_grads_;   // ZeRO-1: this rank's reduced gradient shard
  Buffer<float> shard_params_;  // ZeRO-1: all-gather send buffer
  int64_t step_ = 0;
  int64_t skipped_ = 0;  // steps whose non-finite update was skipped (train.on_nonfinite: skip)
  SpikeDetector spike_detector_;             // train.spike_factor; its state is in checkpoints
  int64_t spikes_ = 0, skipped_spikes_ = 0;  // spikes found; those skipped (train.on_spike: skip)
  // gradient buckets (dist.zero=0, world > 1): [k*bucket_, (k+1)*bucket_) of the flat buffer
  int64_t bucket_ = 0, next_bucket_ = -1;
  std::chrono::steady_clock::time_point first_launch_;  // of this step's first bucket
  std::vector<std::unique_ptr<CommRequest>> in_flight_;
  // Recorded after the work that writes what a collective sends (a finished bucket, the
  // ZeRO-1 gradients, the updated parameter shard), and passed to it as `after`.
  std::unique_ptr<Event> send_ready_;
  double hook_comm_ms_ = 0;
  std::vector<int64_t> offsets_;
  std::vector<int32_t> windows_, x_, y_;
};

struct RunOptions {
  bool overwrite = false;  // replace a run already in log.dir (its metrics and checkpoints)
  bool quiet = false;      // no per-step lines (metrics are still written)
};

struct RunSummary {
  std::string dir, config_path, metrics_path, model_path, last_checkpoint;
  EvalResult eval;
  StepStats last;
  int64_t resumed_from = 0;  // step of the checkpoint resumed from (0: fresh)
  int stopped_by = 0;        // the signal that stopped the run early (0: ran to train.steps)
  double seconds = 0;
};

// The whole `qisa train` (collective): resume or start, the step loop with metrics, periodic
// evaluation and checkpoints, graceful stop on SIGTERM/SIGUSR1/SIGINT, final.h5. Rank 0
// prints and writes; the others are silent.
RunSummary run_training(const Config& cfg, Backend& backend, Communicator& comm, Collectives& coll,
                        const RunOptions& opt);

}  // namespace qisa
