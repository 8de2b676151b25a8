// An experiment grid: one base config, a set of config keys each with a list of values, and
// seeds. Every combination (minus the excluded ones) times every seed is a cell: one training
// run in OUT/<cell>/. The file format (YAML):
//
//   base: qisa_causal.yaml           # relative to the grid file
//   out: runs/experiments/paper      # relative to the current directory (like log.dir)
//   seeds: [1, 2, 3]                 # train.seed of the replicates
//   grid:                            # every combination of these keys' values
//     model.attention: [csa, qisa]
//     model.mask: [causal, reference]
//   exclude:                         # combinations not to run
//     - {model.attention: csa, model.mask: reference}
//   set: {train.steps: 5000}         # overrides for every cell
//   eval: {windows: 500, batch: 500, gen_prompts: 100, gen_tokens: 32, probe_windows: 8}
//   baseline: {model.attention: csa, model.mask: causal}   # the ratios' reference
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace qisa {

using KeyValues = std::vector<std::pair<std::string, std::string>>;  // (config key, value), in order

struct GridCell {
  int index = 0;           // position in the grid (Slurm array task id)
  std::string group;       // the combination without the seed, e.g. "qisa_causal" ("base" for an empty grid)
  std::string name;        // group + "_seed" + seed: also the run directory's name
  uint64_t seed = 0;
  KeyValues values;        // the grid keys' values of this cell
  std::vector<std::string> overrides;  // on top of the base config: set, values, train.seed, log.dir
  std::string dir;         // out/name (log.dir)
};

struct GridEval {
  int64_t windows = 500;        // teacher-forced validation windows (CE, CER, WER)
  int64_t batch = 0;            // windows per forward pass for the timing; 0 = windows
  int64_t gen_prompts = 100;    // held-out prompts for the generation CER (0 = skip)
  int64_t gen_tokens = 32;      // greedy tokens per prompt
  int64_t probe_windows = 8;    // validation windows for the leak probe (0 = skip)
  int64_t timing_repeats = 5;   // forward passes timed after a warm-up pass; the median is reported
};

struct ExperimentGrid {
  std::string source;      // the grid file
  std::string base;        // base config path (resolved against the grid file's folder)
  std::string out;         // where the cells' run directories and the results go
  std::vector<uint64_t> seeds;
  std::vector<std::pair<std::string, std::vector<std::string>>> grid;  // key -> values, in file order
  std::vector<KeyValues> exclude;
  KeyValues set;
  GridEval eval;
  KeyValues baseline;      // grid keys -> values; empty when the grid varies none of its keys

  // Every cell, seed-major (all combinations of seed 1, then seed 2, ...): a run cut short
  // has whole replicates rather than all seeds of a few combinations.
  std::vector<GridCell> cells() const;
  // The combinations (group names) in grid order, without seeds.
  std::vector<std::string> groups() const;
  std::string baseline_group() const;  // "" when no combination matches `baseline`
};

// Reads and validates a grid file: unknown top-level keys, keys that are not config keys
// (suggesting the closest), train.seed / log.dir in grid or set (the runner owns them), empty
// value lists, duplicates, and every cell's config (built from the base config with its
// overrides, so a bad value fails here, naming the cell, before anything trains).
// `extra_set` ("a.b=v") is applied after the file's `set`.
ExperimentGrid load_experiment_grid(const std::string& path, const std::vector<std::string>& extra_set = {});

// A cell by index ("3") or by name ("qisa_causal_seed1"); throws naming the valid range.
const GridCell& find_cell(const std::vector<GridCell>& cells, const std::string& index_or_name);

}  // namespace qisa
