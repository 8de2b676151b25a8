// Communicator: the host-side control channel of a data-parallel job (it knows no model):
// rank and size, sums of host scalars (loss, eval sums, agreement flags), broadcasts, point to
// point messages (checkpoint gathers), barrier and abort. Implementations: none (one process,
// no MPI at all), mpi. Gradient and parameter traffic on backend memory goes through
// Collectives (collectives.h), made from a Communicator by make_collectives.
//
// Every call is checked: a failure throws qisa::Error naming the call and the MPI error
// string. abort() ends the whole job (every rank), so no rank is left waiting in a collective.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace qisa {

// Where this process is in the job, from the launcher's environment, before any MPI call:
// OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,LOCAL_SIZE} (mpirun), PMIX_RANK + SLURM sizes (srun
// --mpi=pmix), PMI_RANK/PMI_SIZE/MPI_LOCALRANKID/MPI_LOCALNRANKS (MPICH hydra),
// SLURM_PROCID/SLURM_STEP_NUM_TASKS/SLURM_LOCALID (srun; the node's count from Slurm's
// "2(x3),1" lists and SLURM_NODEID). An sbatch script's own shell (SLURM_NTASKS but no srun
// step) is one process. No variables: one process. Malformed values throw qisa::Error.
struct WorldInfo {
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  int local_size = 1;
  std::string launcher = "none";  // "mpirun", "pmix", "pmi", "slurm", or "none"
  std::string variables;          // what was read, e.g. "OMPI_COMM_WORLD_RANK=1 OMPI_COMM_WORLD_SIZE=2"
};
WorldInfo detect_world();

// Empty buffers (n or bytes 0) are valid in every call: nothing is read or written, so the
// pointers may be null. Arguments are still checked (a broadcast root outside the world is an
// error).
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string name() const = 0;  // "none", "mpi"
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_rank() const = 0;

  // In place: buf[i] = sum (max) over ranks of buf[i]. Every rank gets the same bits.
  virtual void allreduce_sum(double* buf, size_t n) = 0;
  virtual void allreduce_max(int64_t* buf, size_t n) = 0;
  virtual void broadcast(void* buf, size_t bytes, int root) = 0;
  // Point to point (bounded-memory checkpoint gathers).
  virtual void send(const void* buf, size_t bytes, int dest, int tag) = 0;
  virtual void recv(void* buf, size_t bytes, int src, int tag) = 0;
  virtual void barrier() = 0;
  // End every rank of the job with `code` (MPI_Abort); the none communicator exits.
  [[noreturn]] virtual void abort(int code) noexcept = 0;
};

// kind: "none" (world size must be 1), "mpi", or "auto" (mpi when detect_world().size > 1,
// else none: a run without a launcher never initialises MPI). The returned object owns the
// MPI session: MPI_Finalize runs when it is destroyed (MPI starts once per process: keep one
// communicator for the run). "mpi" checks the launcher's rank and size against MPI's: a
// mismatch throws in a 1-rank MPI world, and with more ranks prints one line and aborts the
// job (a peer that agreed may already wait in a collective). An MPI communicator destroyed by
// an escaping exception with peers aborts the job rather than finalise (which could hang).
std::unique_ptr<Communicator> make_communicator(const std::string& kind);

// s on every rank becomes root's s (its length first, then the bytes).
void broadcast_string(Communicator& comm, std::string& s, int root = 0);

// Runs `fn` on `root` only (collective: every rank calls it). A qisa::Error that `fn` throws
// there is raised on every rank as a CollectiveError with its message and hint, so no rank is
// left waiting in a later collective for a root that failed.
void run_on_root(Communicator& comm, const std::function<void()>& fn, int root = 0);

struct CommOptions {
  // The most elements (bytes for broadcast/send/recv) one MPI call moves: MPI counts are int,
  // so larger buffers are split. The collectives made from the communicator (make_collectives)
  // inherit it. Tests lower it to exercise the split path on small buffers.
  size_t max_count_per_call = 2147483647;  // INT_MAX
};
std::unique_ptr<Communicator> make_communicator(const std::string& kind, const CommOptions& options);

namespace detail {
// The MPI communicator checked against the launcher's `world` (mpi_communicator.cpp).
std::unique_ptr<Communicator> make_mpi_communicator(const WorldInfo& world, const CommOptions& options);
}  // namespace detail

}  // namespace qisa
