// The report of an experiment grid: results.csv and results.md (mean ± std over seeds, ratios
// and Welch's test against each combination's baseline, comparisons, the ladder by rung), the
// plots, and reading a results.csv back. Pure functions of the cells' result.json files.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "io/atomic_file.h"
#include "io/metrics_log.h"
#include "io/plot.h"
#include "kernels/error.h"
#include "trainer/experiment.h"
#include "trainer/stats.h"

namespace qisa {

namespace fs = std::filesystem;

namespace {

std::string result_path(const GridCell& c) { return (fs::path(c.dir) / "result.json").string(); }

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}


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

// The val CE differences that hold at 0.05 after Bonferroni's correction for the number of tests.
std::string bonferroni(const std::vector<std::pair<std::string, double>>& tested) {
  const double level = 0.05 / static_cast<double>(tested.size());
  std::string hold;
  for (const auto& [g, p] : tested)
    if (p < level) hold += (hold.empty() ? "" : ", ") + g;
  return std::to_string(tested.size()) + " val CE comparisons with a p-value; corrected for their number (Bonferroni, p < " +
         fmt(level, "%.2g") + "), " + (hold.empty() ? std::string("none is significant at 0.05") : "significant at 0.05: " + hold) + ".";
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
  std::vector<std::pair<std::string, double>> tested;  // combination, Welch's p of its val CE
  for (const std::string& g : grid.groups()) {
    const std::string base = grid.baseline_of(g);
    auto it = groups.find(g), bit = groups.find(base);
    if (it == groups.end() || bit == groups.end() || g == base) continue;
    md += "| " + g + " | " + base;
    for (const auto& m : metrics())
      if (std::string(m.column) != "leak_max_abs_delta")
        md += " | " + ratio(group_stat(it->second, m.field).mean, group_stat(bit->second, m.field).mean, m.time);
    const Stat a = group_stat(it->second, &CellResult::val_ce), b = group_stat(bit->second, &CellResult::val_ce);
    md += " | " + difference(a, b) + " |\n";
    if (const Welch w = welch_test(a, b); std::isfinite(w.p)) tested.emplace_back(g, w.p);
    ++rows;
  }
  if (rows == 0) md += "\nNo combination has both its own and its baseline's finished cells yet, so no ratios.\n";
  if (!tested.empty()) md += "\n" + bonferroni(tested) + "\n";
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

}  // namespace qisa
