#include "trainer/signals.h"

#include <unistd.h>

#include <csignal>

namespace qisa {

namespace {
// A signal handler can only talk to the program through a lock-free atomic flag: this is the
// one piece of process-wide state, owned by StopSignals.
volatile std::sig_atomic_t g_pending = 0;
constexpr int kSignals[] = {SIGTERM, SIGUSR1, SIGINT};
struct sigaction g_saved[3];

// write(2) only: the one way to print that is safe inside a signal handler.
void say(const char* text) {
  size_t n = 0;
  while (text[n]) ++n;
  [[maybe_unused]] const ssize_t w = ::write(STDERR_FILENO, text, n);
}

void on_signal(int sig) {
  if (g_pending != 0) {  // second signal: stop now, the way the signal would without us
    say("qisa: a second stop signal: stopping at once, without a checkpoint (the newest one on disk is kept)\n");
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  g_pending = sig;
}
}  // namespace

StopSignals::StopSignals() {
  g_pending = 0;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // a signal must not make a blocking read or MPI call fail
  for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &sa, &g_saved[i]);
}

StopSignals::~StopSignals() {
  for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &g_saved[i], nullptr);
}

int StopSignals::pending() { return g_pending; }

const char* StopSignals::name(int sig) {
  switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    case SIGINT: return "SIGINT";
    default: return "signal";
  }
}

}  // namespace qisa
