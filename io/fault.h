// Fault points for tests of crash safety (kill -9 mid-checkpoint, a rank failing mid-run).
// Inactive unless the environment variable QISA_FAULT is set:
//   QISA_FAULT="POINT[@rank=R][@step=S]:ACTION[,...]"
//   ACTION: sleep=MS | exit=CODE (immediate _Exit, no cleanup) | throw (a qisa::Error) | kill (SIGKILL self)
//           | signal=N (raise signal N, e.g. 15 = SIGTERM: the graceful-stop path)
// e.g. QISA_FAULT="train.step@rank=1@step=30:exit=3" or "checkpoint.piece:sleep=200".
// A point fires each time it is reached with a matching rank and step (-1 = any).
#pragma once
#include <cstdint>
#include <string>

namespace qisa {

void fault_point(const std::string& point, int rank = -1, int64_t step = -1);

}  // namespace qisa
