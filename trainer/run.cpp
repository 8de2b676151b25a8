// run_training: the whole `qisa train` around the Trainer: where to resume from, the run
// directory, metrics, periodic eval and checkpoints, graceful stop, final.h5.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/metrics_log.h"
#include "io/model_file.h"
#include "kernels/error.h"
#include "trainer/flops.h"
#include "trainer/model_io.h"
#include "trainer/signals.h"
#include "trainer/trainer.h"

namespace qisa {

namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string format_duration(double seconds) {
  const auto s = static_cast<long long>(std::max(0.0, seconds) + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%02lld:%02lld", s / 60, s % 60);
  return buf;
}

// Keep the metrics lines of steps <= `step` (a crash may have logged steps after the
// checkpoint that the resumed run will log again); a torn last line is dropped too.
void truncate_metrics(const std::string& path, int64_t step) {
  if (!fs::exists(path)) return;
  std::ifstream in(path);
  std::string line, kept;
  while (std::getline(in, line)) {
    const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() <= step)
      kept += line + "\n";
  }
  write_text_atomic(path, kept);
}

std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// What to do about a checkpoint that could not be written, from its cause (the OS's words).
std::string checkpoint_write_hint(const std::string& error) {
  if (error.find("No space left") != std::string::npos || error.find("quota") != std::string::npos)
    return "free disk space";
  if (error.find("Read-only file system") != std::string::npos || error.find("Permission denied") != std::string::npos)
    return "make checkpoint.dir writable, or choose a writable one (checkpoint.dir=...)";
  return "fix the cause above";
}

// log.dir holds this very run (the same resolved config), stopped before its first
// checkpoint and unfinished: rerunning the command starts it again rather than refusing.
bool same_run_without_checkpoint(const Config& cfg, const std::string& model_path) {
  const std::string config_path = (fs::path(cfg.log.dir) / "config.yaml").string();
  return !fs::exists(model_path) && fs::exists(config_path) && file_text(config_path) == cfg.to_yaml();
}

// Rank 0 decides where the run starts: the checkpoint to resume from ("" = fresh start).
std::string choose_start(const Config& cfg, const CheckpointStore& store, const RunOptions& opt,
                         const std::string& metrics_path, const std::string& model_path) {
  // A config.yaml in log.dir that qisa did not write is the user's (e.g. log.dir: .): the run's
  // record would replace it, --overwrite or not.
  const std::string config_path = (fs::path(cfg.log.dir) / "config.yaml").string();
  QISA_CHECK(!fs::exists(config_path) || file_text(config_path).rfind(kResolvedConfigHeader, 0) == 0,
             "log.dir = '" + cfg.log.dir + "' holds a config.yaml that qisa did not write; the run would replace it "
             "with its resolved config",
             "choose a run directory of its own, e.g. log.dir=runs/" + fs::path(cfg.source).stem().string());
  std::error_code ec;
  fs::create_directories(cfg.log.dir, ec);
  QISA_CHECK(fs::is_directory(cfg.log.dir), "cannot create run directory log.dir = '" + cfg.log.dir + "': " + ec.message(),
             "choose a writable log.dir");
  fs::create_directories(store.dir(), ec);
  QISA_CHECK(fs::is_directory(store.dir()), "cannot create checkpoint directory '" + store.dir() + "': " + ec.message(),
             "choose a writable checkpoint.dir");
  if (opt.overwrite) {  // a new run replaces the old one entirely, so nothing of it is resumed
    for (const auto& p : store.list()) fs::remove(p, ec);
    fs::remove(metrics_path, ec);
    fs::remove(model_path, ec);
    return "";
  }
  std::string path;
  const std::string& mode = cfg.train.resume;
  if (mode == "auto") {
    path = store.newest_valid([](const std::string& why) { std::printf("warning: %s\n", why.c_str()); }).value_or("");
  } else if (mode == "never") {
    QISA_CHECK(store.list().empty(),
               "train.resume = never, but checkpoint.dir '" + store.dir() + "' holds checkpoints of an earlier run",
               "resume it (train.resume=auto), or start over with --overwrite");
  } else {
    CheckpointReader(mode).verify();
    path = mode;
  }
  if (path.empty() && fs::exists(metrics_path) && same_run_without_checkpoint(cfg, model_path)) {
    std::printf("note: log.dir = '%s' holds this run, stopped before its first checkpoint: starting it again\n",
                cfg.log.dir.c_str());
    fs::remove(metrics_path, ec);
  }
  if (path.empty())
    for (const std::string& f : {metrics_path, model_path})
      QISA_CHECK(!fs::exists(f), "run directory log.dir = '" + cfg.log.dir + "' already holds a run (" +
                                     fs::path(f).filename().string() + ") and no checkpoint to resume",
                 "choose another log.dir (e.g. log.dir=" + cfg.log.dir + "-2) or pass --overwrite to replace it");
  return path;
}


// One `qisa train` run: the state the steps of run_training share. Rank 0 prints and writes.
class TrainingRun {
 public:
  TrainingRun(const Config& cfg, Backend& backend, Communicator& comm, Collectives& coll, const RunOptions& opt)
      : cfg_(cfg), backend_(backend), comm_(comm), coll_(coll), opt_(opt), lead_(comm.rank() == 0),
        store_(cfg.checkpoint_dir(), cfg.checkpoint.keep_last), yaml_(cfg.to_yaml()) {
    sum_.dir = cfg.log.dir;
    sum_.config_path = (fs::path(sum_.dir) / "config.yaml").string();
    sum_.metrics_path = (fs::path(sum_.dir) / "metrics.jsonl").string();
    sum_.model_path = (fs::path(sum_.dir) / "final.h5").string();
  }

  // Where the run starts (rank 0 decides), the resolved config, the trainer, the header lines.
  void start() {
    if (lead_) resume_path_ = choose_start(cfg_, store_, opt_, sum_.metrics_path, sum_.model_path);
    broadcast_string(comm_, resume_path_);
    if (lead_) std::printf("qisa train: resolved config (from %s)\n%s\n", cfg_.source.c_str(), yaml_.c_str());
    trainer_ = std::make_unique<Trainer>(cfg_, backend_, comm_, coll_);
    if (!resume_path_.empty()) resume();
    // Only now, when the run really goes on: a refused resume leaves the run's record as it was.
    if (lead_) write_text_atomic(sum_.config_path, yaml_);
    if (lead_) metrics_ = std::make_unique<MetricsLog>(sum_.metrics_path, /*append=*/true);
    // MFU: the model's training FLOPs per token against one rank's peak (train.peak_tflops, or the
    // GPU table by the backend's device name) for the run's math precision: fp32, the only one
    // the trainer computes in until train.precision comes.
    flops_per_token_ = forward_flops(cfg_.model).training();
    peak_ = resolve_peak(cfg_.train.peak_tflops, backend_.device_model(), math_precision(cfg_.train.precision));
    if (lead_) print_header();
    // A live progress line only on a real terminal: under mpirun a rank's stdout is a pty that
    // Open MPI forwards into logs, where the line redraws would be noise.
    tty_ = lead_ && isatty(fileno(stdout)) == 1 && detect_world().launcher == "none";
  }

  // Steps until train.steps (true) or until a stop signal, after its checkpoint (false).
  bool train() {
    last_.step = trainer_->steps_done();
    while (trainer_->steps_done() < cfg_.train.steps) {
      last_ = trainer_->step();
      const StepStats& s = last_;
      if (!s.nonfinite.empty() && !s.skipped) stop_nonfinite(s);
      train_s_ += s.ms / 1000.0;
      ++timed_steps_;
      if (s.skipped) report_skipped(s);
      if (s.spike.any()) report_spike(s);
      report_step(s);
      if (s.stop_signal) {
        stop_by_signal(s);
        return false;
      }
      if (s.step == cfg_.train.steps) break;
      if (cfg_.eval.every > 0 && s.step % cfg_.eval.every == 0) evaluate(s.step);
      if (cfg_.checkpoint.every_steps > 0 && s.step % cfg_.checkpoint.every_steps == 0) save(s.step);
    }
    return true;
  }

  // The final evaluation, checkpoint and model file.
  void finish() {
    if (tty_ && !opt_.quiet) std::printf("\n");
    sum_.eval = evaluate(trainer_->steps_done());
    // The final checkpoint lets a chain of jobs see that the run is complete (a resume at
    // train.steps only evaluates and writes final.h5 again).
    if (sum_.resumed_from == trainer_->steps_done())
      sum_.last_checkpoint = resume_path_;  // nothing trained since: the checkpoint is current
    else
      save(trainer_->steps_done());
    if (lead_)
      write_model_file(sum_.model_path,
                       snapshot_model(trainer_->model(), yaml_, trainer_->steps_done(), trainer_->vocab()));
  }

  RunSummary summary() {
    sum_.last = last_;
    sum_.seconds = seconds_since(t_start_);
    return sum_;
  }

 private:
  void log(const json& j) {
    if (metrics_) metrics_->write(j.dump());
  }
  // Rank 0 prints a line (clearing the live progress line first on a terminal).
  template <typename... A>
  void say(const char* format, A... args) {
    if (!lead_) return;
    if (tty_) std::printf("\r\033[K");
    std::printf(format, args...);
    std::fflush(stdout);
  }

  void resume() {
    trainer_->load_checkpoint(resume_path_, [&](const std::string& w) {
      if (lead_) std::printf("warning: %s\n", w.c_str());
    });
    sum_.resumed_from = trainer_->steps_done();
    sum_.last_checkpoint = resume_path_;
    if (lead_) truncate_metrics(sum_.metrics_path, sum_.resumed_from);
  }

  std::string precision_label() const {
    if (cfg_.train.precision == Precision::fp32) return "fp32";
    return std::string("bf16 (") + to_string(cfg_.train.bf16_rounding) + " weight copy)";
  }

  void print_header() {
    std::printf("model: %s attention, %s mask, %lld parameters, vocab %lld | %d rank%s (%s), backend %s, %s, %d threads | "
                "%lld steps of %lld tokens (per rank %lld sequences, micro-batch %lld)\n",
                to_string(cfg_.model.attention), to_string(cfg_.model.mask),
                static_cast<long long>(trainer_->model().num_params()), static_cast<long long>(cfg_.model.vocab_size),
                comm_.size(), comm_.size() == 1 ? "" : "s", comm_.name().c_str(), backend_.name().c_str(),
                precision_label().c_str(), backend_.threads(), static_cast<long long>(cfg_.train.steps),
                static_cast<long long>(cfg_.train.batch_size * cfg_.model.block_size),
                static_cast<long long>(trainer_->local_batch()), static_cast<long long>(trainer_->micro_batch()));
    std::printf("FLOPs: %.3e per token (training, model FLOPs: trainer/flops.h); peak %s\n", flops_per_token_,
                peak_.note.c_str());
    if (cfg_.train.warmup_steps > cfg_.train.steps)
      std::printf("warning: train.warmup_steps = %lld is longer than the run (train.steps = %lld): the learning rate "
                  "never reaches train.lr = %g (hint: fewer warm-up steps)\n",
                  static_cast<long long>(cfg_.train.warmup_steps), static_cast<long long>(cfg_.train.steps),
                  cfg_.train.lr);
    if (!resume_path_.empty()) {
      std::printf("resumed from %s at step %lld\n", resume_path_.c_str(), static_cast<long long>(sum_.resumed_from));
      log(json{{"step", sum_.resumed_from}, {"resumed_from", resume_path_}, {"world_size", comm_.size()}});
    }
    std::fflush(stdout);
  }

  // A checkpoint that could not be written follows checkpoint.on_error on every rank alike
  // (save_checkpoint returns rank 0's verdict to all): stop throws, warn returns false.
  bool save(int64_t step) {
    const auto t0 = Clock::now();
    const std::string path = store_.path_for(step);
    const std::string error = trainer_->save_checkpoint(path);
    const double ms = seconds_since(t0) * 1000.0;
    if (!error.empty()) {
      log(json{{"step", step}, {"checkpoint_failed", path}, {"error", error}});
      const std::string what = "cannot write checkpoint '" + path + "' at step " + std::to_string(step) + ": " + error +
                               " (its temporary file was removed; the newest checkpoint is " +
                               (sum_.last_checkpoint.empty() ? std::string("none") : "'" + sum_.last_checkpoint + "'") +
                               ")";
      if (cfg_.checkpoint.on_error == OnCheckpointError::stop)
        throw CollectiveError(what, checkpoint_write_hint(error) +
                                        " and rerun the same command: train.resume=auto continues from the newest "
                                        "checkpoint; or set checkpoint.on_error=warn to train on without this one");
      say("warning: %s; training continues (checkpoint.on_error = warn)\n", what.c_str());
      return false;
    }
    if (lead_) {
      store_.prune();
      log(json{{"step", step}, {"checkpoint", path}, {"write_ms", ms}});
      say("checkpoint step %lld: %s (%.0f ms)\n", static_cast<long long>(step), path.c_str(), ms);
    }
    sum_.last_checkpoint = path;
    return true;
  }

  // train.on_nonfinite = stop: the step was not taken, so the trainer holds the state before it.
  [[noreturn]] void stop_nonfinite(const StepStats& bad) {
    const int64_t good = trainer_->steps_done();
    const bool have = sum_.last_checkpoint == store_.path_for(good) || save(good);
    log(json{{"step", bad.step}, {"nonfinite", bad.nonfinite}, {"stopped", true}});
    throw CollectiveError(
        "step " + std::to_string(bad.step) + ": " + bad.nonfinite + " after the gradient all-reduce; " +
            (have ? "the state before it (step " + std::to_string(good) + ") is checkpointed in '" +
                        sum_.last_checkpoint + "'"
                  : "the newest checkpoint is '" + sum_.last_checkpoint + "'") +
            "; stopped (train.on_nonfinite = stop)",
        "lower train.lr, set train.grad_clip (e.g. 1.0), or set train.on_nonfinite=skip to drop such steps' updates; "
        "rerunning the same command resumes from the checkpoint");
  }

  EvalResult evaluate(int64_t step) {
    EvalResult e = trainer_->evaluate();
    log(json{{"step", step}, {"eval", json::parse(e.to_json())}});
    say("eval step %lld: ce %.4f ppl %.3f cer %.4f wer %.4f (%lld windows)\n", static_cast<long long>(step), e.ce,
        e.ppl, e.cer, e.wer, static_cast<long long>(e.windows));
    return e;
  }

  void report_skipped(const StepStats& s) {
    log(json{{"step", s.step}, {"nonfinite", s.nonfinite}, {"skipped_nonfinite", s.skipped_total}});
    say("warning: step %lld: %s after the gradient all-reduce; its update is skipped "
        "(train.on_nonfinite = skip; %lld step%s skipped so far)\n",
        static_cast<long long>(s.step), s.nonfinite.c_str(), static_cast<long long>(s.skipped_total),
        s.skipped_total == 1 ? "" : "s");
  }

  void report_spike(const StepStats& s) {
    json what = json::object();
    if (s.spike.loss) what["loss"] = json{{"value", s.loss}, {"reference", s.spike.loss_ref}};
    if (s.spike.grad_norm) what["grad_norm"] = json{{"value", s.grad_norm}, {"reference", s.spike.grad_norm_ref}};
    json line{{"step", s.step}, {"spike", what}, {"factor", cfg_.train.spike_factor}, {"skipped", s.spike_skipped},
              {"spikes", s.spikes_total}, {"skipped_spikes", s.skipped_spikes_total}};
    if (s.spike.restarted) line["restarted"] = true;
    log(line);
    const std::string restart =
        s.spike.restarted ? "; " + std::to_string(kSpikeRestart) + " spikes in a row: the reference starts again" : "";
    say("warning: step %lld: spike: %s; %s (train.on_spike = %s; %lld spike%s so far)%s\n",
        static_cast<long long>(s.step), s.spike.describe(s.loss, s.grad_norm, cfg_.train.spike_factor).c_str(),
        s.spike_skipped ? "its update is skipped" : "trained on", to_string(cfg_.train.on_spike),
        static_cast<long long>(s.spikes_total), s.spikes_total == 1 ? "" : "s", restart.c_str());
  }

  // The metrics line every log.every steps, and the progress line (live on a terminal).
  void report_step(const StepStats& s) {
    const int64_t steps = cfg_.train.steps;
    const bool log_now = s.step % cfg_.log.every == 0 || s.step == steps || s.step == sum_.resumed_from + 1;
    // achieved model TFLOP/s per rank, and MFU when the peak is known
    const double tflops = flops_per_token_ * s.tokens_per_s / comm_.size() / 1e12;
    const double mfu = model_flops_utilization(flops_per_token_, s.tokens_per_s, comm_.size(), peak_.flops);
    if (!s.skipped && !s.spike_skipped && log_now) {
      json j{{"step", s.step}, {"loss", s.loss}, {"lr", s.lr}, {"grad_norm", s.grad_norm}, {"ms", s.ms},
             {"data_ms", s.data_ms}, {"compute_ms", s.compute_ms}, {"comm_ms", s.comm_ms},
             {"tokens_per_s", s.tokens_per_s}, {"tflops", tflops}, {"skipped_nonfinite", s.skipped_total},
             {"spikes", s.spikes_total}};
      if (peak_.flops > 0) j["mfu"] = mfu;
      log(j);
    }
    char mfu_text[32] = "";
    if (peak_.flops > 0) std::snprintf(mfu_text, sizeof mfu_text, "  MFU %.1f%%", 100.0 * mfu);
    const double eta = train_s_ / static_cast<double>(timed_steps_) * static_cast<double>(steps - s.step);
    if (tty_ && !opt_.quiet && (seconds_since(last_draw_) > 0.1 || s.step == steps)) {
      std::printf("\r\033[Kstep %lld/%lld  loss %.4f  %.1f ms/step  %.0f tok/s%s  ETA %s", static_cast<long long>(s.step),
                  static_cast<long long>(steps), s.loss, s.ms, s.tokens_per_s, mfu_text, format_duration(eta).c_str());
      std::fflush(stdout);
      last_draw_ = Clock::now();
    } else if (lead_ && !tty_ && !opt_.quiet && log_now) {
      std::printf("step %lld/%lld  loss %.4f  lr %.2e  %.1f ms/step (data %.1f, compute %.1f, comm %.1f)  %.0f tok/s  "
                  "%.3g TFLOP/s%s  ETA %s\n",
                  static_cast<long long>(s.step), static_cast<long long>(steps), s.loss, s.lr, s.ms, s.data_ms,
                  s.compute_ms, s.comm_ms, s.tokens_per_s, tflops, mfu_text, format_duration(eta).c_str());
      std::fflush(stdout);
    }
  }

  // SIGTERM/SIGUSR1/SIGINT reached some rank during step s: checkpoint and end the run.
  void stop_by_signal(const StepStats& s) {
    if (tty_) std::printf("\n");
    const bool saved = save(s.step);
    sum_.stopped_by = s.stop_signal;
    if (!lead_) return;
    log(json{{"step", s.step}, {"stopped_by", StopSignals::name(s.stop_signal)}});
    std::printf("stopped by %s after step %lld; resume with train.resume=auto (the default)%s\n",
                StopSignals::name(s.stop_signal), static_cast<long long>(s.step),
                saved ? "" : ", which continues from the newest checkpoint written");
  }

  const Config& cfg_;
  Backend& backend_;
  Communicator& comm_;
  Collectives& coll_;
  const RunOptions& opt_;
  const Clock::time_point t_start_ = Clock::now();
  const bool lead_;  // prints and writes files
  StopSignals signals_;
  CheckpointStore store_;
  const std::string yaml_;
  RunSummary sum_;
  std::string resume_path_;  // "" = a fresh start
  std::unique_ptr<Trainer> trainer_;
  std::unique_ptr<MetricsLog> metrics_;
  double flops_per_token_ = 0;
  RankPeak peak_;
  bool tty_ = false;
  StepStats last_;
  double train_s_ = 0;
  int64_t timed_steps_ = 0;
  Clock::time_point last_draw_ = Clock::now() - std::chrono::seconds(1);
};

}  // namespace

RunSummary run_training(const Config& cfg, Backend& backend, Communicator& comm, Collectives& coll,
                        const RunOptions& opt) {
  TrainingRun run(cfg, backend, comm, coll, opt);
  run.start();
  if (run.train()) run.finish();
  return run.summary();
}

}  // namespace qisa
