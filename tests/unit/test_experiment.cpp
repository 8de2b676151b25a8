// `qisa experiment` and `qisa plot` end to end, through the executable: a small grid trains,
// its table agrees with `qisa eval` / `qisa probe-leak` on each cell's model, finished cells
// are skipped, an interrupted cell resumes to the same model as a straight run, and the plots
// are PNG files. Plus the report's arithmetic (mean ± std, ratios) on known numbers.
#include "trainer/experiment.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "expect_error.h"
#include "io/build_info.h"
#include "io/metrics_log.h"
#include "io/model_file.h"
#include "io/plot.h"
#include "kernels/backend.h"
#include "trainer/flops.h"
#include "trainer/model_io.h"
#include "test_util.h"

namespace qisa {
namespace {

namespace fs = std::filesystem;
using test::run_command;

std::vector<std::map<std::string, std::string>> read_csv_rows(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  auto split = [](const std::string& s) {
    std::vector<std::string> f{""};
    for (char c : s)
      if (c == ',') f.emplace_back();
      else f.back().push_back(c);
    return f;
  };
  const auto head = split(line);
  std::vector<std::map<std::string, std::string>> rows;
  while (std::getline(in, line)) {
    const auto f = split(line);
    std::map<std::string, std::string> row;
    for (size_t i = 0; i < head.size() && i < f.size(); ++i) row[head[i]] = f[i];
    rows.push_back(row);
  }
  return rows;
}

class Experiment : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_file(tmp / "text.txt", test::make_training_text(800));
    auto r = run_command(test::qisa_bin() + " prepare --input " + (tmp / "text.txt") + " --out " + (tmp / "corpus.h5"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    test::write_file(tmp / "base.yaml",
                     "model:\n  block_size: 8\n  n_embd: 8\n  n_head: 2\n  n_layer: 1\n  attention: qisa\n  mask: causal\n"
                     "data:\n  corpus: " + (tmp / "corpus.h5") + "\n"
                     "train:\n  batch_size: 16\n  steps: 30\n  lr: 0.01\n  threads: 1\n"
                     "eval:\n  every: 10\n  windows: 20\n"
                     "log:\n  every: 5\n"
                     "checkpoint:\n  every_steps: 10\n");
  }
  // A grid of csa/causal and qisa/reference, two seeds, in `out`.
  std::string grid(const std::string& name, const std::string& out) {
    const std::string p = tmp / (name + ".yaml");
    test::write_file(p, "base: base.yaml\nout: " + out + "\nseeds: [3, 4]\n"
                        "grid:\n  model.attention: [csa, qisa]\n  model.mask: [causal, reference]\n"
                        "exclude:\n  - {model.attention: csa, model.mask: reference}\n  - {model.attention: qisa, model.mask: causal}\n"
                        "eval: {windows: 24, batch: 8, gen_prompts: 6, gen_tokens: 5, probe_windows: 3, timing_repeats: 3}\n");
    return p;
  }
  test::CommandResult experiment(const std::string& grid_path, const std::string& args = "", const std::string& env = "") {
    return run_command(env + " " + test::qisa_bin() + " experiment " + grid_path + " " + args);
  }
  test::TempDir tmp;
};

TEST_F(Experiment, ResultsMatchPerRunEvalAndFinishedCellsAreSkipped) {
  const std::string out = tmp / "exp";
  const std::string g = grid("grid", out);
  auto r = experiment(g);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* cell : {"csa_causal_seed3", "qisa_reference_seed3", "csa_causal_seed4", "qisa_reference_seed4"})
    EXPECT_NE(r.output.find(std::string(cell) + ": pending, training"), std::string::npos) << r.output;

  const auto rows = read_csv_rows(out + "/results.csv");
  ASSERT_EQ(rows.size(), 4u);
  for (const auto& row : rows) {
    SCOPED_TRACE(row.at("cell"));
    const std::string dir = out + "/" + row.at("cell");
    EXPECT_EQ(row.at("steps"), "30");
    // the numbers of `qisa eval` and `qisa probe-leak` on the cell's model, with the grid's eval settings
    auto e = run_command(test::qisa_bin() + " eval " + dir + "/final.h5 --data " + (tmp / "corpus.h5") +
                         " --windows 24 --batch 8 --gen-prompts 6 --gen-tokens 5 --threads 1");
    ASSERT_EQ(e.exit_code, 0) << e.output;
    const auto ej = nlohmann::json::parse(e.output);
    EXPECT_EQ(std::stod(row.at("val_ce")), ej["ce"].get<double>());
    EXPECT_EQ(std::stod(row.at("val_cer")), ej["cer"].get<double>());
    EXPECT_EQ(std::stod(row.at("val_wer")), ej["wer"].get<double>());
    EXPECT_EQ(std::stod(row.at("gen_cer")), ej["gen_cer"].get<double>());
    EXPECT_EQ(std::stoll(row.at("infer_batch")), 8);
    auto p = run_command(test::qisa_bin() + " probe-leak " + dir + "/final.h5 --data " + (tmp / "corpus.h5") +
                         " --windows 3 --threads 1");
    ASSERT_EQ(p.exit_code, 0) << p.output;
    const double leak = nlohmann::json::parse(p.output)["max_abs_delta"].get<double>();
    EXPECT_EQ(std::stod(row.at("leak_max_abs_delta")), leak);
    if (row.at("model.mask") == "causal") EXPECT_EQ(leak, 0.0);
    else EXPECT_GT(leak, 0.0);
    // train ms/step: the median of the logged steps (30 steps, every 5th and the first: 7 lines)
    std::vector<double> ms = read_metrics(dir + "/metrics.jsonl").step_ms;
    ASSERT_EQ(ms.size(), 7u);
    std::sort(ms.begin(), ms.end());
    EXPECT_EQ(std::stod(row.at("train_ms_per_step")), ms[3]);
    EXPECT_GT(std::stod(row.at("infer_ms_per_batch")), 0.0);
    // what was trained, as data: the cell's config and model, its tokens, FLOPs and time
    EXPECT_EQ(row.at("attention"), row.at("model.attention"));
    EXPECT_EQ(row.at("mask"), row.at("model.mask"));
    EXPECT_EQ(row.at("qisa_value"), row.at("model.attention") == "qisa" ? "per_head" : "");
    EXPECT_EQ(row.at("n_layer") + "/" + row.at("n_head") + "/" + row.at("n_embd") + "/" + row.at("block_size"), "1/2/8/8");
    EXPECT_EQ(std::stoll(row.at("tokens")), 30 * 16 * 8);  // steps x batch x T
    auto cpu = make_cpu_backend(1);
    const LoadedModel lm = load_model(dir + "/final.h5", *cpu, 1);
    EXPECT_EQ(std::stoll(row.at("params")), lm.model->num_params());
    EXPECT_DOUBLE_EQ(std::stod(row.at("train_flops")), forward_flops(lm.config.model).training() * 30 * 16 * 8);
    EXPECT_DOUBLE_EQ(std::stod(row.at("train_wall_s")), ms[3] * 30 / 1000);
    EXPECT_EQ(row.at("git_commit"), git_commit());
    EXPECT_NE(row.at("git_commit"), "");
  }

  // results.md: the mean ± std of the two seeds of csa_causal, and the CE ratio of the means
  const std::string md = test::read_file(out + "/results.md");
  auto val = [&](const std::string& cell, const char* col) {
    for (const auto& row : rows)
      if (row.at("cell") == cell) return std::stod(row.at(col));
    return std::nan("");
  };
  const double a = val("csa_causal_seed3", "val_ce"), b = val("csa_causal_seed4", "val_ce");
  char want[128];
  std::snprintf(want, sizeof want, "%.4g ± %.4g", (a + b) / 2, std::abs(a - b) / std::sqrt(2.0));
  EXPECT_NE(md.find(want), std::string::npos) << want << "\n" << md;
  const double q = (val("qisa_reference_seed3", "val_ce") + val("qisa_reference_seed4", "val_ce")) / 2;
  const double ratio = q < (a + b) / 2 ? (a + b) / 2 / q : q / ((a + b) / 2);
  std::snprintf(want, sizeof want, ratio >= 10 ? "| qisa_reference | csa_causal | %.1fx %s" : "| qisa_reference | csa_causal | %.2fx %s", ratio,
                q < (a + b) / 2 ? "lower" : "higher");
  EXPECT_NE(md.find(want), std::string::npos) << want << "\n" << md;
  // the plots came with the report
  EXPECT_GT(png_size(out + "/curves.png").first, 0);
  EXPECT_GT(png_size(out + "/results.png").first, 0);

  // Run again: every cell is skipped, nothing is rewritten.
  const auto before = fs::last_write_time(out + "/qisa_reference_seed4/final.h5");
  const auto before_result = fs::last_write_time(out + "/qisa_reference_seed4/result.json");
  auto again = experiment(g);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(std::count(again.output.begin(), again.output.end(), '\n') > 0, true);
  for (const auto& row : rows)
    EXPECT_NE(again.output.find(row.at("cell") + ": finished, skipped"), std::string::npos) << again.output;
  EXPECT_EQ(again.output.find("training"), std::string::npos) << again.output;
  EXPECT_EQ(fs::last_write_time(out + "/qisa_reference_seed4/final.h5"), before);
  EXPECT_EQ(fs::last_write_time(out + "/qisa_reference_seed4/result.json"), before_result);

  // --remeasure measures finished cells again without training: the same quality numbers.
  auto re = experiment(g, "--remeasure --cell 3");
  ASSERT_EQ(re.exit_code, 0) << re.output;
  EXPECT_NE(re.output.find("qisa_reference_seed4: finished, measuring again"), std::string::npos) << re.output;
  EXPECT_EQ(fs::last_write_time(out + "/qisa_reference_seed4/final.h5"), before);
  EXPECT_NE(fs::last_write_time(out + "/qisa_reference_seed4/result.json"), before_result);
  EXPECT_EQ(CellResult::from_json(test::read_file(out + "/qisa_reference_seed4/result.json"), "r").val_ce,
            std::stod(rows[3].at("val_ce")));

  // A lost result.json is measured again from final.h5, without training.
  fs::remove(out + "/csa_causal_seed3/result.json");
  auto measure = experiment(g, "--cell csa_causal_seed3");
  ASSERT_EQ(measure.exit_code, 0) << measure.output;
  EXPECT_NE(measure.output.find("csa_causal_seed3: trained, measuring"), std::string::npos) << measure.output;
  EXPECT_EQ(read_csv_rows(out + "/results.csv")[0].at("val_ce"), rows[0].at("val_ce"));
}

TEST_F(Experiment, InterruptedCellResumesToTheSameModelAsAStraightRun) {
  // Straight: every cell in one go.
  const std::string straight = tmp / "straight";
  ASSERT_EQ(experiment(grid("straight", straight), "--cell 1").exit_code, 0);
  // Interrupted: the process dies (no cleanup) at step 17 of cell 1, after the step-10 checkpoint.
  const std::string cut = tmp / "cut";
  const std::string g = grid("cut", cut);
  auto died = experiment(g, "--cell 1", "QISA_FAULT='train.step@step=17:exit=9'");
  ASSERT_EQ(died.exit_code, 9) << died.output;
  auto list = experiment(g, "--list");
  EXPECT_NE(list.output.find("started   qisa_reference_seed3"), std::string::npos) << list.output;
  EXPECT_NE(list.output.find("\n1 started, 3 pending\n"), std::string::npos) << list.output;  // the summary line
  auto resumed = experiment(g);  // the whole grid: cell 1 resumes, the others train
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("qisa_reference_seed3: started, resuming"), std::string::npos) << resumed.output;
  EXPECT_NE(test::read_file(cut + "/qisa_reference_seed3/metrics.jsonl").find("\"resumed_from\""), std::string::npos);
  const ModelFile a = read_model_file(straight + "/qisa_reference_seed3/final.h5");
  const ModelFile b = read_model_file(cut + "/qisa_reference_seed3/final.h5");
  ASSERT_EQ(a.params.size(), b.params.size());
  for (size_t i = 0; i < a.params.size(); ++i) EXPECT_EQ(a.params[i].data, b.params[i].data) << a.params[i].name;
  EXPECT_EQ(read_csv_rows(cut + "/results.csv").size(), 4u);
}

TEST_F(Experiment, ListSlurmDryRunAndErrors) {
  const std::string g = grid("grid", tmp / "exp");
  auto list = experiment(g, "--list");
  ASSERT_EQ(list.exit_code, 0) << list.output;
  EXPECT_NE(list.output.find("4 cells (2 combinations x 2 seeds)"), std::string::npos) << list.output;
  EXPECT_NE(list.output.find("   3  pending   qisa_reference_seed4"), std::string::npos) << list.output;
  auto dry = experiment(g, "--slurm --dry-run --sbatch-arg=--time=00:10:00");
  ASSERT_EQ(dry.exit_code, 0) << dry.output;
  for (const char* s : {"#SBATCH --array=0-3", "--cell \"$SLURM_ARRAY_TASK_ID\"", " --report", "--dependency=afterany:",
                        "--time=00:10:00", "cells.sbatch", "report.sbatch"})
    EXPECT_NE(dry.output.find(s), std::string::npos) << s << "\n" << dry.output;
  EXPECT_FALSE(fs::exists(tmp / "exp"));  // a dry run writes nothing
  auto bad = experiment(g, "--cell 9");
  EXPECT_EQ(bad.exit_code, 1);
  test::expect_mentions(bad.output, {"no cell '9'", "0..3"});
  auto dry_alone = experiment(g, "--dry-run");
  EXPECT_EQ(dry_alone.exit_code, 1);
  test::expect_mentions(dry_alone.output, {"--dry-run goes with --slurm"});
}

// A cell that fails (here: training throws at step 6, which only the 8-step cell reaches) is
// recorded with its error; the other cells run and are tabulated; the command fails naming the
// cell (issue 17 A.7). Run again without the fault, the failed cell resumes and finishes, and
// its failure record is gone.
TEST_F(Experiment, AFailedCellIsRecordedAndTheOthersRun) {
  const std::string out = tmp / "fails";
  const std::string g = tmp / "fails.yaml";
  test::write_file(g, "base: base.yaml\nout: " + out + "\nseeds: [3]\ngrid:\n  train.steps: [8, 4]\n"
                      "eval: {windows: 24, batch: 8, gen_prompts: 0, probe_windows: 0, timing_repeats: 1}\n");
  auto r = experiment(g, "--set checkpoint.every_steps=2", "QISA_FAULT='train.step@step=6:throw'");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  const std::string failed_cell = "steps8_seed3";
  test::expect_mentions(r.output, {failed_cell + ": failed: fault injected at train.step", "1 of 2 cells failed: " + failed_cell,
                                   "run the same command again"});
  EXPECT_TRUE(fs::exists(out + "/" + failed_cell + ".failed"));
  EXPECT_EQ(read_csv_rows(out + "/results.csv").size(), 1u);  // the other cell ran after it
  const std::string md = test::read_file(out + "/results.md");
  test::expect_mentions(md, {"1 of 2 cells finished", "Failed cells", "- " + failed_cell + ": fault injected at train.step"});
  auto list = experiment(g, "--list");
  test::expect_mentions(list.output, {"failed    " + failed_cell, "fault injected at train.step"});
  auto again = experiment(g, "--set checkpoint.every_steps=2");
  EXPECT_EQ(again.exit_code, 0) << again.output;
  test::expect_mentions(again.output, {failed_cell + ": failed, running again", "steps4_seed3: finished, skipped",
                                       "resumed from"});
  EXPECT_FALSE(fs::exists(out + "/" + failed_cell + ".failed"));
  EXPECT_EQ(read_csv_rows(out + "/results.csv").size(), 2u);
  EXPECT_EQ(test::read_file(out + "/results.md").find("Failed cells"), std::string::npos);
}

// One run of a grid at a time (issue 17 A.7): while a run holds the grid, a second whole-grid
// run and a --cell run are refused in one line naming the holder; --cell runs of different
// cells (a Slurm array) run side by side, and the same cell twice is refused.
TEST_F(Experiment, ASecondRunOfTheSameGridIsRefusedWhileTheFirstRuns) {
  const std::string out = tmp / "locked";
  const std::string g = grid("locked", out);
  auto wait_for_holder = [](const std::string& lock) {
    for (int i = 0; i < 200 && test::read_file(lock).rfind("pid ", 0) != 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return test::read_file(lock).rfind("pid ", 0) == 0;
  };
  const std::string slow = "QISA_FAULT='train.step@step=3:sleep=2500'";  // each cell pauses 2.5 s at step 3
  test::CommandResult first;
  std::thread holder([&] { first = experiment(g, "--cell 0", slow); });
  ASSERT_TRUE(wait_for_holder(out + "/.locks/csa_causal_seed3"));
  auto whole = experiment(g);
  EXPECT_EQ(whole.exit_code, 1) << whole.output;
  test::expect_mentions(whole.output, {"'" + out + "' is in use by another qisa experiment", "--cell run"});
  auto same = experiment(g, "--cell 0");
  EXPECT_EQ(same.exit_code, 1) << same.output;
  test::expect_mentions(same.output, {"cell csa_causal_seed3", "is being run by another qisa experiment (pid "});
  auto other = experiment(g, "--cell 2");  // another cell beside it: fine
  EXPECT_EQ(other.exit_code, 0) << other.output;
  holder.join();
  EXPECT_EQ(first.exit_code, 0) << first.output;
  // a whole-grid run holds the grid: a --cell run is refused, naming it
  std::thread whole_run([&] { first = experiment(g, "", slow); });
  ASSERT_TRUE(wait_for_holder(out + "/.lock"));
  auto cell = experiment(g, "--cell 3");
  EXPECT_EQ(cell.exit_code, 1) << cell.output;
  test::expect_mentions(cell.output, {"is in use by another qisa experiment (pid ", " experiment " + g});
  whole_run.join();
  EXPECT_EQ(first.exit_code, 0) << first.output;
  EXPECT_EQ(read_csv_rows(out + "/results.csv").size(), 4u);
}

TEST_F(Experiment, PlotWritesPngsOfRunsAndOfAResultsTable) {
  const std::string out = tmp / "exp";
  ASSERT_EQ(experiment(grid("grid", out)).exit_code, 0);
  auto curves = run_command(test::qisa_bin() + " plot " + out + "/csa_causal_seed3 " + out + "/qisa_reference_seed3 --out " +
                            (tmp / "curves.png"));
  ASSERT_EQ(curves.exit_code, 0) << curves.output;
  EXPECT_NE(curves.output.find("PNG"), std::string::npos);
  const auto [w, h] = png_size(tmp / "curves.png");
  EXPECT_GT(w, 100);
  EXPECT_GT(h, 100);
  // an experiment folder stands for all its runs; a results.csv gives bars
  ASSERT_EQ(run_command(test::qisa_bin() + " plot " + out + " --linear --out " + (tmp / "all.png")).exit_code, 0);
  EXPECT_GT(png_size(tmp / "all.png").first, 0);
  // --out creates no folders (issue 17 A.6): a typo must not leave directories behind
  auto no_dir = run_command(test::qisa_bin() + " plot " + out + "/results.csv --out " + (tmp / "sub/bars.png"));
  EXPECT_EQ(no_dir.exit_code, 1);
  test::expect_mentions(no_dir.output, {"folder '" + (tmp / "sub") + "' does not exist", "mkdir -p"});
  EXPECT_FALSE(fs::exists(tmp / "sub"));
  fs::create_directory(tmp / "sub");
  auto bars = run_command(test::qisa_bin() + " plot " + out + "/results.csv --out " + (tmp / "sub/bars.png"));
  ASSERT_EQ(bars.exit_code, 0) << bars.output;
  EXPECT_GT(png_size(tmp / "sub/bars.png").first, 0);
  // errors name the input
  auto none = run_command(test::qisa_bin() + " plot " + (tmp / "nothing") + " --out " + (tmp / "x.png"));
  EXPECT_EQ(none.exit_code, 1);
  test::expect_mentions(none.output, {"nothing", "neither a run directory"});
  EXPECT_FALSE(fs::exists(tmp / "x.png"));
  test::write_file(tmp / "bad.csv", "cell,group\nx,y\n");
  auto bad = run_command(test::qisa_bin() + " plot " + (tmp / "bad.csv") + " --out " + (tmp / "x.png"));
  EXPECT_EQ(bad.exit_code, 1);
  test::expect_mentions(bad.output, {"bad.csv", "no column 'seed'"});
  // gnuplot missing: one line with the package to install
  auto missing = run_command("QISA_GNUPLOT=/nonexistent/gnuplot " + test::qisa_bin() + " plot " + out + " --out " +
                             (tmp / "x.png"));
  EXPECT_EQ(missing.exit_code, 1);
  test::expect_mentions(missing.output, {"x.png", "/nonexistent/gnuplot", "status 127", "does not run", "QISA_GNUPLOT"});
  // a gnuplot without the pngcairo terminal (gnuplot-nox-minimal) answers in its error format,
  // '"SCRIPT" line N: MESSAGE': qisa shows the message and the package that has the terminal
  test::write_file(tmp / "gnuplot-minimal",
                   "#!/bin/sh\necho 'set terminal pngcairo size 900,600' >&2\necho '             ^' >&2\n"
                   "echo \"\\\"$1\\\" line 1: unknown or ambiguous terminal type; type just 'set terminal' for a list\" >&2\nexit 1\n");
  fs::permissions(tmp / "gnuplot-minimal", fs::perms::owner_all);
  auto minimal = run_command("QISA_GNUPLOT=" + (tmp / "gnuplot-minimal") + " " + test::qisa_bin() + " plot " + out +
                             " --out " + (tmp / "x.png"));
  EXPECT_EQ(minimal.exit_code, 1);
  test::expect_mentions(minimal.output, {"exited with status 1: unknown or ambiguous terminal type", "gnuplot-nox (not gnuplot-nox-minimal)"});
  EXPECT_EQ(minimal.output.find("^"), std::string::npos) << minimal.output;  // not the raw echo of the script
  EXPECT_FALSE(fs::exists(tmp / "x.png"));
}

TEST(PngCheck, RejectsWhatIsNotACompletePng) {
  test::TempDir tmp;
  LinePanel p{"t", "x", "y", false, {{"s", {1, 2, 3}, {3, 1, 2}, false, {}}}, false};
  plot_lines({p}, tmp / "ok.png");
  const std::string bytes = test::read_file(tmp / "ok.png");
  EXPECT_GT(png_size(tmp / "ok.png").first, 0);
  test::write_file(tmp / "cut.png", bytes.substr(0, bytes.size() - 20));
  test::expect_mentions(test::error_of([&] { png_size(tmp / "cut.png"); }), {"cut.png", "cut short"});
  test::write_file(tmp / "text.png", "not a png at all, just some text that is long enough to be checked");
  test::expect_mentions(test::error_of([&] { png_size(tmp / "text.png"); }), {"text.png", "not a PNG"});
}

TEST(ExperimentReport, MeanStdAndRatiosOnKnownNumbers) {
  test::TempDir tmp;
  test::write_file(tmp / "base.yaml", "model:\n  attention: qisa\ndata:\n  corpus: c.h5\n");
  test::write_file(tmp / "grid.yaml",
                   "base: base.yaml\nout: o\nseeds: [1, 2]\ngrid:\n  model.attention: [csa, qisa]\n  model.mask: [causal]\n");
  const ExperimentGrid g = load_experiment_grid(tmp / "grid.yaml");
  auto row = [](const char* group, uint64_t seed, double ce, double infer) {
    CellResult r;
    r.cell = std::string(group) + "_seed" + std::to_string(seed);
    r.group = group;
    r.seed = seed;
    r.steps = 100;
    r.val_ce = ce;
    r.val_cer = 0.5;
    r.val_wer = 1.0;
    r.gen_cer = 0.8;
    r.train_ms_per_step = 10;
    r.infer_ms_per_batch = infer;
    r.leak_max_abs_delta = 0;
    return r;
  };
  const std::vector<CellResult> rows = {row("csa_causal", 1, 2.0, 4.0), row("qisa_causal", 1, 0.2, 10.0),
                                        row("csa_causal", 2, 2.2, 4.0), row("qisa_causal", 2, 0.2, 11.0)};
  const std::string md = results_markdown(g, rows, {});
  // mean 2.1, sample std 0.1414; ratios of the means: 2.1 / 0.2 = 10.5x lower CE, 10.5 / 4 = 2.62x inference time.
  // Welch: se^2 = 0.1414^2 / 2 + 0 = 0.01, t = -1.9 / 0.1 = -19 on df = 1 (all the variance is one group's, n = 2),
  // where Student's t is Cauchy: p = 1 - (2 / pi) atan(19) = 0.0335.
  test::expect_mentions(md, {"| csa_causal | 2 | 100 | 2.1 ± 0.1414 | 0.5 ± 0 |",
                             "| qisa_causal | csa_causal | 10.5x lower | 1.00x (level) |", "| 1.00x | 2.62x | -1.9 (p = 0.033) |",
                             "4 of 4 cells finished",
                             "1 val CE comparisons with a p-value; corrected for their number (Bonferroni, p < 0.05), "
                             "significant at 0.05: qisa_causal."});
  const std::string level = results_markdown(g, {rows[0], rows[2], row("qisa_causal", 1, 2.05, 4.0), row("qisa_causal", 2, 2.2, 4.0)}, {});
  test::expect_mentions(level, {"| qisa_causal | csa_causal | 1.01x higher", "none is significant at 0.05"});
  const std::string partial = results_markdown(g, {rows[1]}, {"csa_causal_seed1"});
  test::expect_mentions(partial, {"1 of 2 cells finished (missing: csa_causal_seed1)", "baseline's finished cells yet, so no ratios"});
  // round trip through JSON, NaN (not measured) included
  CellResult r = rows[0];
  r.gen_cer = NAN;
  const CellResult back = CellResult::from_json(r.to_json(), "r.json");
  EXPECT_TRUE(std::isnan(back.gen_cer));
  EXPECT_EQ(back.val_ce, r.val_ce);
  EXPECT_EQ(back.values, r.values);
  r.attention = "qisa", r.mask = "causal", r.qisa_value = "shared", r.n_layer = 6, r.params = 123456789012;
  r.tokens = 5, r.train_flops = 1.5e18, r.git_commit = "0123456789ab+dirty";
  const CellResult facts = CellResult::from_json(r.to_json(), "r.json");
  EXPECT_EQ(facts.attention + facts.mask + facts.qisa_value + facts.git_commit, "qisacausalshared0123456789ab+dirty");
  EXPECT_EQ(facts.n_layer, 6);
  EXPECT_EQ(facts.params, 123456789012);
  EXPECT_EQ(facts.train_flops, 1.5e18);
  EXPECT_TRUE(std::isnan(facts.train_wall_s));
  // a result written before the run's facts were recorded still reads (they are empty)
  auto old = nlohmann::json::parse(r.to_json());
  for (const char* k : {"attention", "mask", "qisa_value", "n_layer", "n_head", "n_embd", "block_size", "params", "tokens",
                        "train_flops", "train_wall_s", "git_commit"})
    old.erase(k);
  const CellResult before = CellResult::from_json(old.dump(), "old.json");
  EXPECT_EQ(before.val_ce, r.val_ce);
  EXPECT_EQ(before.attention, "");
  EXPECT_TRUE(std::isnan(before.train_flops));
  test::expect_mentions(test::error_of([] { CellResult::from_json("{\"cell\": 1}", "r.json"); }), {"r.json", "incomplete"});
}

}  // namespace
}  // namespace qisa
