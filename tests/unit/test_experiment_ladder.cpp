// The scaling ladder (configs/ladder/ladder.yaml) as CI runs it: the shipped grid loads, keeps
// its tokens per step and its FLOP-matched comparison; and a two-step miniature of the same
// shape (two corpora, two rungs, every variant, two seeds) runs end to end through
// `qisa experiment`: the table by rung with Welch's p, the comparison, ladder.png, resuming,
// and a cell whose model file was removed still counting as finished.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "expect_error.h"
#include "io/config.h"
#include "io/experiment_grid.h"
#include "io/plot.h"
#include "test_util.h"
#include "trainer/experiment.h"
#include "trainer/flops.h"
#include "trainer/stats.h"

namespace qisa {
namespace {

namespace fs = std::filesystem;
using test::run_command;

std::string value_of(const KeyValues& kv, const std::string& key) {
  for (const auto& [k, v] : kv)
    if (k == key) return v;
  return "";
}

TEST(LadderConfig, TheShippedLadderKeepsItsTokensAndItsFlopMatch) {
  const ExperimentGrid g = load_experiment_grid(std::string(QISA_SOURCE_DIR) + "/configs/ladder/ladder.yaml");
  const auto cells = g.cells();
  // 2 corpora x 4 sizes x 4 variants - qisa-shared at s16 (x2 corpora), + csa-flops at char s64: 31, x 3 seeds
  ASSERT_EQ(cells.size(), 93u);
  EXPECT_EQ(g.ladder.rungs, "size");
  EXPECT_EQ(g.ladder.panels, "corpus");
  std::map<std::string, double> flops;  // group -> training FLOPs of the run
  for (const GridCell& c : cells) {
    SCOPED_TRACE(c.name);
    const Config cfg = load_config(g.base, c.overrides);
    const std::string corpus = value_of(c.values, "corpus"), variant = value_of(c.values, "variant");
    EXPECT_EQ(cfg.model.mask, AttnMask::causal);
    EXPECT_EQ(cfg.train.batch_size * cfg.model.block_size, 6144);        // equal tokens per step at every rung
    EXPECT_EQ(cfg.model.n_embd / cfg.model.n_head, 16);                  // the paper's head width
    EXPECT_EQ(cfg.model.n_layer, 6);
    EXPECT_EQ(cfg.train.steps, variant == "csa-flops" ? 2177 : corpus == "char" ? 1600 : 200);
    ModelConfig m = cfg.model;
    m.vocab_size = corpus == "char" ? 65 : 50257;
    flops[c.group] = forward_flops(m).training() * static_cast<double>(cfg.train.steps * cfg.train.batch_size * m.block_size);
  }
  // the FLOP-matched comparison: csa-flops trains for qisa's training FLOPs at char s64
  ASSERT_EQ(g.compare.size(), 1u);
  const double matched = flops.at("char_s64_csa-flops"), qisa = flops.at("char_s64_qisa");
  EXPECT_NEAR(matched / qisa, 1.0, 1e-3);
  EXPECT_GT(qisa / flops.at("char_s64_csa"), 1.3);  // and it is a real difference in compute
  EXPECT_EQ(g.with_value("char_s64_qisa", "variant", "csa-flops"), "char_s64_csa-flops");
  EXPECT_EQ(g.baseline_of("bpe_s48_qisa-gauss"), "bpe_s48_csa");
}

class LadderMiniature : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"a", "b"}) {
      test::write_file(tmp / (std::string(name) + ".txt"), test::make_training_text(name[0] == 'a' ? 600 : 700));
      auto r = run_command(test::qisa_bin() + " prepare --input " + (tmp / (std::string(name) + ".txt")) + " --out " +
                           (tmp / (std::string(name) + ".h5")));
      ASSERT_EQ(r.exit_code, 0) << r.output;
    }
    test::write_file(tmp / "base.yaml",
                     "model:\n  block_size: 8\n  n_embd: 8\n  n_head: 1\n  n_layer: 1\n  attention: qisa\n  mask: causal\n"
                     "data:\n  corpus: a.h5\ntrain:\n  batch_size: 8\n  steps: 2\n  lr: 0.01\n  threads: 1\n"
                     "eval:\n  every: 0\n  windows: 8\nlog:\n  every: 1\ncheckpoint:\n  every_steps: 0\n");
    grid_path = tmp / "ladder.yaml";
    test::write_file(grid_path,
                     "base: base.yaml\nout: " + (tmp / "out") + "\nseeds: [1, 2]\ngrid:\n"
                     "  corpus:\n    - {name: a, data.corpus: " + (tmp / "a.h5") + "}\n"
                     "    - {name: b, data.corpus: " + (tmp / "b.h5") + "}\n"
                     "  size:\n    - {name: s8, model.n_embd: 8, model.n_head: 1, model.block_size: 8, train.batch_size: 8}\n"
                     "    - {name: s16, model.n_embd: 16, model.n_head: 2, model.block_size: 16, train.batch_size: 4}\n"
                     "  variant:\n    - {name: csa, model.attention: csa}\n"
                     "    - {name: qisa, model.attention: qisa, model.qisa_value: per_head}\n"
                     "    - {name: qisa-shared, model.attention: qisa, model.qisa_value: shared}\n"
                     "    - {name: qisa-gauss, model.attention: qisa, model.qisa_score: gaussian}\n"
                     "    - {name: csa-flops, model.attention: csa, train.steps: 3}\n"
                     "exclude:\n  - {size: s8, variant: qisa-shared}\n  - {corpus: b, variant: csa-flops}\n"
                     "  - {size: s8, variant: csa-flops}\n"
                     "eval: {windows: 8, batch: 8, gen_prompts: 2, gen_tokens: 3, probe_windows: 0, timing_repeats: 1}\n"
                     "baseline: {variant: csa}\nladder: {rungs: size, panels: corpus}\ncompare:\n  - {variant: [qisa, csa-flops]}\n");
  }
  test::CommandResult experiment(const std::string& args = "") {
    return run_command(test::qisa_bin() + " experiment " + grid_path + " " + args);
  }
  test::TempDir tmp;
  std::string grid_path;
};

TEST_F(LadderMiniature, RunsEndToEndWithTablesByRungAndAPlot) {
  auto r = experiment();
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string out = tmp / "out";
  const ExperimentGrid g = load_experiment_grid(grid_path);
  ASSERT_EQ(g.cells().size(), 30u);  // a: 3 + 5, b: 3 + 4 combinations, x 2 seeds
  const std::vector<CellResult> rows = read_results_csv(out + "/results.csv");
  ASSERT_EQ(rows.size(), 30u);
  std::map<std::string, std::vector<double>> ce;
  for (const CellResult& row : rows) ce[row.group].push_back(row.val_ce);

  std::ifstream in(out + "/results.md");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string md = ss.str();
  // each rung's table holds mean ± std over the seeds and the difference from csa at that rung with Welch's p
  const Stat q = stat(ce.at("a_s16_qisa")), c = stat(ce.at("a_s16_csa"));
  const Welch w = welch_test(q, c);
  char want[160];
  std::snprintf(want, sizeof want, "%.4g ± %.4g (2) [%+.3g (p ", q.mean, q.sd, w.diff);
  test::expect_mentions(md, {"## Ladder: val CE by size", "### corpus = a", "### corpus = b", "| s8 |", "| s16 |", want,
                             "| a_s16_qisa-gauss | a_s16_csa |", "| b_s8_qisa | b_s8_csa |",
                             "## variant qisa against csa-flops", "| a_s16_qisa |"});
  EXPECT_EQ(md.find("| b_s16_qisa | b_s16_csa-flops"), std::string::npos);  // b has no csa-flops
  // csa-flops trained its own steps: its tokens and FLOPs say so
  for (const CellResult& row : rows)
    if (row.group == "a_s16_csa-flops") {
      EXPECT_EQ(row.steps, 3);
    }
  const auto [w_png, h_png] = png_size(out + "/ladder.png");
  EXPECT_GT(w_png, 1000);  // two panels side by side
  EXPECT_GT(h_png, 0);

  // Run again: every cell is finished and skipped.
  auto again = experiment();
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(again.output.find(": pending"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("b_s16_qisa-gauss_seed2: finished"), std::string::npos) << again.output;

  // A cell whose model and checkpoints were removed (to save space) keeps its result ...
  const std::string cell = out + "/a_s8_qisa_seed1";
  fs::remove(cell + "/final.h5");
  fs::remove_all(cell + "/checkpoints");
  auto list = experiment("--list");
  ASSERT_EQ(list.exit_code, 0) << list.output;
  EXPECT_NE(list.output.find("finished  a_s8_qisa_seed1"), std::string::npos) << list.output;
  auto third = experiment("--cell a_s8_qisa_seed1");
  ASSERT_EQ(third.exit_code, 0) << third.output;
  EXPECT_FALSE(fs::exists(cell + "/final.h5"));
  // ... and cannot be measured again without its model: the error says what to do.
  auto remeasure = experiment("--cell a_s8_qisa_seed1 --remeasure");
  EXPECT_NE(remeasure.exit_code, 0);
  test::expect_mentions(remeasure.output, {"a_s8_qisa_seed1", "was removed", "delete", "result.json"});
}

}  // namespace
}  // namespace qisa
