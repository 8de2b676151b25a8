// The NCCL test double (nccl_double.h). One mutex guards every communicator and clique; a
// collective's data moves when its last rank enqueues it, on that rank's thread.
#include "nccl_double.h"

#include <chrono>
#include <condition_variable>
#include <iterator>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <stdexcept>
#include <vector>

#include "emu_streams.h"
#include "kernels/bf16.h"


namespace {

enum class Kind { all_reduce, reduce_scatter, all_gather };

struct Clique;

}  // namespace

// The communicator NCCL's header declares (typedef struct ncclComm* ncclComm_t).
struct ncclComm {
  Clique* clique = nullptr;  // null: never joined (fault)
  int rank = 0;
  ncclResult_t async = ncclInProgress;
  int init_polls_left = 0;
  bool finalizing = false;
  int calls = 0;         // collective calls so far
  uint64_t next_op = 0;  // this rank's next operation in the clique's sequence
  std::set<uint64_t> holds;  // stream holds of this rank's unfinished collectives
};

namespace {

struct Slot {
  ncclComm* comm = nullptr;
  const void* send = nullptr;
  void* recv = nullptr;
  uint64_t hold = 0;
};

struct Op {
  Kind kind;
  ncclDataType_t type;
  size_t count;
  std::vector<Slot> slots;  // by rank
  int arrived = 0;
};

struct Clique {
  int n = 0;
  std::vector<ncclComm*> members;  // by rank
  int joined = 0;
  std::map<uint64_t, Op> ops;  // unfinished, by sequence number
};

struct Faults {
  std::map<std::pair<int, int>, ncclResult_t> fail;  // (rank, call) -> async error
  std::set<std::pair<int, int>> stall;
  std::set<int> never_join;
  int init_polls = 2;
};

struct State {
  std::mutex mu;
  std::condition_variable changed;
  std::map<std::string, Clique> cliques;  // by unique id bytes
  std::set<ncclComm*> comms;
  Faults faults;
  uint64_t ids = 0;
  int aborted = 0, destroyed = 0, collectives = 0, group_depth = 0;
  std::string last_error;
};
State* g = nullptr;  // the live NcclDouble's state

ncclResult_t failed(ncclResult_t r, const std::string& why) {
  g->last_error = why;
  return r;
}

size_t type_bytes(ncclDataType_t t) { return t == ncclBfloat16 ? 2 : 4; }
float load(const void* p, ncclDataType_t t, size_t i) {
  if (t == ncclBfloat16) return qisa::bf16_to_float(static_cast<const qisa::bf16*>(p)[i]);
  return static_cast<const float*>(p)[i];
}
void store(void* p, ncclDataType_t t, size_t i, float v) {
  if (t == ncclBfloat16) static_cast<qisa::bf16*>(p)[i] = qisa::float_to_bf16(v);
  else static_cast<float*>(p)[i] = v;
}

// sum over ranks in rank order, in fp32, of slot r's send element (offset + i).
float sum_of(const Op& op, ncclDataType_t t, size_t offset, size_t i) {
  float s = load(op.slots[0].send, t, offset + i);
  for (size_t r = 1; r < op.slots.size(); ++r) s += load(op.slots[r].send, t, offset + i);
  return s;
}

// Every rank has enqueued op: compute every rank's result first (buffers may be shared in place),
// then write them and release the holds.
void execute(Op& op) {
  const size_t n = op.slots.size(), eb = type_bytes(op.type), c = op.count;
  std::vector<std::vector<unsigned char>> out(n);
  for (size_t q = 0; q < n; ++q) {
    const size_t elems = op.kind == Kind::all_gather ? n * c : c;
    out[q].resize(elems * eb);
    void* o = out[q].data();
    for (size_t i = 0; i < c; ++i) {
      switch (op.kind) {
        case Kind::all_reduce: store(o, op.type, i, sum_of(op, op.type, 0, i)); break;
        case Kind::reduce_scatter: store(o, op.type, i, sum_of(op, op.type, q * c, i)); break;
        case Kind::all_gather:
          for (size_t r = 0; r < n; ++r)
            std::memcpy(out[q].data() + (r * c + i) * eb, static_cast<const unsigned char*>(op.slots[r].send) + i * eb, eb);
          break;
      }
    }
  }
  for (size_t q = 0; q < n; ++q) {
    std::memcpy(op.slots[q].recv, out[q].data(), out[q].size());
    op.slots[q].comm->holds.erase(op.slots[q].hold);
    qisa::emu::release_hold(op.slots[q].hold);
  }
}

bool live(ncclComm_t c) { return c && g->comms.count(c) != 0; }

ncclResult_t collective(Kind kind, const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t red,
                        ncclComm_t comm, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(g->mu);
  if (!live(comm)) return failed(ncclInvalidArgument, "not a live communicator");
  if (!comm->clique || comm->async == ncclInProgress) return failed(ncclInvalidUsage, "communicator init not complete");
  if (comm->async != ncclSuccess) return comm->async;
  if (type != ncclFloat32 && type != ncclBfloat16) return failed(ncclInvalidArgument, "the double knows fp32 and bf16");
  if (kind != Kind::all_gather && red != ncclSum) return failed(ncclInvalidArgument, "the double knows ncclSum");
  if (!qisa::emu::is_live_stream(stream)) return failed(ncclInvalidArgument, "not a live stream");
  const size_t n = static_cast<size_t>(comm->clique->n), eb = type_bytes(type);
  const size_t send_elems = kind == Kind::reduce_scatter ? n * count : count;
  const size_t recv_elems = kind == Kind::all_gather ? n * count : count;
  if (count == 0) return ncclSuccess;
  if (!qisa::emu::is_device_range(send, send_elems * eb) || !qisa::emu::is_device_range(recv, recv_elems * eb))
    return failed(ncclInvalidArgument, "a buffer is not device memory of the right size");
  ++g->collectives;
  const int call = comm->calls++;
  const uint64_t hold = qisa::emu::hold_stream(stream);
  comm->holds.insert(hold);
  if (const auto f = g->faults.fail.find({comm->rank, call}); f != g->faults.fail.end()) {
    comm->async = f->second;  // the collective stays held: it never completes
    g->last_error = "injected asynchronous error";
    return ncclSuccess;
  }
  if (g->faults.stall.count({comm->rank, call})) return ncclSuccess;  // never completes, no error
  Clique& cl = *comm->clique;
  Op& op = cl.ops.try_emplace(comm->next_op++, Op{kind, type, count, std::vector<Slot>(n), 0}).first->second;
  if (op.kind != kind || op.type != type || op.count != count) {
    for (ncclComm* m : cl.members)
      if (m) m->async = ncclInvalidUsage;
    return failed(ncclInvalidUsage, "ranks made different collectives (kind, type or count)");
  }
  op.slots[static_cast<size_t>(comm->rank)] = {comm, send, recv, hold};
  if (++op.arrived == cl.n) {
    execute(op);
    cl.ops.erase(comm->next_op - 1);
  }
  return ncclSuccess;
}

// Releases what comm still holds (its collectives are cancelled) and forgets it.
void drop(ncclComm_t comm) {
  for (uint64_t h : comm->holds) qisa::emu::release_hold(h);
  comm->holds.clear();
  if (Clique* cl = comm->clique) {  // its arrived collectives can no longer complete
    for (auto it = cl->ops.begin(); it != cl->ops.end();)
      it = it->second.slots[static_cast<size_t>(comm->rank)].comm == comm ? cl->ops.erase(it) : std::next(it);
    cl->members[static_cast<size_t>(comm->rank)] = nullptr;
  }
  g->comms.erase(comm);
  delete comm;
}

const char* error_string(ncclResult_t r) {
  switch (r) {  // NCCL's own texts
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case ncclSystemError: return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case ncclInternalError: return "internal error - please report this issue to the NCCL developers";
    case ncclInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
  }
}

// ---- the table's functions

ncclResult_t get_version(int* v) {
  if (!v) return ncclInvalidArgument;
  *v = NCCL_VERSION_CODE;
  return ncclSuccess;
}

ncclResult_t get_unique_id(ncclUniqueId* id) {
  if (!id) return ncclInvalidArgument;
  std::lock_guard<std::mutex> lock(g->mu);
  std::memset(id->internal, 0, sizeof id->internal);
  const std::string text = "qisa nccl double id " + std::to_string(++g->ids);
  std::memcpy(id->internal, text.data(), text.size());
  return ncclSuccess;
}

ncclResult_t init_rank_config(ncclComm_t* out, int nranks, ncclUniqueId id, int rank, ncclConfig_t* config) {
  std::unique_lock<std::mutex> lock(g->mu);
  if (!out || nranks < 1 || rank < 0 || rank >= nranks)
    return failed(ncclInvalidArgument, "bad communicator, nranks or rank");
  if (!config || config->magic != 0xcafebeef) return failed(ncclInvalidArgument, "config not from NCCL_CONFIG_INITIALIZER");
  const bool blocking = config->blocking != 0;  // NCCL_CONFIG_UNDEF_INT (unset) means blocking
  auto* c = new ncclComm;
  c->rank = rank;
  c->init_polls_left = g->faults.init_polls;
  g->comms.insert(c);
  *out = c;
  if (!g->faults.never_join.count(rank)) {
    Clique& cl = g->cliques[std::string(id.internal, sizeof id.internal)];
    if (cl.n == 0) {
      cl.n = nranks;
      cl.members.assign(static_cast<size_t>(nranks), nullptr);
    }
    if (cl.n != nranks || cl.members[static_cast<size_t>(rank)]) {
      g->comms.erase(c);
      delete c;
      *out = nullptr;
      return failed(ncclInvalidUsage, "rank already joined, or nranks differs between ranks");
    }
    cl.members[static_cast<size_t>(rank)] = c;
    c->clique = &cl;
    ++cl.joined;
    g->changed.notify_all();
  }
  if (!blocking) return ncclInProgress;
  const bool done = g->changed.wait_for(lock, std::chrono::seconds(30),
                                        [&] { return c->clique && c->clique->joined == c->clique->n; });
  if (!done) return failed(ncclSystemError, "blocking init: the clique did not complete in 30 s");
  c->async = ncclSuccess;
  return ncclSuccess;
}

ncclResult_t get_async_error(ncclComm_t comm, ncclResult_t* r) {
  std::lock_guard<std::mutex> lock(g->mu);
  if (!live(comm) || !r) return failed(ncclInvalidArgument, "not a live communicator");
  if (comm->async == ncclInProgress && !comm->finalizing && comm->clique && comm->clique->joined == comm->clique->n &&
      comm->init_polls_left-- <= 0)
    comm->async = ncclSuccess;
  if (comm->finalizing && comm->async == ncclInProgress && comm->holds.empty()) comm->async = ncclSuccess;
  *r = comm->async;
  return ncclSuccess;
}

ncclResult_t finalize(ncclComm_t comm) {
  std::lock_guard<std::mutex> lock(g->mu);
  if (!live(comm)) return failed(ncclInvalidArgument, "not a live communicator");
  if (comm->async != ncclSuccess) return comm->async == ncclInProgress ? ncclInvalidUsage : comm->async;
  comm->finalizing = true;
  comm->async = ncclInProgress;
  return ncclInProgress;
}

ncclResult_t destroy(ncclComm_t comm) {
  std::lock_guard<std::mutex> lock(g->mu);
  if (!live(comm)) return failed(ncclInvalidArgument, "not a live communicator");
  ++g->destroyed;
  drop(comm);
  return ncclSuccess;
}

ncclResult_t abort_comm(ncclComm_t comm) {
  std::lock_guard<std::mutex> lock(g->mu);
  if (!comm) return ncclSuccess;  // documented: a null comm is ignored
  if (!live(comm)) return failed(ncclInvalidArgument, "not a live communicator");
  ++g->aborted;
  if (Clique* cl = comm->clique)
    for (ncclComm* m : cl->members)
      if (m && m != comm && (m->async == ncclSuccess || m->finalizing)) m->async = ncclRemoteError;
  drop(comm);
  return ncclSuccess;
}

ncclResult_t all_reduce(const void* s, void* r, size_t n, ncclDataType_t t, ncclRedOp_t op, ncclComm_t c,
                        cudaStream_t st) {
  return collective(Kind::all_reduce, s, r, n, t, op, c, st);
}
ncclResult_t reduce_scatter(const void* s, void* r, size_t n, ncclDataType_t t, ncclRedOp_t op, ncclComm_t c,
                            cudaStream_t st) {
  return collective(Kind::reduce_scatter, s, r, n, t, op, c, st);
}
ncclResult_t all_gather(const void* s, void* r, size_t n, ncclDataType_t t, ncclComm_t c, cudaStream_t st) {
  return collective(Kind::all_gather, s, r, n, t, ncclSum, c, st);
}
ncclResult_t group_start() {
  std::lock_guard<std::mutex> lock(g->mu);
  ++g->group_depth;
  return ncclSuccess;
}
ncclResult_t group_end() {
  std::lock_guard<std::mutex> lock(g->mu);
  if (g->group_depth == 0) return failed(ncclInvalidUsage, "ncclGroupEnd without ncclGroupStart");
  --g->group_depth;
  return ncclSuccess;
}
const char* last_error(ncclComm_t) { return g ? g->last_error.c_str() : ""; }

qisa::cuda::NcclApi make_api() {
  qisa::cuda::NcclApi a;
  a.ncclGetVersion = get_version;
  a.ncclGetUniqueId = get_unique_id;
  a.ncclCommInitRankConfig = init_rank_config;
  a.ncclCommGetAsyncError = get_async_error;
  a.ncclCommFinalize = finalize;
  a.ncclCommDestroy = destroy;
  a.ncclCommAbort = abort_comm;
  a.ncclAllReduce = all_reduce;
  a.ncclReduceScatter = reduce_scatter;
  a.ncclAllGather = all_gather;
  a.ncclGroupStart = group_start;
  a.ncclGroupEnd = group_end;
  a.ncclGetErrorString = error_string;
  a.ncclGetLastError = last_error;
  a.source = "the NCCL test double (tests/cuda_emu/nccl_double.cpp)";
  return a;
}

qisa::cuda::NcclApi g_api;

}  // namespace

namespace qisa::test {

NcclDouble::NcclDouble() {
  if (g) throw std::logic_error("NcclDouble: one at a time");
  g = new State;
  g_api = make_api();
  cuda::use_nccl_api(&g_api);
}

NcclDouble::~NcclDouble() {
  cuda::use_nccl_api(nullptr);
  for (ncclComm* c : g->comms) {
    for (uint64_t h : c->holds) emu::release_hold(h);
    delete c;
  }
  delete g;
  g = nullptr;
}

const cuda::NcclApi& NcclDouble::api() const { return g_api; }

void NcclDouble::fail_at_call(int rank, int call, ncclResult_t async_error) {
  std::lock_guard<std::mutex> lock(g->mu);
  g->faults.fail[{rank, call}] = async_error;
}
void NcclDouble::stall_at_call(int rank, int call) {
  std::lock_guard<std::mutex> lock(g->mu);
  g->faults.stall.insert({rank, call});
}
void NcclDouble::never_join(int rank) {
  std::lock_guard<std::mutex> lock(g->mu);
  g->faults.never_join.insert(rank);
}
void NcclDouble::set_init_polls(int polls) {
  std::lock_guard<std::mutex> lock(g->mu);
  g->faults.init_polls = polls;
}
int NcclDouble::aborted() const {
  std::lock_guard<std::mutex> lock(g->mu);
  return g->aborted;
}
int NcclDouble::destroyed() const {
  std::lock_guard<std::mutex> lock(g->mu);
  return g->destroyed;
}
int NcclDouble::live() const {
  std::lock_guard<std::mutex> lock(g->mu);
  return static_cast<int>(g->comms.size());
}
int NcclDouble::collectives() const {
  std::lock_guard<std::mutex> lock(g->mu);
  return g->collectives;
}

}  // namespace qisa::test
