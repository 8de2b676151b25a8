// YAML config: typed parsing, validation messages, overrides, to_yaml round trip, corpus checks.
#include <gtest/gtest.h>

#include <cmath>

#include <fstream>
#include <functional>

#include "io/config.h"
#include "io/corpus.h"
#include "kernels/error.h"
#include "expect_error.h"
#include "test_util.h"

namespace qisa {
namespace {

using test::error_of;
using test::expect_mentions;

const char* kValid = R"(# a small run
model:
  block_size: 32
  n_embd: 24
  n_head: 3
  attention: qisa_a
data:
  corpus: data/shakespeare.h5
train:
  lr: 1e-3
  steps: 100
)";

std::string parse_error(const std::string& yaml, std::vector<std::string> overrides = {}) {
  return error_of([&] { parse_config(yaml, "configs/x.yaml", overrides); });
}

std::string base_with(const std::string& section_lines) {
  return "data:\n  corpus: c.h5\n" + section_lines;
}

TEST(Config, ValidFileAndDefaults) {
  test::TempDir dir;
  const std::string path = dir / "run.yaml";
  std::ofstream(path) << kValid;
  const Config c = load_config(path);
  EXPECT_EQ(c.source, path);
  EXPECT_EQ(c.model.block_size, 32);
  EXPECT_EQ(c.model.n_embd, 24);
  EXPECT_EQ(c.model.n_head, 3);
  EXPECT_EQ(c.model.head_dim(), 8);
  EXPECT_EQ(c.model.attention, AttentionKind::qisa_a);
  EXPECT_EQ(c.data.corpus, "data/shakespeare.h5");
  EXPECT_DOUBLE_EQ(c.train.lr, 1e-3);
  EXPECT_EQ(c.train.steps, 100);
  // Everything else keeps the defaults of the struct.
  const Config d;
  EXPECT_EQ(c.model.n_layer, d.model.n_layer);
  EXPECT_EQ(c.model.mask, d.model.mask);
  EXPECT_EQ(c.model.activation, d.model.activation);
  EXPECT_EQ(c.model.pauli_identity_prob, d.model.pauli_identity_prob);
  EXPECT_EQ(c.model.vocab_size, 0);
  EXPECT_EQ(c.train, [&] { TrainConfig t; t.lr = 1e-3; t.steps = 100; return t; }());
  EXPECT_EQ(c.eval, d.eval);
  EXPECT_EQ(c.log, d.log);
}

TEST(Config, EmptySectionsAndEmptyFileUseDefaults) {
  const Config c = parse_config("model:\neval:\ndata:\n  corpus: c.h5\n", "x.yaml");
  EXPECT_EQ(c.model, ModelConfig{});
  const Config e = parse_config("", "empty.yaml", {"data.corpus=c.h5"});
  EXPECT_EQ(e.data.corpus, "c.h5");
  EXPECT_EQ(e.train, TrainConfig{});
}

TEST(Config, MissingFile) {
  expect_mentions(error_of([] { load_config("/nonexistent/dir/x.yaml"); }), {"/nonexistent/dir/x.yaml", "does not exist"});
}

TEST(Config, YamlSyntaxErrorHasLineNumber) {
  const std::string msg = parse_error("data:\n  corpus: c.h5\nmodel:\n  n_head: [1,\n  n_layer: 2\n");
  expect_mentions(msg, {"configs/x.yaml:", "YAML syntax error", "line"});
  const std::string tab = parse_error("model:\n\tn_head: 2\n");
  expect_mentions(tab, {"configs/x.yaml:2:", "YAML syntax error"});
}

// yaml-cpp 0.7's LoadAll never returned on these (it allocated null documents until memory ran
// out; found by tests/fuzz/fuzz_config): a syntax error naming the place instead.
TEST(Config, StrayCommaIsASyntaxErrorNotAHang) {
  expect_mentions(parse_error(","), {"configs/x.yaml:1:1:", "YAML syntax error", "unexpected ','"});
  expect_mentions(parse_error("{data: {corpus: c.h5}}, "), {"configs/x.yaml:1:", "YAML syntax error", "','"});
}

TEST(Config, TopLevelMustBeAMapping) {
  expect_mentions(parse_error("- model\n- data\n"), {"configs/x.yaml", "not a mapping"});
  expect_mentions(parse_error("just a string\n"), {"configs/x.yaml", "not a mapping"});
  expect_mentions(parse_error("model: {}\n---\nmodel: {}\n"), {"configs/x.yaml", "2 YAML documents"});
}

TEST(Config, UnknownKeySuggestsClosest) {
  const std::string msg = parse_error(base_with("model:\n  n_heads: 4\n"));
  expect_mentions(msg, {"configs/x.yaml:4", "unknown key 'model.n_heads' = 4", "did you mean 'model.n_head'?"});
  expect_mentions(parse_error(base_with("train:\n  learning_rate: 0.1\n")),
                  {"configs/x.yaml:4", "train.learning_rate", "0.1", "keys of train:"});
  expect_mentions(parse_error(base_with("model:\n  vocab_size: 65\n")), {"model.vocab_size", "comes from the corpus"});
}

TEST(Config, UnknownSectionSuggestsClosest) {
  expect_mentions(parse_error(base_with("modle:\n  n_head: 4\n")),
                  {"configs/x.yaml:3", "unknown section 'modle'", "did you mean 'model'?"});
}

TEST(Config, DuplicateKeysAreRejected) {
  expect_mentions(parse_error(base_with("model:\n  n_head: 2\n  n_layer: 2\n  n_head: 4\n")),
                  {"configs/x.yaml:6", "duplicate key 'model.n_head' = 4", "configs/x.yaml:4"});
  expect_mentions(parse_error(base_with("model:\n  n_head: 2\nmodel:\n  n_layer: 4\n")),
                  {"configs/x.yaml:5", "duplicate section 'model'", "line 3"});
}

struct BadValue {
  std::string key, value, expect;
};

// Each wrong value, once written in the file and once as an override: both messages name the
// file, the key and the value.
TEST(Config, WrongTypesAndOutOfRangeValues) {
  const std::vector<BadValue> cases = {
      {"model.n_layer", "four", "expected an integer, got a string"},
      {"model.n_layer", "2.5", "expected an integer, got a float"},
      {"model.n_layer", "1e3", "expected an integer, got a float"},
      {"model.n_layer", "true", "got a bool"},
      {"model.n_layer", "\"4\"", "quoted string"},
      {"model.n_layer", "[4]", "got a list"},
      {"model.n_layer", "99999999999", "out of range"},
      {"train.lr", "fast", "expected a number"},
      {"train.lr", ".inf", "finite"},
      {"data.corpus", "{a: 1}", "expected a string, got a mapping"},
      {"model.n_layer", "", "has no value"},
      {"model.block_size", "0", "must be from 1 to 1048576"},
      {"model.block_size", "2000000", "must be from 1 to 1048576"},
      {"model.n_embd", "0", "must be from 1 to 65536"},
      {"model.n_embd", "100000", "must be from 1 to 65536 (GPT-3 175B has 12288)"},
      {"model.n_head", "0", "must be >= 1"},
      {"model.n_layer", "-1", "must be from 1 to 1024"},
      {"model.n_layer", "100000000", "must be from 1 to 1024 (GPT-3 175B has 96 layers)"},
      {"model.dropout", "1.0", "[0, 1)"},
      {"model.dropout", "-0.1", "[0, 1)"},
      {"model.pauli_identity_prob", "1", "[0, 1)"},
      {"model.vocab_multiple", "0", "must be >= 1"},
      {"model.vocab_multiple", "-128", "must be >= 1"},
      {"model.vocab_multiple", "1000000", "must be at most 65536"},
      {"model.vocab_multiple", "1.5", "expected an integer"},
      {"model.attention", "qsa", "did you mean 'csa' or 'qisa'?"},
      {"model.attention", "qiisa", "did you mean 'qisa'?"},
      {"model.attention", "QISA", "csa | qisa | qisa_a"},
      {"model.mask", "full", "causal | reference"},
      {"model.activation", "silu", "relu | gelu"},
      {"model.qisa_value", "share", "did you mean 'shared'?"},
      {"model.qisa_value", "per-head", "per_head | shared"},
      {"train.batch_size", "0", "must be from 1 to 16777216"},
      {"train.batch_size", "100000000", "must be from 1 to 16777216"},
      {"train.micro_batch_size", "-2", "must be >= 0"},
      {"train.micro_batch_size", "300", "does not divide batch_size (1024)"},
      {"train.steps", "0", "must be >= 1"},
      {"train.lr", "0", "must be > 0"},
      {"train.lr_schedule", "cosin", "did you mean 'cosine'?"},
      {"train.lr_schedule", "exp", "must be one of constant | cosine | linear"},
      {"train.warmup_steps", "-1", "must be >= 0"},
      {"train.min_lr", "-1e-5", "must be >= 0"},
      {"train.min_lr", "0.01", "must be <= train.lr (0.003)"},
      {"train.beta1", "1", "[0, 1)"},
      {"train.beta2", "-0.5", "[0, 1)"},
      {"train.eps", "0", "must be > 0"},
      {"train.weight_decay", "-0.01", "must be >= 0"},
      {"train.weight_decay_on", "2d", "must be one of all | matrices"},
      {"train.grad_clip", "-1", "must be >= 0"},
      {"train.threads", "-4", "must be >= 0"},
      {"train.seed", "-1", "out of range"},
      {"eval.every", "-1", "must be >= 0"},
      {"eval.windows", "0", "must be >= 1"},
      {"log.every", "0", "must be >= 1"},
      {"log.dir", "\"\"", "must not be empty"},
      {"data.corpus", "\"\"", "no corpus given"},
      {"data.sampler", "sequentail", "did you mean 'sequential'?"},
      {"train.resume", "\"\"", "must not be empty"},
      {"dist.comm", "nccl2", "must be one of auto | none | mpi | nccl"},
      {"dist.comm", "gloo", "valid: auto, none, mpi, nccl"},
      {"train.device", "gpu", "must be one of cpu | cuda"},
      {"train.precision", "fp16", "must be one of fp32 | bf16"},
      {"train.bf16_rounding", "up", "must be one of nearest | stochastic"},
      {"train.device", "cudaa", "did you mean 'cuda'?"},
      {"dist.zero", "2", "must be 0 or 1"},
      {"dist.bucket_mb", "0", "must be > 0"},
      {"dist.timeout_s", "0", "must be > 0 (seconds)"},
      {"dist.timeout_s", "-1", "must be > 0 (seconds)"},
      {"dist.timeout_s", "nan", "must be a finite number"},
      {"dist.timeout_s", ".nan", "must be a finite number"},
      {"dist.timeout_s", ".inf", "must be a finite number"},
      {"dist.timeout_s", "-.inf", "must be a finite number"},
      {"dist.timeout_s", "slow", "expected a number, got a string"},
      {"dist.timeout_s", "\"300\"", "quoted string"},
      {"dist.timeout_s", "86400.5", "must be at most 86400 seconds (a day)"},
      {"dist.timeout_s", "1e9", "must be at most 86400 seconds (a day)"},
      {"checkpoint.every_steps", "-5", "must be >= 0"},
      {"checkpoint.keep_last", "0", "must be >= 1"},
      {"checkpoint.on_error", "ignore", "must be one of stop | warn"},
      {"train.on_nonfinite", "skp", "did you mean 'skip'?"},
      {"train.spike_factor", "0.5", "must be 0 (off) or > 1"},
      {"train.spike_factor", "1", "must be 0 (off) or > 1"},
      {"train.spike_factor", "-2", "must be 0 (off) or > 1"},
      {"train.spike_warmup", "0", "must be >= 1"},
      {"train.on_spike", "stop", "must be one of warn | skip"},
      {"train.recompute", "block", "did you mean 'blocks'?"},
      {"train.recompute", "true", "none | blocks"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.key + " = " + c.value);
    const std::string section = c.key.substr(0, c.key.find('.')), name = c.key.substr(c.key.find('.') + 1);
    const std::string yaml = section == "data" ? "data:\n  " + name + ": " + c.value + "\n"
                                               : base_with(section + ":\n  " + name + ": " + c.value + "\n");
    const std::string shown = c.value.empty() ? "(empty)" : c.value;
    expect_mentions(parse_error(yaml), {"configs/x.yaml:", c.key + " = " + (c.value == "[4]" ? "[4]" : shown), c.expect});
    if (c.value.find_first_of("[{") != std::string::npos) continue;  // not a scalar: overrides refuse it
    const std::string ov = c.key + "=" + c.value;
    expect_mentions(parse_error(base_with(""), {ov}), {"configs/x.yaml", "override '" + ov + "'", c.expect});
  }
}

TEST(Config, HeadsMustDivideEmbedding) {
  const std::string msg = parse_error(base_with("model:\n  n_embd: 16\n  n_head: 5\n"));
  expect_mentions(msg, {"configs/x.yaml:5: model.n_head = 5: n_embd (16) is not divisible by n_head (5)", "hint:"});
  // n_head left at its default is not the culprit: n_embd is named.
  expect_mentions(parse_error(base_with("model:\n  n_head: 4\n"), {"model.n_embd=18"}),
                  {"override 'model.n_embd=18'", "n_embd (18) is not divisible by n_head (4)"});
}

// model.qisa_value: shared exists only for attention qisa; the default is per_head (the paper's).
TEST(Config, SharedQisaValueOnlyWithAttentionQisa) {
  EXPECT_EQ(parse_config(base_with(""), "x.yaml").model.qisa_value, QisaValue::per_head);
  EXPECT_EQ(parse_config(base_with("model:\n  qisa_value: shared\n"), "x.yaml").model.qisa_value, QisaValue::shared);
  EXPECT_EQ(parse_config(base_with("model:\n  attention: csa\n  qisa_value: per_head\n"), "x.yaml").model.qisa_value,
            QisaValue::per_head);
  expect_mentions(parse_error(base_with("model:\n  attention: csa\n  qisa_value: shared\n")),
                  {"configs/x.yaml:5: model.qisa_value = shared", "attention is csa", "hint:", "model.attention=qisa"});
  expect_mentions(parse_error(base_with("model:\n  qisa_value: shared\n"), {"model.attention=qisa_a"}),
                  {"configs/x.yaml:4: model.qisa_value = shared", "attention is qisa_a", "circuit"});
  EXPECT_STREQ(to_string(QisaValue::shared), "shared");
  EXPECT_STREQ(to_string(QisaValue::per_head), "per_head");
}

// model.qisa_score: paper (default, SPEC §1.1) | gaussian, for qisa and qisa_a; its scale
// model.qisa_score_scale: 0 = 1/sqrt(head size), only with gaussian.
TEST(Config, QisaScoreAndItsScale) {
  const Config paper = parse_config(base_with(""), "x.yaml");
  EXPECT_EQ(paper.model.qisa_score, QisaScore::paper);
  EXPECT_EQ(paper.model.attn_score().kind, QisaScore::paper);
  const Config g = parse_config(base_with("model:\n  qisa_score: gaussian\n"), "x.yaml");
  EXPECT_EQ(g.model.attn_score().kind, QisaScore::gaussian);
  EXPECT_FLOAT_EQ(g.model.attn_score().scale, static_cast<float>(1.0 / std::sqrt(g.model.head_dim())));
  const Config gs = parse_config(base_with("model:\n  qisa_score: gaussian\n  qisa_score_scale: 2.5\n"), "x.yaml");
  EXPECT_FLOAT_EQ(gs.model.attn_score().scale, 2.5f);
  EXPECT_NO_THROW(parse_config(base_with("model:\n  qisa_score: gaussian\n"), "x.yaml", {"model.attention=qisa_a"}));
  expect_mentions(parse_error(base_with("model:\n  qisa_score: gaussian\n"), {"model.attention=csa"}),
                  {"model.qisa_score = gaussian", "attention is csa", "hint:"});
  expect_mentions(parse_error(base_with("model:\n  qisa_score_scale: 2\n")),
                  {"model.qisa_score_scale = 2", "the score is paper", "model.qisa_score=gaussian"});
  expect_mentions(parse_error(base_with("model:\n  qisa_score: gaussian\n  qisa_score_scale: -1\n")),
                  {"model.qisa_score_scale = -1", "from 0 to 1e6"});
  expect_mentions(parse_error(base_with("model:\n  qisa_score: rbf\n")), {"model.qisa_score", "paper | gaussian"});
  EXPECT_NO_THROW(parse_config(base_with("model:\n  qisa_score: gaussian\n"), "x.yaml", {"train.device=cuda"}));
  EXPECT_STREQ(to_string(QisaScore::gaussian), "gaussian");
}

TEST(Config, OverridesApplyBeforeValidation) {
  const Config c = parse_config(kValid, "configs/x.yaml",
                                {"model.n_layer=4", "train.lr=1e-4", "data.corpus=/x.h5", "model.attention=csa",
                                 "model.n_head=4", "model.n_head=6", "log.dir=runs/a b"});
  EXPECT_EQ(c.model.n_layer, 4);
  EXPECT_DOUBLE_EQ(c.train.lr, 1e-4);
  EXPECT_EQ(c.data.corpus, "/x.h5");
  EXPECT_EQ(c.model.attention, AttentionKind::csa);
  EXPECT_EQ(c.model.n_head, 6);  // the last override wins
  EXPECT_EQ(c.log.dir, "runs/a b");
  EXPECT_EQ(c.model.block_size, 32);  // untouched keys keep the file's values
  // An override can make an invalid file valid (n_head 5 does not divide 24, 6 does).
  EXPECT_NO_THROW(parse_config(base_with("model:\n  n_embd: 24\n  n_head: 5\n"), "x.yaml", {"model.n_head=6"}));
}

TEST(Config, MalformedOverrides) {
  for (std::string ov : {"model.n_layer4", "=4", "n_layer=4", ".n_layer=4", "model.=4", "model=4"}) {
    SCOPED_TRACE(ov);
    expect_mentions(parse_error(kValid, {ov}), {"configs/x.yaml", "override '" + ov + "'", "malformed", "SECTION.KEY=VALUE"});
  }
  expect_mentions(parse_error(kValid, {"model.n_layr=4"}),
                  {"override 'model.n_layr=4'", "unknown key 'model.n_layr'", "did you mean 'model.n_layer'?"});
  expect_mentions(parse_error(kValid, {"modl.n_layer=4"}), {"override 'modl.n_layer=4'", "did you mean 'model'?"});
  expect_mentions(parse_error(kValid, {"log.dir=[a, b]"}), {"override 'log.dir=[a, b]'", "not a single value"});
  expect_mentions(parse_error(kValid, {"log.dir=[a"}), {"override 'log.dir=[a'", "not a YAML scalar"});
}

// A config with every key away from its default, including awkward strings.
Config unusual_config() {
  const char* yaml = R"(model:
  block_size: 7
  n_embd: 30
  n_head: 5
  n_layer: 3
  attention: qisa
  qisa_value: shared
  mask: reference
  activation: gelu
  dropout: 0.1
  pauli_identity_prob: 0.75
  vocab_multiple: 64
data:
  corpus: "data/ünï cödé: #1 \"q\" \\ end"
train:
  batch_size: 96
  micro_batch_size: 32
  steps: 12345
  lr: 0.1234567890123
  lr_schedule: cosine
  warmup_steps: 17
  min_lr: 1e-7
  beta1: 0.85
  beta2: 0.98
  eps: 1e-10
  weight_decay: 0
  weight_decay_on: matrices
  grad_clip: 1.5
  precision: bf16
  bf16_rounding: stochastic
  tf32: true
  on_nonfinite: skip
  spike_factor: 3.5
  spike_warmup: 7
  on_spike: skip
  seed: 18446744073709551615
  threads: 2
  recompute: blocks
  device: cuda
eval:
  every: 0
  windows: 3
log:
  every: 1
  dir: "runs/x y"
dist:
  comm: nccl
  timeout_s: 7.5
checkpoint:
  on_error: warn
)";
  return parse_config(yaml, "unusual.yaml");
}

TEST(Config, ToYamlRoundTrips) {
  const Config c = unusual_config();
  EXPECT_EQ(c.train.seed, 18446744073709551615ull);
  EXPECT_EQ(c.data.corpus, "data/ünï cödé: #1 \"q\" \\ end");
  const std::string yaml = c.to_yaml();
  const Config back = parse_config(yaml, c.source);
  EXPECT_EQ(back, c) << yaml;
  EXPECT_EQ(back.to_yaml(), yaml);  // stable text
  // Defaults are written too: every key appears, in config_keys() order.
  const Config d = parse_config("data:\n  corpus: c.h5\n", "d.yaml");
  const std::string dy = d.to_yaml();
  size_t pos = 0;
  for (const auto& key : config_keys()) {
    const std::string name = key.substr(key.find('.') + 1) + ":";
    const size_t at = dy.find("  " + name, pos);
    ASSERT_NE(at, std::string::npos) << key << " missing or out of order in:\n" << dy;
    pos = at;
  }
  EXPECT_EQ(parse_config(dy, "d.yaml"), d);
  EXPECT_EQ(config_keys().size(), 54u);
}

// The keys that were strings compared at run time are enums, parsed once; to_yaml writes their names.
TEST(Config, ChoicesAreParsedIntoEnums) {
  const Config c = unusual_config();
  EXPECT_EQ(c.train.recompute, Recompute::blocks);
  EXPECT_EQ(c.train.on_nonfinite, OnNonfinite::skip);
  EXPECT_EQ(c.train.on_spike, OnSpike::skip);
  EXPECT_EQ(c.checkpoint.on_error, OnCheckpointError::warn);
  EXPECT_EQ(c.train.device, Device::cuda);
  EXPECT_EQ(c.dist.comm, CommKind::nccl);
  EXPECT_EQ(c.train.precision, Precision::bf16);
  EXPECT_EQ(c.train.bf16_rounding, Bf16Rounding::stochastic);
  EXPECT_TRUE(c.train.tf32);
  const Config d = parse_config(base_with(""), "d.yaml");
  EXPECT_FALSE(d.train.tf32);
  // a boolean key takes true or false only, and says so
  expect_mentions(parse_error(base_with("train:\n  tf32: yes\n")), {"train.tf32", "true | false"});
  EXPECT_EQ(d.train.recompute, Recompute::none);
  EXPECT_EQ(d.train.on_nonfinite, OnNonfinite::stop);
  EXPECT_EQ(d.train.on_spike, OnSpike::warn);
  EXPECT_EQ(d.checkpoint.on_error, OnCheckpointError::stop);
  EXPECT_EQ(d.train.device, Device::cpu);
  EXPECT_EQ(d.dist.comm, CommKind::automatic);
  EXPECT_EQ(d.train.precision, Precision::fp32);
  EXPECT_EQ(d.train.bf16_rounding, Bf16Rounding::nearest);
  const std::string y = c.to_yaml();
  for (const char* line : {"  recompute: blocks", "  on_nonfinite: skip", "  on_spike: skip", "  on_error: warn",
                           "  device: cuda", "  comm: nccl", "  precision: bf16", "  bf16_rounding: stochastic"})
    EXPECT_NE(y.find(line), std::string::npos) << line << " in\n" << y;
  EXPECT_NE(d.to_yaml().find("  comm: auto"), std::string::npos);
}

// train.device: cpu | cuda and dist.comm: auto | none | mpi | nccl; nccl moves device buffers,
// so it needs train.device: cuda.
TEST(Config, DeviceAndCommunicator) {
  for (const char* comm : {"auto", "none", "mpi"})
    for (const char* device : {"cpu", "cuda"}) {
      SCOPED_TRACE(std::string(comm) + " " + device);
      const Config c = parse_config(base_with(""), "x.yaml", {std::string("dist.comm=") + comm,
                                                              std::string("train.device=") + device});
      EXPECT_STREQ(to_string(c.dist.comm), comm);
      EXPECT_STREQ(to_string(c.train.device), device);
    }
  EXPECT_EQ(parse_config(base_with("train:\n  device: cuda\ndist:\n  comm: nccl\n"), "x.yaml").dist.comm,
            CommKind::nccl);
  expect_mentions(parse_error(base_with("dist:\n  comm: nccl\n")),
                  {"configs/x.yaml:4: dist.comm = nccl: nccl needs train.device: cuda (train.device is cpu)", "hint:"});
  expect_mentions(parse_error(base_with("train:\n  device: cpu\n"), {"dist.comm=nccl"}),
                  {"override 'dist.comm=nccl'", "nccl needs train.device: cuda"});
}

// dist.timeout_s: seconds any rank waits for a collective (and NCCL init) before it aborts the job.
TEST(Config, DistTimeout) {
  const Config d = parse_config(base_with(""), "d.yaml");
  EXPECT_EQ(d.dist.timeout_s, 300.0);
  EXPECT_EQ(DistConfig{}.timeout_s, 300.0);
  EXPECT_EQ(parse_config(base_with("dist:\n  timeout_s: 42.5\n"), "x.yaml").dist.timeout_s, 42.5);
  EXPECT_EQ(parse_config(base_with("dist:\n  timeout_s: 600\n"), "x.yaml").dist.timeout_s, 600.0);
  EXPECT_EQ(parse_config(base_with(""), "x.yaml", {"dist.timeout_s=0.25"}).dist.timeout_s, 0.25);
  EXPECT_EQ(parse_config(base_with(""), "x.yaml", {"dist.timeout_s=86400"}).dist.timeout_s, 86400.0);
  EXPECT_EQ(unusual_config().dist.timeout_s, 7.5);
  // the error names the file and line, the key, the value and a hint
  expect_mentions(parse_error(base_with("dist:\n  timeout_s: 0\n")),
                  {"configs/x.yaml:4: dist.timeout_s = 0: must be > 0 (seconds)", "the default is 300.0"});
  expect_mentions(parse_error(base_with("dist:\n  timeout_s: 90000\n")),
                  {"configs/x.yaml:4: dist.timeout_s = 90000: must be at most 86400 seconds (a day)"});
  expect_mentions(parse_error(base_with("dist:\n  timeout: 60\n")),
                  {"unknown key 'dist.timeout'", "did you mean 'dist.timeout_s'?"});
  // to_yaml writes it with the other dist keys
  const std::string y = d.to_yaml();
  const size_t bucket = y.find("  bucket_mb: 25.0"), timeout = y.find("  timeout_s: 300.0");
  ASSERT_NE(timeout, std::string::npos) << y;
  EXPECT_LT(bucket, timeout);
  EXPECT_LT(timeout, y.find("checkpoint:"));
  // A config written before the key (a checkpoint's or a run's config.yaml) has no timeout_s line:
  // it loads, with the default.
  std::string old = unusual_config().to_yaml();
  const size_t line = old.find("  timeout_s: ");
  ASSERT_NE(line, std::string::npos);
  old.erase(line, old.find('\n', line) + 1 - line);
  ASSERT_EQ(old.find("timeout_s"), std::string::npos);
  const Config before = parse_config(old, "checkpoint.h5:config");
  EXPECT_EQ(before.dist.timeout_s, 300.0);
  Config expect = unusual_config();
  expect.source = before.source;
  expect.dist.timeout_s = 300;
  EXPECT_EQ(before, expect);
}

TEST(Config, ToYamlMentionsVocabSizeAsAComment) {
  Config c = parse_config("data:\n  corpus: c.h5\n", "d.yaml");
  c.model.vocab_size = 65;
  const std::string y = c.to_yaml();
  EXPECT_NE(y.find("# vocab_size: 65"), std::string::npos) << y;
  Config back = parse_config(y, "d.yaml");
  EXPECT_EQ(back.model.vocab_size, 0);
  back.model.vocab_size = 65;
  EXPECT_EQ(back, c);
}

CorpusInfo corpus(int64_t train, int64_t val) {
  CorpusInfo info;
  info.path = "data/tiny.h5";
  info.vocab_size = 42;
  info.tokenizer = "char";
  info.format_version = kCorpusFormatVersion;
  info.train_tokens = train;
  info.val_tokens = val;
  return info;
}

TEST(Config, CheckAgainstCorpus) {
  Config c = parse_config(base_with("model:\n  block_size: 64\n"), "configs/x.yaml");
  check_against_corpus(c, corpus(65, 65));  // exactly block_size + 1 tokens: fine
  EXPECT_EQ(c.model.vocab_size, 42);

  Config big = parse_config(base_with("model:\n  block_size: 64\n"), "configs/x.yaml");
  expect_mentions(error_of([&] { check_against_corpus(big, corpus(64, 1000)); }),
                  {"configs/x.yaml", "model.block_size = 64", "65", "train split", "data/tiny.h5", "has 64"});
  expect_mentions(error_of([&] { check_against_corpus(big, corpus(1000, 10)); }),
                  {"configs/x.yaml", "model.block_size = 64", "val split", "data/tiny.h5", "has 10"});
  expect_mentions(error_of([&] { check_against_corpus(big, corpus(1000, 0)); }),
                  {"configs/x.yaml", "model.block_size = 64", "val split", "data/tiny.h5", "is empty", "--val-fraction"});
  EXPECT_EQ(big.model.vocab_size, 0);  // untouched on failure

  Config other = c;  // vocab_size 42 already set (e.g. from a model file)
  CorpusInfo different = corpus(1000, 1000);
  different.vocab_size = 50;
  expect_mentions(error_of([&] { check_against_corpus(other, different); }), {"vocab_size 42", "vocab_size 50"});
}

TEST(Config, VocabMultiplePadsTheCorpusVocabulary) {
  EXPECT_EQ(padded_vocab_size(50257, 128), 50304);  // GPT-2: ceil(50257 / 128) * 128
  EXPECT_EQ(padded_vocab_size(50257, 1), 50257);
  EXPECT_EQ(padded_vocab_size(50304, 128), 50304);  // already a multiple
  EXPECT_EQ(padded_vocab_size(42, 64), 64);
  EXPECT_EQ(parse_config(base_with(""), "x.yaml").model.vocab_multiple, 1);  // default: no padding

  Config c = parse_config(base_with("model:\n  block_size: 64\n  vocab_multiple: 64\n"), "configs/x.yaml");
  check_against_corpus(c, corpus(1000, 1000));  // 42 token ids
  EXPECT_EQ(c.model.vocab_size, 64);
  EXPECT_NE(c.to_yaml().find("# vocab_size: 64  (the corpus's, rounded up to vocab_multiple"), std::string::npos);
  check_against_corpus(c, corpus(1000, 1000));  // a model file's padded 64 matches the corpus's 42
  EXPECT_EQ(c.model.vocab_size, 64);
  Config other = c;
  CorpusInfo different = corpus(1000, 1000);
  different.vocab_size = 65;  // pads to 128
  expect_mentions(error_of([&] { check_against_corpus(other, different); }),
                  {"vocab_size 64", "vocab_size 65", "(128 with model.vocab_multiple 64)"});
}

TEST(Config, QubitsAndNames) {
  auto qubits = [](int c) { ModelConfig m; m.n_embd = c; return m.n_qubits(); };
  EXPECT_EQ(qubits(1), 1);
  EXPECT_EQ(qubits(2), 1);
  EXPECT_EQ(qubits(3), 2);
  EXPECT_EQ(qubits(4), 2);
  EXPECT_EQ(qubits(16), 4);
  EXPECT_EQ(qubits(17), 5);
  EXPECT_EQ(qubits(384), 9);
  EXPECT_STREQ(to_string(AttentionKind::qisa_a), "qisa_a");
  EXPECT_STREQ(to_string(AttentionKind::csa), "csa");
  EXPECT_STREQ(to_string(AttnMask::reference), "reference");
  EXPECT_STREQ(to_string(Activation::gelu), "gelu");
}

}  // namespace
}  // namespace qisa
