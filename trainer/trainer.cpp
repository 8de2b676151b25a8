#include "trainer/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/corpus.h"
#include "io/metrics_log.h"
#include "kernels/error.h"
#include "trainer/model_io.h"

namespace qisa {

namespace {
using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}
// Dropout draws use their own key so they never share a Philox stream with init or sampling.
uint64_t dropout_key(uint64_t seed) { return seed ^ 0x9E3779B97F4A7C15ull; }

int64_t micro_batch_of(const TrainConfig& t) { return t.micro_batch_size > 0 ? t.micro_batch_size : t.batch_size; }
}  // namespace

Trainer::Trainer(const Config& cfg, Backend& backend)
    : cfg_(cfg),
      be_(backend),
      train_(read_split(cfg.data.corpus, "train")),
      val_(read_split(cfg.data.corpus, "val")),
      vocab_(read_vocab(cfg.data.corpus)),
      micro_(micro_batch_of(cfg.train)),
      sampler_(cfg.train.seed, static_cast<int64_t>(train_.size()), cfg.model.block_size) {
  QISA_CHECK(cfg.train.batch_size % micro_ == 0,
             cfg.source + ": train.micro_batch_size = " + std::to_string(micro_) + " does not divide train.batch_size = " +
                 std::to_string(cfg.train.batch_size),
             "choose a micro-batch size that divides the batch size");
  QISA_CHECK(cfg.model.vocab_size > 0, "model.vocab_size is unset", "check the config against the corpus first");
  model_ = std::make_unique<GPT>(cfg.model, be_, micro_);
  model_->init(cfg.train.seed);
  opt_ = std::make_unique<AdamW>(be_, model_->num_params());
}

StepStats Trainer::step() {
  const auto t0 = Clock::now();
  const int64_t t = step_ + 1;
  const int T = cfg_.model.block_size;
  const int64_t B = cfg_.train.batch_size;
  model_->zero_grads();
  double loss_sum = 0;
  offsets_.resize(static_cast<size_t>(micro_));
  for (int64_t m0 = 0; m0 < B; m0 += micro_) {
    for (int64_t i = 0; i < micro_; ++i) offsets_[i] = sampler_.offset((t - 1) * B + m0 + i);
    gather_windows(train_, offsets_, T, x_, y_);
    StepContext ctx;
    ctx.train = true;
    ctx.seed = dropout_key(cfg_.train.seed);
    ctx.step = static_cast<uint32_t>(t);
    ctx.seq_offset = m0;
    loss_sum += model_->forward(x_.data(), y_.data(), micro_, T, ctx) * static_cast<double>(micro_);
    model_->backward(1.0f / static_cast<float>(B * T));
  }
  StepStats s;
  s.step = t;
  s.loss = loss_sum / static_cast<double>(B);
  s.lr = learning_rate(cfg_.train, t);
  s.grad_norm = opt_->step(model_->params(), model_->grads(), t, s.lr, cfg_.train);
  be_.synchronize();
  step_ = t;
  s.ms = ms_since(t0);
  s.tokens_per_s = static_cast<double>(B * T) / (s.ms / 1000.0);
  QISA_CHECK(std::isfinite(s.loss), "the training loss became " + std::to_string(s.loss) + " at step " + std::to_string(t),
             "lower train.lr or set train.grad_clip");
  return s;
}

EvalResult Trainer::evaluate() { return qisa::evaluate(*model_, val_, cfg_.eval.windows, vocab_); }

// ------------------------------------------------------------------ the run

namespace {

std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, seconds) + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%02lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  return buf;
}

void prepare_run_dir(const std::string& dir, bool overwrite) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  QISA_CHECK(!ec && fs::is_directory(dir), "cannot create run directory log.dir = '" + dir + "': " + ec.message(),
             "choose a writable log.dir");
  for (const char* f : {"metrics.jsonl", "final.h5"}) {
    QISA_CHECK(overwrite || !fs::exists(fs::path(dir) / f),
               "run directory log.dir = '" + dir + "' already holds a run (" + f + ")",
               "choose another log.dir (e.g. log.dir=" + dir + "-2) or pass --overwrite to replace it");
  }
}

}  // namespace

RunSummary run_training(const Config& cfg, Backend& backend, const RunOptions& opt) {
  namespace fs = std::filesystem;
  const auto t_start = Clock::now();
  RunSummary sum;
  sum.dir = cfg.log.dir;
  prepare_run_dir(sum.dir, opt.overwrite);
  sum.config_path = (fs::path(sum.dir) / "config.yaml").string();
  sum.metrics_path = (fs::path(sum.dir) / "metrics.jsonl").string();
  sum.model_path = (fs::path(sum.dir) / "final.h5").string();

  const std::string yaml = cfg.to_yaml();
  std::printf("qisa train: resolved config (from %s)\n%s\n", cfg.source.c_str(), yaml.c_str());
  write_text_atomic(sum.config_path, yaml);

  Trainer trainer(cfg, backend);
  const int64_t steps = cfg.train.steps;
  const int64_t tokens_per_step = cfg.train.batch_size * cfg.model.block_size;
  std::printf("model: %s attention, %s mask, %lld parameters, vocab %lld | backend %s, %d threads | %lld steps of "
              "%lld tokens (micro-batch %lld)\n",
              to_string(cfg.model.attention), to_string(cfg.model.mask),
              static_cast<long long>(trainer.model().num_params()), static_cast<long long>(cfg.model.vocab_size),
              backend.name().c_str(), backend.threads(), static_cast<long long>(steps),
              static_cast<long long>(tokens_per_step), static_cast<long long>(trainer.micro_batch()));
  std::fflush(stdout);

  MetricsLog metrics(sum.metrics_path, /*append=*/false);
  const bool tty = isatty(fileno(stdout)) == 1;
  double train_ms = 0;
  auto log_eval = [&](int64_t step) {
    EvalResult e = trainer.evaluate();
    metrics.write(nlohmann::json{{"step", step}, {"eval", nlohmann::json::parse(e.to_json())}}.dump());
    if (tty) std::printf("\r\033[K");
    std::printf("eval step %lld: ce %.4f ppl %.3f cer %.4f wer %.4f (%lld windows)\n", static_cast<long long>(step), e.ce,
                e.ppl, e.cer, e.wer, static_cast<long long>(e.windows));
    std::fflush(stdout);
    return e;
  };

  StepStats s;
  auto last_draw = Clock::now() - std::chrono::seconds(1);
  for (int64_t i = 0; i < steps; ++i) {
    s = trainer.step();
    train_ms += s.ms;
    const bool log_now = s.step % cfg.log.every == 0 || s.step == steps || s.step == 1;
    if (log_now) {
      metrics.write(nlohmann::json{{"step", s.step},
                                   {"loss", s.loss},
                                   {"lr", s.lr},
                                   {"grad_norm", s.grad_norm},
                                   {"ms", s.ms},
                                   {"tokens_per_s", s.tokens_per_s}}
                        .dump());
    }
    const double eta_s = train_ms / 1000.0 / static_cast<double>(s.step) * static_cast<double>(steps - s.step);
    if (tty && !opt.quiet && (ms_since(last_draw) > 100 || s.step == steps)) {
      std::printf("\r\033[Kstep %lld/%lld  loss %.4f  %.1f ms/step  %.0f tok/s  ETA %s", static_cast<long long>(s.step),
                  static_cast<long long>(steps), s.loss, s.ms, s.tokens_per_s, format_duration(eta_s).c_str());
      std::fflush(stdout);
      last_draw = Clock::now();
    } else if (!tty && !opt.quiet && log_now) {
      std::printf("step %lld/%lld  loss %.4f  lr %.2e  %.1f ms/step  %.0f tok/s  ETA %s\n", static_cast<long long>(s.step),
                  static_cast<long long>(steps), s.loss, s.lr, s.ms, s.tokens_per_s, format_duration(eta_s).c_str());
      std::fflush(stdout);
    }
    if (cfg.eval.every > 0 && s.step % cfg.eval.every == 0 && s.step != steps) log_eval(s.step);
  }
  if (tty && !opt.quiet) std::printf("\n");
  sum.eval = log_eval(s.step);
  sum.last = s;

  write_model_file(sum.model_path, snapshot_model(trainer.model(), yaml, s.step, trainer.vocab()));
  sum.seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  return sum;
}

}  // namespace qisa
