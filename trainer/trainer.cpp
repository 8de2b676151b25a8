#include "trainer/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>

#include "io/corpus.h"
#include "io/fault.h"
#include "kernels/error.h"
#include "trainer/signals.h"

namespace qisa {

namespace {
using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// Dropout draws use their own key so they never share a Philox stream with init or sampling.
uint64_t dropout_key(uint64_t seed) { return seed ^ 0x9E3779B97F4A7C15ull; }

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// "loss = nan", "gradient norm = inf", both, or "" when both are finite.
std::string describe_nonfinite(double loss, double grad_norm) {
  std::string out;
  if (!std::isfinite(loss)) out = "loss = " + number(loss);
  if (!std::isfinite(grad_norm)) out += (out.empty() ? "" : ", ") + std::string("gradient norm = ") + number(grad_norm);
  return out;
}

// The val tokens that eval.windows windows need (offsets 0, T, 2T, ...), read once.
std::vector<int32_t> read_eval_tokens(const Config& cfg) {
  CorpusReader val(cfg.data.corpus, "val", cfg.data.chunk_cache_mb);
  const int64_t want = cfg.eval.windows * cfg.model.block_size + 1;
  std::vector<int32_t> out(static_cast<size_t>(std::min(want, val.size())));
  val.read_range(0, static_cast<int64_t>(out.size()), out.data());
  return out;
}

int64_t local_batch_of(const Config& cfg, int world) {
  QISA_CHECK(cfg.train.batch_size % world == 0,
             cfg.source + ": train.batch_size = " + std::to_string(cfg.train.batch_size) +
                 " is not divisible by the number of ranks (" + std::to_string(world) + ")",
             "train.batch_size is the global batch: choose a multiple of the world size");
  return cfg.train.batch_size / world;
}

int64_t micro_batch_of(const Config& cfg, int64_t local_batch, int world) {
  const int64_t m = cfg.train.micro_batch_size > 0 ? std::min(cfg.train.micro_batch_size, local_batch) : local_batch;
  QISA_CHECK(local_batch % m == 0,
             cfg.source + ": train.micro_batch_size = " + std::to_string(cfg.train.micro_batch_size) +
                 " does not divide the per-rank batch " + std::to_string(local_batch) + " (train.batch_size " +
                 std::to_string(cfg.train.batch_size) + " / " + std::to_string(world) + " ranks)",
             "choose a micro-batch size that divides batch_size / ranks");
  return m;
}
}  // namespace

Trainer::Trainer(const Config& cfg, Backend& backend, Communicator& comm, Collectives& coll)
    : cfg_(cfg),
      be_(backend),
      comm_(comm),
      coll_(coll),
      rank_(comm.rank()),
      world_(comm.size()),
      train_(cfg.data.corpus, "train", cfg.data.chunk_cache_mb),
      val_(read_eval_tokens(cfg)),
      vocab_(read_vocabulary(cfg.data.corpus)),
      local_batch_(local_batch_of(cfg, comm.size())),
      micro_(micro_batch_of(cfg, local_batch_, comm.size())),
      sampler_(make_sampler(cfg.data.sampler, cfg.train.seed, train_.size(), cfg.model.block_size)),
      spike_detector_(cfg.train.spike_factor, cfg.train.spike_warmup) {
  QISA_CHECK(cfg.model.vocab_size > 0, "model.vocab_size is unset", "check the config against the corpus first");
  QISA_CHECK(coll.rank() == rank_ && coll.size() == world_,
             "the " + coll.name() + " collectives are rank " + std::to_string(coll.rank()) + " of " +
                 std::to_string(coll.size()) + ", the " + comm.name() + " communicator rank " + std::to_string(rank_) +
                 " of " + std::to_string(world_),
             "make the collectives from the trainer's communicator: make_collectives(comm, backend)");
  const bool zero1 = cfg.dist.zero == 1;
  model_ = std::make_unique<GPT>(cfg.model, be_, micro_, zero1 ? world_ : 1, cfg.train.recompute, cfg.train.precision);
  model_->init(cfg.train.seed);
  shard_size_ = zero1 ? model_->flat_size() / world_ : model_->flat_size();
  shard_begin_ = zero1 ? rank_ * shard_size_ : 0;
  opt_ = std::make_unique<AdamW>(be_, shard_size_,
                                 decay_spans(model_->table(), shard_begin_, shard_size_, cfg.train.weight_decay_on));
  if (zero1) {
    shard_grads_ = Buffer<float>(be_, static_cast<size_t>(shard_size_));
    shard_params_ = Buffer<float>(be_, static_cast<size_t>(shard_size_));
  }
  bucket_ = std::max<int64_t>(1, static_cast<int64_t>(cfg.dist.bucket_mb * 1024.0 * 1024.0 / sizeof(float)));
  send_ready_ = be_.make_event();
}

// Bucket k covers [k*bucket_, (k+1)*bucket_) of the flat gradients. Buckets are launched from
// the last one down as backward finishes them (the blocks at the end of the table finish
// first), so reducing them overlaps the rest of backward.
void Trainer::launch_ready_buckets(int64_t ready_from) {
  const auto t0 = Clock::now();
  const int64_t flat = model_->flat_size();
  // One record covers every bucket launched now: backward has enqueued all their writes.
  if (next_bucket_ >= 0 && next_bucket_ * bucket_ >= ready_from) be_.record(*send_ready_);
  while (next_bucket_ >= 0 && next_bucket_ * bucket_ >= ready_from) {
    if (in_flight_.empty()) first_launch_ = Clock::now();
    const int64_t begin = next_bucket_ * bucket_;
    const int64_t n = std::min(bucket_, flat - begin);
    in_flight_.push_back(
        coll_.iallreduce_sum(model_->grads() + begin, static_cast<size_t>(n), DType::f32, send_ready_.get()));
    --next_bucket_;
  }
  for (auto& r : in_flight_) r->test();  // lets MPI progress the earlier buckets
  hook_comm_ms_ += ms_since(t0);
}

StepStats Trainer::step() {
  const auto t_step = Clock::now();
  const int64_t t = step_ + 1;
  const int T = cfg_.model.block_size;
  const int64_t B = cfg_.train.batch_size;
  const RankSlice slice = rank_slice(step_, B, rank_, world_);
  const bool overlap = world_ > 1 && cfg_.dist.zero == 0;
  StepStats s;
  s.step = t;
  hook_comm_ms_ = 0;
  next_bucket_ = (model_->flat_size() + bucket_ - 1) / bucket_ - 1;
  offsets_.resize(static_cast<size_t>(micro_));
  windows_.resize(static_cast<size_t>(micro_ * (T + 1)));
  for (int64_t m0 = 0; m0 < slice.count; m0 += micro_) {
    fault_point("train.step", rank_, t);
    auto t0 = Clock::now();
    for (int64_t i = 0; i < micro_; ++i) offsets_[i] = sampler_->offset(slice.first + m0 + i);
    train_.read_windows(offsets_.data(), offsets_.size(), T + 1, windows_.data());
    split_windows(windows_, T, x_, y_);
    s.data_ms += ms_since(t0);
    t0 = Clock::now();
    StepContext ctx;
    ctx.train = true;
    ctx.seed = dropout_key(cfg_.train.seed);
    ctx.step = static_cast<uint32_t>(t);
    ctx.seq_offset = slice.first - step_ * B + m0;  // index in the global batch: dropout bits
    // The first micro-batch overwrites the gradients (and the loss sum), later ones add to
    // them: nothing zeroes them, and nothing is read back until the step's end.
    const GradMode mode = m0 == 0 ? GradMode::overwrite : GradMode::accumulate;
    model_->forward_sum_loss(x_.data(), y_.data(), micro_, T, ctx, mode);
    const bool last = m0 + micro_ >= slice.count;
    if (last)
      model_->backward(1.0f / static_cast<float>(B * T), mode, [&](int64_t from) {
        if (from == 0) poison_gradients(t);  // the embeddings, at offset 0, are final last
        if (overlap) launch_ready_buckets(from);
      });
    else
      model_->backward(1.0f / static_cast<float>(B * T), mode);
    s.compute_ms += ms_since(t0);
  }
  s.compute_ms -= hook_comm_ms_;
  s.comm_ms += hook_comm_ms_;

  reduce_gradients(s);
  double loss_sum = model_->loss_sum_host();  // the one read of the step's losses: a sum over rows
  // QISA_FAULT="train.loss[@rank=R][@step=S]:value=N" (or nan, inf): this rank's mean loss
  // of the step is taken to be N before the all-reduce (what a spike detector sees).
  if (const auto v = fault_poison("train.loss", rank_, t))
    loss_sum = static_cast<double>(*v) * static_cast<double>(slice.count * T);
  // One small all-reduce carries the loss and any pending stop signal: every rank agrees to
  // stop after the same step.
  auto t0 = Clock::now();
  double agreed[2] = {loss_sum, static_cast<double>(StopSignals::pending())};
  if (world_ > 1) comm_.allreduce_sum(agreed, 2);
  s.comm_ms += ms_since(t0);
  s.loss = agreed[0] / static_cast<double>(B * T);
  // The signal number this rank saw; a rank that saw none reports SIGTERM for the others.
  s.stop_signal = agreed[1] > 0 ? (StopSignals::pending() ? StopSignals::pending() : SIGTERM) : 0;
  s.grad_norm = gradient_norm(s);
  s.lr = learning_rate(cfg_.train, t);
  // Loss and norm are results of collectives, bit-identical on every rank: all ranks decide alike.
  s.nonfinite = describe_nonfinite(s.loss, s.grad_norm);
  if (s.nonfinite.empty()) {
    s.spike = spike_detector_.observe(s.loss, s.grad_norm);
    spikes_ += s.spike.any();
    s.spike_skipped = s.spike.any() && cfg_.train.on_spike == OnSpike::skip;
  }
  if (s.spike_skipped) {
    ++skipped_spikes_;  // as a skipped non-finite step: no update, the batch counts as consumed
    step_ = t;
  } else if (s.nonfinite.empty()) {
    optimizer_step(s, t - skipped_ - skipped_spikes_);  // AdamW counts only the updates it applied
    step_ = t;
  } else if (cfg_.train.on_nonfinite == OnNonfinite::skip) {
    s.skipped = true;  // parameters and AdamW state untouched; the batch counts as consumed
    ++skipped_;
    step_ = t;
  }  // stop: the step is not taken; the caller checkpoints the state before it and ends the run
  s.skipped_total = skipped_;
  s.spikes_total = spikes_;
  s.skipped_spikes_total = skipped_spikes_;
  be_.synchronize();
  s.ms = ms_since(t_step);
  s.tokens_per_s = static_cast<double>(B * T) / (s.ms / 1000.0);
  return s;
}

// QISA_FAULT="train.grad[@rank=R][@step=S]:nan" (or inf): element 0 of this rank's gradients
// becomes NaN once the last micro-batch's backward has made it final, before its bucket goes to
// the all-reduce, so the value travels the way a real one would.
void Trainer::poison_gradients(int64_t t) {
  const auto v = fault_poison("train.grad", rank_, t);
  if (!v) return;
  const float value = *v;
  be_.upload(model_->grads(), &value, sizeof value);
}

void Trainer::reduce_gradients(StepStats& s) {
  if (world_ == 1) return;
  const auto t0 = Clock::now();
  if (cfg_.dist.zero == 1) {
    be_.record(*send_ready_);
    coll_.reduce_scatter_sum(model_->grads(), shard_grads_.get(), static_cast<size_t>(shard_size_), DType::f32,
                             send_ready_.get());
  } else {
    launch_ready_buckets(0);  // whatever backward did not launch yet
    const int64_t buckets = static_cast<int64_t>(in_flight_.size());  // launched from the last one down
    for (int64_t i = 0; i < buckets; ++i) {
      try {
        in_flight_[static_cast<size_t>(i)]->wait();
      } catch (const Error& e) {  // name the bucket: which parameters were lost
        const int64_t k = buckets - 1 - i, begin = k * bucket_;
        in_flight_.clear();
        throw Error("gradient bucket " + std::to_string(k) + " of " + std::to_string(buckets) + " (elements [" +
                        std::to_string(begin) + ", " + std::to_string(std::min(begin + bucket_, model_->flat_size())) +
                        ")): " + e.what(),
                    e.hint());
      }
    }
    in_flight_.clear();
    s.allreduce_ms = ms_since(first_launch_);
    s.allreduce_exposed_ms = hook_comm_ms_ + ms_since(t0);  // host time in the collectives' calls
  }
  s.comm_ms += ms_since(t0);
}

// The global norm of the reduced gradients (ZeRO-1: of every rank's shard), the same on every rank.
double Trainer::gradient_norm(StepStats& s) {
  const bool zero1 = cfg_.dist.zero == 1;
  const float* grads = zero1 ? shard_grads_.get() : model_->grads();
  auto t0 = Clock::now();
  double sq = be_.sum_squares(grads, shard_size_);  // padding is zero, so it adds nothing
  s.compute_ms += ms_since(t0);
  if (zero1 && world_ > 1) {
    t0 = Clock::now();
    comm_.allreduce_sum(&sq, 1);
    s.comm_ms += ms_since(t0);
  }
  return std::sqrt(sq);
}

// AdamW at its step t (bias correction) with the rate s.lr and the clip factor of s.grad_norm.
void Trainer::optimizer_step(StepStats& s, int64_t t) {
  const bool zero1 = cfg_.dist.zero == 1;
  const float* grads = zero1 ? shard_grads_.get() : model_->grads();
  auto t0 = Clock::now();
  float* params = model_->params() + shard_begin_;
  opt_->update(params, grads, t, s.lr, cfg_.train, clip_scale(s.grad_norm, cfg_.train.grad_clip));
  s.compute_ms += ms_since(t0);
  if (zero1 && world_ > 1) {
    t0 = Clock::now();
    be_.copy(shard_params_.get(), params, shard_params_.bytes());
    be_.record(*send_ready_);
    coll_.all_gather(shard_params_.get(), model_->params(), static_cast<size_t>(shard_size_), DType::f32,
                     send_ready_.get());
    s.comm_ms += ms_since(t0);
  }
  t0 = Clock::now();
  round_weight_copy(t);
  s.compute_ms += ms_since(t0);
}

// precision bf16: the GEMMs' weight copy from the masters after update t (a pure function of
// the masters, the seed and t: a resumed run rebuilds the copy of its last step).
void Trainer::round_weight_copy(int64_t t) {
  model_->round_weight_copy(cfg_.train.bf16_rounding, cfg_.train.seed, static_cast<uint32_t>(t));
}

EvalResult Trainer::evaluate() {
  const int T = cfg_.model.block_size;
  const int64_t windows = eval_windows(static_cast<int64_t>(val_.size()), T, cfg_.eval.windows);
  const int64_t first = windows * rank_ / world_, last = windows * (rank_ + 1) / world_;
  const EvalSums mine = evaluate_range(*model_, val_, first, last - first, vocab_);
  double sums[8] = {mine.ce, mine.cer, mine.wer, mine.wer_windows, mine.windows, mine.tokens, mine.forward_ms, mine.batches};
  if (world_ > 1) comm_.allreduce_sum(sums, 8);
  return EvalSums{sums[0], sums[1], sums[2], sums[3], sums[4], sums[5], sums[6], sums[7], mine.batch}.finish();
}

}  // namespace qisa
