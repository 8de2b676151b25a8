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

// log.dir holds this very run (the same resolved config), stopped before its first
// checkpoint and unfinished: rerunning the command starts it again rather than refusing.
bool same_run_without_checkpoint(const Config& cfg, const std::string& model_path) {
  const std::string config_path = (fs::path(cfg.log.dir) / "config.yaml").string();
  return !fs::exists(model_path) && fs::exists(config_path) && file_text(config_path) == cfg.to_yaml();
}

// Rank 0 decides where the run starts: the checkpoint to resume from ("" = fresh start).
std::string choose_start(const Config& cfg, const CheckpointStore& store, const RunOptions& opt,
                         const std::string& metrics_path, const std::string& model_path) {
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

}  // namespace

RunSummary run_training(const Config& cfg, Backend& backend, Communicator& comm, const RunOptions& opt) {
  const auto t_start = Clock::now();
  const bool lead = comm.rank() == 0;  // prints and writes files
  StopSignals signals;
  RunSummary sum;
  sum.dir = cfg.log.dir;
  sum.config_path = (fs::path(sum.dir) / "config.yaml").string();
  sum.metrics_path = (fs::path(sum.dir) / "metrics.jsonl").string();
  sum.model_path = (fs::path(sum.dir) / "final.h5").string();
  CheckpointStore store(cfg.checkpoint_dir(), cfg.checkpoint.keep_last);

  std::string resume_path;
  if (lead) resume_path = choose_start(cfg, store, opt, sum.metrics_path, sum.model_path);
  broadcast_string(comm, resume_path);

  const std::string yaml = cfg.to_yaml();
  if (lead) {
    std::printf("qisa train: resolved config (from %s)\n%s\n", cfg.source.c_str(), yaml.c_str());
    write_text_atomic(sum.config_path, yaml);
  }

  Trainer trainer(cfg, backend, comm);
  if (!resume_path.empty()) {
    trainer.load_checkpoint(resume_path, [&](const std::string& w) {
      if (lead) std::printf("warning: %s\n", w.c_str());
    });
    sum.resumed_from = trainer.steps_done();
    sum.last_checkpoint = resume_path;
    if (lead) truncate_metrics(sum.metrics_path, sum.resumed_from);
  }
  std::unique_ptr<MetricsLog> metrics;
  if (lead) metrics = std::make_unique<MetricsLog>(sum.metrics_path, /*append=*/true);
  auto log = [&](const json& j) {
    if (metrics) metrics->write(j.dump());
  };

  const int64_t steps = cfg.train.steps;
  const int64_t tokens_per_step = cfg.train.batch_size * cfg.model.block_size;
  // MFU: the model's training FLOPs per token against one rank's peak (train.peak_tflops, or the
  // GPU table by the backend's device name) for the run's math precision: fp32, the only one
  // the trainer computes in until train.precision comes.
  const double flops_per_token = forward_flops(cfg.model).training();
  const RankPeak rank_peak = resolve_peak(cfg.train.peak_tflops, backend.device_model(), MathPrecision::fp32);
  const double peak = rank_peak.flops;
  const std::string& peak_note = rank_peak.note;
  if (lead) {
    std::printf("model: %s attention, %s mask, %lld parameters, vocab %lld | %d rank%s (%s), backend %s, %d threads | "
                "%lld steps of %lld tokens (per rank %lld sequences, micro-batch %lld)\n",
                to_string(cfg.model.attention), to_string(cfg.model.mask),
                static_cast<long long>(trainer.model().num_params()), static_cast<long long>(cfg.model.vocab_size),
                comm.size(), comm.size() == 1 ? "" : "s", comm.name().c_str(), backend.name().c_str(), backend.threads(),
                static_cast<long long>(steps), static_cast<long long>(tokens_per_step),
                static_cast<long long>(trainer.local_batch()), static_cast<long long>(trainer.micro_batch()));
    std::printf("FLOPs: %.3e per token (training, model FLOPs: trainer/flops.h); peak %s\n", flops_per_token,
                peak_note.c_str());
    if (!resume_path.empty()) {
      std::printf("resumed from %s at step %lld\n", resume_path.c_str(), static_cast<long long>(sum.resumed_from));
      log(json{{"step", sum.resumed_from}, {"resumed_from", resume_path}, {"world_size", comm.size()}});
    }
    std::fflush(stdout);
  }

  // A live progress line only on a real terminal: under mpirun a rank's stdout is a pty that
  // Open MPI forwards into logs, where the line redraws would be noise.
  const bool tty = lead && isatty(fileno(stdout)) == 1 && detect_world().launcher == "none";
  // A checkpoint that could not be written follows checkpoint.on_error on every rank alike
  // (save_checkpoint returns rank 0's verdict to all): stop throws, warn returns false.
  auto save = [&](int64_t step) {
    const auto t0 = Clock::now();
    const std::string path = store.path_for(step);
    const std::string error = trainer.save_checkpoint(path);
    const double ms = seconds_since(t0) * 1000.0;
    if (!error.empty()) {
      log(json{{"step", step}, {"checkpoint_failed", path}, {"error", error}});
      const std::string what = "cannot write checkpoint '" + path + "' at step " + std::to_string(step) + ": " + error +
                               " (its temporary file was removed; the newest checkpoint is " +
                               (sum.last_checkpoint.empty() ? std::string("none") : "'" + sum.last_checkpoint + "'") + ")";
      if (cfg.checkpoint.on_error == OnCheckpointError::stop)
        throw CollectiveError(what, "free disk space and rerun the same command: train.resume=auto continues from the "
                                    "newest checkpoint; or set checkpoint.on_error=warn to train on without this one");
      if (lead) {
        if (tty) std::printf("\r\033[K");
        std::printf("warning: %s; training continues (checkpoint.on_error = warn)\n", what.c_str());
        std::fflush(stdout);
      }
      return false;
    }
    if (lead) {
      store.prune();
      log(json{{"step", step}, {"checkpoint", path}, {"write_ms", ms}});
      if (tty) std::printf("\r\033[K");
      std::printf("checkpoint step %lld: %s (%.0f ms)\n", static_cast<long long>(step), path.c_str(), ms);
      std::fflush(stdout);
    }
    sum.last_checkpoint = path;
    return true;
  };
  // train.on_nonfinite = stop: the step was not taken, so the trainer holds the state before it.
  auto stop_nonfinite = [&](const StepStats& bad) {
    const int64_t good = trainer.steps_done();
    const bool have = sum.last_checkpoint == store.path_for(good) || save(good);
    log(json{{"step", bad.step}, {"nonfinite", bad.nonfinite}, {"stopped", true}});
    throw CollectiveError(
        "step " + std::to_string(bad.step) + ": " + bad.nonfinite + " after the gradient all-reduce; " +
            (have ? "the state before it (step " + std::to_string(good) + ") is checkpointed in '" + sum.last_checkpoint + "'"
                  : "the newest checkpoint is '" + sum.last_checkpoint + "'") +
            "; stopped (train.on_nonfinite = stop)",
        "lower train.lr, set train.grad_clip (e.g. 1.0), or set train.on_nonfinite=skip to drop such steps' updates; "
        "rerunning the same command resumes from the checkpoint");
  };
  auto run_eval = [&](int64_t step) {
    EvalResult e = trainer.evaluate();
    log(json{{"step", step}, {"eval", json::parse(e.to_json())}});
    if (lead) {
      if (tty) std::printf("\r\033[K");
      std::printf("eval step %lld: ce %.4f ppl %.3f cer %.4f wer %.4f (%lld windows)\n", static_cast<long long>(step),
                  e.ce, e.ppl, e.cer, e.wer, static_cast<long long>(e.windows));
      std::fflush(stdout);
    }
    return e;
  };

  StepStats s;
  s.step = trainer.steps_done();
  double train_s = 0;
  int64_t timed_steps = 0;
  auto last_draw = Clock::now() - std::chrono::seconds(1);
  while (trainer.steps_done() < steps) {
    s = trainer.step();
    if (!s.nonfinite.empty() && !s.skipped) stop_nonfinite(s);
    train_s += s.ms / 1000.0;
    ++timed_steps;
    const bool log_now = s.step % cfg.log.every == 0 || s.step == steps || s.step == sum.resumed_from + 1;
    if (s.skipped) {
      log(json{{"step", s.step}, {"nonfinite", s.nonfinite}, {"skipped_nonfinite", s.skipped_total}});
      if (lead) {
        if (tty) std::printf("\r\033[K");
        std::printf("warning: step %lld: %s after the gradient all-reduce; its update is skipped "
                    "(train.on_nonfinite = skip; %lld step%s skipped so far)\n",
                    static_cast<long long>(s.step), s.nonfinite.c_str(), static_cast<long long>(s.skipped_total),
                    s.skipped_total == 1 ? "" : "s");
        std::fflush(stdout);
      }
    }
    if (s.spike.any()) {
      json what = json::object();
      if (s.spike.loss) what["loss"] = json{{"value", s.loss}, {"reference", s.spike.loss_ref}};
      if (s.spike.grad_norm) what["grad_norm"] = json{{"value", s.grad_norm}, {"reference", s.spike.grad_norm_ref}};
      json line{{"step", s.step}, {"spike", what}, {"factor", cfg.train.spike_factor}, {"skipped", s.spike_skipped},
                {"spikes", s.spikes_total}, {"skipped_spikes", s.skipped_spikes_total}};
      if (s.spike.restarted) line["restarted"] = true;
      log(line);
      if (lead) {
        const std::string restart = s.spike.restarted ? "; " + std::to_string(kSpikeRestart) +
                                                            " spikes in a row: the reference starts again"
                                                      : "";
        if (tty) std::printf("\r\033[K");
        std::printf("warning: step %lld: spike: %s; %s (train.on_spike = %s; %lld spike%s so far)%s\n",
                    static_cast<long long>(s.step), s.spike.describe(s.loss, s.grad_norm, cfg.train.spike_factor).c_str(),
                    s.spike_skipped ? "its update is skipped" : "trained on", to_string(cfg.train.on_spike),
                    static_cast<long long>(s.spikes_total), s.spikes_total == 1 ? "" : "s", restart.c_str());
        std::fflush(stdout);
      }
    }
    // achieved model TFLOP/s per rank, and MFU when the peak is known
    const double tflops = flops_per_token * s.tokens_per_s / comm.size() / 1e12;
    const double mfu = model_flops_utilization(flops_per_token, s.tokens_per_s, comm.size(), peak);
    if (!s.skipped && !s.spike_skipped && log_now) {
      json j{{"step", s.step}, {"loss", s.loss}, {"lr", s.lr}, {"grad_norm", s.grad_norm}, {"ms", s.ms},
             {"data_ms", s.data_ms}, {"compute_ms", s.compute_ms}, {"comm_ms", s.comm_ms},
             {"tokens_per_s", s.tokens_per_s}, {"tflops", tflops}, {"skipped_nonfinite", s.skipped_total},
             {"spikes", s.spikes_total}};
      if (peak > 0) j["mfu"] = mfu;
      log(j);
    }
    char mfu_text[32] = "";
    if (peak > 0) std::snprintf(mfu_text, sizeof mfu_text, "  MFU %.1f%%", 100.0 * mfu);
    const double eta = train_s / static_cast<double>(timed_steps) * static_cast<double>(steps - s.step);
    if (tty && !opt.quiet && (seconds_since(last_draw) > 0.1 || s.step == steps)) {
      std::printf("\r\033[Kstep %lld/%lld  loss %.4f  %.1f ms/step  %.0f tok/s%s  ETA %s", static_cast<long long>(s.step),
                  static_cast<long long>(steps), s.loss, s.ms, s.tokens_per_s, mfu_text, format_duration(eta).c_str());
      std::fflush(stdout);
      last_draw = Clock::now();
    } else if (lead && !tty && !opt.quiet && log_now) {
      std::printf("step %lld/%lld  loss %.4f  lr %.2e  %.1f ms/step (data %.1f, compute %.1f, comm %.1f)  %.0f tok/s  "
                  "%.3g TFLOP/s%s  ETA %s\n",
                  static_cast<long long>(s.step), static_cast<long long>(steps), s.loss, s.lr, s.ms, s.data_ms,
                  s.compute_ms, s.comm_ms, s.tokens_per_s, tflops, mfu_text, format_duration(eta).c_str());
      std::fflush(stdout);
    }
    if (s.stop_signal) {
      if (tty) std::printf("\n");
      const bool saved = save(s.step);
      sum.stopped_by = s.stop_signal;
      if (lead) {
        log(json{{"step", s.step}, {"stopped_by", StopSignals::name(s.stop_signal)}});
        std::printf("stopped by %s after step %lld; resume with train.resume=auto (the default)%s\n",
                    StopSignals::name(s.stop_signal), static_cast<long long>(s.step),
                    saved ? "" : ", which continues from the newest checkpoint written");
      }
      sum.last = s;
      sum.seconds = seconds_since(t_start);
      return sum;
    }
    if (s.step == steps) break;
    if (cfg.eval.every > 0 && s.step % cfg.eval.every == 0) run_eval(s.step);
    if (cfg.checkpoint.every_steps > 0 && s.step % cfg.checkpoint.every_steps == 0) save(s.step);
  }
  if (tty && !opt.quiet) std::printf("\n");
  sum.eval = run_eval(trainer.steps_done());
  sum.last = s;
  // The final checkpoint lets a chain of jobs see that the run is complete (a resume at
  // train.steps only evaluates and writes final.h5 again).
  if (sum.resumed_from == trainer.steps_done())
    sum.last_checkpoint = resume_path;  // nothing trained since: the checkpoint is current
  else
    save(trainer.steps_done());
  if (lead)
    write_model_file(sum.model_path, snapshot_model(trainer.model(), yaml, trainer.steps_done(), trainer.vocab()));
  sum.seconds = seconds_since(t_start);
  return sum;
}

}  // namespace qisa
