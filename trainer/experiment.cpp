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
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/atomic_file.h"
#include "io/build_info.h"
#include "io/corpus.h"
#include "io/metrics_log.h"
#include "io/plot.h"
#include "kernels/error.h"
#include "trainer/evaluator.h"
#include "trainer/flops.h"
#include "trainer/generate.h"
#include "trainer/model_io.h"
#include "trainer/probe.h"
#include "trainer/stats.h"
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

// ------------------------------------------------------------------ report

namespace {

struct Metric {
  const char* column;  // results.csv
  const char* label;   // results.md
  double CellResult::*field;
  bool time;           // ratio stated as "x the time" (else "x lower" / "x higher")
};

const std::vector<Metric>& metrics() {
  static const std::vector<Metric> m = {
      {"val_ce", "val CE (nats)", &CellResult::val_ce, false},
      {"val_cer", "val CER", &CellResult::val_cer, false},
      {"val_wer", "val WER", &CellResult::val_wer, false},
      {"gen_cer", "gen CER", &CellResult::gen_cer, false},
      {"train_ms_per_step", "train ms/step", &CellResult::train_ms_per_step, true},
      {"infer_ms_per_batch", "inference ms/batch", &CellResult::infer_ms_per_batch, true},
      {"leak_max_abs_delta", "leak max abs delta", &CellResult::leak_max_abs_delta, false},
  };
  return m;
}

std::string fmt(double v, const char* f = "%.4g") {
  if (!std::isfinite(v)) return "n/a";
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string csv_number(double v) { return std::isfinite(v) ? fmt(v, "%.17g") : ""; }

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string show(const Stat& s) {
  if (s.n == 0) return "n/a";
  return s.n > 1 ? fmt(s.mean) + " ± " + fmt(s.sd) : fmt(s.mean);
}

// "12.8x lower" / "1.3x higher" (quality), "2.6x" (time): of the means, as the paper puts it.
std::string ratio(double value, double base, bool time) {
  if (!std::isfinite(value) || !std::isfinite(base) || value <= 0 || base <= 0) return "n/a";
  if (time) return fmt(value / base, "%.2f") + "x";
  const double r = value <= base ? base / value : value / base;
  const std::string x = fmt(r, r >= 10 ? "%.1f" : "%.2f") + "x";
  if (x == "1.00x") return "1.00x (level)";
  return x + (value <= base ? " lower" : " higher");
}

// "-0.012 (p = 0.03)": the difference of the means and Welch's p ("p n/a" with fewer than two seeds).
std::string difference(const Stat& a, const Stat& b) {
  const Welch w = welch_test(a, b);
  if (!std::isfinite(w.diff)) return "n/a";
  return fmt(w.diff, "%+.3g") + " (p " + (std::isfinite(w.p) ? (w.p < 0.001 ? std::string("< 0.001") : "= " + fmt(w.p, "%.2g")) : std::string("n/a")) + ")";
}

std::map<std::string, std::vector<const CellResult*>> by_group(const std::vector<CellResult>& results) {
  std::map<std::string, std::vector<const CellResult*>> g;
  for (const auto& r : results) g[r.group].push_back(&r);
  return g;
}

Stat group_stat(const std::vector<const CellResult*>& rows, double CellResult::*field) {
  std::vector<double> v;
  for (const CellResult* r : rows) v.push_back(r->*field);
  return stat(v);
}

// ---- the ladder: val CE against training FLOPs, by rung

struct LadderPoint {
  std::string panel, rung, series, group;
  Stat ce, flops;
};

std::string value_in(const KeyValues& kv, const std::string& key) {
  for (const auto& [k, v] : kv)
    if (k == key) return v;
  return "";
}

// One point per finished combination, in grid order.
std::vector<LadderPoint> ladder_points(const ExperimentGrid& grid, const std::vector<CellResult>& results) {
  const auto groups = by_group(results);
  std::vector<LadderPoint> out;
  for (const std::string& g : grid.groups()) {
    auto it = groups.find(g);
    if (it == groups.end()) continue;
    const KeyValues kv = grid.values_of(g);
    KeyValues rest;
    for (const auto& [k, v] : kv)
      if (k != grid.ladder.rungs && k != grid.ladder.panels) rest.emplace_back(k, v);
    out.push_back({value_in(kv, grid.ladder.panels), value_in(kv, grid.ladder.rungs), grid.group_of(rest), g,
                   group_stat(it->second, &CellResult::val_ce), group_stat(it->second, &CellResult::train_flops)});
  }
  return out;
}

std::vector<std::string> unique(const std::vector<LadderPoint>& pts, std::string LadderPoint::*field) {
  std::vector<std::string> out;
  for (const auto& p : pts)
    if (std::find(out.begin(), out.end(), p.*field) == out.end()) out.push_back(p.*field);
  return out;
}

std::string ladder_markdown(const ExperimentGrid& grid, const std::vector<CellResult>& results) {
  const auto groups = by_group(results);
  const std::vector<LadderPoint> pts = ladder_points(grid, results);
  std::string md = "## Ladder: val CE by " + grid.ladder.rungs + "\n\n";
  if (pts.empty()) return md + "No finished cell yet.\n";
  md += "Val CE (nats), mean ± std over seeds (n), for each value of " + grid.ladder.rungs +
        "; in brackets the difference from the baseline at the same rung and Welch's two-sided p. Training FLOPs are "
        "tokens x training FLOPs per token (trainer/flops.h), of the rung's first column. The plot (ladder.png) puts each "
        "combination at its own FLOPs.\n";
  const std::vector<std::string> series = unique(pts, &LadderPoint::series);
  for (const std::string& panel : unique(pts, &LadderPoint::panel)) {
    md += "\n" + (panel.empty() ? std::string() : "### " + grid.ladder.panels + " = " + panel + "\n\n");
    md += "| " + grid.ladder.rungs + " | train FLOPs";
    for (const auto& s : series) md += " | " + s;
    md += " |\n|---|---";
    for (size_t i = 0; i < series.size(); ++i) md += "|---";
    md += "|\n";
    for (const std::string& rung : unique(pts, &LadderPoint::rung)) {
      std::string row, flops;
      bool any = false;
      for (const auto& s : series) {
        auto p = std::find_if(pts.begin(), pts.end(),
                              [&](const LadderPoint& x) { return x.panel == panel && x.rung == rung && x.series == s; });
        if (p == pts.end()) {
          row += " | ";
          continue;
        }
        any = true;
        if (flops.empty()) flops = fmt(p->flops.mean, "%.3g");
        row += " | " + show(p->ce) + " (" + std::to_string(p->ce.n) + ")";
        const std::string base = grid.baseline_of(p->group);
        auto bit = groups.find(base);
        if (base != p->group && bit != groups.end())
          row += " [" + difference(p->ce, group_stat(bit->second, &CellResult::val_ce)) + "]";
      }
      if (any) md += "| " + rung + " | " + flops + row + " |\n";
    }
  }
  return md;
}

// ladder.png: per panel, val CE against training FLOPs (log), a line per series, bars ± std.
std::vector<LinePanel> ladder_panels(const ExperimentGrid& grid, const std::vector<CellResult>& results) {
  const std::vector<LadderPoint> pts = ladder_points(grid, results);
  std::vector<LinePanel> out;
  for (const std::string& panel : unique(pts, &LadderPoint::panel)) {
    LinePanel lp{"val CE against training FLOPs" + (panel.empty() ? std::string() : ": " + panel) + " (mean ± std over seeds)",
                 "training FLOPs", "val CE (nats)", false, {}, true};
    for (const std::string& s : unique(pts, &LadderPoint::series)) {
      std::vector<const LadderPoint*> line;
      for (const auto& p : pts)
        if (p.panel == panel && p.series == s && std::isfinite(p.flops.mean)) line.push_back(&p);
      if (line.empty()) continue;
      std::sort(line.begin(), line.end(), [](auto a, auto b) { return a->flops.mean < b->flops.mean; });
      Series ser{s, {}, {}, true, {}};
      for (const LadderPoint* p : line) {
        ser.x.push_back(p->flops.mean);
        ser.y.push_back(p->ce.mean);
        ser.err.push_back(std::isfinite(p->ce.sd) ? p->ce.sd : 0.0);
      }
      lp.series.push_back(std::move(ser));
    }
    out.push_back(std::move(lp));
  }
  return out;
}

}  // namespace

std::string results_markdown(const ExperimentGrid& grid, const std::vector<CellResult>& results,
                             const std::vector<std::string>& missing,
                             const std::vector<std::pair<std::string, std::string>>& failed) {
  const auto groups = by_group(results);
  std::string md = "# Results of " + grid.source + "\n\n";
  md += "Base config `" + grid.base + "`; seeds";
  for (uint64_t s : grid.seeds) md += " " + std::to_string(s);
  md += "; " + std::to_string(results.size()) + " of " + std::to_string(results.size() + missing.size()) + " cells finished";
  if (!missing.empty()) {
    md += " (missing:";
    for (const auto& m : missing) md += " " + m;
    md += ")";
  }
  md += ".\n\n";
  if (!failed.empty()) {
    md += "Failed cells (each runs again with the same command):\n\n";
    for (const auto& [name, why] : failed) md += "- " + name + ": " + why + "\n";
    md += "\n";
  }
  md += "Each cell is measured on its final model: teacher-forced val CE / CER / WER over " +
        std::to_string(grid.eval.windows) + " validation windows; gen CER of greedy " +
        std::to_string(grid.eval.gen_tokens) + "-token continuations of " + std::to_string(grid.eval.gen_prompts) +
        " held-out prompts (no mask can leak into it); train ms/step is the median over the logged steps; inference "
        "ms/batch is the median of " + std::to_string(grid.eval.timing_repeats) +
        " forward passes over a batch of windows; leak is `qisa probe-leak` on " + std::to_string(grid.eval.probe_windows) +
        " validation windows (0 for a causal model). Values are mean ± sample std over seeds. One row per cell, with "
        "what it trained (size, tokens, FLOPs, wall time, git commit), in results.csv beside this file.\n\n";

  md += "| combination | seeds | steps";
  for (const auto& m : metrics()) md += std::string(" | ") + m.label;
  md += " |\n|---|---|---";
  for (size_t i = 0; i < metrics().size(); ++i) md += "|---";
  md += "|\n";
  for (const std::string& g : grid.groups()) {
    auto it = groups.find(g);
    if (it == groups.end()) continue;
    std::string steps;
    for (const CellResult* r : it->second)
      if (steps.find(std::to_string(r->steps)) == std::string::npos) steps += (steps.empty() ? "" : "/") + std::to_string(r->steps);
    md += "| " + g + " | " + std::to_string(it->second.size()) + " | " + steps;
    for (const auto& m : metrics()) md += " | " + show(group_stat(it->second, m.field));
    md += " |\n";
  }

  md += "\n## Against the baseline\n\n";
  std::string bl;
  for (const auto& [k, v] : grid.baseline) bl += (bl.empty() ? "" : ", ") + k + "=" + v;
  if (grid.baseline.empty()) return md + "The grid has no baseline combination (baseline: in the grid file), so no ratios.\n";
  const bool per_group = grid.baseline.size() < grid.grid.size();
  md += "Baseline: " + bl + (per_group ? ", each combination against the one with its own values of the other grid keys" : "") +
        ". Ratios of the means over seeds, stated as the paper states them (\"13x lower cross-entropy, ... at 2.6x the "
        "inference time\"); val CE difference of the means with Welch's two-sided t-test over the seeds (p < 0.05: "
        "significant at that level, before any correction for the number of comparisons).\n\n| combination | baseline";
  for (const auto& m : metrics())
    if (std::string(m.column) != "leak_max_abs_delta") md += std::string(" | ") + m.label;
  md += " | val CE difference (p) |\n|---|---";
  for (size_t i = 0; i + 1 < metrics().size(); ++i) md += "|---";
  md += "|---|\n";
  int rows = 0;
  for (const std::string& g : grid.groups()) {
    const std::string base = grid.baseline_of(g);
    auto it = groups.find(g), bit = groups.find(base);
    if (it == groups.end() || bit == groups.end() || g == base) continue;
    md += "| " + g + " | " + base;
    for (const auto& m : metrics())
      if (std::string(m.column) != "leak_max_abs_delta")
        md += " | " + ratio(group_stat(it->second, m.field).mean, group_stat(bit->second, m.field).mean, m.time);
    md += " | " + difference(group_stat(it->second, &CellResult::val_ce), group_stat(bit->second, &CellResult::val_ce)) + " |\n";
    ++rows;
  }
  if (rows == 0) md += "\nNo combination has both its own and its baseline's finished cells yet, so no ratios.\n";
  for (const auto& c : grid.compare) {
    md += "\n## " + c.key + " " + c.a + " against " + c.b + "\n\nEach combination with " + c.key + "=" + c.a +
          " against the one with " + c.key + "=" + c.b + " and the same other values: val CE mean ± std over seeds, "
          "the difference with Welch's p, and the training FLOPs of each.\n\n| combination | val CE | against | val CE | "
          "difference (p) | train FLOPs |\n|---|---|---|---|---|---|\n";
    for (const std::string& g : grid.groups()) {
      if (value_in(grid.values_of(g), c.key) != c.a) continue;
      const std::string other = grid.with_value(g, c.key, c.b);
      auto it = groups.find(g), ot = groups.find(other);
      if (other.empty() || it == groups.end() || ot == groups.end()) continue;
      const Stat a = group_stat(it->second, &CellResult::val_ce), b = group_stat(ot->second, &CellResult::val_ce);
      md += "| " + g + " | " + show(a) + " | " + other + " | " + show(b) + " | " + difference(a, b) + " | " +
            fmt(group_stat(it->second, &CellResult::train_flops).mean, "%.4g") + " vs " +
            fmt(group_stat(ot->second, &CellResult::train_flops).mean, "%.4g") + " |\n";
    }
  }
  if (!grid.ladder.rungs.empty()) md += "\n" + ladder_markdown(grid, results);
  return md;
}

ExperimentReport write_report(const ExperimentGrid& grid) {
  ExperimentReport rep;
  for (const GridCell& c : grid.cells()) {
    const CellState st = cell_state(grid, c);
    if (st != CellState::finished) {
      rep.missing.push_back(c.name);
      if (st == CellState::failed) rep.failed.emplace_back(c.name, cell_failure(c));
      continue;
    }
    rep.results.push_back(CellResult::from_json(read_text(result_path(c)), result_path(c)));
  }
  std::error_code ec;
  fs::create_directories(grid.out, ec);
  QISA_CHECK(fs::is_directory(grid.out), "cannot create the experiment folder out = '" + grid.out + "': " + ec.message(),
             "choose a writable out: in the grid file");

  std::string csv = "cell,group,seed";
  for (const auto& [k, v] : grid.grid) csv += "," + csv_field(k);
  csv += ",steps";
  for (const auto& m : metrics()) csv += std::string(",") + m.column;
  csv += ",infer_batch,threads";
  csv += ",attention,mask,qisa_value,n_layer,n_head,n_embd,block_size,params,tokens,train_flops,train_wall_s,git_commit\n";
  for (const CellResult& r : rep.results) {
    csv += csv_field(r.cell) + "," + csv_field(r.group) + "," + std::to_string(r.seed);
    for (const auto& [k, vs] : grid.grid) {
      std::string v;
      for (const auto& [rk, rv] : r.values)
        if (rk == k) v = rv;
      csv += "," + csv_field(v);
    }
    csv += "," + std::to_string(r.steps);
    for (const auto& m : metrics()) csv += "," + csv_number(r.*(m.field));
    csv += "," + std::to_string(r.infer_batch) + "," + std::to_string(r.threads);
    csv += "," + csv_field(r.attention) + "," + csv_field(r.mask) + "," + csv_field(r.qisa_value);
    for (int64_t v : {int64_t{r.n_layer}, int64_t{r.n_head}, int64_t{r.n_embd}, int64_t{r.block_size}, r.params, r.tokens})
      csv += "," + (v > 0 ? std::to_string(v) : std::string());
    csv += "," + csv_number(r.train_flops) + "," + csv_number(r.train_wall_s) + "," + csv_field(r.git_commit) + "\n";
  }
  rep.csv_path = (fs::path(grid.out) / "results.csv").string();
  rep.md_path = (fs::path(grid.out) / "results.md").string();
  write_text_atomic(rep.csv_path, csv);
  rep.markdown = results_markdown(grid, rep.results, rep.missing, rep.failed);
  write_text_atomic(rep.md_path, rep.markdown);
  return rep;
}

std::vector<std::string> plot_experiment(const ExperimentGrid& grid, const ExperimentReport& report) {
  std::vector<std::string> written;
  // Curves: per combination, the mean over its seeds at the steps every seed logged.
  LinePanel loss{"training loss (mean over seeds)", "step", "cross-entropy (nats)", true, {}, false};
  LinePanel val{"validation CE (mean over seeds)", "step", "cross-entropy (nats)", true, {}, false};
  for (const std::string& g : grid.groups()) {
    std::map<int64_t, std::vector<double>> l, e;
    int runs = 0;
    for (const GridCell& c : grid.cells()) {
      const std::string path = (fs::path(c.dir) / "metrics.jsonl").string();
      if (c.group != g || !fs::exists(path)) continue;
      const RunMetrics m = read_metrics(path);
      for (size_t i = 0; i < m.loss.size(); ++i) l[m.loss_step[i]].push_back(m.loss[i]);
      for (size_t i = 0; i < m.eval_ce.size(); ++i) e[m.eval_step[i]].push_back(m.eval_ce[i]);
      ++runs;
    }
    if (runs == 0) continue;
    Series sl{g, {}, {}, false, {}}, se{g, {}, {}, true, {}};
    for (const auto& [step, v] : l)
      if (static_cast<int>(v.size()) == runs) sl.x.push_back(static_cast<double>(step)), sl.y.push_back(stat(v).mean);
    for (const auto& [step, v] : e)
      if (static_cast<int>(v.size()) == runs) se.x.push_back(static_cast<double>(step)), se.y.push_back(stat(v).mean);
    loss.series.push_back(std::move(sl));
    val.series.push_back(std::move(se));
  }
  if (!loss.series.empty()) {
    const std::string png = (fs::path(grid.out) / "curves.png").string();
    plot_lines({loss, val}, png);
    written.push_back(png);
  }
  if (!grid.ladder.rungs.empty() && !report.results.empty()) {
    const std::string png = (fs::path(grid.out) / "ladder.png").string();
    plot_lines(ladder_panels(grid, report.results), png);
    written.push_back(png);
  }
  if (!report.results.empty()) {
    const std::string png = (fs::path(grid.out) / "results.png").string();
    plot_bars(results_bar_panels(report.results, grid.groups()), png);
    written.push_back(png);
  }
  return written;
}

std::vector<BarPanel> results_bar_panels(const std::vector<CellResult>& results, std::vector<std::string> order) {
  const auto groups = by_group(results);
  for (const CellResult& r : results)
    if (std::find(order.begin(), order.end(), r.group) == order.end()) order.push_back(r.group);
  BarPanel quality{"quality (mean ± std over seeds; lower is better)", "", {"val CE", "val CER", "val WER", "gen CER"}, {}, {}, {}};
  BarPanel time{"time (mean ± std over seeds)", "milliseconds", {"train ms/step", "inference ms/batch"}, {}, {}, {}};
  const std::vector<double CellResult::*> qf = {&CellResult::val_ce, &CellResult::val_cer, &CellResult::val_wer,
                                                &CellResult::gen_cer};
  const std::vector<double CellResult::*> tf = {&CellResult::train_ms_per_step, &CellResult::infer_ms_per_batch};
  for (const std::string& g : order) {
    auto it = groups.find(g);
    if (it == groups.end()) continue;
    for (auto [panel, fields] : {std::pair{&quality, &qf}, std::pair{&time, &tf}}) {
      panel->bars.push_back(g);
      panel->mean.emplace_back();
      panel->err.emplace_back();
      for (auto f : *fields) {
        const Stat s = group_stat(it->second, f);
        panel->mean.back().push_back(s.mean);
        panel->err.back().push_back(std::isfinite(s.sd) ? s.sd : 0.0);
      }
    }
  }
  return {quality, time};
}

std::vector<CellResult> read_results_csv(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  QISA_CHECK(in, "cannot read results table '" + path + "'", "pass OUT/results.csv of qisa experiment");
  auto split = [](const std::string& line) {  // RFC 4180 fields on one line
    std::vector<std::string> f{""};
    bool quoted = false;
    for (size_t i = 0; i < line.size(); ++i) {
      const char c = line[i];
      if (quoted && c == '"' && i + 1 < line.size() && line[i + 1] == '"') f.back() += '"', ++i;
      else if (c == '"') quoted = !quoted;
      else if (c == ',' && !quoted) f.emplace_back();
      else if (c != '\r') f.back() += c;
    }
    return f;
  };
  std::string line;
  QISA_CHECK(static_cast<bool>(std::getline(in, line)), "results table '" + path + "' is empty", "run qisa experiment --report");
  const std::vector<std::string> head = split(line);
  auto col = [&](const std::string& name) {
    auto it = std::find(head.begin(), head.end(), name);
    QISA_CHECK(it != head.end(), "results table '" + path + "' has no column '" + name + "'",
               "pass a results.csv written by qisa experiment");
    return static_cast<size_t>(it - head.begin());
  };
  const size_t c_cell = col("cell"), c_group = col("group"), c_seed = col("seed"), c_steps = col("steps");
  std::vector<std::pair<double CellResult::*, size_t>> cols;
  for (const auto& m : metrics()) cols.emplace_back(m.field, col(m.column));
  std::vector<CellResult> out;
  for (int64_t lineno = 2; std::getline(in, line); ++lineno) {
    if (line.empty()) continue;
    const std::vector<std::string> f = split(line);
    QISA_CHECK(f.size() == head.size(), "results table '" + path + "' line " + std::to_string(lineno) + " has " +
                                            std::to_string(f.size()) + " fields, the header " + std::to_string(head.size()),
               "the file is damaged: run qisa experiment --report again");
    CellResult r;
    r.cell = f[c_cell];
    r.group = f[c_group];
    try {
      r.seed = std::stoull(f[c_seed]);
      r.steps = std::stoll(f[c_steps]);
      for (const auto& [field, i] : cols)
        r.*field = f[i].empty() ? std::numeric_limits<double>::quiet_NaN() : std::stod(f[i]);
    } catch (const std::exception&) {
      throw Error("results table '" + path + "' line " + std::to_string(lineno) + " has a field that is not a number",
                  "the file is damaged: run qisa experiment --report again");
    }
    out.push_back(std::move(r));
  }
  return out;
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
