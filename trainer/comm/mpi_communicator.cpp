// The MPI communicator: host buffers over a private duplicate of MPI_COMM_WORLD.
//
// Bit-identical allreduce on every rank: Open MPI's blocking allreduce algorithms (coll/tuned:
// basic linear, nonoverlapping, recursive doubling, ring, segmented ring, Rabenseifner; the
// fallback coll/basic) and the non-blocking ones (coll/libnbc: binomial, recursive doubling,
// ring, reduce-scatter+allgather) either compute each element once on one rank and send
// those bits to the others (reduce+bcast, ring, reduce-scatter+allgather), or have two ranks
// combine the same two partial sums in the same step (recursive doubling), and IEEE a+b ==
// b+a bit for bit. The MPI standard only recommends this (MPI-3.1 §5.9.1, advice to
// implementors), so tests/mpi checks it at np 1, 2 and 4 at sizes on both sides of the
// algorithm switch points, and at np 3 with each of those algorithms pinned in turn.
// Splitting a buffer into several calls (below) does not change it: each element is reduced
// independently.
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <type_traits>
#include <vector>

#include "kernels/error.h"
#include "trainer/comm/communicator.h"

namespace qisa {

namespace {

constexpr const char* kCollectiveHint =
    "every rank must make the same collective calls in the same order with the same sizes; "
    "if a rank failed, its own output says why";
constexpr const char* kP2PHint = "the peer must make the matching send/recv with the same byte count and tag";

std::string mpi_error_string(int rc) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) return "MPI error code " + std::to_string(rc);
  return std::string(text, static_cast<size_t>(len));
}

// Every MPI return code goes through here: a failure becomes a qisa::Error naming the call.
void check(int rc, const char* call, const char* hint, SourceLocation loc = SourceLocation::current()) {
  if (rc != MPI_SUCCESS) throw Error(std::string(call) + " failed: " + mpi_error_string(rc), hint, loc);
}

bool mpi_finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

template <typename T>
MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
  else if constexpr (std::is_same_v<T, int64_t>) return MPI_INT64_T;
  else static_assert(sizeof(T) == 0, "no MPI type for T");
}

// Calls f(offset, count) over [0, n) in pieces of at most `chunk` (<= INT_MAX) elements.
template <typename F>
void for_chunks(size_t n, size_t chunk, F&& f) {
  for (size_t off = 0; off < n; off += chunk) f(off, static_cast<int>(std::min(chunk, n - off)));
}

bool overlaps(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return a_bytes > 0 && b_bytes > 0 && x < y + b_bytes && y < x + a_bytes;
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

// One started MPI_Iallreduce per chunk of the buffer.
class MpiRequest final : public CommRequest {
 public:
  MpiRequest() : uncaught_(std::uncaught_exceptions()) {}
  ~MpiRequest() override {
    // MPI may still write into the caller's buffer: wait before the buffer can be freed. Not
    // while an exception unwinds (the peers may never arrive; main aborts the job next), and
    // MPI_Request_free is not allowed on a collective's request.
    if (!done_ && std::uncaught_exceptions() <= uncaught_)
      MPI_Waitall(static_cast<int>(reqs_.size()), reqs_.data(), MPI_STATUSES_IGNORE);
  }
  void add(MPI_Request r) { reqs_.push_back(r); }

  void wait() override {
    if (done_) return;
    std::vector<MPI_Status> st(reqs_.size());
    const int rc = MPI_Waitall(static_cast<int>(reqs_.size()), reqs_.data(), st.data());
    done_ = true;  // complete, or failed: either way nothing more to wait for
    check_statuses(rc, st, "MPI_Waitall (iallreduce)");
  }
  bool test() override {
    if (done_) return true;
    std::vector<MPI_Status> st(reqs_.size());
    int flag = 0;
    const int rc = MPI_Testall(static_cast<int>(reqs_.size()), reqs_.data(), &flag, st.data());
    if (rc != MPI_SUCCESS) done_ = true;
    check_statuses(rc, st, "MPI_Testall (iallreduce)");
    done_ = flag != 0;
    return done_;
  }

 private:
  // MPI_ERR_IN_STATUS: the real error is in a status (the others may read MPI_ERR_PENDING).
  static void check_statuses(int rc, const std::vector<MPI_Status>& st, const char* call) {
    if (rc == MPI_ERR_IN_STATUS)
      for (const MPI_Status& s : st)
        if (s.MPI_ERROR != MPI_SUCCESS && s.MPI_ERROR != MPI_ERR_PENDING) check(s.MPI_ERROR, call, kCollectiveHint);
    check(rc, call, kCollectiveHint);
  }

  std::vector<MPI_Request> reqs_;
  bool done_ = false;
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

  void allreduce_sum(float* buf, size_t n) override { allreduce(buf, n, MPI_SUM); }
  void allreduce_sum(double* buf, size_t n) override { allreduce(buf, n, MPI_SUM); }
  void allreduce_max(int64_t* buf, size_t n) override { allreduce(buf, n, MPI_MAX); }

  std::unique_ptr<CommRequest> iallreduce_sum(float* buf, size_t n) override {
    auto req = std::make_unique<MpiRequest>();
    for_chunks(n, chunk_, [&](size_t off, int c) {
      MPI_Request r = MPI_REQUEST_NULL;
      check(MPI_Iallreduce(MPI_IN_PLACE, buf + off, c, MPI_FLOAT, MPI_SUM, comm_, &r), "MPI_Iallreduce",
            kCollectiveHint);
      req->add(r);
    });
    return req;
  }

  void reduce_scatter_sum(const float* send, float* recv, size_t count) override {
    if (count == 0) return;
    const size_t p = static_cast<size_t>(size_);
    QISA_CHECK(count <= SIZE_MAX / sizeof(float) / p, "reduce_scatter of " + std::to_string(count) + " x " +
                   std::to_string(p) + " floats overflows size_t", "pass the per-rank count");
    if (overlaps(send, p * count * sizeof(float), recv, count * sizeof(float))) {
      // MPI forbids aliased buffers, and MPI_IN_PLACE would write into the const input.
      std::vector<float> out(count);
      reduce_scatter_sum(send, out.data(), count);
      std::memcpy(recv, out.data(), count * sizeof(float));
      return;
    }
    if (p * count <= chunk_) {
      check(MPI_Reduce_scatter_block(send, recv, static_cast<int>(count), MPI_FLOAT, MPI_SUM, comm_),
            "MPI_Reduce_scatter_block", kCollectiveHint);
      return;
    }
    // Too large for one call: pack the same column slice of every rank's block into one
    // buffer of at most chunk_ floats, so each call stays contiguous.
    const size_t per = std::max<size_t>(1, chunk_ / p);
    std::vector<float> packed(p * std::min(per, count));
    for_chunks(count, per, [&](size_t off, int c) {
      for (size_t r = 0; r < p; ++r)
        std::memcpy(packed.data() + r * c, send + r * count + off, static_cast<size_t>(c) * sizeof(float));
      check(MPI_Reduce_scatter_block(packed.data(), recv + off, c, MPI_FLOAT, MPI_SUM, comm_),
            "MPI_Reduce_scatter_block", kCollectiveHint);
    });
  }

  void all_gather(const float* send, float* recv, size_t count) override {
    if (count == 0) return;
    const size_t p = static_cast<size_t>(size_);
    QISA_CHECK(count <= SIZE_MAX / sizeof(float) / p, "all_gather of " + std::to_string(count) + " x " +
                   std::to_string(p) + " floats overflows size_t", "pass the per-rank count");
    // send == recv + rank*count is the ZeRO-1 case (own shard already in place): MPI_IN_PLACE.
    const bool in_place = send == recv + static_cast<size_t>(rank_) * count;
    std::vector<float> copy;
    if (!in_place && overlaps(send, count * sizeof(float), recv, p * count * sizeof(float))) {
      copy.assign(send, send + count);  // MPI forbids aliased buffers
      send = copy.data();
    }
    if (p * count <= chunk_) {
      check(MPI_Allgather(in_place ? MPI_IN_PLACE : send, static_cast<int>(count), MPI_FLOAT, recv,
                          static_cast<int>(count), MPI_FLOAT, comm_),
            "MPI_Allgather", kCollectiveHint);
      return;
    }
    // Gather column slices into one buffer of at most chunk_ floats, then spread them out.
    // In place this is still safe: the slice written to our own block equals the one read.
    const size_t per = std::max<size_t>(1, chunk_ / p);
    std::vector<float> packed(p * std::min(per, count));
    for_chunks(count, per, [&](size_t off, int c) {
      check(MPI_Allgather(send + off, c, MPI_FLOAT, packed.data(), c, MPI_FLOAT, comm_), "MPI_Allgather",
            kCollectiveHint);
      for (size_t r = 0; r < p; ++r)
        std::memcpy(recv + r * count + off, packed.data() + r * c, static_cast<size_t>(c) * sizeof(float));
    });
  }

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
