#include "io/checkpoint.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <iterator>
#include <map>
#include <variant>

#include "io/atomic_file.h"
#include "io/fault.h"
#include "io/file_kind.h"
#include "io/hdf5.h"
#include "io/vocabulary_file.h"
#include "kernels/error.h"

namespace qisa {

namespace fs = std::filesystem;

namespace {

constexpr const char* kKind = "qisa-checkpoint";
constexpr const char* kResumeHint = "use an earlier checkpoint (train.resume: auto picks the newest one that verifies)";

// 64 Ki elements (256 KiB of float32) per chunk: four chunks fit HDF5's default 1 MiB
// per-dataset chunk cache, so pieces that end inside a chunk (odd sizes, ZeRO shard edges)
// are assembled there and each chunk is checksummed and written once (a chunk larger than
// the cache is read back, re-verified and rewritten by every partial write). A fletcher32
// failure then condemns 256 KiB, and the chunk index stays small (~2k entries per 512 Mi
// floats). Tensors smaller than a chunk get one chunk of exactly their size.
constexpr hsize_t kChunkElements = hsize_t{1} << 16;
constexpr hsize_t kChunkBytes = kChunkElements * sizeof(float);
constexpr int64_t kVerifyPiece = int64_t{1} << 20;  // floats per read in verify() (4 MiB)

// The file layout: HDF5 >= 1.10 format (every metadata block checksummed, chunks indexed by
// checksummed fixed arrays), links kept in checksummed object headers, and no timestamps, so
// the same checkpoint content always gives the same bytes.
h5::CreateOptions layout() {
  h5::CreateOptions o;
  o.low = H5F_LIBVER_V110;
  o.track_times = false;
  o.compact_links = true;
  return o;
}

std::string q(const std::string& s) { return "'" + s + "'"; }

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

// Trailing dims whole while they fit `budget` elements, then a part of the next, then 1s: a
// chunk is then one contiguous run of the flattened tensor whenever the shape allows.
std::vector<hsize_t> chunk_shape(const std::vector<hsize_t>& dims, hsize_t budget) {
  std::vector<hsize_t> c(dims.size(), 1);
  hsize_t inner = 1;
  for (size_t i = dims.size(); i-- > 0;) {
    c[i] = std::clamp<hsize_t>(budget / inner, 1, std::max<hsize_t>(dims[i], 1));
    inner *= c[i];
    if (c[i] < dims[i]) break;
  }
  return c;
}

h5::WriteOptions checksummed(const std::vector<hsize_t>& dims, hsize_t budget) {
  h5::WriteOptions o;
  o.fletcher32 = true;
  o.chunk_shape = chunk_shape(dims, budget);
  return o;
}

// The /state attributes: ONE table that set_state() writes and state() reads, so that no field
// can be written and not read back, or the other way round. `required`: in every checkpoint of
// format_version 1; the others are absent in checkpoints written before they existed (before
// on_nonfinite or spike detection: nothing skipped then, a fresh spike detector) and read as 0.
struct StateField {
  const char* name;
  std::variant<int64_t TrainState::*, uint64_t TrainState::*, double TrainState::*> member;
  bool required;
};
constexpr StateField kStateFields[] = {
    {"step", &TrainState::step, true},
    {"epoch", &TrainState::epoch, true},
    {"samples_seen", &TrainState::samples_seen, true},
    {"tokens_seen", &TrainState::tokens_seen, true},
    {"seed", &TrainState::seed, true},
    {"world_size", &TrainState::world_size, true},
    {"skipped_nonfinite", &TrainState::skipped_nonfinite, false},
    {"spikes", &TrainState::spikes, false},
    {"skipped_spikes", &TrainState::skipped_spikes, false},
    {"spike_steps_seen", &TrainState::spike_steps_seen, false},
    {"spikes_in_a_row", &TrainState::spikes_in_a_row, false},
    {"spike_loss_ema", &TrainState::spike_loss_ema, false},
    {"spike_grad_norm_ema", &TrainState::spike_grad_norm_ema, false},
};
// Every field of TrainState is 8 bytes: a field added to the struct but not to the table (or
// dropped from the table) fails to compile here.
static_assert(sizeof(TrainState) == std::size(kStateFields) * 8, "every TrainState field needs a row in kStateFields");

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;  // clang 14 has no CTAD for aggregates

void write_state(h5::File& f, const TrainState& s) {
  for (const StateField& field : kStateFields)
    std::visit(Overloaded{[&](int64_t TrainState::*m) { f.set_attr("/state", field.name, s.*m); },
                          [&](uint64_t TrainState::*m) { f.set_attr_u64("/state", field.name, s.*m); },
                          [&](double TrainState::*m) { f.set_attr("/state", field.name, s.*m); }},
               field.member);
}

TrainState read_state(const h5::File& f) {
  TrainState s;
  for (const StateField& field : kStateFields) {
    if (!field.required && !f.has_attr("/state", field.name)) continue;  // an older checkpoint: 0
    std::visit(Overloaded{[&](int64_t TrainState::*m) { s.*m = f.attr_int("/state", field.name); },
                          [&](uint64_t TrainState::*m) { s.*m = f.attr_u64("/state", field.name); },
                          [&](double TrainState::*m) { s.*m = f.attr_double("/state", field.name); }},
               field.member);
  }
  return s;
}

bool is_tensor_group(const std::string& g) { return g == "params" || g == "optim/m" || g == "optim/v"; }

void check_tensor_group(const std::string& g) {
  QISA_CHECK(is_tensor_group(g), "checkpoint tensor group " + q(g) + " is not one of params, optim/m, optim/v",
             "this is a bug in the caller");
}

void check_name(const std::string& what, const std::string& name) {
  QISA_CHECK(!name.empty() && name.find('/') == std::string::npos && name != "." && name != "..",
             "checkpoint " + what + " name " + q(name) + " is not a plain name",
             "use the canonical names of SPEC §3 (dots, no slashes)");
}

std::vector<hsize_t> to_dims(const std::string& what, const std::vector<int64_t>& shape) {
  QISA_CHECK(!shape.empty(), "checkpoint " + what + " has no dimensions", "store at least a 1-D shape");
  std::vector<hsize_t> d;
  for (int64_t x : shape) {
    QISA_CHECK(x > 0, "checkpoint " + what + " has shape " + shape_str(shape), "every dimension must be >= 1");
    d.push_back(static_cast<hsize_t>(x));
  }
  return d;
}

// Fixed-length, null-padded strings (so the checksums cover the characters; variable-length
// ones live in the global heap): a NUL inside a string could not come back.
size_t fixed_length(const std::string& what, const std::vector<std::string>& values) {
  size_t len = 1;
  for (const auto& v : values) {
    QISA_CHECK(v.find('\0') == std::string::npos, "checkpoint " + what + " contains a string with a NUL byte",
               "strings are stored null-padded; NUL cannot be represented");
    len = std::max(len, v.size());
  }
  return len;
}

// "ckpt_<digits>.h5" -> step; anything else (temporaries included) -> -1.
int64_t step_of(const std::string& name) {
  const std::string pre = "ckpt_", post = ".h5";
  if (name.size() < pre.size() + 8 + post.size() || name.rfind(pre, 0) != 0 ||
      name.compare(name.size() - post.size(), post.size(), post) != 0)
    return -1;
  const std::string digits = name.substr(pre.size(), name.size() - pre.size() - post.size());
  if (digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stoll(digits);
}

// "ckpt_<digits>.h5.tmp-<pid>" (AtomicFile's temporary) -> pid; anything else -> -1.
long temp_pid(const std::string& name) {
  const auto pos = name.rfind(".tmp-");
  if (pos == std::string::npos || step_of(name.substr(0, pos)) < 0) return -1;
  const std::string digits = name.substr(pos + 5);
  if (digits.empty() || digits.size() > 9 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stol(digits);
}

bool process_alive(long pid) {
  if (pid <= 0) return true;  // not a real writer's pid: leave the file alone
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

std::string one_line(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

}  // namespace

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t x : shape) n *= x;
  return n;
}

// ------------------------------------------------------------------------------ writer

struct CheckpointWriter::Impl {
  explicit Impl(const std::string& final_path) : atomic(final_path), file(atomic.tmp_path(), h5::File::Mode::create, layout()) {}
  // Unfinished (a write failed, or the caller gave up): nothing more reaches the disk; the
  // AtomicFile then removes the temporary.
  ~Impl() {
    if (!committed) file.discard();
  }

  // Runs a mutation; if it throws, the writer is poisoned so that commit() cannot publish a
  // checkpoint with a half-done step in it.
  template <typename F>
  void guarded(F&& f) {
    QISA_CHECK(!committed, "checkpoint " + q(atomic.final_path()) + " is already committed",
               "this is a bug: a CheckpointWriter writes one checkpoint");
    QISA_CHECK(!broken, "checkpoint " + q(atomic.final_path()) + ": an earlier write to it failed",
               "discard this writer (its temporary file is removed) and write the checkpoint again");
    broken = true;
    f();
    broken = false;
  }

  // The tensor begun last must be complete before the next one or the commit.
  void finish_tensor() {
    if (!tensor) return;
    const bool complete = tensor_numel == 0 || (written.size() == 1 && written.begin()->first == 0 &&
                                                written.begin()->second == tensor_numel);
    int64_t done = 0;
    for (const auto& [b, e] : written) done += e - b;
    QISA_CHECK(complete,
               "checkpoint " + q(atomic.final_path()) + ": tensor " + tensor_path + " got " + std::to_string(done) +
                   " of its " + std::to_string(tensor_numel) + " elements",
               "write_piece must cover every element before the next begin_tensor or commit");
    tensor->close();
    tensor.reset();
    written.clear();
  }

  AtomicFile atomic;  // declared first: destroyed last, after the file is closed
  h5::File file;
  std::optional<h5::Dataset> tensor;  // the tensor being filled
  std::string tensor_path;
  int64_t tensor_numel = 0;
  std::map<int64_t, int64_t> written;  // merged [begin, end) ranges of the tensor
  bool have_config = false, have_state = false, committed = false, broken = false;
  int64_t step = -1;  // from set_state: lets fault points name the checkpoint's step
};

namespace {
// The directory must exist before AtomicFile makes its temporary there.
const std::string& with_parent_dir(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) fs::create_directories(parent, ec);
  QISA_CHECK(!ec, "cannot create checkpoint directory " + q(parent.string()) + ": " + ec.message(),
             "check checkpoint.dir and the permissions of its parent");
  return path;
}
}  // namespace

CheckpointWriter::CheckpointWriter(const std::string& final_path)
    : impl_(std::make_unique<Impl>(with_parent_dir(final_path))) {}

CheckpointWriter::~CheckpointWriter() = default;

const std::string& CheckpointWriter::path() const { return impl_->atomic.final_path(); }

void CheckpointWriter::set_config(const std::string& yaml) {
  impl_->guarded([&] {
    impl_->file.set_attr_fixed("/", "config", yaml);
    impl_->have_config = true;
  });
}

void CheckpointWriter::set_state(const TrainState& s) {
  impl_->guarded([&] {
    QISA_CHECK(s.step >= 0 && s.epoch >= 0 && s.samples_seen >= 0 && s.tokens_seen >= 0 && s.world_size >= 1,
               "checkpoint " + q(path()) + ": invalid train state (step " + std::to_string(s.step) + ", epoch " +
                   std::to_string(s.epoch) + ", world size " + std::to_string(s.world_size) + ")",
               "this is a bug in the caller");
    h5::File& f = impl_->file;
    f.create_group("/state");
    write_state(f, s);
    f.set_attr("/state", "format_version", kCheckpointFormatVersion);
    f.set_attr_fixed("/state", "code_version", QISA_VERSION);
    impl_->have_state = true;
    impl_->step = s.step;
  });
}

void CheckpointWriter::set_vocab(const std::vector<std::string>& vocab) {
  if (vocab.empty()) return;  // unknown: not stored
  impl_->guarded([&] {
    const std::string ds = "/tokenizer/vocab";
    QISA_CHECK(!impl_->file.exists(ds), "checkpoint " + q(path()) + ": the vocabulary is already written",
               "call set_vocab once");
    const std::vector<hsize_t> dims{static_cast<hsize_t>(vocab.size())};
    const size_t len = fixed_length(ds, vocab);
    impl_->file.write_strings(ds, vocab, dims, len, checksummed(dims, std::max<hsize_t>(kChunkBytes / len, 1)));
  });
}

void CheckpointWriter::set_vocabulary(const Vocabulary& v) {
  if (v.tokenizer != "gpt2") return set_vocab(v.tokens);
  impl_->guarded([&] {
    QISA_CHECK(!impl_->file.exists("/tokenizer"), "checkpoint " + q(path()) + ": the vocabulary is already written",
               "call set_vocabulary once");
    write_bpe_tables(impl_->file, v);
  });
}

void CheckpointWriter::write_strings(const std::string& name, const std::vector<int64_t>& shape,
                                     const std::vector<std::string>& values) {
  impl_->guarded([&] {
    check_name("string dataset", name);
    const std::string ds = "/pauli/" + name;
    const std::vector<hsize_t> dims = to_dims(ds, shape);
    QISA_CHECK((TensorSpec{name, shape}.numel() == static_cast<int64_t>(values.size())),
               "checkpoint " + ds + " has shape " + shape_str(shape) + " but " + std::to_string(values.size()) +
                   " strings",
               "this is a bug in the caller");
    QISA_CHECK(!impl_->file.exists(ds), "checkpoint " + q(path()) + ": " + ds + " is written twice",
               "each string dataset is written once");
    const size_t len = fixed_length(ds, values);
    impl_->file.write_strings(ds, values, dims, len, checksummed(dims, std::max<hsize_t>(kChunkBytes / len, 1)));
  });
}

void CheckpointWriter::begin_tensor(const std::string& group, const TensorSpec& spec) {
  impl_->guarded([&] {
    impl_->finish_tensor();
    check_tensor_group(group);
    check_name("tensor", spec.name);
    const std::string ds = "/" + group + "/" + spec.name;
    const std::vector<hsize_t> dims = to_dims(ds, spec.shape);
    QISA_CHECK(!impl_->file.exists(ds), "checkpoint " + q(path()) + ": " + ds + " is written twice",
               "each tensor is begun once");
    impl_->tensor.emplace(impl_->file.create_dataset(ds, H5T_IEEE_F32LE, dims, checksummed(dims, kChunkElements)));
    impl_->tensor_path = ds;
    impl_->tensor_numel = spec.numel();
  });
}

void CheckpointWriter::write_piece(int64_t offset, const float* data, int64_t count) {
  impl_->guarded([&] {
    fault_point("checkpoint.piece", -1, impl_->step);
    Impl& m = *impl_;
    QISA_CHECK(m.tensor, "checkpoint " + q(path()) + ": write_piece before begin_tensor", "this is a bug in the caller");
    QISA_CHECK(offset >= 0 && count >= 0 && offset <= m.tensor_numel && count <= m.tensor_numel - offset,
               "checkpoint " + m.tensor_path + ": piece [" + std::to_string(offset) + ", " +
                   std::to_string(offset + count) + ") is outside its " + std::to_string(m.tensor_numel) + " elements",
               "this is a bug in the caller's offset arithmetic");
    if (count == 0) return;
    const int64_t end = offset + count;
    auto next = m.written.upper_bound(offset);
    const bool overlaps = (next != m.written.end() && next->first < end) ||
                          (next != m.written.begin() && std::prev(next)->second > offset);
    QISA_CHECK(!overlaps,
               "checkpoint " + m.tensor_path + ": piece [" + std::to_string(offset) + ", " + std::to_string(end) +
                   ") overlaps one written before",
               "each element is written once");
    m.tensor->write_flat<float>(static_cast<hsize_t>(offset), static_cast<hsize_t>(count), data);
    // Merge with the neighbours so sequential pieces keep one range.
    int64_t b = offset, e = end;
    if (next != m.written.begin() && std::prev(next)->second == b) {
      b = std::prev(next)->first;
      m.written.erase(std::prev(next));
    }
    if (next != m.written.end() && next->first == e) {
      e = next->second;
      m.written.erase(next);
    }
    m.written.emplace(b, e);
  });
}

void CheckpointWriter::commit() {
  impl_->guarded([&] {
    Impl& m = *impl_;
    m.finish_tensor();
    QISA_CHECK(m.have_state, "checkpoint " + q(path()) + ": set_state was not called", "this is a bug in the caller");
    QISA_CHECK(m.have_config, "checkpoint " + q(path()) + ": set_config was not called", "this is a bug in the caller");
    QISA_CHECK(m.file.exists("/params"), "checkpoint " + q(path()) + " has no /params tensors",
               "this is a bug in the caller");
    // Written last: only a complete file says what it is.
    m.file.set_attr_fixed("/", "kind", kKind);
    m.file.set_attr("/", "format_version", kCheckpointFormatVersion);
    m.file.close();
    fault_point("checkpoint.commit", -1, m.step);
    m.atomic.commit();
    m.committed = true;
  });
}

// ------------------------------------------------------------------------------ reader

struct CheckpointReader::Impl {
  std::string path;
  h5::File file;
};

namespace {
h5::File open_checkpoint(const std::string& path) {
  std::error_code ec;
  QISA_CHECK(fs::is_regular_file(path, ec), "checkpoint " + q(path) + " does not exist or is not a file",
             "checkpoints are RUN_DIR/checkpoints/ckpt_<step>.h5 (see `ls` of that directory)");
  h5::silence_hdf5_errors();
  QISA_CHECK(H5Fis_hdf5(path.c_str()) > 0, q(path) + " is not an HDF5 file (no HDF5 signature), so not a checkpoint",
             "pass RUN_DIR/checkpoints/ckpt_<step>.h5; if that is what it is, it is damaged: " +
                 std::string(kResumeHint));
  try {
    return h5::File(path, h5::File::Mode::read);
  } catch (const Error&) {
    throw Error("cannot open checkpoint " + q(path) +
                    ": its superblock or root group is damaged (metadata checksum mismatch) or the file is truncated",
                kResumeHint);
  }
}
}  // namespace

CheckpointReader::CheckpointReader(const std::string& path)
    : impl_(std::make_unique<Impl>(Impl{path, open_checkpoint(path)})) {
  const h5::File& f = impl_->file;
  const char* hint = "pass a checkpoint written by qisa train (RUN_DIR/checkpoints/ckpt_<step>.h5)";
  if (!f.has_attr("/", "kind"))
    expect_file_kind(f, FileKind::checkpoint, std::string(hint) + "; an unfinished temporary (*.tmp-PID) has no kind either");
  const std::string kind = f.attr_string("/", "kind");
  QISA_CHECK(kind == kKind, q(path) + " is not a qisa checkpoint: kind = \"" + kind + "\", expected \"" + kKind + "\"",
             kind == "qisa-model" ? "this is a final model file: use it with qisa eval or sample" : hint);
  QISA_CHECK(f.has_attr("/", "format_version"), "checkpoint " + q(path) + " has no root attribute 'format_version'",
             "the file is damaged or was not written by qisa");
  const int64_t version = f.attr_int("/", "format_version");
  QISA_CHECK(version == kCheckpointFormatVersion,
             "checkpoint " + q(path) + " has format_version " + std::to_string(version) + ", this qisa (" +
                 QISA_VERSION + ") reads format_version " + std::to_string(kCheckpointFormatVersion),
             "resume with the qisa version that wrote it, or start a new run (train.resume: never)");
  QISA_CHECK(f.exists_checked("/state"), "checkpoint " + q(path) + " has no /state group",
             "the file is damaged or was not written by qisa");
}

CheckpointReader::~CheckpointReader() = default;

const std::string& CheckpointReader::path() const { return impl_->path; }

std::string CheckpointReader::config_yaml() const { return impl_->file.attr_string("/", "config"); }

std::string CheckpointReader::code_version() const { return impl_->file.attr_string("/state", "code_version"); }

TrainState CheckpointReader::state() const { return read_state(impl_->file); }

std::vector<std::string> CheckpointReader::vocab() const {
  if (!impl_->file.exists_checked("/tokenizer/vocab")) return {};
  return impl_->file.read_strings("/tokenizer/vocab");
}

Vocabulary CheckpointReader::vocabulary() const { return read_stored_vocabulary(impl_->file); }

std::vector<TensorSpec> CheckpointReader::tensors(const std::string& group) const {
  check_tensor_group(group);
  const h5::File& f = impl_->file;
  std::vector<TensorSpec> out;
  if (!f.exists_checked("/" + group)) return out;
  for (const auto& name : f.list("/" + group)) {
    std::vector<hsize_t> dims;
    f.stored_count("/" + group + "/" + name, &dims);  // callers allocate numel(): it must be in the file
    out.push_back(TensorSpec{name, std::vector<int64_t>(dims.begin(), dims.end())});
  }
  return out;
}

std::vector<std::string> CheckpointReader::string_names() const {
  if (!impl_->file.exists_checked("/pauli")) return {};
  return impl_->file.list("/pauli");
}

std::vector<std::string> CheckpointReader::read_strings(const std::string& name, std::vector<int64_t>* shape) const {
  check_name("string dataset", name);
  std::vector<hsize_t> dims;
  std::vector<std::string> v = impl_->file.read_strings("/pauli/" + name, &dims);
  if (shape) shape->assign(dims.begin(), dims.end());
  return v;
}

void CheckpointReader::read_piece(const std::string& group, const std::string& name, int64_t offset, float* out,
                                  int64_t count) const {
  check_tensor_group(group);
  check_name("tensor", name);
  const h5::Dataset d = impl_->file.open_dataset("/" + group + "/" + name);
  QISA_CHECK(offset >= 0 && count >= 0 && static_cast<hsize_t>(offset) <= d.numel() &&
                 static_cast<hsize_t>(count) <= d.numel() - static_cast<hsize_t>(offset),
             "checkpoint " + d.where() + ": piece [" + std::to_string(offset) + ", " + std::to_string(offset + count) +
                 ") is outside its " + std::to_string(d.numel()) + " elements",
             "this is a bug in the caller's offset arithmetic");
  d.read_flat<float>(static_cast<hsize_t>(offset), static_cast<hsize_t>(count), out);
}

void CheckpointReader::verify() const {
  const h5::File& f = impl_->file;
  std::string current = "/state";
  auto fail = [&](const std::string& why) {
    throw Error("checkpoint " + q(impl_->path) + " failed verification at " + q(current) +
                    " (checksum mismatch, truncated file or damaged metadata): " + one_line(why),
                kResumeHint);
  };
  try {
    state();
    current = "/";
    config_yaml();
    std::vector<float> buf;
    for (const char* group : {"params", "optim/m", "optim/v"}) {
      current = std::string("/") + group;
      for (const auto& name : (f.exists_checked(current) ? f.list(current) : std::vector<std::string>{})) {
        current = std::string("/") + group + "/" + name;
        f.stored_count(current);  // a shape the file does not hold is damage, not hours of fill values
        const h5::Dataset d = f.open_dataset(current);
        const int64_t n = static_cast<int64_t>(d.numel());
        buf.resize(static_cast<size_t>(std::min(n, kVerifyPiece)));
        for (int64_t a = 0; a < n; a += kVerifyPiece) {
          const int64_t c = std::min(kVerifyPiece, n - a);
          d.read_flat<float>(static_cast<hsize_t>(a), static_cast<hsize_t>(c), buf.data());
        }
      }
    }
    current = "/pauli";
    for (const auto& name : string_names()) {
      current = "/pauli/" + name;
      f.read_strings(current);
    }
    current = "/tokenizer";
    vocabulary();
  } catch (const Error& e) {
    fail(e.what());
  }
}

// ------------------------------------------------------------------------------ store

CheckpointStore::CheckpointStore(std::string dir, int64_t keep_last) : dir_(std::move(dir)), keep_last_(keep_last) {
  QISA_CHECK(keep_last_ >= 1, "checkpoint.keep_last = " + std::to_string(keep_last_) + " keeps nothing",
             "set checkpoint.keep_last >= 1");
}

std::string CheckpointStore::path_for(int64_t step) const {
  QISA_CHECK(step >= 0, "checkpoint step " + std::to_string(step) + " is negative", "this is a bug in the caller");
  char name[40];
  std::snprintf(name, sizeof name, "ckpt_%08lld.h5", static_cast<long long>(step));
  return (fs::path(dir_) / name).string();
}

std::vector<std::string> CheckpointStore::list() const {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(dir_, ec)) return {};
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    const std::string name = e.path().filename().string();
    const int64_t step = step_of(name);
    std::error_code ec2;
    if (step >= 0 && e.is_regular_file(ec2)) found.emplace_back(step, e.path().string());
  }
  QISA_CHECK(!ec, "cannot list checkpoint directory " + q(dir_) + ": " + ec.message(),
             "check checkpoint.dir and its permissions");
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second > b.second;
  });
  std::vector<std::string> out;
  for (auto& [step, path] : found) out.push_back(std::move(path));
  return out;
}

std::optional<std::string> CheckpointStore::newest_valid(const std::function<void(const std::string&)>& warn) const {
  for (const auto& path : list()) {
    try {
      CheckpointReader r(path);
      r.verify();
      return path;
    } catch (const Error& e) {
      if (warn) warn("skipping checkpoint " + q(path) + ": " + one_line(e.message()));
    }
  }
  return std::nullopt;
}

void CheckpointStore::prune() const {
  const std::vector<std::string> all = list();
  auto remove = [](const std::string& path) {
    std::error_code ec;
    fs::remove(path, ec);
    QISA_CHECK(!ec, "cannot delete old checkpoint file " + q(path) + ": " + ec.message(),
               "check the permissions of the checkpoint directory");
  };
  for (size_t i = static_cast<size_t>(keep_last_); i < all.size(); ++i) remove(all[i]);
  // Temporaries of writers that are gone (killed mid-write). A live writer's file is kept:
  // the pid in its name still answers kill(pid, 0).
  std::error_code ec;
  if (!fs::is_directory(dir_, ec)) return;
  std::vector<std::string> stale;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    const long pid = temp_pid(e.path().filename().string());
    if (pid > 0 && pid != static_cast<long>(::getpid()) && !process_alive(pid)) stale.push_back(e.path().string());
  }
  for (const auto& path : stale) remove(path);
}

// ------------------------------------------------------------------------------ inspect

CheckpointSummary inspect_checkpoint(const std::string& path) {
  CheckpointReader r(path);  // throws when it is no checkpoint at all
  CheckpointSummary s;
  s.path = path;
  try {
    s.code_version = r.code_version();
    s.state = r.state();
    s.config_yaml = r.config_yaml();
    for (const auto& t : r.tensors("params")) {
      s.parameters += t.numel();
      ++s.tensors;
    }
    s.optim_tensors = static_cast<int64_t>(r.tensors("optim/m").size() + r.tensors("optim/v").size());
    s.string_datasets = static_cast<int64_t>(r.string_names().size());
    s.vocab_size = static_cast<int64_t>(r.vocabulary().size());
  } catch (const Error& e) {
    s.checksum_error = one_line(e.message());  // damaged metadata; verify() names the place
  }
  try {
    r.verify();
  } catch (const Error& e) {
    s.checksum_error = one_line(e.message());
  }
  s.checksums_ok = s.checksum_error.empty();
  return s;
}

}  // namespace qisa
