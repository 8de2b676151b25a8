// Graceful stop: the first SIGTERM/SIGUSR1/SIGINT is recorded for the step loop; a second one
// ends the process at once, the way the signal would without our handler.
#include <gtest/gtest.h>

#include <csignal>

#include "trainer/signals.h"

namespace qisa {
namespace {

TEST(StopSignals, FirstSignalIsRecordedNotFatal) {
  for (int sig : {SIGTERM, SIGUSR1, SIGINT}) {
    StopSignals s;
    EXPECT_EQ(StopSignals::pending(), 0);
    std::raise(sig);
    EXPECT_EQ(StopSignals::pending(), sig);
  }
}

TEST(StopSignals, SecondSignalKillsAtOnce) {
  EXPECT_EXIT(
      {
        StopSignals s;
        std::raise(SIGUSR1);
        std::raise(SIGTERM);  // default action of SIGTERM: terminate
        std::_Exit(0);        // not reached
      },
      ::testing::KilledBySignal(SIGTERM), "a second stop signal: stopping at once, without a checkpoint");
}

TEST(StopSignals, HandlersAreRestoredAfterwards) {
  { StopSignals s; }
  EXPECT_EXIT(
      {
        std::raise(SIGUSR1);  // no handler any more: the default action ends the process
        std::_Exit(0);
      },
      ::testing::KilledBySignal(SIGUSR1), "");
}

}  // namespace
}  // namespace qisa
