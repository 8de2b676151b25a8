// A job in which one rank fails while the others wait in a gradient allreduce (Collectives); it
// must end, not hang (DESIGN.md: "a dead rank must end the job"). tests/CMakeLists.txt runs it under mpiexec
// and `timeout 30` through expect_job_dies.sh.
//
//   rank_failure throw   rank 1 throws a qisa::Error; main catches it, prints one line and
//                        calls comm->abort(1) (MPI_Abort): the launcher ends every rank.
//   rank_failure exit    rank 1 dies by std::_Exit(3): no MPI_Abort, no MPI_Finalize. The
//                        launcher must notice and end the job by itself.
//   rank_failure unwind  rank 1's exception escapes the communicator's scope uncaught by the
//                        trainer: the communicator's destructor aborts the job.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "kernels/error.h"
#include "trainer/comm/collectives.h"
#include "trainer/comm/communicator.h"

namespace {

void train_steps(qisa::Communicator& comm, qisa::Collectives& coll, const std::string& mode) {
  std::vector<float> grads(1 << 16, 1.f);  // CPU backend memory is host memory
  for (int step = 0; step < 1000; ++step) {
    if (step == 3 && comm.rank() == 1) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the others are waiting by now
      // For expect_job_dies.sh: how long the job takes to end after this.
      const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
      std::fprintf(stderr, "rank_failure: rank 1 fails (%s) at unix time %.3f\n", mode.c_str(), now);
      std::fflush(stderr);
      if (mode == "exit") std::_Exit(3);
      throw qisa::Error("rank 1 failed at step 3 (injected)", "this is tests/mpi/rank_failure.cpp");
    }
    coll.allreduce_sum(grads.data(), grads.size(), qisa::DType::f32, nullptr);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "throw";
  if (mode != "throw" && mode != "exit" && mode != "unwind") {
    std::fprintf(stderr, "usage: rank_failure throw|exit|unwind\n");
    return 2;
  }
  try {
    auto backend = qisa::make_cpu_backend(1);
    auto comm = qisa::make_communicator("mpi");
    auto coll = qisa::make_collectives(*comm, *backend);
    if (mode == "unwind") {
      train_steps(*comm, *coll, mode);  // the error leaves comm's (and coll's) scope
      return 0;
    }
    try {
      train_steps(*comm, *coll, mode);
    } catch (const qisa::Error& e) {
      std::fprintf(stderr, "rank_failure: error (rank %d of %d): %s\n", comm->rank(), comm->size(),
                   e.message().c_str());
      comm->abort(1);
    }
  } catch (const qisa::Error& e) {
    std::fprintf(stderr, "rank_failure: error: %s\n", e.message().c_str());
    return 1;
  }
  return 0;  // not reached when the job is killed as it should be
}
