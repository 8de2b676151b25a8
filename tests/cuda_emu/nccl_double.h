// A test double of the NCCL calls qisa makes (kernels/cuda/nccl_api.h's table), for the emulated
// CUDA build: the ranks of a communicator are threads of the test process, their device memory
// and streams those of the CUDA runtime double (cuda_runtime_emu.h). It implements the documented
// semantics of each call, strictly:
//  - ncclGetUniqueId makes a fresh id; ncclCommInitRankConfig joins the clique of that id as
//    `rank` of `nranks` (a rank taken twice, a mismatched nranks, a config without
//    NCCL_CONFIG_INITIALIZER's magic are errors). With config.blocking = 0 it returns
//    ncclInProgress, and ncclCommGetAsyncError reports ncclInProgress until every rank has
//    joined (and `init_polls` more times), then ncclSuccess; blocking init waits for the clique.
//  - ncclAllReduce (sum), ncclReduceScatter (sum) and ncclAllGather on fp32 and bf16 are
//    enqueued on the stream: the stream is held (emu_streams.h), so events recorded behind the
//    collective are not complete, until every rank has enqueued its matching call; then the
//    results are written (sums in fp32 in rank order, bf16 rounded once; in place allowed) and
//    the holds released. Buffers must be device memory of the emulated runtime, streams live,
//    calls matched across ranks in kind, type and count (a mismatch is ncclInvalidUsage on every
//    rank: real NCCL would hang or corrupt).
//  - ncclCommAbort releases the rank's pending work and frees the communicator; the peers'
//    ncclCommGetAsyncError then reports ncclRemoteError ("remote process exited or there was a
//    network error"), as NCCL's does when a peer goes away. ncclCommFinalize (non-blocking:
//    ncclInProgress until the rank's pending collectives complete) and ncclCommDestroy.
//  - Faults (per rank, by the index of its collective calls, 0-based): an asynchronous error
//    (ncclCommGetAsyncError returns it; the collective never completes), a collective that never
//    completes (no error: only a timeout finds it), a rank whose init never completes.
// Making a NcclDouble points qisa's NCCL table at it; destroying it points it back at the library.
#pragma once
#include <nccl.h>

#include <memory>

#include "kernels/cuda/nccl_api.h"

namespace qisa::test {

class NcclDouble {
 public:
  NcclDouble();
  ~NcclDouble();
  NcclDouble(const NcclDouble&) = delete;
  NcclDouble& operator=(const NcclDouble&) = delete;

  const cuda::NcclApi& api() const;

  // Faults; set them before the calls they concern.
  void fail_at_call(int rank, int call, ncclResult_t async_error);
  void stall_at_call(int rank, int call);
  void never_join(int rank);
  void set_init_polls(int polls);  // ncclInProgress answers after the clique is complete (default 2)

  // What happened.
  int aborted() const;        // ncclCommAbort calls
  int destroyed() const;      // ncclCommDestroy calls
  int live() const;           // communicators not yet destroyed or aborted
  int collectives() const;    // collective calls enqueued (all ranks)
};

}  // namespace qisa::test
