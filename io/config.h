// Run configuration: YAML -> typed, validated struct. Every key is checked (unknown key, wrong
// type, out-of-range value); errors name the file, the key and the value. Command-line
// overrides `a.b=value` are applied before validation and are named as "override 'a.b=value'".
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kernels/backend.h"

namespace qisa {

enum class AttentionKind { csa, qisa, qisa_a };
// The value map of attention qisa: per_head (the paper's: head h owns a C x C map L_h,
// attn.v.weight [H,C,C]) | shared (one C x C map L per block, attn.v.weight [C,C]: u = a L^T is
// computed once per token and every head measures that same u with its own D Pauli strings).
enum class QisaValue { per_head, shared };

// Activation recomputation (train.recompute). none: forward keeps every block's activations for
// backward. blocks: forward keeps only each block's input [B*T, C]; backward recomputes a
// block's forward (same inputs, parameters and dropout bits: the same values, bit for bit)
// just before that block's backward. Costs about one more forward of every block but the
// last; the arena shrinks from O(L * block) to O(block + L * B*T*C).
enum class Recompute { none, blocks };
// train.on_nonfinite: a step whose loss or gradient norm is NaN/Inf: stop (checkpoint the state
// before it, exit 1) | skip (no update, counted, training goes on).
enum class OnNonfinite { stop, skip };
// train.on_spike: a loss or gradient-norm spike: warn (train on) | skip (no update, as on_nonfinite: skip).
enum class OnSpike { warn, skip };
// checkpoint.on_error: a checkpoint that cannot be written: stop (exit 1) | warn (train on).
enum class OnCheckpointError { stop, warn };
// train.device: where the math runs. cpu: the reference backend (kernels/cpu). cuda: the GPU
// backend (kernels/cuda/cuda_backend.h), in builds where nvcc was found (launcher/run_setup.h:
// make_backend refuses it in a CPU-only build).
enum class Device { cpu, cuda };
// dist.comm: auto (mpi when launched with more than one rank, else none) | none (one process,
// never MPI; an error under a launcher with more ranks) | mpi | nccl (device buffers: needs
// train.device cuda).
enum class CommKind { automatic, none, mpi, nccl };
// train.precision: fp32 | bf16 (mixed precision: activations, their gradients and the GEMM
// operands stored in bf16, rounded to nearest even, with fp32 arithmetic; fp32 master weights,
// AdamW moments, LayerNorm and attention row statistics, losses, gradient reduction and the QISA
// Pauli amplitudes). Checkpoints hold the fp32 masters either way.
enum class Precision { fp32, bf16 };
// train.bf16_rounding: how the bf16 weight copy is rounded from the fp32 masters after each
// update: nearest (even) | stochastic (Philox counters: reproducible; kernels/bf16.h).
enum class Bf16Rounding { nearest, stochastic };

// The names the config uses ("qisa_a", "blocks", "auto", ...).
const char* to_string(AttentionKind a);
const char* to_string(QisaValue v);
const char* to_string(AttnMask m);
const char* to_string(QisaScore s);
const char* to_string(Activation a);
const char* to_string(Recompute r);
const char* to_string(OnNonfinite o);
const char* to_string(OnSpike o);
const char* to_string(OnCheckpointError o);
const char* to_string(Device d);
const char* to_string(CommKind k);
const char* to_string(Precision p);
const char* to_string(Bf16Rounding r);
// The element type a run stores its activations in.
inline DType activation_dtype(Precision p) { return p == Precision::bf16 ? DType::bf16 : DType::f32; }

struct ModelConfig {
  int64_t vocab_size = 0;          // not a YAML key: the corpus's, rounded up to vocab_multiple (or a model file's)
  int vocab_multiple = 1;          // the model's vocab_size is the corpus's rounded up to a multiple of this
  int block_size = 16;             // T, context length
  int n_embd = 16;                 // C
  int n_head = 1;                  // H (n_embd % n_head == 0)
  int n_layer = 6;                 // L
  AttentionKind attention = AttentionKind::qisa;
  QisaValue qisa_value = QisaValue::per_head;  // attention qisa only (shared is an error otherwise)
  AttnMask mask = AttnMask::causal;
  QisaScore qisa_score = QisaScore::paper;  // attention qisa / qisa_a: the Gaussian attention's score
  double qisa_score_scale = 0.0;   // qisa_score gaussian: softmax over -scale |q-k|^2; 0 = 1/sqrt(D)
  Activation activation = Activation::relu;
  double dropout = 0.0;            // [0, 1)
  double pauli_identity_prob = 0.9;  // [0, 1)

  int head_dim() const { return n_embd / n_head; }  // D
  AttnScore attn_score() const;                     // qisa_score with its scale resolved
  int n_qubits() const;                             // ceil(log2 C), at least 1
  bool operator==(const ModelConfig&) const = default;
};

struct DataConfig {
  std::string corpus;              // HDF5 corpus written by `qisa prepare`
  std::string sampler = "random";  // random (a permutation of all window offsets per epoch) | sequential
  double chunk_cache_mb = 64;      // HDF5 chunk cache for window reads, per rank
  bool operator==(const DataConfig&) const = default;
};

struct TrainConfig {
  int64_t batch_size = 1024;       // sequences per optimizer step (global)
  int64_t micro_batch_size = 0;    // sequences per forward/backward; 0 = batch_size. Must divide batch_size.
  int64_t steps = 2000;
  double lr = 3e-3;
  std::string lr_schedule = "constant";  // constant | cosine | linear (decay to min_lr at train.steps)
  int64_t warmup_steps = 0;        // linear warm-up from 0 (every schedule)
  double min_lr = 0.0;             // where the cosine and linear schedules end
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
  // Which parameters weight_decay applies to: all | matrices (the `.weight` tensors of >= 2 dims:
  // Linear weights, embeddings, QISA value maps; not biases, LayerNorm weights, QISA-A angles)
  std::string weight_decay_on = "all";
  double grad_clip = 0.0;          // global-norm clip; 0 = off
  // A step whose loss or gradient norm (after the all-reduce: every rank agrees) is NaN or Inf:
  // stop (checkpoint the state before it, exit 1) | skip (no update, counted, training goes on)
  OnNonfinite on_nonfinite = OnNonfinite::stop;
  // A step whose loss or gradient norm (after the all-reduce) exceeds spike_factor x its reference
  // (an EMA over earlier non-spike steps; trainer/spikes.h) is a spike, once spike_warmup steps
  // are in. 0 = off. on_spike: warn (train on) | skip (no update, as on_nonfinite: skip)
  double spike_factor = 0.0;
  int64_t spike_warmup = 20;
  OnSpike on_spike = OnSpike::warn;
  uint64_t seed = 1337;            // model init, Pauli strings, sampling, dropout
  int threads = 0;                 // CPU threads per rank; 0 = OMP_NUM_THREADS, else the cores this rank may use
  Device device = Device::cpu;     // cpu | cuda (the CUDA backend: builds with nvcc only)
  // cuda: fp32 GEMMs may use TF32 tensor cores (10-bit mantissa products, fp32 sums). bf16 GEMMs
  // and the cpu backend ignore it.
  bool tf32 = false;
  std::string resume = "auto";     // auto (newest valid checkpoint in the checkpoint dir, else fresh) | never | PATH
  // Activation recomputation: none (forward keeps every block's activations for backward) |
  // blocks (forward keeps only each block's input; backward recomputes a block's forward just
  // before its backward: bit-identical results, about one more forward, a much smaller arena).
  Recompute recompute = Recompute::none;
  Precision precision = Precision::fp32;        // fp32 | bf16 (see Precision)
  Bf16Rounding bf16_rounding = Bf16Rounding::nearest;  // the bf16 weight copy: nearest | stochastic
  // Peak dense FLOP/s of one rank's device, in TFLOP/s, for the MFU each step reports; 0 = from
  // the table of known GPUs (trainer/flops.h; none for the CPU backend: MFU is then not shown).
  double peak_tflops = 0.0;
  bool operator==(const TrainConfig&) const = default;
};

struct EvalConfig {
  int64_t every = 500;             // steps between evaluations; 0 = only at the end
  int64_t windows = 200;           // non-overlapping validation windows per evaluation
  bool operator==(const EvalConfig&) const = default;
};

struct LogConfig {
  int64_t every = 10;              // steps between metrics lines
  std::string dir = "runs/default";  // run directory: config.yaml, metrics.jsonl, final.h5
  bool operator==(const LogConfig&) const = default;
};

struct DistConfig {
  CommKind comm = CommKind::automatic;  // auto (mpi when launched with more than one rank) | none | mpi | nccl
  int zero = 0;                    // 0: replicated optimizer state; 1: ZeRO-1 (AdamW state sharded)
  double bucket_mb = 25;           // gradient all-reduce bucket size (MiB)
  // The longest any rank waits for a collective, seconds, (0, 86400] (NCCL: polled with
  // cudaEventQuery and ncclCommGetAsyncError; also the deadline of NCCL communicator init)
  // before it aborts the job with one line naming the rank and the collective.
  double timeout_s = 300;
  bool operator==(const DistConfig&) const = default;
};

struct CheckpointConfig {
  std::string dir;                 // "" = <log.dir>/checkpoints
  int64_t every_steps = 500;       // 0 = only at the end and on SIGTERM/SIGUSR1
  int64_t keep_last = 3;           // checkpoints kept (>= 1)
  // A checkpoint that cannot be written (disk full, ...): stop (exit 1) | warn (train on). Either
  // way its temporary file is removed and the previous checkpoint stays the newest.
  OnCheckpointError on_error = OnCheckpointError::stop;
  bool operator==(const CheckpointConfig&) const = default;
};

// The first words of every config.yaml qisa writes (Config::to_yaml): how a run tells its own
// record from a user's file of the same name.
inline constexpr const char* kResolvedConfigHeader = "# qisa configuration";

struct Config {
  ModelConfig model;
  DataConfig data;
  TrainConfig train;
  EvalConfig eval;
  LogConfig log;
  DistConfig dist;
  CheckpointConfig checkpoint;
  std::string source;              // where it came from (file path or "<model file>:config")

  std::string checkpoint_dir() const;  // checkpoint.dir, or <log.dir>/checkpoints

  // The resolved configuration as YAML (every key, defaults included). Parsing it back
  // gives the same Config, except model.vocab_size (not a key; written as a comment).
  std::string to_yaml() const;  // starts with kResolvedConfigHeader
  // Every field, `source` included.
  bool operator==(const Config&) const = default;
};

// Load `path`, apply `overrides` ("model.n_layer=4"), validate. Relative data.corpus and
// log.dir stay relative to the current directory (as a user typed them).
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// Same from YAML text; `source_name` is used in error messages in place of a file path.
Config parse_config(const std::string& yaml_text, const std::string& source_name,
                    const std::vector<std::string>& overrides = {});

// Every YAML key ("model.block_size", ...) in the order to_yaml() writes them.
std::vector<std::string> config_keys();
// (key, value as to_yaml() writes it) for every key, in the same order: for reporting what
// differs between two configs.
std::vector<std::pair<std::string, std::string>> config_values(const Config& c);

// The model's vocab_size for a corpus of `corpus_vocab` token ids: rounded up to a multiple of
// model.vocab_multiple (GPT-2: 50257 -> 50304 with 128). The padded ids are never targets
// (no corpus holds them); generation never draws them (trainer/generate.h).
int64_t padded_vocab_size(int64_t corpus_vocab, int vocab_multiple);

// Checks that need the corpus: sets model.vocab_size from it (padded_vocab_size); block_size + 1
// must fit in the train split and (when eval is used) the val split. Errors name the config
// file, the key and the value, and the corpus. A vocab_size already set (e.g. from a model
// file) must match.
struct CorpusInfo;
void check_against_corpus(Config& cfg, const CorpusInfo& corpus);

}  // namespace qisa
