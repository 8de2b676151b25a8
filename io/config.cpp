#include "io/config.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <sstream>

#include "io/corpus.h"
#include "io/edit_distance.h"
#include "kernels/error.h"

namespace qisa {

namespace {
// Largest accepted model and batch shapes (see validate_model).
constexpr int64_t kMaxVocabMultiple = 65536;
constexpr int64_t kMaxBlockSize = int64_t{1} << 20;
constexpr int64_t kMaxEmbd = 65536;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxBatch = int64_t{1} << 24;
// Longest dist.timeout_s: a day; a collective that has waited longer is a hung job, not a slow one.
constexpr double kMaxTimeoutS = 86400;
}  // namespace

const char* to_string(AttentionKind a) {
  switch (a) {
    case AttentionKind::csa: return "csa";
    case AttentionKind::qisa: return "qisa";
    case AttentionKind::qisa_a: return "qisa_a";
  }
  return "?";
}
const char* to_string(QisaValue v) { return v == QisaValue::per_head ? "per_head" : "shared"; }
const char* to_string(AttnMask m) { return m == AttnMask::causal ? "causal" : "reference"; }
const char* to_string(QisaScore s) { return s == QisaScore::paper ? "paper" : "gaussian"; }

AttnScore ModelConfig::attn_score() const {
  const double s = qisa_score_scale > 0 ? qisa_score_scale : 1.0 / std::sqrt(static_cast<double>(head_dim()));
  return {qisa_score, static_cast<float>(s)};
}
const char* to_string(Activation a) { return a == Activation::relu ? "relu" : "gelu"; }
const char* to_string(Recompute r) { return r == Recompute::none ? "none" : "blocks"; }
const char* to_string(OnNonfinite o) { return o == OnNonfinite::stop ? "stop" : "skip"; }
const char* to_string(OnSpike o) { return o == OnSpike::warn ? "warn" : "skip"; }
const char* to_string(OnCheckpointError o) { return o == OnCheckpointError::stop ? "stop" : "warn"; }
const char* to_string(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }
const char* to_string(Precision p) { return p == Precision::fp32 ? "fp32" : "bf16"; }
const char* to_string(Bf16Rounding r) { return r == Bf16Rounding::nearest ? "nearest" : "stochastic"; }
const char* to_string(CommKind k) {
  switch (k) {
    case CommKind::automatic: return "auto";
    case CommKind::none: return "none";
    case CommKind::mpi: return "mpi";
    case CommKind::nccl: return "nccl";
  }
  return "?";
}

int ModelConfig::n_qubits() const {
  int n = 1;
  while (n < 62 && (int64_t{1} << n) < n_embd) ++n;
  return n;
}

namespace {

const std::vector<std::string> kSections = {"model", "data", "train", "eval", "log", "dist", "checkpoint"};

// ------------------------------------------------------------------ small helpers

std::string q(const std::string& s) { return "'" + s + "'"; }

std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

// "did you mean 'x'? " when something is close enough to be a typo, else "". `prefix` is
// prepended to the suggestion ("model.").
std::string did_you_mean(const std::string& got, const std::vector<std::string>& valid,
                         const std::string& prefix = "") {
  std::vector<std::string> best;  // every name at the smallest distance
  size_t best_d = std::numeric_limits<size_t>::max();
  for (const auto& v : valid) {
    const size_t d = static_cast<size_t>(edit_distance(got, v));
    if (d < best_d) best_d = d, best.clear();
    if (d == best_d) best.push_back(q(prefix + v));
  }
  if (best.empty() || best_d > std::max<size_t>(2, got.size() / 3)) return "";
  return "did you mean " + join(best, " or ") + "? ";
}

std::string format_double(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);  // shortest text that reads back exactly
  std::string s(buf, end);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // keep it visibly a float
  return s;
}

std::string yaml_quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += static_cast<char>(c);
    else if (c < 0x20 || c == 0x7F) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\x%02X", c);
      out += esc;
    } else out += static_cast<char>(c);
  }
  return out + "\"";
}

// How a value appears in messages: as written (quoted when it was quoted), lists in flow style.
std::string show(const YAML::Node& n) {
  if (!n || n.IsNull()) return "(empty)";
  if (n.IsScalar()) return n.Tag() == "!" ? yaml_quote(n.Scalar()) : n.Scalar();
  YAML::Emitter e;
  e << YAML::Flow << n;
  return e.c_str();
}

const char* kind_of(const YAML::Node& n) {
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a mapping";
  return "no value";
}

// ------------------------------------------------------------------ typed scalars

// A value that does not fit its key: turned into a qisa::Error naming file, key and value.
struct Bad {
  std::string problem, hint;
};

bool is_yaml_bool(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s == "true" || s == "false" || s == "yes" || s == "no" || s == "on" || s == "off";
}

// The text of a plain (unquoted) scalar that should be a number; `what` is "an integer" etc.
std::string number_text(const YAML::Node& n, const char* what) {
  if (!n.IsScalar()) throw Bad{std::string("expected ") + what + ", got " + kind_of(n), "write a single number"};
  if (n.Tag() == "!") throw Bad{std::string("expected ") + what + ", got a quoted string", "remove the quotes"};
  const std::string& s = n.Scalar();
  if (is_yaml_bool(s)) throw Bad{std::string("expected ") + what + ", got a bool", "write a number"};
  return s.size() > 1 && s[0] == '+' ? s.substr(1) : s;
}

bool parse_full_double(const std::string& s, double& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

template <typename T>
T parse_integer(const YAML::Node& n) {
  const std::string s = number_text(n, "an integer");
  T v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec == std::errc() && p == s.data() + s.size()) return v;
  if (ec == std::errc::result_out_of_range || (std::is_unsigned_v<T> && !s.empty() && s[0] == '-'))
    throw Bad{"is out of range for this key", std::is_unsigned_v<T> ? "use a non-negative integer" : "use a smaller integer"};
  double d;
  if (parse_full_double(s, d) || s == ".inf" || s == ".nan")
    throw Bad{"expected an integer, got a float", "write a whole number without '.' or exponent, e.g. 1000 not 1e3"};
  throw Bad{"expected an integer, got a string", "write a whole number"};
}

double parse_real(const YAML::Node& n) {
  const std::string s = number_text(n, "a number");
  double v;
  if (parse_full_double(s, v) && std::isfinite(v)) return v;
  if (s.find("inf") != std::string::npos || s.find("nan") != std::string::npos || s.find("Inf") != std::string::npos ||
      s.find("NaN") != std::string::npos || parse_full_double(s, v))
    throw Bad{"must be a finite number", "write an ordinary number such as 0.001 or 1e-3"};
  throw Bad{"expected a number, got a string", "write a number such as 0.001 or 1e-3"};
}

std::string parse_string(const YAML::Node& n) {
  if (!n.IsScalar()) throw Bad{std::string("expected a string, got ") + kind_of(n), "write a single value"};
  return n.Scalar();
}

// One of a fixed set of names (enums, lr_schedule).
std::string parse_choice(const YAML::Node& n, const std::vector<std::string>& allowed) {
  std::string s = parse_string(n);
  if (std::find(allowed.begin(), allowed.end(), s) == allowed.end())
    throw Bad{"must be one of " + join(allowed, " | "), did_you_mean(s, allowed) + "valid: " + join(allowed, ", ")};
  return s;
}

template <typename E>
E parse_enum(const YAML::Node& n, std::initializer_list<E> values) {
  std::vector<std::string> names;
  for (E e : values) names.push_back(to_string(e));
  const std::string s = parse_choice(n, names);
  for (E e : values)
    if (s == to_string(e)) return e;
  return *values.begin();  // unreachable: parse_choice accepted s
}

// Overloads chosen by the field's type: read a node into a field, write a field as YAML text.
void read_value(const YAML::Node& n, int& v) { v = parse_integer<int>(n); }
void read_value(const YAML::Node& n, int64_t& v) { v = parse_integer<int64_t>(n); }
void read_value(const YAML::Node& n, uint64_t& v) { v = parse_integer<uint64_t>(n); }
void read_value(const YAML::Node& n, double& v) { v = parse_real(n); }
void read_value(const YAML::Node& n, std::string& v) { v = parse_string(n); }
void read_value(const YAML::Node& n, bool& v) { v = parse_choice(n, {"true", "false"}) == "true"; }
void read_value(const YAML::Node& n, AttentionKind& v) {
  v = parse_enum(n, {AttentionKind::csa, AttentionKind::qisa, AttentionKind::qisa_a});
}
void read_value(const YAML::Node& n, QisaValue& v) { v = parse_enum(n, {QisaValue::per_head, QisaValue::shared}); }
void read_value(const YAML::Node& n, AttnMask& v) { v = parse_enum(n, {AttnMask::causal, AttnMask::reference}); }
void read_value(const YAML::Node& n, QisaScore& v) { v = parse_enum(n, {QisaScore::paper, QisaScore::gaussian}); }
void read_value(const YAML::Node& n, Activation& v) { v = parse_enum(n, {Activation::relu, Activation::gelu}); }
void read_value(const YAML::Node& n, Recompute& v) { v = parse_enum(n, {Recompute::none, Recompute::blocks}); }
void read_value(const YAML::Node& n, OnNonfinite& v) { v = parse_enum(n, {OnNonfinite::stop, OnNonfinite::skip}); }
void read_value(const YAML::Node& n, OnSpike& v) { v = parse_enum(n, {OnSpike::warn, OnSpike::skip}); }
void read_value(const YAML::Node& n, OnCheckpointError& v) {
  v = parse_enum(n, {OnCheckpointError::stop, OnCheckpointError::warn});
}
void read_value(const YAML::Node& n, Device& v) { v = parse_enum(n, {Device::cpu, Device::cuda}); }
void read_value(const YAML::Node& n, Precision& v) { v = parse_enum(n, {Precision::fp32, Precision::bf16}); }
void read_value(const YAML::Node& n, Bf16Rounding& v) {
  v = parse_enum(n, {Bf16Rounding::nearest, Bf16Rounding::stochastic});
}
void read_value(const YAML::Node& n, CommKind& v) {
  v = parse_enum(n, {CommKind::automatic, CommKind::none, CommKind::mpi, CommKind::nccl});
}

std::string write_value(int v) { return std::to_string(v); }
std::string write_value(int64_t v) { return std::to_string(v); }
std::string write_value(uint64_t v) { return std::to_string(v); }
std::string write_value(double v) { return format_double(v); }
std::string write_value(const std::string& v) { return yaml_quote(v); }
std::string write_value(bool v) { return v ? "true" : "false"; }
template <typename E>
  requires std::is_enum_v<E>
std::string write_value(E v) { return to_string(v); }

// ------------------------------------------------------------------ the key table

// One YAML key: its name, a comment for to_yaml(), and how to read/write it on a Config.
struct Field {
  std::string key;  // "model.n_head"
  const char* help;
  std::function<void(Config&, const YAML::Node&)> read;
  std::function<std::string(const Config&)> write;
};

template <auto Section, auto Member>
Field field(const char* key, const char* help) {
  return {key, help, [](Config& c, const YAML::Node& n) { read_value(n, c.*Section.*Member); },
          [](const Config& c) { return write_value(c.*Section.*Member); }};
}

// A string from a fixed set of names: read like an enum, so the message lists the names.
template <auto Section, auto Member>
Field choice_field(const char* key, const char* help, std::vector<std::string> allowed) {
  return {key, help,
          [allowed](Config& c, const YAML::Node& n) { c.*Section.*Member = parse_choice(n, allowed); },
          [](const Config& c) { return c.*Section.*Member; }};
}

// Every key, in to_yaml() order. The single list that parsing, unknown-key detection and
// to_yaml() share, so they cannot drift apart.
const std::vector<Field>& fields() {
  static const std::vector<Field> table = {
      field<&Config::model, &ModelConfig::vocab_multiple>(
          "model.vocab_multiple", "vocab_size = the corpus's rounded up to a multiple of this (>= 1; GPT-2: 128)"),
      field<&Config::model, &ModelConfig::block_size>("model.block_size", "context length T (>= 1)"),
      field<&Config::model, &ModelConfig::n_embd>("model.n_embd", "embedding width C (>= 1)"),
      field<&Config::model, &ModelConfig::n_head>("model.n_head", "attention heads H (n_embd % n_head == 0)"),
      field<&Config::model, &ModelConfig::n_layer>("model.n_layer", "transformer blocks L (>= 1)"),
      field<&Config::model, &ModelConfig::attention>("model.attention", "csa | qisa | qisa_a"),
      field<&Config::model, &ModelConfig::qisa_value>(
          "model.qisa_value", "qisa value map: per_head (C x C per head) | shared (one C x C per block)"),
      field<&Config::model, &ModelConfig::mask>("model.mask", "causal | reference"),
      field<&Config::model, &ModelConfig::qisa_score>(
          "model.qisa_score", "qisa / qisa_a score: paper (softmax of exp(-|q-k|^2)) | gaussian (softmax of -s |q-k|^2)"),
      field<&Config::model, &ModelConfig::qisa_score_scale>(
          "model.qisa_score_scale", "s of qisa_score gaussian (> 0); 0 = 1/sqrt(head size)"),
      field<&Config::model, &ModelConfig::activation>("model.activation", "relu | gelu"),
      field<&Config::model, &ModelConfig::dropout>("model.dropout", "[0, 1)"),
      field<&Config::model, &ModelConfig::pauli_identity_prob>("model.pauli_identity_prob",
                                                                "P(letter = I) when drawing Pauli strings, [0, 1)"),
      field<&Config::data, &DataConfig::corpus>("data.corpus", "HDF5 corpus written by qisa prepare"),
      choice_field<&Config::data, &DataConfig::sampler>(
          "data.sampler", "random (permutation of window offsets per epoch) | sequential", {"random", "sequential"}),
      field<&Config::data, &DataConfig::chunk_cache_mb>("data.chunk_cache_mb", "HDF5 chunk cache per rank, MiB (> 0)"),
      field<&Config::train, &TrainConfig::batch_size>("train.batch_size", "sequences per optimizer step (global)"),
      field<&Config::train, &TrainConfig::micro_batch_size>("train.micro_batch_size",
                                                            "sequences per forward/backward; 0 = batch_size"),
      field<&Config::train, &TrainConfig::steps>("train.steps", "optimizer steps (>= 1)"),
      field<&Config::train, &TrainConfig::lr>("train.lr", "peak learning rate (> 0)"),
      choice_field<&Config::train, &TrainConfig::lr_schedule>("train.lr_schedule",
                                                              "constant | cosine | linear (after warm-up, to min_lr)",
                                                              {"constant", "cosine", "linear"}),
      field<&Config::train, &TrainConfig::warmup_steps>("train.warmup_steps", "linear warm-up steps (>= 0)"),
      field<&Config::train, &TrainConfig::min_lr>("train.min_lr", "end of the cosine and linear schedules, [0, lr]"),
      field<&Config::train, &TrainConfig::beta1>("train.beta1", "AdamW, [0, 1)"),
      field<&Config::train, &TrainConfig::beta2>("train.beta2", "AdamW, [0, 1)"),
      field<&Config::train, &TrainConfig::eps>("train.eps", "AdamW (> 0)"),
      field<&Config::train, &TrainConfig::weight_decay>("train.weight_decay", "AdamW decoupled decay (>= 0)"),
      choice_field<&Config::train, &TrainConfig::weight_decay_on>(
          "train.weight_decay_on",
          "all | matrices (>= 2-dim weights only: not biases, LayerNorm weights, QISA-A angles)", {"all", "matrices"}),
      field<&Config::train, &TrainConfig::grad_clip>("train.grad_clip", "global-norm clip; 0 = off"),
      field<&Config::train, &TrainConfig::on_nonfinite>(
          "train.on_nonfinite", "NaN/Inf loss or gradient: stop (checkpoint, exit 1) | skip (drop the update)"),
      field<&Config::train, &TrainConfig::spike_factor>(
          "train.spike_factor", "spike: loss or gradient norm > factor x its recent average; 0 = off, else > 1"),
      field<&Config::train, &TrainConfig::spike_warmup>("train.spike_warmup",
                                                        "steps averaged before spikes are detected (>= 1)"),
      field<&Config::train, &TrainConfig::on_spike>("train.on_spike",
                                                    "a spike: warn (train on) | skip (drop the update)"),
      field<&Config::train, &TrainConfig::seed>("train.seed", "init, Pauli strings, sampling, dropout"),
      field<&Config::train, &TrainConfig::threads>("train.threads", "CPU threads per rank; 0 = OMP_NUM_THREADS, else the cores this rank may use"),
      field<&Config::train, &TrainConfig::device>("train.device", "cpu | cuda (cuda: builds with nvcc only)"),
      field<&Config::train, &TrainConfig::tf32>("train.tf32",
                                                "true | false: cuda fp32 GEMMs may use TF32 tensor cores"),
      field<&Config::train, &TrainConfig::resume>("train.resume",
                                                  "auto (newest valid checkpoint, else fresh) | never | PATH"),
      field<&Config::train, &TrainConfig::recompute>(
          "train.recompute", "none | blocks (keep only block inputs, recompute in backward: less memory)"),
      field<&Config::train, &TrainConfig::precision>(
          "train.precision", "fp32 | bf16 (bf16 activations and GEMM operands, fp32 masters, moments and statistics)"),
      field<&Config::train, &TrainConfig::bf16_rounding>(
          "train.bf16_rounding", "bf16 weight copy after each update: nearest | stochastic (Philox, reproducible)"),
      field<&Config::train, &TrainConfig::peak_tflops>(
          "train.peak_tflops", "peak TFLOP/s per rank for MFU; 0 = from the GPU table (none for cpu)"),
      field<&Config::eval, &EvalConfig::every>("eval.every", "steps between evaluations; 0 = only at the end"),
      field<&Config::eval, &EvalConfig::windows>("eval.windows", "validation windows per evaluation (>= 1)"),
      field<&Config::log, &LogConfig::every>("log.every", "steps between metrics lines (>= 1)"),
      field<&Config::log, &LogConfig::dir>("log.dir", "run directory"),
      field<&Config::dist, &DistConfig::comm>("dist.comm", "auto | none | mpi | nccl (nccl needs train.device cuda)"),
      field<&Config::dist, &DistConfig::zero>("dist.zero", "0 = replicated AdamW state, 1 = ZeRO-1 (sharded)"),
      field<&Config::dist, &DistConfig::bucket_mb>("dist.bucket_mb", "gradient all-reduce bucket, MiB (> 0)"),
      field<&Config::dist, &DistConfig::timeout_s>(
          "dist.timeout_s", "longest wait for a collective (and NCCL init) before the job aborts, s (0, 86400]"),
      field<&Config::checkpoint, &CheckpointConfig::dir>("checkpoint.dir", "\"\" = <log.dir>/checkpoints"),
      field<&Config::checkpoint, &CheckpointConfig::every_steps>("checkpoint.every_steps",
                                                                 "0 = only at the end and on SIGTERM/SIGUSR1"),
      field<&Config::checkpoint, &CheckpointConfig::keep_last>("checkpoint.keep_last", "checkpoints kept (>= 1)"),
      field<&Config::checkpoint, &CheckpointConfig::on_error>(
          "checkpoint.on_error", "a failed write (disk full): stop (exit 1) | warn (train on)"),
  };
  return table;
}

const Field* find_field(const std::string& key) {
  for (const auto& f : fields())
    if (f.key == key) return &f;
  return nullptr;
}

std::vector<std::string> keys_of(const std::string& section) {
  std::vector<std::string> out;
  for (const auto& f : fields())
    if (f.key.compare(0, section.size() + 1, section + ".") == 0) out.push_back(f.key.substr(section.size() + 1));
  return out;
}

std::string unknown_key_hint(const std::string& section, const std::string& key) {
  if (section == "model" && key == "vocab_size")
    return "model.vocab_size is not a key: it comes from the corpus written by qisa prepare";
  const auto keys = keys_of(section);
  return did_you_mean(key, keys, section + ".") + "keys of " + section + ": " + join(keys, ", ");
}

// ------------------------------------------------------------------ parsing

// The number of YAML documents in `text` (throws YAML::Exception on a syntax error).
// Not YAML::LoadAll: yaml-cpp 0.7's never returns on some malformed input, e.g. a lone ','
// or one after a document ("{a: 1},"): the parser stops consuming tokens and LoadAll appends
// null documents until memory runs out (jbeder/yaml-cpp#1040, fixed upstream by #1319).
// Here a document that starts where the previous one did is that stuck parser.
size_t count_documents(const std::string& text) {
  struct Starts : YAML::EventHandler {
    std::vector<YAML::Mark> marks;
    void OnDocumentStart(const YAML::Mark& m) override { marks.push_back(m); }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
    void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
    void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
    void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
    void OnMapEnd() override {}
  } starts;
  std::istringstream in(text);
  YAML::Parser parser(in);
  while (parser.HandleNextDocument(starts)) {
    const auto& m = starts.marks;
    if (m.size() >= 2 && m.back().pos == m[m.size() - 2].pos) {
      const size_t at = static_cast<size_t>(std::max(m.back().pos, 0));
      throw YAML::ParserException(m.back(), at < text.size() ? "unexpected '" + text.substr(at, 1) + "'"
                                                             : "unexpected end of input");
    }
  }
  return starts.marks.size();
}

class ConfigParser {
 public:
  explicit ConfigParser(std::string source) : source_(std::move(source)) {}

  void load(const std::string& text) {
    size_t docs = 0;
    YAML::Node root;
    try {
      docs = count_documents(text);
      if (docs == 1) root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      throw Error(source_ + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) +
                      ": YAML syntax error: " + e.msg,
                  "check the indentation (spaces, not tabs), colons and quotes near line " +
                      std::to_string(e.mark.line + 1));
    }
    QISA_CHECK(docs <= 1, source_ + ": holds " + std::to_string(docs) + " YAML documents",
               "keep one document: remove the '---' separators");
    if (docs == 0 || root.IsNull()) return;  // an empty file: defaults (and overrides)
    QISA_CHECK(root.IsMap(), source_ + ": the top level is " + std::string(root.IsSequence() ? "a list" : "a single value") +
                                 ", not a mapping of sections",
               "write sections at the top level: " + join(kSections, ":, ") + ":");
    std::map<std::string, int> seen_sections;
    for (auto it = root.begin(); it != root.end(); ++it) load_section(it->first, it->second, seen_sections);
  }

  void apply_override(const std::string& ov) {
    const std::string what = source_ + ": override " + q(ov);
    const auto eq = ov.find('=');
    const auto dot = ov.find('.');
    const bool shaped = eq != std::string::npos && dot != std::string::npos && dot > 0 && dot + 1 < eq;
    QISA_CHECK(shaped, what + " is malformed: expected SECTION.KEY=VALUE", "e.g. model.n_layer=4 or train.lr=1e-3");
    const std::string key = ov.substr(0, eq), section = key.substr(0, dot), name = key.substr(dot + 1);
    QISA_CHECK(std::find(kSections.begin(), kSections.end(), section) != kSections.end(),
               what + ": unknown section " + q(section),
               did_you_mean(section, kSections) + "sections: " + join(kSections, ", "));
    QISA_CHECK(find_field(key), what + ": unknown key " + q(key), unknown_key_hint(section, name));
    YAML::Node value;
    try {
      value = YAML::Load(ov.substr(eq + 1));
    } catch (const YAML::Exception& e) {
      throw Error(what + ": the value is not a YAML scalar (" + e.msg + ")", "quote it: " + key + "='\"...\"'");
    }
    QISA_CHECK(value.IsScalar() || value.IsNull(), what + ": the value is " + kind_of(value) + ", not a single value",
               "quote it: " + key + "='\"...\"'");
    entries_[key] = {value, what, /*from_override=*/true};
  }

  Config build() {
    Config c;
    c.source = source_;
    for (const auto& [key, e] : entries_) {
      const Field* f = find_field(key);
      try {
        if (e.node.IsNull()) throw Bad{"has no value", "give a value, or remove the key to use the default"};
        f->read(c, e.node);
      } catch (const Bad& b) {
        throw Error(e.where + ": " + key + " = " + show(e.node) + ": " + b.problem, b.hint);
      }
    }
    validate(c);
    return c;
  }

 private:
  struct Entry {
    YAML::Node node;
    std::string where;  // "file:line" or "file: override 'k=v'"
    bool from_override;
  };

  std::string at(const YAML::Node& key_node) const {
    return source_ + ":" + std::to_string(key_node.Mark().line + 1);
  }

  void load_section(const YAML::Node& key, const YAML::Node& body, std::map<std::string, int>& seen) {
    const std::string where = at(key);
    QISA_CHECK(key.IsScalar(), where + ": a section name must be a plain word, got " + show(key),
               "sections: " + join(kSections, ", "));
    const std::string name = key.Scalar();
    QISA_CHECK(std::find(kSections.begin(), kSections.end(), name) != kSections.end(),
               where + ": unknown section " + q(name),
               did_you_mean(name, kSections) + "sections: " + join(kSections, ", "));
    const int line = key.Mark().line + 1;
    QISA_CHECK(seen.emplace(name, line).second,
               where + ": duplicate section " + q(name) + " (first at line " + std::to_string(seen[name]) + ")",
               "merge the two into one");
    if (body.IsNull()) return;  // "eval:" with nothing under it: defaults
    QISA_CHECK(body.IsMap(), where + ": section " + q(name) + " = " + show(body) + " is not a mapping of keys",
               "put its keys on the following lines, indented, e.g. '  " + keys_of(name).front() + ": ...'");
    for (auto it = body.begin(); it != body.end(); ++it) load_key(name, it->first, it->second);
  }

  void load_key(const std::string& section, const YAML::Node& key, const YAML::Node& value) {
    const std::string where = at(key);
    QISA_CHECK(key.IsScalar(), where + ": a key of " + section + " must be a plain word, got " + show(key),
               "keys of " + section + ": " + join(keys_of(section), ", "));
    const std::string full = section + "." + key.Scalar();
    QISA_CHECK(find_field(full), where + ": unknown key " + q(full) + " = " + show(value),
               unknown_key_hint(section, key.Scalar()));
    auto [it, fresh] = entries_.try_emplace(full, Entry{value, where, false});
    QISA_CHECK(fresh, where + ": duplicate key " + q(full) + " = " + show(value) + " (first at " + it->second.where + ")",
               "keep one of the two");
  }

  // Where a key's value came from and the value as written (a default as the Config holds it).
  [[noreturn]] void fail(const Config& c, const std::string& key, const std::string& problem,
                         const std::string& hint) const {
    const auto it = entries_.find(key);
    if (it == entries_.end())
      throw Error(source_ + ": " + key + " = " + find_field(key)->write(c) + " (default): " + problem, hint);
    throw Error(it->second.where + ": " + key + " = " + show(it->second.node) + ": " + problem, hint);
  }
  void require(bool ok, const Config& c, const std::string& key, const std::string& problem,
               const std::string& hint = "") const {
    if (!ok) fail(c, key, problem, hint.empty() ? "the default is " + find_field(key)->write(Config{}) : hint);
  }
  bool set(const std::string& key) const { return entries_.count(key) > 0; }
  bool overridden(const std::string& key) const {
    auto it = entries_.find(key);
    return it != entries_.end() && it->second.from_override;
  }

  void validate(const Config& c) const {
    validate_model(c);
    require(!c.data.corpus.empty(), c, "data.corpus", "no corpus given",
            "set data.corpus to the .h5 written by qisa prepare (or pass data.corpus=PATH)");
    validate_train(c);
    require(c.eval.every >= 0, c, "eval.every", "must be >= 0 (0 = evaluate only at the end)");
    require(c.eval.windows >= 1, c, "eval.windows", "must be >= 1");
    require(c.log.every >= 1, c, "log.every", "must be >= 1");
    require(!c.log.dir.empty(), c, "log.dir", "must not be empty", "set log.dir to a run directory, e.g. runs/exp1");
    require(c.data.chunk_cache_mb > 0, c, "data.chunk_cache_mb", "must be > 0");
    require(!c.train.resume.empty(), c, "train.resume", "must not be empty", "use auto, never, or a checkpoint path");
    require(c.dist.zero == 0 || c.dist.zero == 1, c, "dist.zero", "must be 0 or 1");
    require(c.dist.comm != CommKind::nccl || c.train.device == Device::cuda, c, "dist.comm",
            std::string("nccl needs train.device: cuda (train.device is ") + to_string(c.train.device) + ")",
            "use dist.comm: auto (MPI between ranks) with train.device: cpu");
    require(c.dist.bucket_mb > 0, c, "dist.bucket_mb", "must be > 0");
    require(c.dist.timeout_s > 0, c, "dist.timeout_s", "must be > 0 (seconds)");
    require(c.dist.timeout_s <= kMaxTimeoutS, c, "dist.timeout_s",
            "must be at most " + std::to_string(static_cast<int64_t>(kMaxTimeoutS)) + " seconds (a day)");
    require(c.checkpoint.every_steps >= 0, c, "checkpoint.every_steps",
            "must be >= 0 (0 = only at the end and on SIGTERM/SIGUSR1)");
    require(c.checkpoint.keep_last >= 1, c, "checkpoint.keep_last", "must be >= 1");
  }

  void validate_model(const Config& c) const {
    const auto& m = c.model;
    require(m.vocab_multiple >= 1, c, "model.vocab_multiple", "must be >= 1 (1 = no padding)",
            "use 1, or e.g. 128 to round GPT-2's 50257 up to 50304");
    // Upper bounds by what the value means (issue 17 A.3): far beyond any published GPT, so that a
    // typo (an extra digit or three) is an error at start, not hours of allocation or a bad_alloc.
    require(m.vocab_multiple <= kMaxVocabMultiple, c, "model.vocab_multiple",
            "must be at most " + std::to_string(kMaxVocabMultiple), "GPT-2 uses 128");
    require(m.block_size >= 1 && m.block_size <= kMaxBlockSize, c, "model.block_size",
            "must be from 1 to " + std::to_string(kMaxBlockSize) + " (a context of 2^20 tokens)");
    require(m.n_embd >= 1 && m.n_embd <= kMaxEmbd, c, "model.n_embd",
            "must be from 1 to " + std::to_string(kMaxEmbd) + " (GPT-3 175B has 12288)");
    require(m.n_head >= 1, c, "model.n_head", "must be >= 1");
    // Blame the key the user touched last: an override before the file, n_head before n_embd.
    const bool blame_embd = !set("model.n_head") || (overridden("model.n_embd") && !overridden("model.n_head"));
    if (m.n_embd % m.n_head != 0)
      fail(c, blame_embd ? "model.n_embd" : "model.n_head",
           "n_embd (" + std::to_string(m.n_embd) + ") is not divisible by n_head (" + std::to_string(m.n_head) + ")",
           "choose n_head among the divisors of n_embd");
    require(m.n_layer >= 1 && m.n_layer <= kMaxLayers, c, "model.n_layer",
            "must be from 1 to " + std::to_string(kMaxLayers) + " (GPT-3 175B has 96 layers)");
    if (m.qisa_value == QisaValue::shared && m.attention != AttentionKind::qisa)
      fail(c, "model.qisa_value",
           std::string("shared needs model.attention = qisa, but attention is ") + to_string(m.attention),
           m.attention == AttentionKind::csa
               ? "csa's value projection is already one C x C map per block; remove model.qisa_value "
                 "(or set it to per_head), or set model.attention=qisa"
               : "qisa_a computes its values with a circuit and has no value map to share; remove "
                 "model.qisa_value (or set it to per_head), or set model.attention=qisa");
    if (m.qisa_score == QisaScore::gaussian && m.attention == AttentionKind::csa)
      fail(c, "model.qisa_score", "gaussian needs model.attention = qisa or qisa_a, but attention is csa",
           "csa scores with q.k / sqrt(C); remove model.qisa_score, or set model.attention=qisa");
    require(std::isfinite(m.qisa_score_scale) && m.qisa_score_scale >= 0 && m.qisa_score_scale <= 1e6, c,
            "model.qisa_score_scale", "must be from 0 to 1e6 (0: 1/sqrt(head size))");
    if (m.qisa_score_scale > 0 && m.qisa_score != QisaScore::gaussian)
      fail(c, "model.qisa_score_scale", "is the scale of model.qisa_score gaussian, but the score is paper",
           "set model.qisa_score=gaussian, or remove model.qisa_score_scale");
    require(m.dropout >= 0 && m.dropout < 1, c, "model.dropout", "must be in [0, 1)");
    require(m.pauli_identity_prob >= 0 && m.pauli_identity_prob < 1, c, "model.pauli_identity_prob",
            "must be in [0, 1)", "the paper uses 0.9");
  }

  void validate_train(const Config& c) const {
    const auto& t = c.train;
    require(t.batch_size >= 1 && t.batch_size <= kMaxBatch, c, "train.batch_size",
            "must be from 1 to " + std::to_string(kMaxBatch) + " sequences (GPT-3 trained with 3.2M tokens, 1536 sequences)");
    require(t.micro_batch_size >= 0, c, "train.micro_batch_size", "must be >= 0 (0 = batch_size)");
    if (t.micro_batch_size > 0 && t.batch_size % t.micro_batch_size != 0)
      fail(c, "train.micro_batch_size",
           "does not divide batch_size (" + std::to_string(t.batch_size) + ")",
           "choose a divisor of train.batch_size, or 0 for no micro-batching");
    require(t.steps >= 1, c, "train.steps", "must be >= 1");
    require(t.lr > 0, c, "train.lr", "must be > 0");
    require(t.warmup_steps >= 0, c, "train.warmup_steps", "must be >= 0");
    require(t.min_lr >= 0, c, "train.min_lr", "must be >= 0");
    require(t.min_lr <= t.lr, c, "train.min_lr", "must be <= train.lr (" + format_double(t.lr) + ")");
    require(t.beta1 >= 0 && t.beta1 < 1, c, "train.beta1", "must be in [0, 1)", "PyTorch's default is 0.9");
    require(t.beta2 >= 0 && t.beta2 < 1, c, "train.beta2", "must be in [0, 1)", "PyTorch's default is 0.999");
    require(t.eps > 0, c, "train.eps", "must be > 0", "PyTorch's default is 1e-8");
    require(t.weight_decay >= 0, c, "train.weight_decay", "must be >= 0");
    require(t.grad_clip >= 0, c, "train.grad_clip", "must be >= 0 (0 = no clipping)");
    require(t.spike_factor == 0 || t.spike_factor > 1, c, "train.spike_factor", "must be 0 (off) or > 1",
            "e.g. 4: a step whose loss or gradient norm is over 4 x its recent average is a spike");
    require(t.spike_warmup >= 1, c, "train.spike_warmup", "must be >= 1");
    require(t.threads >= 0, c, "train.threads", "must be >= 0 (0 = OMP_NUM_THREADS, else the cores this rank may use)");
    require(t.peak_tflops >= 0, c, "train.peak_tflops", "must be >= 0 (0 = from the GPU table)",
            "an H100 SXM's dense bf16 peak is 989.4");
  }

  std::string source_;
  std::map<std::string, Entry> entries_;  // "model.n_head" -> its YAML value and origin
};

}  // namespace

std::vector<std::string> config_keys() {
  std::vector<std::string> out;
  for (const auto& f : fields()) out.push_back(f.key);
  return out;
}

std::vector<std::pair<std::string, std::string>> config_values(const Config& c) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& f : fields()) out.emplace_back(f.key, f.write(c));
  return out;
}

Config parse_config(const std::string& yaml_text, const std::string& source_name,
                    const std::vector<std::string>& overrides) {
  ConfigParser p(source_name);
  p.load(yaml_text);
  for (const auto& ov : overrides) p.apply_override(ov);
  return p.build();
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  namespace fs = std::filesystem;
  std::error_code ec;
  QISA_CHECK(fs::exists(path, ec), "config file " + q(path) + " does not exist",
             "check the path (example configs are in configs/)");
  QISA_CHECK(!fs::is_directory(path, ec), "config file " + q(path) + " is a directory", "pass a .yaml file");
  std::ifstream in(path, std::ios::binary);
  QISA_CHECK(in, "cannot read config file " + q(path) + ": " + std::strerror(errno), "check the file's permissions");
  std::stringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), path, overrides);
}

std::string Config::checkpoint_dir() const {
  if (!checkpoint.dir.empty()) return checkpoint.dir;
  return (std::filesystem::path(log.dir) / "checkpoints").string();
}

std::string Config::to_yaml() const {
  std::string out = kResolvedConfigHeader;
  if (!source.empty()) out += " (resolved from " + source + ")";
  out += "\n";
  std::string section;
  for (const auto& f : fields()) {
    const std::string sec = f.key.substr(0, f.key.find('.'));
    if (sec != section) {
      section = sec;
      out += section + ":\n";
      if (section == "model" && model.vocab_size > 0)
        out += "  # vocab_size: " + std::to_string(model.vocab_size) +
               (model.vocab_multiple > 1 ? "  (the corpus's, rounded up to vocab_multiple; not a key)\n"
                                         : "  (from the corpus; not a key)\n");
    }
    std::string line = "  " + f.key.substr(sec.size() + 1) + ": " + f.write(*this);
    line.resize(std::max<size_t>(line.size(), 34), ' ');
    out += line + "  # " + f.help + "\n";
  }
  return out;
}

int64_t padded_vocab_size(int64_t corpus_vocab, int vocab_multiple) {
  QISA_CHECK(vocab_multiple >= 1, "model.vocab_multiple = " + std::to_string(vocab_multiple) + " must be >= 1",
             "use 1 (no padding) or e.g. 128");
  QISA_CHECK(corpus_vocab >= 0, "vocab_size " + std::to_string(corpus_vocab) + " is negative", "this is a bug in the caller");
  return (corpus_vocab + vocab_multiple - 1) / vocab_multiple * vocab_multiple;
}

void check_against_corpus(Config& cfg, const CorpusInfo& corpus) {
  const std::string where = cfg.source + ": model.block_size = " + std::to_string(cfg.model.block_size);
  const int64_t need = int64_t{cfg.model.block_size} + 1;
  const int64_t padded = padded_vocab_size(corpus.vocab_size, cfg.model.vocab_multiple);
  const std::string padding = padded == corpus.vocab_size ? std::string()
                                                          : " (" + std::to_string(padded) + " with model.vocab_multiple " +
                                                                std::to_string(cfg.model.vocab_multiple) + ")";
  QISA_CHECK(cfg.model.vocab_size == 0 || cfg.model.vocab_size == padded,
             cfg.source + ": the model has vocab_size " + std::to_string(cfg.model.vocab_size) + " but corpus " +
                 q(corpus.path) + " has vocab_size " + std::to_string(corpus.vocab_size) + padding,
             "use the corpus the model was trained on");
  QISA_CHECK(corpus.train_tokens >= need,
             where + ": needs block_size + 1 = " + std::to_string(need) + " tokens, but the train split of corpus " +
                 q(corpus.path) + " has " + std::to_string(corpus.train_tokens),
             "lower model.block_size or prepare a larger corpus");
  QISA_CHECK(corpus.val_tokens > 0,
             where + ": the val split of corpus " + q(corpus.path) +
                 " is empty, but evaluation needs at least block_size + 1 = " + std::to_string(need) + " tokens",
             "re-run qisa prepare with --val-fraction > 0 (e.g. 0.1)");
  QISA_CHECK(corpus.val_tokens >= need,
             where + ": needs block_size + 1 = " + std::to_string(need) + " tokens, but the val split of corpus " +
                 q(corpus.path) + " has " + std::to_string(corpus.val_tokens),
             "lower model.block_size, or re-run qisa prepare with a larger --val-fraction or more text");
  cfg.model.vocab_size = padded;
}

}  // namespace qisa
