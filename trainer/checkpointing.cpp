// Trainer::save_checkpoint / load_checkpoint: between the flat buffers (parameters
// replicated; AdamW moments replicated or sharded by ZeRO-1) and the checkpoint file's full
// tensors in SPEC shapes. Memory stays bounded: tensors move in pieces of kPiece floats.
#include <algorithm>
#include <map>

#include "io/checkpoint.h"
#include "io/fault.h"
#include "kernels/error.h"
#include "trainer/trainer.h"

namespace qisa {

namespace {
constexpr int64_t kPiece = int64_t{1} << 20;  // floats per piece (4 MiB)
constexpr int kPieceTag = 0x51;

// Keys that may differ on resume without changing the run's meaning, so they are not reported
// (train.recompute changes memory and time, not one bit of the results).
bool is_run_location_key(const std::string& key) {
  return key == "log.dir" || key == "checkpoint.dir" || key == "train.resume" || key == "train.threads" ||
         key == "train.recompute";
}
// model.* keys that change the trained function or its shapes: resuming across them is an error.
bool is_model_identity_key(const std::string& key) {
  return key.rfind("model.", 0) == 0 && key != "model.dropout" && key != "model.pauli_identity_prob";
}
}  // namespace

std::string Trainer::save_checkpoint(const std::string& path) {
  const int64_t B = cfg_.train.batch_size;
  // Rank 0's first write error (a full disk, ...). After it rank 0 writes nothing more but goes
  // on receiving the pieces, so that the other ranks finish the gather as usual.
  std::string failure;
  auto attempt = [&](const auto& write) {
    if (rank_ != 0 || !failure.empty()) return;
    try {
      write();
    } catch (const Error& e) {
      failure = e.what();
    }
  };
  std::unique_ptr<CheckpointWriter> w;
  attempt([&] {
    w = std::make_unique<CheckpointWriter>(path);
    w->set_config(cfg_.to_yaml());
    TrainState st;
    st.step = step_;
    st.samples_seen = step_ * B;
    st.epoch = sampler_->epoch_of(st.samples_seen);
    st.tokens_seen = st.samples_seen * cfg_.model.block_size;
    st.seed = cfg_.train.seed;
    st.world_size = world_;
    st.skipped_nonfinite = skipped_;
    st.spikes = spikes_;
    st.skipped_spikes = skipped_spikes_;
    const SpikeState& sp = spike_detector_.state();
    st.spike_loss_ema = sp.loss_ema;
    st.spike_grad_norm_ema = sp.grad_norm_ema;
    st.spike_steps_seen = sp.seen;
    st.spikes_in_a_row = sp.in_a_row;
    w->set_state(st);
    w->set_vocabulary(vocab_);
    const ModelConfig& m = cfg_.model;
    if (m.attention != AttentionKind::csa)
      for (int l = 0; l < m.n_layer; ++l)
        w->write_strings(GPT::pauli_name(l), {m.n_head, m.head_dim()}, model_->pauli()[l]);
  });
  std::vector<float> buf(static_cast<size_t>(kPiece));
  const auto& entries = model_->table().entries();
  attempt([&] {  // parameters are the same on every rank
    for (const auto& e : entries) {
      w->begin_tensor("params", TensorSpec{e.name, e.shape});
      for (int64_t a = 0; a < e.numel; a += kPiece) {
        const int64_t n = std::min(kPiece, e.numel - a);
        be_.download(buf.data(), model_->params() + e.offset + a, static_cast<size_t>(n) * sizeof(float));
        w->write_piece(a, buf.data(), n);
      }
    }
  });
  if (rank_ == 0)
    attempt([&] { fault_point("checkpoint.write", rank_, step_); });
  else
    fault_point("checkpoint.write", rank_, step_);
  // AdamW moments: element i of the flat buffer lives on rank i / shard_size_ (ZeRO-1) or on
  // every rank; rank 0 receives each piece from its owner.
  const bool zero1 = cfg_.dist.zero == 1;
  for (const char* group : {"optim/m", "optim/v"}) {
    const float* local = std::string(group) == "optim/m" ? opt_->m() : opt_->v();
    for (const auto& e : entries) {
      attempt([&] { w->begin_tensor(group, TensorSpec{e.name, e.shape}); });
      for (int64_t a = 0; a < e.numel;) {
        const int64_t global = e.offset + a;
        const int owner = zero1 ? static_cast<int>(global / shard_size_) : 0;
        const int64_t owner_end = zero1 ? (owner + 1) * shard_size_ : e.offset + e.numel;
        const int64_t n = std::min({kPiece, e.numel - a, owner_end - global});
        const size_t bytes = static_cast<size_t>(n) * sizeof(float);
        if (owner == rank_) {
          be_.download(buf.data(), local + (global - shard_begin_), bytes);
          if (rank_ != 0) comm_.send(buf.data(), bytes, 0, kPieceTag);
        }
        if (rank_ == 0) {
          if (owner != 0) comm_.recv(buf.data(), bytes, owner, kPieceTag);
          attempt([&] { w->write_piece(a, buf.data(), n); });
        }
        a += n;
      }
    }
  }
  attempt([&] { w->commit(); });
  w.reset();  // an uncommitted writer removes its temporary file here
  broadcast_string(comm_, failure);
  return failure;
}

void Trainer::load_checkpoint(const std::string& path, const std::function<void(const std::string&)>& warn) {
  CheckpointReader r(path);
  const Config saved = parse_config(r.config_yaml(), path + ":config");
  const auto now_values = config_values(cfg_);
  const auto saved_values = config_values(saved);
  for (size_t i = 0; i < now_values.size(); ++i) {
    const auto& [key, now] = now_values[i];
    const std::string& then = saved_values[i].second;
    if (now == then || is_run_location_key(key)) continue;
    QISA_CHECK(!is_model_identity_key(key),
               "cannot resume from '" + path + "': " + key + " = " + now + " in " + cfg_.source + ", but the checkpoint has " +
                   key + " = " + then,
               "resume with the model configuration the checkpoint was trained with, or start a new run (train.resume=never)");
    if (warn) warn("resuming with " + key + " = " + now + " (the checkpoint was written with " + then + ")");
  }
  const Vocabulary saved_vocab = r.vocabulary();
  QISA_CHECK(saved_vocab.empty() || saved_vocab == vocab_,
             "checkpoint '" + path + "' was trained on a corpus with another vocabulary than '" + cfg_.data.corpus + "'",
             "resume on the corpus the checkpoint was trained on");
  const TrainState st = r.state();
  if (st.seed != cfg_.train.seed && warn)
    warn("train.seed differs from the checkpoint's: the samples and dropout bits after the resume differ from the "
         "original run's");

  // Every parameter tensor must be there with its SPEC shape, and nothing else.
  const auto& entries = model_->table().entries();
  for (const char* group : {"params", "optim/m", "optim/v"}) {
    std::map<std::string, std::vector<int64_t>> found;
    for (const auto& t : r.tensors(group)) found[t.name] = t.shape;
    for (const auto& e : entries) {
      auto it = found.find(e.name);
      QISA_CHECK(it != found.end(), "checkpoint '" + path + "' has no /" + group + "/" + e.name,
                 "the file is incomplete or was written for another model");
      QISA_CHECK(it->second == e.shape,
                 "checkpoint '" + path + "': /" + group + "/" + e.name + " has shape " + shape_string(it->second) +
                     ", the model needs " + shape_string(e.shape),
                 "resume with the model configuration the checkpoint was trained with");
      found.erase(it);
    }
    QISA_CHECK(found.empty(), "checkpoint '" + path + "' has /" + group + "/" + (found.empty() ? "" : found.begin()->first) +
                                  " that this model does not have",
               "resume with the model configuration the checkpoint was trained with");
  }

  std::vector<float> buf(static_cast<size_t>(kPiece));
  for (const auto& e : entries)
    for (int64_t a = 0; a < e.numel; a += kPiece) {
      const int64_t n = std::min(kPiece, e.numel - a);
      r.read_piece("params", e.name, a, buf.data(), n);
      be_.upload(model_->params() + e.offset + a, buf.data(), static_cast<size_t>(n) * sizeof(float));
    }
  const ModelConfig& m = cfg_.model;
  if (m.attention != AttentionKind::csa)
    for (int l = 0; l < m.n_layer; ++l) model_->set_pauli(l, r.read_strings(GPT::pauli_name(l)));
  // This rank's share of the AdamW moments: the part of each tensor inside its shard.
  const int64_t shard_end = shard_begin_ + shard_size_;
  for (const char* group : {"optim/m", "optim/v"}) {
    float* local = std::string(group) == "optim/m" ? opt_->m() : opt_->v();
    be_.zero(local, static_cast<size_t>(shard_size_) * sizeof(float));  // padding stays zero
    for (const auto& e : entries) {
      const int64_t lo = std::max(e.offset, shard_begin_), hi = std::min(e.offset + e.numel, shard_end);
      for (int64_t g = lo; g < hi; g += kPiece) {
        const int64_t n = std::min(kPiece, hi - g);
        r.read_piece(group, e.name, g - e.offset, buf.data(), n);
        be_.upload(local + (g - shard_begin_), buf.data(), static_cast<size_t>(n) * sizeof(float));
      }
    }
  }
  step_ = st.step;
  skipped_ = st.skipped_nonfinite;
  spikes_ = st.spikes;
  skipped_spikes_ = st.skipped_spikes;
  spike_detector_.restore(
      SpikeState{st.spike_loss_ema, st.spike_grad_norm_ema, st.spike_steps_seen, st.spikes_in_a_row});
  // The checkpoint holds fp32 masters only (any precision): a bf16 run rounds its weight copy
  // from them as its last update did, so it continues bit for bit.
  round_weight_copy(optimizer_steps());
}

}  // namespace qisa
