// Resumable checkpoints (HDF5, format_version 1): everything a run needs to continue exactly.
//   /params/<name>, /optim/m/<name>, /optim/v/<name>   float32, SPEC §3 shapes, full tensors
//                                                    whatever the ZeRO sharding; chunked (64 Ki
//                                                    elements per chunk), fletcher32
//   /pauli/<name>                                    [H, D] fixed-length strings, chunked, fletcher32
//   /tokenizer/vocab                                 char tokenizer, when known: fixed-length strings
//                                                    (UTF-8), chunked, fletcher32
//   /tokenizer/encoder, /tokenizer/merges            gpt2 tokenizer: uint8, chunked, fletcher32
//                                                    (io/vocabulary_file.h)
//   /state attributes   step, epoch, samples_seen, tokens_seen, seed (uint64), world_size,
//                       skipped_nonfinite, spikes, skipped_spikes, spike_steps_seen,
//                       spikes_in_a_row, spike_loss_ema, spike_grad_norm_ema (double) (each absent
//                       in older files: 0, i.e. a fresh spike detector), format_version, code_version
//                       (RNG: counter-based, so step and seed are all)
//   root attributes     kind = "qisa-checkpoint" (written last), format_version, config (resolved YAML)
// Metadata checksums come from the HDF5 1.10 file format (superblock v3, object header v2,
// fixed-array chunk indexes: all checksummed; readers need HDF5 >= 1.10). String attributes are
// fixed-length and group links stay in the object headers, so no byte that a resume reads lies
// outside a checksum (variable-length strings, dense link storage and the V18 format's v1
// B-tree chunk index all do). No timestamps: the same content gives the same bytes.
// Written to a temporary name (<final>.tmp-<pid>), fsync'd, renamed, directory fsync'd: a
// crash at any instant leaves the previous checkpoint loadable.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/vocabulary.h"

namespace qisa {

inline constexpr int64_t kCheckpointFormatVersion = 1;

struct TrainState {
  int64_t step = 0;          // optimizer steps done
  int64_t epoch = 0;         // sampler epoch of the next sample
  int64_t samples_seen = 0;  // sequences consumed = sampler cursor (global sample index)
  int64_t tokens_seen = 0;
  uint64_t seed = 0;         // train.seed: with step, determines every random draw to come
  int64_t world_size = 1;    // at save (informational: resume works on any world size)
  int64_t skipped_nonfinite = 0;  // steps whose update was skipped (train.on_nonfinite: skip)
  int64_t spikes = 0;             // loss or gradient-norm spikes found (train.spike_factor)
  int64_t skipped_spikes = 0;     // of those, steps whose update was skipped (train.on_spike: skip).
                                  // AdamW has taken step - skipped_nonfinite - skipped_spikes updates
  // The spike detector's reference (trainer/spikes.h), so that a resume judges the next steps
  // as the straight run does: EMAs of the loss and the gradient norm, steps in them, spikes in a row.
  double spike_loss_ema = 0, spike_grad_norm_ema = 0;
  int64_t spike_steps_seen = 0, spikes_in_a_row = 0;
  // A new field needs its row in kStateFields (io/checkpoint.cpp), the one table of /state.
  bool operator==(const TrainState&) const = default;
};

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  int64_t numel() const;
};

// Writes a checkpoint piece by piece, so that memory stays bounded (a caller can gather a
// tensor from the ranks that own its shards in fixed-size pieces).
class CheckpointWriter {
 public:
  explicit CheckpointWriter(const std::string& final_path);
  ~CheckpointWriter();  // without commit(): the temporary file is removed
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  void set_config(const std::string& yaml);
  void set_state(const TrainState& s);
  void set_vocab(const std::vector<std::string>& vocab);  // char tokens
  void set_vocabulary(const Vocabulary& v);               // any tokenizer (empty: not stored)
  void write_strings(const std::string& name, const std::vector<int64_t>& shape,
                     const std::vector<std::string>& values);  // /pauli/<name>
  // group: "params", "optim/m" or "optim/v". Creates the dataset; write_piece fills it.
  void begin_tensor(const std::string& group, const TensorSpec& spec);
  // Elements [offset, offset+count) of the flattened tensor begun last.
  void write_piece(int64_t offset, const float* data, int64_t count);
  // Close, fsync, rename over the final path, fsync the directory. Throws on any failure
  // (the final path is then untouched).
  void commit();
  const std::string& path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Opens and checks a checkpoint (kind, format version). verify() reads every dataset, which
// checks every fletcher32 checksum.
class CheckpointReader {
 public:
  explicit CheckpointReader(const std::string& path);
  ~CheckpointReader();
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;

  const std::string& path() const;
  std::string config_yaml() const;
  std::string code_version() const;  // the qisa version that wrote it
  TrainState state() const;
  std::vector<std::string> vocab() const;  // char tokens; empty when absent
  Vocabulary vocabulary() const;           // any tokenizer; empty when absent
  std::vector<TensorSpec> tensors(const std::string& group) const;  // name order
  std::vector<std::string> string_names() const;                   // /pauli members
  std::vector<std::string> read_strings(const std::string& name, std::vector<int64_t>* shape = nullptr) const;
  void read_piece(const std::string& group, const std::string& name, int64_t offset, float* out, int64_t count) const;
  // Reads every dataset; throws qisa::Error naming the first bad one.
  void verify() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The checkpoints of a run: <dir>/ckpt_<step, 8 digits>.h5.
class CheckpointStore {
 public:
  CheckpointStore(std::string dir, int64_t keep_last);
  const std::string& dir() const { return dir_; }
  std::string path_for(int64_t step) const;
  // Existing checkpoint files, newest (highest step) first. Temporary files are ignored.
  std::vector<std::string> list() const;
  // The newest checkpoint that opens and verifies. Each one that does not is reported through
  // `warn` (one line naming the file and why) and skipped.
  std::optional<std::string> newest_valid(const std::function<void(const std::string&)>& warn) const;
  // Delete all but the keep_last newest checkpoints (and stale temporaries of dead writers).
  void prune() const;

 private:
  std::string dir_;
  int64_t keep_last_;
};

// What `qisa inspect` shows. inspect_checkpoint throws when the file is not a readable
// checkpoint at all (not HDF5, wrong kind or format_version, superblock damaged); damage found
// past that point is reported in checksum_error instead.
struct CheckpointSummary {
  std::string path;
  std::string config_yaml;
  std::string code_version;
  TrainState state;
  int64_t parameters = 0;       // sum of numel over /params
  int64_t tensors = 0;          // datasets in /params
  int64_t optim_tensors = 0;    // datasets in /optim/m and /optim/v
  int64_t string_datasets = 0;  // datasets in /pauli
  int64_t vocab_size = 0;       // tokens of the stored vocabulary (0: none stored)
  bool checksums_ok = false;    // verify() passed
  std::string checksum_error;   // why not, one line
};
CheckpointSummary inspect_checkpoint(const std::string& path);

}  // namespace qisa
