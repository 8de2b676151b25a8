// NCCL through a table of function pointers (issue 16 item 4). The product fills the table
// from libnccl.so.<NCCL_MAJOR> with dlopen the first time NCCL is used, so a machine without
// NCCL (or without a GPU) starts and trains on the CPU, and no process pays for loading it
// otherwise; tests point the table at a double that implements the calls over the host
// communicator. Every NCCL call of qisa goes through nccl_api() and is checked with
// QISA_NCCL_CHECK: file:line, the call, NCCL's error string and last error, and a hint.
#pragma once
#include <nccl.h>

#include <string>

#include "kernels/error.h"

namespace qisa::cuda {

// The entry points qisa calls, one list.
#define QISA_NCCL_FUNCTIONS(X)                                                                           \
  X(ncclGetVersion) X(ncclGetUniqueId) X(ncclCommInitRankConfig) X(ncclCommGetAsyncError)                \
  X(ncclCommFinalize) X(ncclCommDestroy) X(ncclCommAbort) X(ncclAllReduce) X(ncclReduceScatter)           \
  X(ncclAllGather) X(ncclGroupStart) X(ncclGroupEnd) X(ncclGetErrorString) X(ncclGetLastError)

struct NcclApi {
#define QISA_NCCL_MEMBER(name) decltype(&::name) name = nullptr;
  QISA_NCCL_FUNCTIONS(QISA_NCCL_MEMBER)
#undef QISA_NCCL_MEMBER
  std::string source;  // where the functions come from: the library's path, or a double's name
};

// The table in use: a double set by use_nccl_api, else the library, loaded on the first call
// (a failed load throws qisa::Error with a hint and is tried again on the next call).
const NcclApi& nccl_api();

// Tests: make `api` the table in use (nullptr: back to the library). Not thread-safe; set it
// before any NCCL object is made.
void use_nccl_api(const NcclApi* api);

// dlopen `soname` and look up every function of the list; throws qisa::Error naming the
// library or the missing function. The handle is kept for the process's life.
NcclApi load_nccl_library(const std::string& soname = "libnccl.so." + std::to_string(NCCL_MAJOR));

// Throws unless r is ncclSuccess (or ncclInProgress when in_progress_ok): "FILE:LINE:
// ncclX(...) failed: <error string> (<last error>)" with the hint.
void check_nccl(ncclResult_t r, const char* call, const char* hint, bool in_progress_ok = false,
                SourceLocation loc = SourceLocation::current());
#define QISA_NCCL_CHECK(call, hint) ::qisa::cuda::check_nccl((call), #call, (hint))

}  // namespace qisa::cuda
