// Graceful stop on SIGTERM / SIGUSR1 / SIGINT (what Slurm sends before a time limit, and
// Ctrl-C): the first signal sets a flag that the step loop reads after each step (finish
// the step, write a checkpoint, exit 0); a second signal ends the process at once.
#pragma once

namespace qisa {

// Installs the handlers for its lifetime (RAII; the previous handlers come back after).
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  // The first signal received (SIGTERM, SIGUSR1, SIGINT), or 0.
  static int pending();
  static const char* name(int sig);
};

}  // namespace qisa
