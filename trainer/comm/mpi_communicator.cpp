// The MPI communicator: host control traffic over a private duplicate of MPI_COMM_WORLD
// (gradient and parameter buffers go through the MPI collectives, mpi_collectives.cpp, on a
// duplicate of this one). Its double sums are bit-identical on every rank for the reasons
// mpi_collectives.cpp gives for floats.
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <type_traits>

#include "kernels/error.h"
#include "trainer/comm/communicator.h"
#include "trainer/comm/mpi_common.h"

namespace qisa {

namespace {

using detail::check;
using detail::for_chunks;
using detail::kCollectiveHint;
using detail::mpi_finalized;

constexpr const char* kP2PHint = "the peer must make the matching send/recv with the same byte count and tag";

template <typename T>
MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
  else if constexpr (std::is_same_v<T, int64_t>) return MPI_INT64_T;
  else static_assert(sizeof(T) == 0, "no MPI type for T");
}

// Initialises MPI when nobody has yet, and then finalises it. MPI can be initialised once per
// process, so keep one communicator for the whole run.
class MpiSession {
 public:
  MpiSession() : uncaught_(std::uncaught_exceptions()) {
    QISA_CHECK(!mpi_finalized(), "MPI was already finalised in this process",
               "MPI cannot be initialised twice: create one communicator per process and keep it for the run");
    int initialized = 0;
    check(MPI_Initialized(&initialized), "MPI_Initialized", "the MPI installation is broken");
    if (initialized) return;  // someone else's session: theirs to finalise
    int provided = 0;
    // FUNNELED: OpenMP threads compute, only the main thread talks to MPI.
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread",
          "check the MPI installation and the launcher (mpirun/srun)");
    owns_ = true;
    QISA_CHECK(provided >= MPI_THREAD_FUNNELED,
               "MPI_Init_thread provided thread level " + std::to_string(provided) + ", below MPI_THREAD_FUNNELED",
               "use an MPI built with thread support");
  }
  ~MpiSession() {
    if (!owns_ || mpi_finalized()) return;
    // Unwinding with peers (a constructor failed half-way): MPI_Finalize could wait for ranks
    // blocked elsewhere; exiting without it makes mpirun end the job instead.
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size > 1 && std::uncaught_exceptions() > uncaught_) return;
    MPI_Finalize();
  }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

 private:
  bool owns_ = false;
  int uncaught_;
};

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(const CommOptions& options)
      : chunk_(std::clamp<size_t>(options.max_count_per_call, 1, INT_MAX)), uncaught_(std::uncaught_exceptions()) {
    // A private communicator: our messages never match anyone else's (HDF5's MPI-IO, a
    // library), and errors return to us instead of killing the process unexplained.
    check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup", "check the MPI installation");
    check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler", "check the MPI installation");
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank", "check the MPI installation");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size", "check the MPI installation");
    // The ranks sharing this node, from MPI itself (launcher variables may be absent).
    MPI_Comm node = MPI_COMM_NULL;
    check(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node), "MPI_Comm_split_type",
          kCollectiveHint);
    const int rc = MPI_Comm_rank(node, &local_rank_);
    MPI_Comm_free(&node);
    check(rc, "MPI_Comm_rank (node)", "check the MPI installation");
  }

  ~MpiCommunicator() override {
    // An exception is leaving the communicator's scope: this rank stops taking part while the
    // others may be blocked in a collective, and MPI_Finalize could wait for them forever.
    if (size_ > 1 && std::uncaught_exceptions() > uncaught_) {
      std::fprintf(stderr,
                   "qisa: rank %d of %d: an exception left the communicator's scope; aborting the job "
                   "(catch errors inside it to see the message)\n",
                   rank_, size_);
      abort(1);
    }
    if (comm_ != MPI_COMM_NULL && !mpi_finalized()) MPI_Comm_free(&comm_);
  }  // session_ (declared first) finalises last

  std::string name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }

  void allreduce_sum(double* buf, size_t n) override { allreduce(buf, n, MPI_SUM); }
  void allreduce_max(int64_t* buf, size_t n) override { allreduce(buf, n, MPI_MAX); }

  void broadcast(void* buf, size_t bytes, int root) override {
    check_peer(root, "broadcast root", true);
    auto* b = static_cast<char*>(buf);
    for_chunks(bytes, chunk_, [&](size_t off, int c) {
      check(MPI_Bcast(b + off, c, MPI_BYTE, root, comm_), "MPI_Bcast", kCollectiveHint);
    });
  }

  void send(const void* buf, size_t bytes, int dest, int tag) override {
    check_peer(dest, "send destination", false);
    const auto* b = static_cast<const char*>(buf);
    // The receiver splits the same byte count the same way; same-pair messages do not overtake.
    for_chunks(bytes, chunk_, [&](size_t off, int c) {
      check(MPI_Send(b + off, c, MPI_BYTE, dest, tag, comm_), "MPI_Send", kP2PHint);
    });
  }

  void recv(void* buf, size_t bytes, int src, int tag) override {
    check_peer(src, "recv source", false);
    auto* b = static_cast<char*>(buf);
    for_chunks(bytes, chunk_, [&](size_t off, int c) {
      MPI_Status st;
      check(MPI_Recv(b + off, c, MPI_BYTE, src, tag, comm_, &st), "MPI_Recv", kP2PHint);
      int got = 0;
      check(MPI_Get_count(&st, MPI_BYTE, &got), "MPI_Get_count", kP2PHint);
      QISA_CHECK(got == c,
                 "recv from rank " + std::to_string(src) + " (tag " + std::to_string(tag) + ") got " +
                     std::to_string(got) + " bytes where " + std::to_string(c) + " were expected",
                 kP2PHint);
    });
  }

  void barrier() override { check(MPI_Barrier(comm_), "MPI_Barrier", kCollectiveHint); }

  [[noreturn]] void abort(int code) noexcept override {
    std::fflush(nullptr);
    MPI_Abort(MPI_COMM_WORLD, code);  // ends every rank of the job
    std::_Exit(code);                 // MPI_Abort does not return; in case it does
  }

  detail::MpiHandle handle() const { return {comm_, chunk_}; }

 private:
  template <typename T>
  void allreduce(T* buf, size_t n, MPI_Op op) {
    for_chunks(n, chunk_, [&](size_t off, int c) {
      check(MPI_Allreduce(MPI_IN_PLACE, buf + off, c, mpi_type<T>(), op, comm_), "MPI_Allreduce", kCollectiveHint);
    });
  }

  // Checked here (a local mistake) rather than left to MPI, to name the argument.
  void check_peer(int r, const char* what, bool self_ok) const {
    QISA_CHECK(r >= 0 && r < size_, std::string(what) + " " + std::to_string(r) + " is not a rank of " +
                                         std::to_string(size_), "ranks are 0 .. size()-1");
    QISA_CHECK(self_ok || r != rank_,
               std::string(what) + " " + std::to_string(r) + " is this rank itself",
               "a blocking send to oneself can deadlock; copy the buffer instead");
  }

  MpiSession session_;  // first member: initialised first, finalised last
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1, local_rank_ = 0;
  size_t chunk_;  // most elements per MPI call
  int uncaught_;  // std::uncaught_exceptions() at construction
};

}  // namespace

namespace detail {

MpiHandle mpi_handle_of(Communicator& c) {
  const auto* m = dynamic_cast<const MpiCommunicator*>(&c);
  return m ? m->handle() : MpiHandle{};
}

std::unique_ptr<Communicator> make_mpi_communicator(const WorldInfo& world, const CommOptions& options) {
  auto comm = std::make_unique<MpiCommunicator>(options);
  const bool singleton = world.launcher == "none" && comm->size() == 1;
  if (singleton || (world.size == comm->size() && world.rank == comm->rank())) return comm;

  const std::string what =
      "MPI sees rank " + std::to_string(comm->rank()) + " of " + std::to_string(comm->size()) +
      " but the launcher environment says " +
      (world.launcher == "none" ? std::string("one process (no launcher variables)")
                                : "rank " + std::to_string(world.rank) + " of " + std::to_string(world.size) + " (" +
                                      world.variables + ")");
  const std::string hint =
      world.launcher == "none"
          ? "start through mpirun or srun, whose variables qisa reads (OMPI_COMM_WORLD_*, PMI_RANK/PMI_SIZE, "
            "SLURM_PROCID/SLURM_STEP_NUM_TASKS); without them dist.comm=auto would start independent runs"
          : "these variables were inherited from another job step; unset them or start through mpirun/srun";
  // Alone, nobody can be left waiting: report it as an error. With peers that may have
  // agreed and gone on into a collective, end the job.
  if (comm->size() == 1) throw Error(what, hint);
  std::fprintf(stderr, "qisa: error (rank %d of %d): %s; hint: %s\n", comm->rank(), comm->size(), what.c_str(),
               hint.c_str());
  comm->abort(1);
}

}  // namespace detail

}  // namespace qisa
