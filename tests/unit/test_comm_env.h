// The launcher environment for single-process communicator tests: every variable
// detect_world() reads is unset while a LauncherEnv lives, and restored afterwards, so a test
// run under mpirun or srun still sees a clean world.
#pragma once
#include <cstdlib>
#include <map>
#include <optional>
#include <string>

namespace qisa::test {

class LauncherEnv {
 public:
  LauncherEnv() {
    for (const char* name : {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                             "OMPI_COMM_WORLD_LOCAL_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID",
                             "MPI_LOCALNRANKS", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS",
                             "SLURM_LOCALID", "SLURM_NODEID", "SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE",
                             "SLURM_STEP_TASKS_PER_NODE"})
      unset(name);
  }
  ~LauncherEnv() {
    for (const auto& [name, value] : saved_) {
      if (value) setenv(name.c_str(), value->c_str(), 1);
      else unsetenv(name.c_str());
    }
  }
  LauncherEnv(const LauncherEnv&) = delete;
  LauncherEnv& operator=(const LauncherEnv&) = delete;

  LauncherEnv& set(const char* name, const std::string& value) {
    save(name);
    setenv(name, value.c_str(), 1);
    return *this;
  }
  LauncherEnv& unset(const char* name) {
    save(name);
    unsetenv(name);
    return *this;
  }

 private:
  void save(const char* name) {
    if (saved_.count(name)) return;
    const char* v = std::getenv(name);
    saved_[name] = v ? std::optional<std::string>(v) : std::nullopt;
  }
  std::map<std::string, std::optional<std::string>> saved_;
};

}  // namespace qisa::test
