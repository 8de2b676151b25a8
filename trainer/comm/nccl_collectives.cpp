// The NCCL collectives (collectives.h: make_nccl_collectives), one rank per GPU.
//
// Streams and events:
//   backend stream:  ... backward writes bucket k ... record(after) ... more backward ...
//   comm stream:              wait(after) -> ncclAllReduce(bucket k) -> record(done_k)
//   host:            request k's wait(): poll done_k and ncclCommGetAsyncError until done,
//                    an error, or the deadline (dist.timeout_s)
// The host returns from wait() only once done_k is complete, so everything the backend enqueues
// after it reads the reduced bucket. The communicator is non-blocking (config.blocking = 0): a
// call may answer ncclInProgress, and then ncclCommGetAsyncError is polled until it settles.
//
// NCCL is reached only through kernels/cuda/nccl_api.h's table (the library loaded on first use,
// or the test double of tests/cuda_emu), and the device only through the Backend interface, so
// this file has one build for the product and the emulated tests alike.
#include "trainer/comm/collectives.h"

#include "kernels/error.h"

#if defined(QISA_HAVE_CUDA)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "kernels/cuda/nccl_api.h"

namespace qisa {
namespace {

using Clock = std::chrono::steady_clock;
using cuda::nccl_api;

ncclDataType_t nccl_type(DType t) { return t == DType::bf16 ? ncclBfloat16 : ncclFloat32; }

const char* const kHint =
    "a peer rank died, hangs, or made different collectives; NCCL_DEBUG=INFO shows NCCL's view of the "
    "job, and dist.timeout_s sets how long a rank waits";

// Waits between polls: a yield for the first ~100 polls (a small bucket finishes in
// microseconds), then sleeps growing to 1 ms (a waiting rank leaves the core to its peers).
class Backoff {
 public:
  void pause() {
    if (++polls_ < 100) {
      std::this_thread::yield();
      return;
    }
    std::this_thread::sleep_for(sleep_);
    sleep_ = std::min(sleep_ * 2, std::chrono::microseconds(1000));
  }

 private:
  int polls_ = 0;
  std::chrono::microseconds sleep_{20};
};

class NcclCollectives;

// A collective in flight: its done event on the comm stream.
class NcclRequest final : public CommRequest {
 public:
  NcclRequest(NcclCollectives& owner, std::unique_ptr<Event> done, std::string what)
      : owner_(owner), done_(std::move(done)), what_(std::move(what)) {}
  ~NcclRequest() override;
  void wait() override;
  bool test() override;

 private:
  NcclCollectives& owner_;
  std::unique_ptr<Event> done_;
  std::string what_;
  bool finished_ = false;
};

class NcclCollectives final : public Collectives {
 public:
  NcclCollectives(Communicator& host, Backend& be, double timeout_s)
      : be_(be), rank_(host.rank()), size_(host.size()), timeout_(timeout_s) {
    side_ = be.make_side_stream();
    QISA_CHECK(side_ != nullptr, "dist.comm = nccl needs a device backend (this one is " + be.name() + ")",
               "set train.device: cuda, or dist.comm: mpi");
    const cuda::NcclApi& api = nccl_api();  // loads libnccl: a missing library fails here, on every rank
    ncclUniqueId id{};
    if (rank_ == 0) QISA_NCCL_CHECK(api.ncclGetUniqueId(&id), "NCCL could not make its id: see NCCL_DEBUG=INFO");
    host.broadcast(&id, sizeof id, 0);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t r = api.ncclCommInitRankConfig(&comm_, size_, id, rank_, &config);
    if (r != ncclSuccess && r != ncclInProgress) {
      abort_comm();
      fail_call("ncclCommInitRankConfig", r);
    }
    settle("NCCL communicator init (" + std::to_string(size_) + " ranks)");
  }

  ~NcclCollectives() override {
    if (!comm_) return;  // aborted
    try {
      const ncclResult_t r = nccl_api().ncclCommFinalize(comm_);  // flushes what is still queued
      if (r != ncclSuccess && r != ncclInProgress) fail_call("ncclCommFinalize", r);
      settle("ncclCommFinalize");
      if (const ncclResult_t d = nccl_api().ncclCommDestroy(comm_); d != ncclSuccess) fail_call("ncclCommDestroy", d);
      comm_ = nullptr;
    } catch (const Error& e) {  // a destructor reports, never throws; the communicator is aborted
      std::fprintf(stderr, "qisa: %s\n", e.message().c_str());
    }
  }

  std::string name() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void allreduce_sum(void* buf, size_t count, DType dtype, Event* after) override {
    iallreduce_sum(buf, count, dtype, after)->wait();
  }
  std::unique_ptr<CommRequest> iallreduce_sum(void* buf, size_t count, DType dtype, Event* after) override {
    if (count == 0) return completed_request();
    return launch("ncclAllReduce", count, dtype, after, [&](ncclComm_t c, cudaStream_t s) {
      return nccl_api().ncclAllReduce(buf, buf, count, nccl_type(dtype), ncclSum, c, s);
    });
  }
  void reduce_scatter_sum(const void* send, void* recv, size_t count, DType dtype, Event* after) override {
    if (count == 0) return;
    launch("ncclReduceScatter", count, dtype, after, [&](ncclComm_t c, cudaStream_t s) {
      return nccl_api().ncclReduceScatter(send, recv, count, nccl_type(dtype), ncclSum, c, s);
    })->wait();
  }
  void all_gather(const void* send, void* recv, size_t count, DType dtype, Event* after) override {
    if (count == 0) return;
    launch("ncclAllGather", count, dtype, after, [&](ncclComm_t c, cudaStream_t s) {
      return nccl_api().ncclAllGather(send, recv, count, nccl_type(dtype), c, s);
    })->wait();
  }

  bool aborted() const { return comm_ == nullptr; }

  // NcclRequest's polls. True when `done` is complete; throws (after aborting) on an NCCL error.
  bool poll(Event& done, const std::string& what) {
    require_live(what);
    async_state(what);
    return done.query();
  }
  void wait_for(Event& done, const std::string& what) {
    const auto deadline = Clock::now() + timeout();
    for (Backoff b; !poll(done, what); b.pause())
      if (Clock::now() > deadline) fail(what, "did not complete within dist.timeout_s = " + seconds() + " s");
  }

 private:
  template <class Enqueue>
  std::unique_ptr<CommRequest> launch(const char* call, size_t count, DType dtype, Event* after, Enqueue enqueue) {
    const std::string what = std::string(call) + " #" + std::to_string(++calls_) + " (" +
                             (dtype == DType::bf16 ? "bf16, " : "fp32, ") + std::to_string(count) + " elements)";
    require_live(what);
    if (after) side_->wait(*after);
    const ncclResult_t r = enqueue(comm_, static_cast<cudaStream_t>(side_->native()));
    if (r == ncclInProgress) settle(what);
    else if (r != ncclSuccess) fail(what, describe(r));
    auto done = be_.make_event();
    side_->record(*done);
    return std::make_unique<NcclRequest>(*this, std::move(done), what);
  }

  // Polls ncclCommGetAsyncError until it leaves ncclInProgress (an error or the deadline aborts).
  void settle(const std::string& what) {
    const auto deadline = Clock::now() + timeout();
    for (Backoff b; async_state(what) == ncclInProgress; b.pause())
      if (Clock::now() > deadline) fail(what, "did not finish within dist.timeout_s = " + seconds() + " s");
  }

  // The communicator's state, ncclSuccess or ncclInProgress; an asynchronous error aborts.
  ncclResult_t async_state(const std::string& what) {
    ncclResult_t state = ncclInProgress;
    const ncclResult_t r = nccl_api().ncclCommGetAsyncError(comm_, &state);
    if (r != ncclSuccess) fail(what, "ncclCommGetAsyncError: " + describe(r));
    if (state != ncclSuccess && state != ncclInProgress) fail(what, describe(state));
    return state;
  }

  void require_live(const std::string& what) const {
    QISA_CHECK(comm_ != nullptr, "NCCL rank " + std::to_string(rank_) + ": " + what + ": the communicator was aborted",
               "an earlier NCCL error ended this job's communicator; its message says why");
  }

  // Aborts the communicator (its queued work is cancelled, so no stream waits for a peer that
  // will not come) and throws one line: rank, collective, cause.
  [[noreturn]] void fail(const std::string& what, const std::string& cause) {
    abort_comm();
    throw Error("NCCL rank " + std::to_string(rank_) + " of " + std::to_string(size_) + ": " + what + ": " + cause +
                    " (communicator aborted)",
                kHint);
  }
  [[noreturn]] void fail_call(const char* call, ncclResult_t r) { fail(call, describe(r)); }

  void abort_comm() noexcept {
    if (!comm_) return;
    const ncclResult_t r = nccl_api().ncclCommAbort(comm_);
    if (r != ncclSuccess) std::fprintf(stderr, "qisa: ncclCommAbort failed: %s\n", nccl_api().ncclGetErrorString(r));
    comm_ = nullptr;
  }

  std::string describe(ncclResult_t r) const {
    const cuda::NcclApi& api = nccl_api();
    std::string s = api.ncclGetErrorString(r);
    const char* last = api.ncclGetLastError(comm_);
    if (last && *last) s += std::string(" (") + last + ")";
    return s;
  }

  Clock::duration timeout() const {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_));
  }
  std::string seconds() const {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", timeout_);
    return buf;
  }

  Backend& be_;
  const int rank_, size_;
  const double timeout_;
  std::unique_ptr<SideStream> side_;
  ncclComm_t comm_ = nullptr;
  uint64_t calls_ = 0;
};

NcclRequest::~NcclRequest() {
  if (finished_ || owner_.aborted()) return;  // an abort cancelled it (and said why)
  try {
    wait();
  } catch (const Error& e) {  // a destructor reports, never throws
    std::fprintf(stderr, "qisa: %s\n", e.message().c_str());
  }
}

void NcclRequest::wait() {
  if (!finished_) owner_.wait_for(*done_, what_);
  finished_ = true;
}

bool NcclRequest::test() {
  if (!finished_) finished_ = owner_.poll(*done_, what_);
  return finished_;
}

}  // namespace

std::unique_ptr<Collectives> make_nccl_collectives(Communicator& host, Backend& be, double timeout_s) {
  QISA_CHECK(timeout_s > 0, "make_nccl_collectives: timeout_s must be > 0", "dist.timeout_s sets it");
  return std::make_unique<NcclCollectives>(host, be, timeout_s);
}

}  // namespace qisa

#else  // a build without CUDA

namespace qisa {
std::unique_ptr<Collectives> make_nccl_collectives(Communicator&, Backend&, double) {
  throw Error("dist.comm = nccl: this qisa was built without CUDA (nvcc and NCCL were not found when it was configured)",
              "build on a machine with the CUDA toolkit and NCCL (README: Building), or use dist.comm: mpi");
}
}  // namespace qisa

#endif
