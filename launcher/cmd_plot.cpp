// qisa plot RUN_DIR... --out FILE.png    (loss curves)
// qisa plot RESULTS.csv --out FILE.png   (bar chart of an experiment's results)
#include <cstdio>
#include <filesystem>

#include "io/metrics_log.h"
#include "io/plot.h"
#include "kernels/error.h"
#include "launcher/commands.h"
#include "trainer/experiment.h"

namespace qisa::cli {

namespace fs = std::filesystem;

namespace {

bool is_run_dir(const fs::path& p) { return fs::exists(p / "metrics.jsonl"); }

// RUN_DIRs as given; an experiment folder (no metrics.jsonl of its own) stands for the run
// directories inside it, in name order.
std::vector<fs::path> expand_runs(const std::vector<std::string>& inputs) {
  std::vector<fs::path> runs;
  for (const std::string& in : inputs) {
    const fs::path p(in);
    if (is_run_dir(p)) {
      runs.push_back(p);
      continue;
    }
    std::vector<fs::path> inside;
    if (fs::is_directory(p))
      for (const auto& e : fs::directory_iterator(p))
        if (e.is_directory() && is_run_dir(e.path())) inside.push_back(e.path());
    QISA_CHECK(!inside.empty(), "'" + in + "' is neither a run directory (no metrics.jsonl) nor a folder of runs",
               "pass the log.dir of qisa train runs, an experiment's out folder, or a results.csv");
    std::sort(inside.begin(), inside.end());
    runs.insert(runs.end(), inside.begin(), inside.end());
  }
  return runs;
}

}  // namespace

void add_plot(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "plot",
      "Plot runs as PNG through gnuplot: RUN_DIR... gives training loss and validation CE against step (an "
      "experiment's out folder stands for all its runs); RESULTS.csv (of qisa experiment) gives a bar chart of the "
      "results with ± std over seeds");
  struct Args {
    std::vector<std::string> inputs;
    std::string out;
    bool linear = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("inputs", a->inputs, "run directories, or one results.csv")->required();
  cmd->add_option("--out", a->out, "PNG file to write")->required();
  cmd->add_flag("--linear", a->linear, "linear loss axis (default: logarithmic)");
  cmd->callback([a] {
    if (a->inputs.size() == 1 && fs::path(a->inputs[0]).extension() == ".csv") {
      const std::vector<CellResult> rows = read_results_csv(a->inputs[0]);
      QISA_CHECK(!rows.empty(), "results table '" + a->inputs[0] + "' has no rows", "run some cells first");
      plot_bars(results_bar_panels(rows), a->out);
    } else {
      LinePanel loss{"training loss", "step", "cross-entropy (nats)", !a->linear, {}, false};
      LinePanel val{"validation CE", "step", "cross-entropy (nats)", !a->linear, {}, false};
      for (const fs::path& run : expand_runs(a->inputs)) {
        const RunMetrics m = read_metrics((run / "metrics.jsonl").string());
        const std::string label = run.filename().empty() ? run.parent_path().filename().string() : run.filename().string();
        Series l{label, {}, {}, false, {}}, e{label, {}, {}, true, {}};
        for (size_t i = 0; i < m.loss.size(); ++i) l.x.push_back(static_cast<double>(m.loss_step[i])), l.y.push_back(m.loss[i]);
        for (size_t i = 0; i < m.eval_ce.size(); ++i)
          e.x.push_back(static_cast<double>(m.eval_step[i])), e.y.push_back(m.eval_ce[i]);
        loss.series.push_back(std::move(l));
        val.series.push_back(std::move(e));
      }
      plot_lines({loss, val}, a->out);
    }
    const auto [w, h] = png_size(a->out);
    std::printf("wrote %s (%dx%d PNG)\n", a->out.c_str(), w, h);
  });
}

}  // namespace qisa::cli
