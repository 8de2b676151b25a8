// The GPT of SPEC §1 over a Backend: a parameter table over one flat buffer (params, grads),
// an activation arena sized for `max_batch` sequences of block_size tokens, and the forward /
// backward schedule (optionally recomputing each block's activations in backward). It never
// looks at the device type.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "io/config.h"
#include "kernels/backend.h"
#include "kernels/pauli.h"  // draw_pauli_strings
#include "trainer/param_table.h"

namespace qisa {

// What a forward pass needs to know about where it is in training (dropout is a pure
// function of these; SPEC §2b).
struct StepContext {
  bool train = false;       // dropout only when training
  uint64_t seed = 0;
  uint32_t step = 0;        // optimizer step (1-based)
  int64_t seq_offset = 0;   // index of this micro-batch's first sequence in the global batch
};

// Recompute (train.recompute: none | blocks) is declared with the config (io/config.h).

class GPT {
 public:
  // max_batch: the most sequences one forward will see (the micro-batch). The flat params and
  // grads buffers are padded with zeros to a multiple of flat_align floats (ZeRO shards them
  // into equal parts).
  // precision bf16: the arena stores activations and their gradients in bf16 (statistics, losses
  // and the Pauli amplitudes u stay fp32), and the GEMMs read a bf16 copy of the weights
  // (round_weight_copy) beside the fp32 masters params().
  GPT(const ModelConfig& cfg, Backend& backend, int64_t max_batch, int64_t flat_align = 1,
      Recompute recompute = Recompute::none, Precision precision = Precision::fp32);
  ~GPT();
  GPT(const GPT&) = delete;
  GPT& operator=(const GPT&) = delete;

  const ModelConfig& config() const { return cfg_; }
  const ParamTable& table() const { return table_; }
  Backend& backend() { return be_; }
  int64_t max_batch() const { return max_batch_; }
  Recompute recompute() const { return recompute_; }
  Precision precision() const { return precision_; }

  // ---- the activation arena: every buffer forward/backward use besides the parameters and
  // gradients (and the backends' kernel scratch): saved activations, logits [N, V], the token
  // ids, gradient scratch, for N = max_batch * block_size rows. Bytes as requested (the CPU
  // backend rounds each buffer up to 64 bytes). The static forms need no backend: what a model
  // of this shape would allocate, the same numbers (one code path sizes both).
  struct ArenaItem {
    std::string name;   // the buffer, e.g. "fc_pre" (a Block's [N, 4C]); see Acts in model.cpp
    std::string shape;  // "[N, 4C]", N = max_batch * block_size
    int64_t bytes;      // all copies together
    int copies;         // e.g. n_layer for a Block buffer without recompute, 1 with
    bool is_int;        // int32 token ids
    bool in_act_dtype;  // stored in the run's activation type (bf16 under precision bf16), else
                        // always fp32 (statistics, losses, Pauli amplitudes; loss_sum is float64)
  };
  int64_t activation_bytes() const { return arena_bytes_; }
  static std::vector<ArenaItem> activation_arena(const ModelConfig& cfg, int64_t max_batch, Recompute recompute,
                                                 Precision precision = Precision::fp32);
  static int64_t activation_bytes(const ModelConfig& cfg, int64_t max_batch, Recompute recompute,
                                  Precision precision = Precision::fp32);

  // ---- parameters (backend memory; host copies on request)
  float* params() { return params_.get(); }
  float* grads() { return grads_.get(); }
  int64_t num_params() const { return table_.total(); }
  int64_t flat_size() const { return static_cast<int64_t>(params_.size()); }  // num_params + padding
  // PyTorch-like init from `seed` (SPEC/issue: Linear U(+-1/sqrt(in)), Embedding N(0,1),
  // LayerNorm 1/0, QISA L_h (or the shared L) like Linear(C,C), QISA-A angles U(-pi,pi)) and Pauli strings.
  void init(uint64_t seed);
  std::vector<float> params_host() const;
  void set_params_host(const std::vector<float>& flat);  // the bf16 copy follows (nearest)
  // precision bf16: the GEMMs' bf16 weight copy, rounded from the fp32 masters. Call it whenever
  // params() changed (after each optimizer update, after loading a checkpoint). nearest, or
  // stochastic with Philox counters (seed, step, flat index); step 0 always rounds to nearest
  // (the initial weights). A pure function of (masters, rounding, seed, step), so a resumed run
  // rebuilds the same copy. fp32 precision: nothing to do.
  void round_weight_copy(Bf16Rounding rounding, uint64_t seed, uint32_t step);
  std::vector<float> grads_host() const;

  // ---- Pauli strings: per block, H*D strings of n_qubits letters (row-major [H, D]); none for csa.
  const std::vector<std::vector<std::string>>& pauli() const { return pauli_; }
  void set_pauli(int layer, const std::vector<std::string>& strings);
  static std::string pauli_name(int layer);  // "blocks.<l>.attn.v.pauli"

  // ---- compute. idx, targets: host int32 [B, T] (targets may be null: no loss).
  // Returns the mean loss over the B*T rows (0 without targets): read on the host, so the call
  // waits for the device (evaluation, tests).
  double forward(const int32_t* idx, const int32_t* targets, int64_t B, int T, const StepContext& ctx);
  // Training's forward: the same, but the sum of the B*T row losses stays on the device, stored
  // (mode overwrite: the first micro-batch of a step) or added to the running sum (accumulate),
  // with no host synchronisation; loss_sum_host() reads it (once a step).
  void forward_sum_loss(const int32_t* idx, const int32_t* targets, int64_t B, int T, const StepContext& ctx,
                        GradMode mode);
  double loss_sum_host() const;
  // After forward with targets: grads = (mode overwrite) or += (accumulate) d(loss_scale * sum
  // of row losses)/d(params): the first micro-batch of a step overwrites, later ones add, and no
  // pass zeroes the gradients. The loss of an optimizer step over R rows is the mean, so
  // loss_scale = 1/R.
  // on_ready(offset), when given, is called as backward proceeds: the gradients of the flat
  // range [offset, flat_size()) are final (blocks finish from the last one down; the
  // embeddings at offset 0 finish last), so a caller can start reducing them early.
  void backward(float loss_scale, GradMode mode, const std::function<void(int64_t)>& on_ready = {});

  // Results of the last forward, on the host.
  // [B, T, V]. Between forward() and backward() only: backward turns the logits buffer into
  // dL/dlogits in place (cross-entropy backward), so after it this refuses with an Error
  // rather than return the gradient.
  std::vector<float> logits_host() const;
  std::vector<float> row_losses_host() const;         // [B, T]
  // [B, T, C] concatenated heads of block `layer`, before proj. With Recompute::blocks only the
  // block whose activations the arena holds (the last after forward): others are an error.
  std::vector<float> head_outputs_host(int layer) const;
  // [B, T, C] each: the queries and keys of block `layer` (head h at columns h*D), as its
  // attention read them (the same recompute rule).
  struct QueryKeys {
    std::vector<float> q, k;
  };
  QueryKeys query_keys_host(int layer) const;

 private:
  struct Layer;
  struct Acts;
  void check_batch(int64_t B, int T) const;
  bool run_forward(const int32_t* idx, const int32_t* targets, int64_t B, int T, const StepContext& ctx);  // has loss
  Dropout dropout_at(int layer, int which, const StepContext& ctx, uint64_t elems_per_seq) const;
  void block_forward(int l, int64_t B, int T, const StepContext& ctx, bool to_output);
  void block_backward(int l, int64_t B, int T, GradMode mode);
  void attention_forward(int l, int64_t B, int T, const StepContext& ctx);
  void attention_backward(int l, int64_t B, int T, GradMode mode);
  CAct gemm_weight(int64_t offset) const;  // a Linear weight as the GEMMs read it (bf16 copy or fp32)
  std::vector<float> download_floats(CAct src, int64_t n) const;

  ModelConfig cfg_;
  Backend& be_;
  ParamTable table_;
  int64_t max_batch_;
  Recompute recompute_;
  Precision precision_;
  Buffer<float> params_, grads_;
  Buffer<bf16> weights_bf16_;  // precision bf16: the GEMMs' copy of params_ (flat layout)
  std::vector<std::vector<std::string>> pauli_;
  std::vector<Buffer<PauliTerm>> pauli_terms_;  // per block [H*D], backend memory
  std::vector<Layer> layers_;                   // parameter offsets per block
  std::unique_ptr<Acts> acts_;
  int64_t arena_bytes_ = 0;
  int block_held_ = -1;  // the block whose activations the arena's (reused) Block holds
  // shape of the last forward
  int64_t last_B_ = 0;
  int last_T_ = 0;
  bool have_targets_ = false;
  bool logits_valid_ = false;  // the arena's logits are the last forward's (false after backward)
  StepContext last_ctx_;
};


}  // namespace qisa
