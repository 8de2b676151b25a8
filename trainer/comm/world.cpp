#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/error.h"
#include "trainer/comm/communicator.h"

namespace qisa {

namespace {

constexpr long kMaxRanks = 1L << 30;

// The value of environment variable `name`; nullptr when unset or empty (an empty value is how
// shells and Slurm spell "unset").
const char* env_value(const char* name) {
  const char* v = std::getenv(name);
  return (v && *v) ? v : nullptr;
}

// Parses decimal digits from `p` (no sign, no spaces: strtol's leniency would accept " +3");
// advances `p`. -1 when there is no digit or the number is absurdly large.
long parse_digits(const char*& p) {
  if (*p < '0' || *p > '9') return -1;
  long x = 0;
  while (*p >= '0' && *p <= '9') {
    x = x * 10 + (*p++ - '0');
    if (x >= kMaxRanks) return -1;
  }
  return x;
}

// The integer value of environment variable `name`, or -1 when unset. A set but malformed
// value is an error: a half-configured launcher must not silently become a 1-rank run.
int env_int(const char* name) {
  const char* v = env_value(name);
  if (!v) return -1;
  const char* p = v;
  const long x = parse_digits(p);
  QISA_CHECK(x >= 0 && *p == '\0',
             std::string("environment variable ") + name + "='" + v + "' is not a non-negative integer",
             "unset it, or launch through mpirun/srun which set it");
  return static_cast<int>(x);
}

// Slurm's compressed per-node task counts, e.g. "2(x3),1" = {2, 2, 2, 1}, as runs of
// (count, repeat): a malformed "1(x999999999)" must not allocate a billion entries.
struct TaskRun {
  int count;
  long repeat;
};
std::vector<TaskRun> slurm_task_counts(const char* name, const char* v) {
  const auto malformed = [&] {
    return Error(std::string("environment variable ") + name + "='" + v +
                     "' is not a Slurm task-count list such as '2' or '2(x3),1'",
                 "unset it, or launch through srun which sets it");
  };
  std::vector<TaskRun> runs;
  long nodes = 0;
  const char* p = v;
  for (;;) {
    const long n = parse_digits(p);
    if (n <= 0) throw malformed();
    long repeat = 1;
    if (*p == '(') {
      if (p[1] != 'x') throw malformed();
      p += 2;
      repeat = parse_digits(p);
      if (repeat <= 0 || *p != ')') throw malformed();
      ++p;
    }
    nodes += repeat;
    if (nodes >= kMaxRanks) throw malformed();
    runs.push_back({static_cast<int>(n), repeat});
    if (*p == '\0') return runs;
    if (*p++ != ',') throw malformed();
  }
}

// Tasks on this node under srun: the step's per-node list (the job's as a fallback; the
// request --ntasks-per-node last, as it may differ from what was granted), indexed by
// SLURM_NODEID. -1 when no list is set.
int slurm_local_size(std::string& vars) {
  for (const char* name : {"SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE", "SLURM_NTASKS_PER_NODE"}) {
    const char* v = env_value(name);
    if (!v) continue;
    const std::vector<TaskRun> runs = slurm_task_counts(name, v);
    vars += std::string(" ") + name + "=" + v;
    const int node = env_int("SLURM_NODEID");
    if (node < 0) {
      const bool uniform = std::all_of(runs.begin(), runs.end(), [&](TaskRun r) { return r.count == runs[0].count; });
      QISA_CHECK(uniform, std::string(name) + "=" + v + " differs between nodes and SLURM_NODEID is not set",
                 "launch through srun, which sets SLURM_NODEID");
      return runs[0].count;
    }
    vars += " SLURM_NODEID=" + std::to_string(node);
    long first = 0;  // index of the run's first node
    for (const TaskRun& r : runs) {
      if (node < first + r.repeat) return r.count;
      first += r.repeat;
    }
    throw Error("SLURM_NODEID=" + std::to_string(node) + " is past the " + std::to_string(first) + " nodes of " +
                    name + "=" + v,
                "the Slurm environment is inconsistent; launch through srun");
  }
  return -1;
}

}  // namespace

WorldInfo detect_world() {
  WorldInfo w;
  // In order of precedence: the most specific launcher first (mpirun inside a Slurm job sets
  // both OMPI_* and SLURM_*; the OMPI values describe the MPI job).
  //
  // Slurm sizes come from SLURM_STEP_NUM_TASKS, which only srun sets: an sbatch script's own
  // shell also has SLURM_PROCID=0 and SLURM_NTASKS=N, but it is one process, not rank 0 of N
  // (a bare `qisa train` there must not wait for N-1 ranks that were never started).
  struct Source {
    const char* launcher;
    const char *rank, *size, *local_rank, *local_size;  // local_size nullptr: Slurm's lists
    bool needs_size;  // rank set without size: an error (else: not this launcher)
  };
  const Source sources[] = {
      {"mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
       "OMPI_COMM_WORLD_LOCAL_SIZE", true},
      // srun --mpi=pmix; PMIX_RANK alone (another PMIx launcher) is left to the sources below.
      {"pmix", "PMIX_RANK", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", nullptr, false},
      {"pmi", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS", true},  // MPICH hydra
      {"slurm", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", nullptr, false},
  };
  for (const auto& s : sources) {
    const int rank = env_int(s.rank);
    if (rank < 0) continue;
    const int size = env_int(s.size);
    if (size < 0 && !s.needs_size) continue;
    QISA_CHECK(size >= 1, std::string(s.rank) + "=" + std::to_string(rank) + " is set but " + s.size + " is " +
                              (size < 0 ? "not set" : "0"),
               "the launcher environment is inconsistent; unset both or launch through mpirun/srun");
    QISA_CHECK(rank < size,
               std::string(s.rank) + "=" + std::to_string(rank) + " is not below " + s.size + "=" + std::to_string(size),
               "the launcher environment is inconsistent");
    w.rank = rank;
    w.size = size;
    w.launcher = s.launcher;
    w.variables = std::string(s.rank) + "=" + std::to_string(rank) + " " + s.size + "=" + std::to_string(size);
    w.local_rank = std::max(0, env_int(s.local_rank));
    const int ls = s.local_size ? env_int(s.local_size) : slurm_local_size(w.variables);
    if (s.local_size && ls >= 0) w.variables += std::string(" ") + s.local_size + "=" + std::to_string(ls);
    // Unknown local size: assume one node. A job-wide list may exceed a smaller step: clamp.
    w.local_size = ls > 0 ? std::min(ls, size) : size;
    QISA_CHECK(w.local_rank < w.local_size,
               std::string(s.local_rank) + "=" + std::to_string(w.local_rank) + " does not fit a node of " +
                   std::to_string(w.local_size) + " of " + std::to_string(size) + " ranks (" + w.variables + ")",
               "the launcher environment is inconsistent");
    return w;
  }
  return w;
}

}  // namespace qisa
