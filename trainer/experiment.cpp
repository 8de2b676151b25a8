#include "trainer/experiment.h"

#include <sys/file.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/atomic_file.h"
#include "io/build_info.h"
#include "io/corpus.h"
#include "io/metrics_log.h"
#include "kernels/error.h"
#include "trainer/evaluator.h"
#include "trainer/flops.h"
#include "trainer/generate.h"
#include "trainer/model_io.h"
#include "trainer/probe.h"
#include "trainer/trainer.h"

namespace qisa {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string result_path(const GridCell& c) { return (fs::path(c.dir) / "result.json").string(); }
std::string final_path(const GridCell& c) { return (fs::path(c.dir) / "final.h5").string(); }
std::string failure_path(const GridCell& c) { return c.dir + ".failed"; }

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

double median(std::vector<double> v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// NaN (not measured) is stored as null.
json number_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }
double number_or_nan(const json& j) { return j.is_number() ? j.get<double>() : std::numeric_limits<double>::quiet_NaN(); }

}  // namespace

std::string CellResult::to_json() const {
  json vals = json::object();
  for (const auto& [k, v] : values) vals[k] = v;
  return json{{"cell", cell},
              {"group", group},
              {"seed", seed},
              {"values", vals},
              {"steps", steps},
              {"val_ce", val_ce},
              {"val_cer", val_cer},
              {"val_wer", val_wer},
              {"gen_cer", number_or_null(gen_cer)},
              {"train_ms_per_step", number_or_null(train_ms_per_step)},
              {"infer_ms_per_batch", infer_ms_per_batch},
              {"infer_batch", infer_batch},
              {"leak_max_abs_delta", number_or_null(leak_max_abs_delta)},
              {"threads", threads},
              {"attention", attention},
              {"mask", mask},
              {"qisa_value", qisa_value},
              {"n_layer", n_layer},
              {"n_head", n_head},
              {"n_embd", n_embd},
              {"block_size", block_size},
              {"params", params},
              {"tokens", tokens},
              {"train_flops", number_or_null(train_flops)},
              {"train_wall_s", number_or_null(train_wall_s)},
              {"git_commit", git_commit}}
      .dump(2);
}

CellResult CellResult::from_json(const std::string& text, const std::string& source) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  QISA_CHECK(j.is_object(), "cell result '" + source + "' is not a JSON object", "delete it to measure the cell again");
  CellResult r;
  try {
    r.cell = j.at("cell").get<std::string>();
    r.group = j.at("group").get<std::string>();
    r.seed = j.at("seed").get<uint64_t>();
    for (const auto& [k, v] : j.at("values").items()) r.values.emplace_back(k, v.get<std::string>());
    r.steps = j.at("steps").get<int64_t>();
    r.val_ce = number_or_nan(j.at("val_ce"));  // null: NaN (a diverged model)
    r.val_cer = number_or_nan(j.at("val_cer"));
    r.val_wer = number_or_nan(j.at("val_wer"));
    r.gen_cer = number_or_nan(j.at("gen_cer"));
    r.train_ms_per_step = number_or_nan(j.at("train_ms_per_step"));
    r.infer_ms_per_batch = j.at("infer_ms_per_batch").get<double>();
    r.infer_batch = j.at("infer_batch").get<int64_t>();
    r.leak_max_abs_delta = number_or_nan(j.at("leak_max_abs_delta"));
    r.threads = j.at("threads").get<int>();
    // Facts of the run: absent from results written before them (measured again by --remeasure).
    r.attention = j.value("attention", "");
    r.mask = j.value("mask", "");
    r.qisa_value = j.value("qisa_value", "");
    r.n_layer = j.value("n_layer", 0);
    r.n_head = j.value("n_head", 0);
    r.n_embd = j.value("n_embd", 0);
    r.block_size = j.value("block_size", 0);
    r.params = j.value("params", int64_t{0});
    r.tokens = j.value("tokens", int64_t{0});
    r.train_flops = j.contains("train_flops") ? number_or_nan(j["train_flops"]) : r.train_flops;
    r.train_wall_s = j.contains("train_wall_s") ? number_or_nan(j["train_wall_s"]) : r.train_wall_s;
    r.git_commit = j.value("git_commit", "");
  } catch (const json::exception& e) {
    throw Error("cell result '" + source + "' is incomplete: " + e.what(), "delete it to measure the cell again");
  }
  return r;
}

Config cell_config(const ExperimentGrid& grid, const GridCell& cell) {
  Config cfg = load_config(grid.base, cell.overrides);
  check_against_corpus(cfg, read_corpus_info(cfg.data.corpus));
  return cfg;
}

const char* to_string(CellState s) {
  switch (s) {
    case CellState::pending: return "pending";
    case CellState::started: return "started";
    case CellState::trained: return "trained";
    case CellState::finished: return "finished";
    case CellState::failed: return "failed";
  }
  return "?";
}

std::string cell_failure(const GridCell& cell) {
  std::error_code ec;
  if (!fs::exists(failure_path(cell), ec)) return "";
  std::string text = read_text(failure_path(cell));
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text.empty() ? "(no reason recorded)" : text;
}

void record_cell_failure(const GridCell& cell, const std::string& error) {
  std::string line = error;
  std::replace(line.begin(), line.end(), '\n', ' ');
  std::error_code ec;
  fs::create_directories(fs::path(cell.dir).parent_path(), ec);
  write_text_atomic(failure_path(cell), line + "\n");
}

CellState cell_state(const ExperimentGrid& grid, const GridCell& cell) {
  const int64_t steps = load_config(grid.base, cell.overrides).train.steps;
  std::error_code ec;
  const bool has_final = fs::exists(final_path(cell), ec);
  if (fs::exists(result_path(cell), ec)) {  // final.h5 may have been removed to save space: the result stands
    try {
      if (CellResult::from_json(read_text(result_path(cell)), result_path(cell)).steps == steps) return CellState::finished;
    } catch (const Error&) {  // unreadable: measured again
    }
  }
  if (!cell_failure(cell).empty()) return CellState::failed;
  if (has_final && read_model_file(final_path(cell)).step == steps) return CellState::trained;
  if (fs::exists(fs::path(cell.dir) / "metrics.jsonl", ec) || fs::exists(fs::path(cell.dir) / "checkpoints", ec))
    return CellState::started;
  return CellState::pending;
}

// What the cell trained: the model file's config (its padded vocabulary: what the model computes).
static void describe_run(CellResult& r, const LoadedModel& m) {
  const ModelConfig& mc = m.config.model;
  r.attention = to_string(mc.attention);
  r.mask = to_string(mc.mask);
  r.qisa_value = mc.attention == AttentionKind::qisa ? to_string(mc.qisa_value) : "";
  r.n_layer = mc.n_layer;
  r.n_head = mc.n_head;
  r.n_embd = mc.n_embd;
  r.block_size = mc.block_size;
  r.params = m.model->num_params();
  r.tokens = m.step * m.config.train.batch_size * mc.block_size;
  r.train_flops = forward_flops(mc).training() * static_cast<double>(r.tokens);
  r.train_wall_s = r.train_ms_per_step * static_cast<double>(m.step) / 1000.0;
  r.git_commit = git_commit();
}

CellResult measure_cell(const ExperimentGrid& grid, const GridCell& cell, Backend& backend) {
  const Config cfg = cell_config(grid, cell);
  const GridEval& ev = grid.eval;
  const int64_t batch = ev.batch > 0 ? ev.batch : ev.windows;
  LoadedModel m = load_model(final_path(cell), backend, batch);
  QISA_CHECK(m.step == cfg.train.steps,
             "cell " + cell.name + ": '" + final_path(cell) + "' is at step " + std::to_string(m.step) + ", the cell trains " +
                 std::to_string(cfg.train.steps) + " steps",
             "run the cell again (it resumes from its checkpoints)");
  const std::vector<int32_t> val = read_split(cfg.data.corpus, "val");
  const Vocabulary vocab = read_vocabulary(cfg.data.corpus);

  CellResult r;
  r.cell = cell.name;
  r.group = cell.group;
  r.seed = cell.seed;
  r.values = cell.values;
  r.steps = m.step;
  r.threads = backend.threads();
  const EvalResult e = evaluate(*m.model, val, ev.windows, vocab);
  r.val_ce = e.ce;
  r.val_cer = e.cer;
  r.val_wer = e.wer;
  r.infer_batch = e.batch;
  std::vector<double> ms;  // the first pass above warmed the buffers and caches up; it is not timed
  for (int64_t i = 0; i < ev.timing_repeats; ++i) ms.push_back(evaluate(*m.model, val, ev.windows, vocab).ms_per_batch);
  r.infer_ms_per_batch = median(ms);
  if (ev.gen_prompts > 0) r.gen_cer = generation_cer(*m.model, val, ev.gen_prompts, ev.gen_tokens, vocab).cer;
  if (ev.probe_windows > 0) {
    const int T = cfg.model.block_size;
    std::vector<std::vector<int32_t>> windows;
    for (int64_t w = 0; w < ev.probe_windows && (w + 1) * T <= static_cast<int64_t>(val.size()); ++w)
      windows.emplace_back(val.begin() + w * T, val.begin() + (w + 1) * T);
    r.leak_max_abs_delta = probe_leak(*m.model, windows).max_abs_delta;
  }
  r.train_ms_per_step = median(read_metrics((fs::path(cell.dir) / "metrics.jsonl").string()).step_ms);
  describe_run(r, m);
  write_text_atomic(result_path(cell), r.to_json() + "\n");
  std::error_code ec;
  fs::remove(failure_path(cell), ec);  // finished: an earlier failure is history
  return r;
}

bool run_cell(const ExperimentGrid& grid, const GridCell& cell, Backend& backend, Communicator& comm,
              Collectives& coll, bool quiet, bool remeasure) {
  int64_t state[2] = {0, 0};  // the cell's state; whether its model file is there
  if (comm.rank() == 0) state[0] = static_cast<int64_t>(cell_state(grid, cell)), state[1] = fs::exists(final_path(cell));
  comm.broadcast(state, sizeof state, 0);
  const auto s = static_cast<CellState>(state[0]);
  if (s == CellState::finished && !remeasure) return true;
  if (s == CellState::finished && !state[1])  // every rank: they all learnt it from rank 0
    throw CollectiveError("cell " + cell.name + " cannot be measured again: its model '" + final_path(cell) +
                              "' was removed (its result.json stands)",
                          "to measure it again, delete " + result_path(cell) + " and run the cell: it trains again");
  if (s != CellState::trained && s != CellState::finished) {
    Config cfg;
    try {  // every rank reads the same files: they all fail here together
      cfg = cell_config(grid, cell);
    } catch (const Error& e) {
      throw CollectiveError(e.what(), e.hint());
    }
    RunOptions opt;
    opt.quiet = quiet;
    const RunSummary s = run_training(cfg, backend, comm, coll, opt);
    if (s.stopped_by) return false;
  }
  run_on_root(comm, [&] { measure_cell(grid, cell, backend); });  // rank 0 measures; all learn its verdict
  return true;
}

// ------------------------------------------------------------------ one run at a time

namespace {

std::string own_command() {
  std::string cmd = read_text("/proc/self/cmdline");
  std::replace(cmd.begin(), cmd.end(), '\0', ' ');
  while (!cmd.empty() && cmd.back() == ' ') cmd.pop_back();
  return cmd;
}

// What the lock file at `path` says about its holder ("pid N: command"), "" when it names no
// live process (a --cell run writes nothing into the grid's lock).
std::string live_holder(const std::string& path) {
  const std::string text = read_text(path);
  long pid = 0;
  if (std::sscanf(text.c_str(), "pid %ld:", &pid) != 1 || pid <= 0) return "";
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM) return "";
  return text.substr(0, text.find('\n'));
}

// The descriptor of `path` (created when missing) locked shared or exclusive, or -1 when
// another process holds a conflicting lock.
int try_lock(const std::string& path, bool exclusive) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  QISA_CHECK(fd >= 0, "cannot open the lock file '" + path + "': " + std::strerror(errno),
             "the experiment's out: folder must be writable");
  if (::flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0) return fd;
  const int err = errno;
  ::close(fd);
  QISA_CHECK(err == EWOULDBLOCK, "cannot lock '" + path + "': " + std::strerror(err),
             "the experiment's out: folder must be on a file system with flock(2)");
  return -1;
}

void write_holder(int fd) {
  const std::string who = "pid " + std::to_string(::getpid()) + ": " + own_command() + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, who.data(), who.size(), 0) != static_cast<ssize_t>(who.size())) {
    // only informative: the lock itself is held
  }
}

}  // namespace

GridLock::GridLock(const ExperimentGrid& grid, const GridCell* only_cell) {
  std::error_code ec;
  const fs::path locks = fs::path(grid.out) / ".locks";
  fs::create_directories(locks, ec);
  QISA_CHECK(fs::is_directory(locks), "cannot create '" + locks.string() + "': " + ec.message(),
             "choose a writable out: in the grid file");
  const std::string grid_lock = (fs::path(grid.out) / ".lock").string();
  const char* hint =
      "wait for it to end (qisa experiment GRID --list shows the cells' progress) or stop it: two runs would train the "
      "same cells at once. The lock goes with the process that holds it, however it ends";
  grid_fd_ = try_lock(grid_lock, only_cell == nullptr);
  if (grid_fd_ < 0) {
    const std::string who = live_holder(grid_lock);
    throw Error("experiment folder '" + grid.out + "' is in use by another qisa experiment (" +
                    (who.empty() ? std::string("a --cell run, e.g. a Slurm array task") : who) + ")",
                hint);
  }
  if (!only_cell) {
    write_holder(grid_fd_);
    return;
  }
  const std::string cell_lock = (locks / only_cell->name).string();
  cell_fd_ = try_lock(cell_lock, true);
  if (cell_fd_ < 0) {
    const std::string who = live_holder(cell_lock);
    ::close(grid_fd_);
    grid_fd_ = -1;
    throw Error("cell " + only_cell->name + " of '" + grid.out + "' is being run by another qisa experiment" +
                    (who.empty() ? std::string() : " (" + who + ")"),
                hint);
  }
  write_holder(cell_fd_);
}

GridLock::~GridLock() {
  for (int fd : {cell_fd_, grid_fd_}) {
    if (fd < 0) continue;
    if (::ftruncate(fd, 0) != 0) {  // released: name no holder any more (informative only)
    }
    ::close(fd);
  }
}

}  // namespace qisa
