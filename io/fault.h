// Fault points for tests of crash safety and error handling (kill -9 mid-checkpoint, a rank
// failing mid-run, a full disk, a NaN gradient). Inactive unless the environment variable
// QISA_FAULT is set:
//   QISA_FAULT="POINT[@rank=R][@step=S]:ACTION[,...]"
//   ACTION: sleep=MS | exit=CODE (immediate _Exit, no cleanup) | throw (a qisa::Error) | kill (SIGKILL self)
//           | signal=N (raise signal N, e.g. 15 = SIGTERM: the graceful-stop path)
//           | enospc (the write at this point fails as on a full disk: a qisa::Error whose
//             message ends in strerror(ENOSPC), "No space left on device")
//           | nan | inf | value=N (data faults, applied by the caller through fault_poison(): e.g.
//             train.grad writes one NaN into this rank's gradients before the all-reduce;
//             value=N writes the finite number N instead, e.g. a gradient spike)
// Points: train.step (rank, step; before each micro-batch), train.grad (rank, step; data
// faults), train.loss (rank, step; data faults: this rank's mean loss of the step, as reported
// and judged, becomes the value; the gradients are untouched), checkpoint.write (rank, step;
// between the parameters and the AdamW moments), checkpoint.piece (step; each piece the writer
// writes), checkpoint.commit (step; after the file is closed, before the rename). enospc belongs
// at the points where rank 0 writes.
// e.g. QISA_FAULT="train.step@rank=1@step=30:exit=3", "checkpoint.piece@step=40:enospc",
//      "train.grad@rank=1@step=7:nan", "train.grad@step=30:value=1000".
// A point fires each time it is reached with a matching rank and step (-1 = any; an entry
// with @step=S never matches a point reached without a step).
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace qisa {

// Runs the control-flow actions (sleep, exit, throw, kill, signal, enospc) of the entries
// matching this point; data actions (nan, inf, value) are left to fault_poison.
void fault_point(const std::string& point, int rank = -1, int64_t step = -1);

// The value a matching nan/inf/value entry asks the caller to write into its data, if any.
std::optional<float> fault_poison(const std::string& point, int rank = -1, int64_t step = -1);

}  // namespace qisa
