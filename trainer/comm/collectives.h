// Collectives: the gradient and parameter traffic of data-parallel training, on backend memory
// (the trainer's flat buffers), fp32 or bf16, each call ordered after an Event. Knows buffers,
// not models. Implementations: none (a world of one), mpi (the host communicator's ranks; a
// backend whose memory the host cannot address is staged through host buffers), nccl (device
// buffers of the CUDA backend, on its own stream: make_nccl_collectives). Control traffic (rank, loss sums, broadcasts, barrier, abort) stays
// on the host Communicator (communicator.h).
//
// Semantics of every call (all ranks make the same calls in the same order with the same
// count and dtype):
//  - count is in elements of `dtype` (fp32: 4 bytes, bf16: 2). Pointers are backend memory.
//  - after: nullptr, or an event recorded on the backend's stream after the work that writes
//    the input. The collective reads its buffers only after that work is complete (mpi: the
//    host waits on it; nccl: cudaStreamWaitEvent; none: the copy is enqueued on the stream
//    after it). The result is ready for work enqueued on the backend after the call returns
//    (after the request's wait() for iallreduce_sum).
//  - Every rank gets the same bits.
//  - fp32 sums: MPI's or NCCL's reduction order (the same bits on every rank; mpi_collectives.cpp
//    says why for Open MPI). bf16 sums: each rank's values are converted to fp32, summed in fp32
//    in rank order 0, 1, ..., size-1 (rank 0's value first, so a sum of -0s stays -0), and the
//    sum is rounded once to bf16 (round to nearest even). NCCL's bf16 order differs: the
//    contract promises only "the same bits on every rank". Gradients are reduced in fp32 (issue
//    14 item 2); bf16 buffers are for the all-gather of bf16 parameters.
//  - Empty buffers (count 0) are valid: nothing is read or written and `after` is not waited
//    for, so the pointers may be null; an empty iallreduce_sum's request is complete at once.
//  - Failures throw qisa::Error naming the call.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

#include "kernels/backend.h"
#include "trainer/comm/communicator.h"

namespace qisa {

// A started non-blocking collective. Destroying it unfinished waits for it (the collective may
// still write the buffer; an error is then printed on stderr, as a destructor cannot throw);
// finish or destroy it before its Collectives.
class CommRequest {
 public:
  virtual ~CommRequest() = default;
  virtual void wait() = 0;   // throws qisa::Error on failure
  virtual bool test() = 0;   // true when complete (then wait() returns at once)
};

// A request that is complete from the start (empty buffers, a world of one, a call that
// finished before it returned).
std::unique_ptr<CommRequest> completed_request();

class Collectives {
 public:
  virtual ~Collectives() = default;
  virtual std::string name() const = 0;  // "none", "mpi", "nccl"
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // In place: buf[i] = sum over ranks of buf[i], i < count.
  virtual void allreduce_sum(void* buf, size_t count, DType dtype, Event* after) = 0;
  // The same, started: the result is in buf once the request's wait() returns (or test() says
  // true). Several may be in flight; buf must not be touched until then. The MPI bf16 sum
  // completes before it returns (its fixed order needs the data of every rank).
  virtual std::unique_ptr<CommRequest> iallreduce_sum(void* buf, size_t count, DType dtype, Event* after) = 0;
  // send holds size()*count elements; recv[i] = sum over ranks r of send_r[rank()*count + i].
  // recv may lie inside send (e.g. send + rank()*count).
  virtual void reduce_scatter_sum(const void* send, void* recv, size_t count, DType dtype, Event* after) = 0;
  // recv holds size()*count elements: recv[r*count + i] = send_r[i] (bits moved, not rounded).
  // send may be recv + rank()*count (the shard already in place) or any other buffer.
  virtual void all_gather(const void* send, void* recv, size_t count, DType dtype, Event* after) = 0;
};

// The collectives over `host`'s ranks on `be`'s memory: mpi when host is the MPI communicator
// (a private duplicate of its MPI communicator, the same max_count_per_call), none when it is
// the none communicator. Collective when mpi. Destroy the collectives (and their requests)
// before the host communicator: the MPI one finalises MPI.
std::unique_ptr<Collectives> make_collectives(Communicator& host, Backend& be);

// The NCCL collectives (nccl_collectives.cpp) over `host`'s ranks on `be`'s device, one rank per
// GPU: rank 0's NCCL id is broadcast over host, the communicator is made without blocking and
// polled until ready, and collectives run on a second stream of the backend (Backend::
// make_side_stream), ordered after `after` by an event. Every wait (init, each collective, the
// final flush) polls the stream's event and ncclCommGetAsyncError; on an error, or after
// timeout_s (dist.timeout_s), the communicator is aborted (ncclCommAbort) and a qisa::Error names
// the rank, the collective and the cause. Collective over host. Throws for a backend without a
// side stream (the CPU) and in a build without CUDA.
std::unique_ptr<Collectives> make_nccl_collectives(Communicator& host, Backend& be, double timeout_s);

namespace detail {
// The MPI collectives over the MPI communicator `host` (mpi_collectives.cpp).
std::unique_ptr<Collectives> make_mpi_collectives(Communicator& host, Backend& be);
}  // namespace detail

}  // namespace qisa
