// qisa experiment GRID.yaml [--cell K] [--list] [--remeasure] [--report] [--slurm [--dry-run] [--sbatch-arg A]...]
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>

#include "io/atomic_file.h"
#include "io/plot.h"
#include "kernels/error.h"
#include "launcher/commands.h"
#include "launcher/numbers.h"
#include "launcher/run_setup.h"
#include "trainer/comm/communicator.h"
#include "trainer/experiment.h"

namespace qisa::cli {

namespace fs = std::filesystem;

namespace {

struct Args {
  std::string grid;
  std::string cell;
  std::vector<std::string> set;
  std::vector<std::string> sbatch_args;
  int threads = 0;
  bool list = false, report = false, slurm = false, dry_run = false, quiet = true, remeasure = false;
};

std::string sh_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-./=:,+@%") ==
                        std::string::npos)
    return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string self_path() {
  std::error_code ec;
  const fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("qisa") : p.string();
}

void report_and_plot(const ExperimentGrid& grid) {
  const ExperimentReport rep = write_report(grid);
  std::printf("\n%s\n", rep.markdown.c_str());
  std::printf("results: %s\n         %s\n", rep.csv_path.c_str(), rep.md_path.c_str());
  if (find_gnuplot().empty()) {
    std::printf("plots:   skipped: gnuplot is not installed (apt-get install gnuplot-nox)\n");
    return;
  }
  for (const std::string& png : plot_experiment(grid, rep)) std::printf("plot:    %s\n", png.c_str());
}

void list_cells(const ExperimentGrid& grid) {
  const auto cells = grid.cells();
  std::printf("%zu cells (%zu combinations x %zu seeds) in %s\n", cells.size(), grid.groups().size(), grid.seeds.size(),
              grid.out.c_str());
  std::map<std::string, int> count;
  for (const GridCell& c : cells) {
    const CellState s = cell_state(grid, c);
    std::printf("%4d  %-9s %s\n", c.index, to_string(s), c.name.c_str());
    if (s == CellState::failed && !cell_failure(c).empty()) std::printf("            %s\n", cell_failure(c).c_str());
    ++count[to_string(s)];
  }
  std::string summary;
  for (CellState s : {CellState::finished, CellState::trained, CellState::started, CellState::failed, CellState::pending})
    if (count[to_string(s)] > 0) summary += (summary.empty() ? "" : ", ") + std::to_string(count[to_string(s)]) + " " + to_string(s);
  std::printf("%s\n", summary.c_str());
}

// Writes OUT/slurm/{cells,report}.sbatch: an array job of one task per cell, and the report
// job that runs after it (afterany: a failed cell still gets the others tabulated).
void submit_slurm(const ExperimentGrid& grid, const Args& a) {
  const auto cells = grid.cells();
  const std::string dir = fs::absolute(fs::path(grid.out) / "slurm").lexically_normal().string();
  const std::string qisa = self_path(), cwd = fs::current_path().string();
  std::string sets;
  for (const auto& s : a.set) sets += " --set " + sh_quote(s);
  const std::string grid_arg = sh_quote(fs::absolute(a.grid).lexically_normal().string());
  const std::string common = "set -euo pipefail\ncd " + sh_quote(cwd) + "\nthreads=${SLURM_CPUS_PER_TASK:-1}\n" +
                             "export OMP_NUM_THREADS=$threads\n";
  const std::string cells_script =
      "#!/bin/bash\n# Written by qisa experiment --slurm: one array task per cell of " + a.grid +
      "\n#SBATCH --job-name=qisa-exp\n#SBATCH --array=0-" + std::to_string(cells.size() - 1) +
      "\n#SBATCH --ntasks=1\n#SBATCH --cpus-per-task=1\n#SBATCH --output=" + dir + "/cell_%a.out\n" + common +
      "srun --mpi=pmix --kill-on-bad-exit=1 --cpus-per-task=\"$threads\" " + sh_quote(qisa) + " experiment " + grid_arg +
      sets + " --cell \"$SLURM_ARRAY_TASK_ID\" --threads \"$threads\"\n";
  const std::string report_script = "#!/bin/bash\n# Written by qisa experiment --slurm: the results of " + a.grid +
                                    " once every cell has ended\n#SBATCH --job-name=qisa-exp-report\n#SBATCH --ntasks=1\n"
                                    "#SBATCH --output=" + dir + "/report.out\n" + common + sh_quote(qisa) +
                                    " experiment " + grid_arg + sets + " --report\n";
  std::string extra;
  for (const auto& s : a.sbatch_args) extra += " " + sh_quote(s);
  const std::string cells_path = dir + "/cells.sbatch", report_path = dir + "/report.sbatch";
  if (a.dry_run) {
    std::printf("# %s\n%s\n# %s\n%s\n", cells_path.c_str(), cells_script.c_str(), report_path.c_str(), report_script.c_str());
    std::printf("sbatch --parsable%s %s\nsbatch --parsable --dependency=afterany:<array job>%s %s\n", extra.c_str(),
                cells_path.c_str(), extra.c_str(), report_path.c_str());
    return;
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  QISA_CHECK(fs::is_directory(dir), "cannot create '" + dir + "': " + ec.message(), "choose a writable out: in the grid file");
  write_text_atomic(cells_path, cells_script);
  write_text_atomic(report_path, report_script);
  auto sbatch = [](const std::string& args) {
    const std::string cmd = "sbatch --parsable" + args + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    QISA_CHECK(p, "cannot run sbatch", "is Slurm installed? (cluster/local-slurm/up.sh starts a one-node Slurm)");
    std::string out;
    char buf[512];
    while (fgets(buf, sizeof buf, p)) out += buf;
    const int status = pclose(p);
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    QISA_CHECK(status == 0 && !out.empty() && std::isdigit(static_cast<unsigned char>(out[0])),
               "`" + cmd.substr(0, cmd.size() - 5) + "` failed: " + (out.empty() ? "no output" : out),
               "check the sbatch options (--sbatch-arg) and that Slurm is up (sinfo)");
    return out.substr(0, out.find(';'));
  };
  const std::string array_job = sbatch(extra + " " + sh_quote(cells_path));
  const std::string report_job = sbatch(" --dependency=afterany:" + array_job + extra + " " + sh_quote(report_path));
  std::printf("submitted array job %s (%zu cells, logs %s/cell_<index>.out) and report job %s (after it)\n",
              array_job.c_str(), cells.size(), dir.c_str(), report_job.c_str());
  std::printf("results then in %s/results.md; progress: qisa experiment %s --list\n", grid.out.c_str(), a.grid.c_str());
}

// The config of the first of `cells` whose config loads (a cell whose config does not fails
// alone, when it runs); every loadable cell must name the same device (one backend serves all).
Config backend_config(const ExperimentGrid& grid, const std::vector<GridCell>& cells, const Args& a) {
  std::optional<Config> first;
  const GridCell* first_cell = nullptr;
  for (const GridCell& c : cells) {
    Config cfg;
    try {
      cfg = cell_config(grid, c);
    } catch (const Error&) {
      continue;
    }
    if (!first) {
      first = cfg;
      first_cell = &c;
      continue;
    }
    QISA_CHECK(cfg.train.device == first->train.device,
               "grid '" + a.grid + "': cell " + c.name + " has train.device = " + to_string(cfg.train.device) + ", cell " +
                   first_cell->name + " " + to_string(first->train.device),
               "an experiment runs on one device: set train.device in the grid's set: (or --set), not per cell");
  }
  if (!first) cell_config(grid, cells.front());  // none loads: the first one's error
  if (a.threads > 0) first->train.threads = a.threads;
  return *first;
}

// Rank 0 takes the grid's lock (trainer/experiment.h: GridLock); every rank learns whether it got it.
std::unique_ptr<GridLock> lock_grid(const ExperimentGrid& grid, const GridCell* only_cell, Communicator& comm) {
  std::unique_ptr<GridLock> lock;
  run_on_root(comm, [&] { lock = std::make_unique<GridLock>(grid, only_cell); });
  return lock;
}

const char* plan_of(CellState s, bool remeasure) {
  switch (s) {
    case CellState::finished: return remeasure ? ", measuring again" : ", skipped";
    case CellState::trained: return ", measuring";
    case CellState::started: return ", resuming";
    case CellState::failed: return ", running again";
    case CellState::pending: break;
  }
  return ", training";
}

// Trains and measures the cells in order. A cell that fails is recorded (OUT/<cell>.failed)
// and the others still run; the report lists the failed cells with their errors, and the
// command then fails naming them.
void run_cells(const ExperimentGrid& grid, const Args& a) {
  const auto all = grid.cells();
  std::vector<GridCell> todo = all;
  if (!a.cell.empty()) todo = {find_cell(all, a.cell)};
  const Config first = backend_config(grid, todo, a);
  auto backend = make_backend(first);
  with_communicator(first, *backend, [&](Communicator& comm, Collectives& coll) {
    const bool lead = comm.rank() == 0;
    const auto lock = lock_grid(grid, a.cell.empty() ? nullptr : &todo.front(), comm);
    std::vector<std::string> failed;
    for (const GridCell& c : todo) {
      GridCell cell = c;
      if (a.threads > 0) cell.overrides.push_back("train.threads=" + std::to_string(a.threads));
      const CellState before = lead ? cell_state(grid, cell) : CellState::pending;
      if (lead) {
        std::printf("[%d/%zu] %s: %s%s\n", c.index + 1, all.size(), c.name.c_str(), to_string(before),
                    plan_of(before, a.remeasure));
        std::fflush(stdout);
      }
      try {
        if (!run_cell(grid, cell, *backend, comm, coll, a.quiet, a.remeasure)) {
          if (lead) std::printf("stopped during %s; run the same command again to continue\n", c.name.c_str());
          return;
        }
      } catch (const Error& e) {
        // one process, or an error every rank raised together: the next cell can still run
        if (comm.size() > 1 && !dynamic_cast<const CollectiveError*>(&e)) throw;
        failed.push_back(c.name);
        if (lead) {
          record_cell_failure(c, e.message());
          std::printf("[%d/%zu] %s: failed: %s\n", c.index + 1, all.size(), c.name.c_str(), e.message().c_str());
          std::fflush(stdout);
        }
      }
    }
    if (lead && a.cell.empty()) report_and_plot(grid);
    if (lead && !a.cell.empty() && failed.empty())
      std::printf("cell %s done; the table: qisa experiment %s --report\n", todo.front().name.c_str(), a.grid.c_str());
    if (failed.empty()) return;
    std::string names;
    for (const auto& n : failed) names += (names.empty() ? "" : ", ") + n;
    throw CollectiveError(std::to_string(failed.size()) + " of " + std::to_string(todo.size()) + " cells failed: " + names +
                              " (each one's error is in " + grid.out + "/<cell>.failed)",
                          "fix the cause and run the same command again: finished cells are skipped, failed ones run again");
  });
}

}  // namespace

void add_experiment(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "experiment",
      "Run an experiment grid (attention x mask x seeds x any config key): trains every cell in sequence (or as a "
      "Slurm array with --slurm), skips finished cells, resumes interrupted ones, and writes OUT/results.csv, "
      "OUT/results.md (mean ± std over seeds, ratios to the baseline) and plots. See configs/paper/grid.yaml");
  auto a = std::make_shared<Args>();
  cmd->add_option("grid", a->grid, "experiment grid YAML (e.g. configs/paper/grid.yaml)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--cell", a->cell, "run only this cell (index or name; see --list)");
  cmd->add_option("--set", a->set, "override for every cell, after the grid's set: (e.g. --set train.steps=100)");
  cmd->add_option("--threads", a->threads, "CPU threads per rank (default: OMP_NUM_THREADS, else the cores this rank may use)")
      ->transform(count_in(0, 100000));
  cmd->add_flag("--list", a->list, "list the cells and their state (pending, started, trained, finished)");
  cmd->add_flag("--remeasure", a->remeasure,
                "measure finished cells again (their models are kept), e.g. for timings on a quiet machine");
  cmd->add_flag("--report", a->report, "only tabulate the finished cells (results.csv, results.md) and plot them");
  cmd->add_flag("--slurm", a->slurm, "submit the cells as a Slurm array job and the report as a job after it");
  cmd->add_flag("--dry-run", a->dry_run, "with --slurm: print the job scripts and sbatch commands, submit nothing");
  cmd->add_option("--sbatch-arg", a->sbatch_args, "with --slurm: an option for sbatch (repeat), e.g. --sbatch-arg=--time=02:00:00")
      ->allow_extra_args(false);
  cmd->add_flag("!--progress", a->quiet, "print each training step's line (default: only evaluations and checkpoints)");
  cmd->callback([a] {
    const ExperimentGrid grid = load_experiment_grid(a->grid, a->set);
    QISA_CHECK(!(a->dry_run && !a->slurm), "--dry-run goes with --slurm", "add --slurm, or drop --dry-run");
    if (a->list) return list_cells(grid);
    if (a->report) return report_and_plot(grid);
    if (a->slurm) return submit_slurm(grid, *a);
    run_cells(grid, *a);
  });
}

}  // namespace qisa::cli
