// The MPI collectives: gradient and parameter buffers over a private duplicate of the MPI
// communicator's own MPI communicator (its traffic never matches a control message), split
// into calls of at most max_count_per_call elements as the communicator splits its own.
//
// Bit-identical fp32 sums on every rank: Open MPI's blocking allreduce algorithms (coll/tuned:
// basic linear, nonoverlapping, recursive doubling, ring, segmented ring, Rabenseifner; the
// fallback coll/basic) and the non-blocking ones (coll/libnbc: binomial, recursive doubling,
// ring, reduce-scatter+allgather) either compute each element once on one rank and send
// those bits to the others (reduce+bcast, ring, reduce-scatter+allgather), or have two ranks
// combine the same two partial sums in the same step (recursive doubling), and IEEE a+b ==
// b+a bit for bit. The MPI standard only recommends this (MPI-3.1 §5.9.1, advice to
// implementors), so tests/mpi checks it at np 1, 2 and 4 at sizes on both sides of the
// algorithm switch points, and at np 3 with each of those algorithms pinned in turn.
// Splitting a buffer into several calls does not change it: each element is reduced
// independently.
//
// bf16 sums (MPI has no bf16 type): an all-to-all brings the size() values of each element of
// a rank's shard to that rank, which sums them in fp32 in rank order and rounds once
// (sum_bf16_blocks); an all-reduce is that reduce-scatter, then an all-gather of the shards.
//
// Backend memory the host cannot address (Backend::host_addressable() false) is staged: the
// input is downloaded into a host buffer (download waits for the work enqueued before it),
// the collective runs on host buffers, and the result is uploaded.
#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <vector>

#include "kernels/bf16.h"
#include "kernels/error.h"
#include "trainer/comm/collectives.h"
#include "trainer/comm/mpi_common.h"

namespace qisa {

namespace {

using detail::check;
using detail::for_chunks;
using detail::kCollectiveHint;
using detail::mpi_finalized;
using detail::overlaps;

MPI_Datatype mpi_type(DType t) { return t == DType::bf16 ? MPI_UINT16_T : MPI_FLOAT; }

std::byte* bytes(void* p) { return static_cast<std::byte*>(p); }
const std::byte* bytes(const void* p) { return static_cast<const std::byte*>(p); }

// blocks: p blocks of c values, block q from rank q. out[i] = bf16(sum over q = 0, 1, ..., p-1
// of float(blocks[q*c + i])): an fp32 sum in rank order, starting from rank 0's value, rounded
// once to nearest even.
void sum_bf16_blocks(const bf16* blocks, size_t p, size_t c, bf16* out) {
  for (size_t i = 0; i < c; ++i) {
    float acc = bf16_to_float(blocks[i]);
    for (size_t q = 1; q < p; ++q) acc += bf16_to_float(blocks[q * c + i]);
    out[i] = float_to_bf16(acc);
  }
}

// One started MPI_Iallreduce per chunk of the buffer; with staging, the host buffer they work
// on and the upload of the result when they are done.
class MpiRequest final : public CommRequest {
 public:
  MpiRequest() : uncaught_(std::uncaught_exceptions()) {}
  ~MpiRequest() override {
    // MPI may still write into the buffer: wait before it can be freed. Not while an exception
    // unwinds (the peers may never arrive; main aborts the job next), and MPI_Request_free is
    // not allowed on a collective's request.
    if (done_ || std::uncaught_exceptions() > uncaught_) return;
    try {
      wait();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "qisa: an iallreduce waited for by its request's destructor failed: %s\n", e.what());
    }
  }
  MpiRequest(const MpiRequest&) = delete;
  MpiRequest& operator=(const MpiRequest&) = delete;

  void add(MPI_Request r) { reqs_.push_back(r); }
  // Stages `bytes` of backend memory at `dst`: returns the host copy the MPI calls work on,
  // uploaded back to dst when they are complete.
  std::byte* stage(Backend& be, void* dst, size_t bytes) {
    be_ = &be;
    dst_ = dst;
    host_.resize(bytes);
    be.download(host_.data(), dst, bytes);
    return host_.data();
  }

  void wait() override {
    if (done_) return;
    std::vector<MPI_Status> st(reqs_.size());
    const int rc = MPI_Waitall(static_cast<int>(reqs_.size()), reqs_.data(), st.data());
    done_ = true;  // complete, or failed: either way nothing more to wait for
    check_statuses(rc, st, "MPI_Waitall (iallreduce)");
    finish();
  }
  bool test() override {
    if (done_) return true;
    std::vector<MPI_Status> st(reqs_.size());
    int flag = 0;
    const int rc = MPI_Testall(static_cast<int>(reqs_.size()), reqs_.data(), &flag, st.data());
    if (rc != MPI_SUCCESS) done_ = true;
    check_statuses(rc, st, "MPI_Testall (iallreduce)");
    done_ = flag != 0;
    if (done_) finish();
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
  void finish() {
    if (be_) be_->upload(dst_, host_.data(), host_.size());
  }

  std::vector<MPI_Request> reqs_;
  bool done_ = false;
  Backend* be_ = nullptr;  // staged: the backend and buffer the result goes to
  void* dst_ = nullptr;
  std::vector<std::byte> host_;
  int uncaught_;
};

class MpiCollectives final : public Collectives {
 public:
  MpiCollectives(const detail::MpiHandle& host, Backend& be)
      : be_(be), host_memory_(be.host_addressable()), chunk_(host.max_count_per_call),
        uncaught_(std::uncaught_exceptions()) {
    check(MPI_Comm_dup(host.comm, &comm_), "MPI_Comm_dup (collectives)", kCollectiveHint);
    check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler", "check the MPI installation");
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank", "check the MPI installation");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size", "check the MPI installation");
  }
  ~MpiCollectives() override {
    // Unwinding with peers: they may never join MPI_Comm_free (collective); the host
    // communicator's destructor ends the job next.
    if (comm_ == MPI_COMM_NULL || mpi_finalized() || (size_ > 1 && std::uncaught_exceptions() > uncaught_)) return;
    MPI_Comm_free(&comm_);
  }
  MpiCollectives(const MpiCollectives&) = delete;
  MpiCollectives& operator=(const MpiCollectives&) = delete;

  std::string name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void allreduce_sum(void* buf, size_t count, DType t, Event* after) override {
    if (count == 0) return;
    check_count(count, 1, t, "allreduce_sum");
    if (after) after->wait();
    if (host_memory_) return host_allreduce(bytes(buf), count, t);
    const size_t n = count * dtype_bytes(t);
    host_allreduce(stage_in(stage_a_, buf, n), count, t);
    be_.upload(buf, stage_a_.data(), n);
  }

  std::unique_ptr<CommRequest> iallreduce_sum(void* buf, size_t count, DType t, Event* after) override {
    if (count == 0) return completed_request();
    if (t == DType::bf16) {  // the fixed-order sum needs every rank's values: no MPI op does it
      allreduce_sum(buf, count, t, after);
      return completed_request();
    }
    check_count(count, 1, t, "iallreduce_sum");
    if (after) after->wait();
    auto req = std::make_unique<MpiRequest>();
    auto* h = static_cast<float*>(host_memory_ ? buf : req->stage(be_, buf, count * sizeof(float)));
    for_chunks(count, chunk_, [&](size_t off, int c) {
      MPI_Request r = MPI_REQUEST_NULL;
      check(MPI_Iallreduce(MPI_IN_PLACE, h + off, c, MPI_FLOAT, MPI_SUM, comm_, &r), "MPI_Iallreduce",
            kCollectiveHint);
      req->add(r);
    });
    return req;
  }

  void reduce_scatter_sum(const void* send, void* recv, size_t count, DType t, Event* after) override {
    if (count == 0) return;
    check_count(count, static_cast<size_t>(size_), t, "reduce_scatter_sum");
    if (after) after->wait();
    if (host_memory_) return host_reduce_scatter(bytes(send), bytes(recv), count, t);
    const size_t n = count * dtype_bytes(t);
    const std::byte* h = stage_in(stage_a_, send, static_cast<size_t>(size_) * n);
    stage_b_.resize(n);
    host_reduce_scatter(h, stage_b_.data(), count, t);
    be_.upload(recv, stage_b_.data(), n);
  }

  void all_gather(const void* send, void* recv, size_t count, DType t, Event* after) override {
    if (count == 0) return;
    check_count(count, static_cast<size_t>(size_), t, "all_gather");
    if (after) after->wait();
    if (host_memory_) return host_all_gather(bytes(send), bytes(recv), count, t);
    // Our shard straight into its place in the host copy of recv, then in place.
    const size_t n = count * dtype_bytes(t);
    stage_a_.resize(static_cast<size_t>(size_) * n);
    std::byte* mine = stage_a_.data() + static_cast<size_t>(rank_) * n;
    be_.download(mine, send, n);
    host_all_gather(mine, stage_a_.data(), count, t);
    be_.upload(recv, stage_a_.data(), stage_a_.size());
  }

 private:
  // count * blocks elements of t must have a size in bytes.
  static void check_count(size_t count, size_t blocks, DType t, const char* call) {
    QISA_CHECK(count <= SIZE_MAX / dtype_bytes(t) / blocks,
               std::string(call) + " of " + std::to_string(count) + " x " + std::to_string(blocks) + " " +
                   dtype_name(t) + " elements overflows size_t",
               "pass the per-rank count");
  }

  // Downloads `n` bytes of backend memory into `stage`; returns its data.
  std::byte* stage_in(std::vector<std::byte>& stage, const void* src, size_t n) {
    stage.resize(n);
    be_.download(stage.data(), src, n);
    return stage.data();
  }

  // Elements per block that one call may move for size() blocks: all `count` when size()*count
  // fits in one call, else at least 1.
  size_t slice_count(size_t count) const {
    const size_t p = static_cast<size_t>(size_);
    return p * count <= chunk_ ? count : std::max<size_t>(1, chunk_ / p);
  }

  // ---- the collectives on host memory
  void host_allreduce(std::byte* buf, size_t count, DType t) {
    if (t == DType::f32) {
      auto* f = reinterpret_cast<float*>(buf);
      for_chunks(count, chunk_, [&](size_t off, int c) {
        check(MPI_Allreduce(MPI_IN_PLACE, f + off, c, MPI_FLOAT, MPI_SUM, comm_), "MPI_Allreduce", kCollectiveHint);
      });
      return;
    }
    // bf16: pad to size() shards of c, reduce-scatter them, all-gather the sums.
    const size_t p = static_cast<size_t>(size_), c = (count + p - 1) / p;
    std::vector<bf16> full(p * c, bf16{0}), shard(c);
    std::memcpy(full.data(), buf, count * sizeof(bf16));
    host_reduce_scatter(bytes(full.data()), bytes(shard.data()), c, t);
    host_all_gather(bytes(shard.data()), bytes(full.data()), c, t);
    std::memcpy(buf, full.data(), count * sizeof(bf16));
  }

  void host_reduce_scatter(const std::byte* send, std::byte* recv, size_t count, DType t) {
    const size_t p = static_cast<size_t>(size_), eb = dtype_bytes(t);
    if (overlaps(send, p * count * eb, recv, count * eb)) {
      // MPI forbids aliased buffers, and MPI_IN_PLACE would write into the const input.
      std::vector<std::byte> out(count * eb);
      host_reduce_scatter(send, out.data(), count, t);
      std::memcpy(recv, out.data(), count * eb);
      return;
    }
    std::vector<bf16> gathered(t == DType::bf16 ? p * slice_count(count) : 0);
    for_column_slices(send, count, eb, [&](const std::byte* blocks, size_t off, int c) {
      std::byte* out = recv + off * eb;
      if (t == DType::f32) {
        check(MPI_Reduce_scatter_block(blocks, out, c, MPI_FLOAT, MPI_SUM, comm_), "MPI_Reduce_scatter_block",
              kCollectiveHint);
        return;
      }
      check(MPI_Alltoall(blocks, c, MPI_UINT16_T, gathered.data(), c, MPI_UINT16_T, comm_), "MPI_Alltoall",
            kCollectiveHint);
      sum_bf16_blocks(gathered.data(), p, static_cast<size_t>(c), reinterpret_cast<bf16*>(out));
    });
  }

  // Calls f(blocks, off, c) for the column slices [off, off + c) of send's size() blocks of
  // `count` elements (eb bytes each), at most chunk_ elements per call in all: `blocks` holds
  // the size() slices back to back (send itself when one call takes everything).
  template <typename F>
  void for_column_slices(const std::byte* send, size_t count, size_t eb, F&& f) {
    const size_t p = static_cast<size_t>(size_), per = slice_count(count);
    if (per >= count) return f(send, size_t{0}, static_cast<int>(count));
    std::vector<std::byte> packed(p * per * eb);
    for_chunks(count, per, [&](size_t off, int c) {
      const size_t n = static_cast<size_t>(c) * eb;
      for (size_t r = 0; r < p; ++r) std::memcpy(packed.data() + r * n, send + (r * count + off) * eb, n);
      f(packed.data(), off, c);
    });
  }

  void host_all_gather(const std::byte* send, std::byte* recv, size_t count, DType t) {
    const size_t p = static_cast<size_t>(size_), eb = dtype_bytes(t);
    const MPI_Datatype dt = mpi_type(t);
    // send == recv + rank*count is the ZeRO-1 case (own shard already in place): MPI_IN_PLACE.
    const bool in_place = send == recv + static_cast<size_t>(rank_) * count * eb;
    std::vector<std::byte> copy;
    if (!in_place && overlaps(send, count * eb, recv, p * count * eb)) {
      copy.assign(send, send + count * eb);  // MPI forbids aliased buffers
      send = copy.data();
    }
    const size_t per = slice_count(count);
    if (per >= count) {
      check(MPI_Allgather(in_place ? MPI_IN_PLACE : send, static_cast<int>(count), dt, recv, static_cast<int>(count),
                          dt, comm_),
            "MPI_Allgather", kCollectiveHint);
      return;
    }
    // Gather column slices into one buffer of at most chunk_ elements, then spread them out.
    // In place this is still safe: the slice written to our own block equals the one read.
    std::vector<std::byte> packed(p * per * eb);
    for_chunks(count, per, [&](size_t off, int c) {
      const size_t n = static_cast<size_t>(c) * eb;
      check(MPI_Allgather(send + off * eb, c, dt, packed.data(), c, dt, comm_), "MPI_Allgather", kCollectiveHint);
      for (size_t r = 0; r < p; ++r) std::memcpy(recv + (r * count + off) * eb, packed.data() + r * n, n);
    });
  }

  Backend& be_;
  const bool host_memory_;  // be_.host_addressable(): MPI works on the buffers themselves
  const size_t chunk_;      // most elements per MPI call
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::vector<std::byte> stage_a_, stage_b_;  // host copies of backend buffers (staged calls)
  int uncaught_;                              // std::uncaught_exceptions() at construction
};

}  // namespace

namespace detail {

std::unique_ptr<Collectives> make_mpi_collectives(Communicator& host, Backend& be) {
  const MpiHandle h = mpi_handle_of(host);
  QISA_CHECK(h.comm != MPI_COMM_NULL,
             "the MPI collectives need the MPI communicator; this one is '" + host.name() + "'",
             "make the host communicator with make_communicator(\"mpi\") (or \"auto\" under a launcher)");
  return std::make_unique<MpiCollectives>(h, be);
}

}  // namespace detail

}  // namespace qisa
