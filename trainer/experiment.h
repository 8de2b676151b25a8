// `qisa experiment`: train every cell of an experiment grid (io/experiment_grid.h), measure
// each trained model the same way, and tabulate the results with mean ± std over seeds and
// ratios to the baseline, stated as the paper states them.
//
// A cell is finished when OUT/<cell>/result.json records the cell's train.steps (and
// final.h5 is there): it is skipped. Otherwise the cell trains with train.resume=auto, so an
// interrupted cell continues from its newest checkpoint, and a finished training is only
// measured again. Everything a cell writes is atomic, so the grid can be stopped at any
// instant (or run as a Slurm array) and started again.
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "io/config.h"
#include "io/experiment_grid.h"
#include "io/plot.h"
#include "trainer/comm/collectives.h"
#include "trainer/comm/communicator.h"
#include "trainer/model.h"

namespace qisa {

struct CellResult {
  std::string cell, group;
  uint64_t seed = 0;
  KeyValues values;                 // the grid keys' values
  int64_t steps = 0;                // optimizer steps trained
  double val_ce = 0, val_cer = 0, val_wer = 0;  // teacher-forced, eval.windows validation windows
  double gen_cer = std::numeric_limits<double>::quiet_NaN();  // greedy continuations (NaN: not measured)
  double train_ms_per_step = 0;     // median over the logged steps of metrics.jsonl
  double infer_ms_per_batch = 0;    // median of eval.timing_repeats forward passes after a warm-up pass
  int64_t infer_batch = 0;          // windows per timed forward pass
  double leak_max_abs_delta = std::numeric_limits<double>::quiet_NaN();  // qisa probe-leak (NaN: not measured)
  int threads = 0;                  // CPU threads of the measurements
  // What was trained, from the cell's config and model (results.csv; absent from results written
  // before these fields: empty / 0 / NaN there).
  std::string attention, mask, qisa_value;  // model.attention, model.mask, model.qisa_value
  int n_layer = 0, n_head = 0, n_embd = 0, block_size = 0;
  int64_t params = 0;               // the model's parameters
  int64_t tokens = 0;               // predicted tokens trained on: steps x train.batch_size x T
  double train_flops = std::numeric_limits<double>::quiet_NaN();  // tokens x training FLOPs per token (trainer/flops.h)
  double train_wall_s = std::numeric_limits<double>::quiet_NaN(); // train_ms_per_step x steps (no eval, no checkpoints)
  std::string git_commit;           // of the binary that measured the cell (io/build_info.h)

  std::string to_json() const;
  // `source` names the file in errors.
  static CellResult from_json(const std::string& text, const std::string& source);
};

// The config of one cell: the base config with the cell's overrides, checked against its corpus.
Config cell_config(const ExperimentGrid& grid, const GridCell& cell);

enum class CellState { pending, started, trained, finished, failed };
const char* to_string(CellState s);
// pending: nothing on disk; started: a checkpoint or metrics; trained: final.h5 at
// train.steps without a result; finished: result.json for train.steps and final.h5; failed:
// not finished, and its last run failed (cell_failure says why). A failed cell runs again.
// (Every cell's config loads: load_experiment_grid checks them all.)
CellState cell_state(const ExperimentGrid& grid, const GridCell& cell);

// Why the cell's last run failed ("" when it did not): OUT/<cell>.failed, written when a cell
// fails (one line: the error) and removed when the cell finishes.
std::string cell_failure(const GridCell& cell);
void record_cell_failure(const GridCell& cell, const std::string& error);

// Measures a trained cell (final.h5 and metrics.jsonl) on one process and writes
// OUT/<cell>/result.json atomically.
CellResult measure_cell(const ExperimentGrid& grid, const GridCell& cell, Backend& backend);

// Trains the cell when needed (collective; resumes), then rank 0 measures it; a finished cell
// is skipped, or only measured again with `remeasure` (e.g. timings on a quiet machine).
// Returns false when a stop signal ended the training early (the cell is left resumable).
// A cell that fails raises a CollectiveError on every rank (its config does not load, training
// stopped on an error every rank agreed on, or rank 0's measurement failed): the caller records
// it and goes on with the next cell. Any other error (one rank's) ends the job as it would a run.
bool run_cell(const ExperimentGrid& grid, const GridCell& cell, Backend& backend, Communicator& comm,
              Collectives& coll, bool quiet, bool remeasure = false);

struct ExperimentReport {
  std::vector<CellResult> results;    // finished cells, in grid order
  std::vector<std::string> missing;   // cells without a result
  std::vector<std::pair<std::string, std::string>> failed;  // of those, the failed ones: name, error
  std::string csv_path, md_path;
  std::string markdown;               // the text of results.md
};

// Reads every finished cell's result.json and writes OUT/results.csv (one row per cell) and
// OUT/results.md (mean ± std per combination, ratios to the baseline).
ExperimentReport write_report(const ExperimentGrid& grid);

// The markdown of a report, from results (for tests and for write_report).
std::string results_markdown(const ExperimentGrid& grid, const std::vector<CellResult>& results,
                             const std::vector<std::string>& missing,
                             const std::vector<std::pair<std::string, std::string>>& failed = {});

// One run of a grid at a time (flock(2): released when the process ends, however it ends). A
// whole-grid run holds OUT/.lock exclusively; a --cell run (a Slurm array task) holds it shared,
// so the cells of an array run side by side, plus OUT/.locks/<cell> exclusively. A lock held
// elsewhere throws, naming the holder's pid and command where the lock file has them.
class GridLock {
 public:
  GridLock(const ExperimentGrid& grid, const GridCell* only_cell);
  ~GridLock();
  GridLock(const GridLock&) = delete;
  GridLock& operator=(const GridLock&) = delete;

 private:
  int grid_fd_ = -1, cell_fd_ = -1;
};

// Reads a results.csv written by write_report (rows in file order); throws naming the file,
// the line and the column when it is not one.
std::vector<CellResult> read_results_csv(const std::string& path);

// The bar chart of results: quality metrics and times, one bar per group (in `order`; groups
// not in it follow in order of appearance), mean ± std over seeds.
std::vector<BarPanel> results_bar_panels(const std::vector<CellResult>& results, std::vector<std::string> order = {});

// Plots of a finished (or partial) grid: OUT/curves.png (train loss and val CE against step,
// averaged over seeds, per combination) and OUT/results.png (bars with ± std). Returns the
// files written.
std::vector<std::string> plot_experiment(const ExperimentGrid& grid, const ExperimentReport& report);

}  // namespace qisa
