// The command `qisa launch` runs: mpirun or srun around `qisa train`, with one rank per GPU
// (or P ranks per node), T OpenMP threads per rank pinned to T cores of their own, and the
// root flags when running as root. A pure function, so --dry-run output is testable.
#pragma once
#include <string>
#include <vector>

namespace qisa::cli {

struct LaunchRequest {
  enum class Mode { automatic, slurm, mpirun };
  int nodes = 1;
  int gpus_per_node = 0;   // > 0: one rank per GPU
  int procs_per_node = 0;  // CPU ranks per node (when no GPUs); 0 = 1
  int threads = 0;         // per rank; 0 = cores per node / ranks per node
  Mode mode = Mode::automatic;
  std::string hostfile;    // mpirun across nodes outside Slurm
  std::string qisa;        // the qisa executable to run
  std::vector<std::string> train_args;  // CONFIG [overrides]
  // Facts about where we run (filled from the environment by the command; set by tests).
  bool root = false;
  bool in_slurm = false;   // inside an allocation (SLURM_JOB_ID set)
  int cores_per_node = 1;
};

struct LaunchPlan {
  std::vector<std::string> argv;  // argv[0] is mpirun or srun
  int ranks = 0, ranks_per_node = 0, threads = 0;
};

// Throws qisa::Error on an impossible request (e.g. GPUs and --procs together, several nodes
// with mpirun and neither a hostfile nor a Slurm allocation).
LaunchPlan plan_launch(const LaunchRequest& r);

// The command as a shell would read it (single quotes where needed).
std::string shell_command(const std::vector<std::string>& argv);

}  // namespace qisa::cli
