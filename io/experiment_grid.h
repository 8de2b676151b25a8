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
//
// A grid key that is not a config key is a named axis: its values are named sets of config
// keys, for keys that change together (a model size, a corpus, a variant of the attention):
//
//   grid:
//     size:
//       - {name: s16, model.n_embd: 16, model.block_size: 16, train.batch_size: 1024}
//       - {name: s64, model.n_embd: 64, model.block_size: 64, train.batch_size: 256}
//     variant:
//       - {name: csa, model.attention: csa}
//       - {name: qisa, model.attention: qisa}
//   baseline: {variant: csa}        # each combination against csa at its own size
//   ladder: {rungs: size, panels: corpus}   # val CE against training FLOPs (ladder.png)
//   compare: [{variant: [qisa, csa-flops]}]  # more pairings, each at equal other values
//
// A named value's keys override `set:`, and where two named axes set a key, the later axis's
// value wins (e.g. a variant's own train.steps over its corpus's); a plain grid key cannot be
// set by a named value. `--set` overrides come last, over everything. A
// baseline that names only some grid keys compares each combination with the one that has the
// baseline's values for those keys and the combination's own values for the others.
#pragma once
#include <cstdint>
#include <map>
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

// Results by rung (results.md's ladder tables, OUT/ladder.png): the x axis is the rungs'
// training FLOPs, one panel per value of `panels`, one series per combination of the other keys.
struct GridLadder {
  std::string rungs;   // a grid key; "" = no ladder
  std::string panels;  // a grid key or ""
};

struct ExperimentGrid {
  std::string source;      // the grid file
  std::string base;        // base config path (resolved against the grid file's folder)
  std::string out;         // where the cells' run directories and the results go
  std::vector<uint64_t> seeds;
  std::vector<std::pair<std::string, std::vector<std::string>>> grid;  // key -> values, in file order
  std::map<std::string, std::map<std::string, KeyValues>> named;  // named axis -> value name -> its config keys
  std::vector<KeyValues> exclude;
  KeyValues set;           // the file's set: (before the grid's values)
  KeyValues cli_set;       // --set (after them)
  GridLadder ladder;
  // compare: extra pairings of the report, e.g. {variant: [qisa, csa-flops]}: each combination
  // with the first value against the one with the second and the same other values.
  struct Comparison { std::string key, a, b; };
  std::vector<Comparison> compare;
  GridEval eval;
  KeyValues baseline;      // grid keys -> values; empty when the grid varies none of its keys

  // Every cell, seed-major (all combinations of seed 1, then seed 2, ...): a run cut short
  // has whole replicates rather than all seeds of a few combinations.
  std::vector<GridCell> cells() const;
  // The combinations (group names) in grid order, without seeds.
  std::vector<std::string> groups() const;
  std::string baseline_group() const;  // "" when no combination matches `baseline`
  // The combination that `group` is compared with: its own values with the baseline's put in;
  // "" when the grid has no baseline or that combination is excluded.
  std::string baseline_of(const std::string& group) const;
  // The name of a combination (as groups() names it) from grid keys' values, any subset of them.
  std::string group_of(const KeyValues& values) const;
  // The combination with `values`, but `key` set to `value`; "" when the grid has none such.
  std::string with_value(const std::string& group, const std::string& key, const std::string& value) const;
  // The grid keys' values of a combination (empty when there is no such group).
  KeyValues values_of(const std::string& group) const;
  // The config overrides of a grid value: a named value's keys, else key=value.
  std::vector<std::string> overrides_of(const std::string& key, const std::string& value) const;
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
