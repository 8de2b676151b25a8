// What the MPI communicator and the MPI collectives share (private to trainer/comm): checked
// MPI calls, splitting buffers into calls of at most INT_MAX elements, and the communicator's
// handle from which the collectives duplicate theirs.
#pragma once
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/error.h"
#include "trainer/comm/communicator.h"

namespace qisa::detail {

inline constexpr const char* kCollectiveHint =
    "every rank must make the same collective calls in the same order with the same sizes; "
    "if a rank failed, its own output says why";

inline std::string mpi_error_string(int rc) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) return "MPI error code " + std::to_string(rc);
  return std::string(text, static_cast<size_t>(len));
}

// Every MPI return code goes through here: a failure becomes a qisa::Error naming the call.
inline void check(int rc, const char* call, const char* hint, SourceLocation loc = SourceLocation::current()) {
  if (rc != MPI_SUCCESS) throw Error(std::string(call) + " failed: " + mpi_error_string(rc), hint, loc);
}

inline bool mpi_finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

// Calls f(offset, count) over [0, n) in pieces of at most `chunk` (<= INT_MAX) elements.
template <typename F>
void for_chunks(size_t n, size_t chunk, F&& f) {
  for (size_t off = 0; off < n; off += chunk) f(off, static_cast<int>(std::min(chunk, n - off)));
}

inline bool overlaps(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return a_bytes > 0 && b_bytes > 0 && x < y + b_bytes && y < x + a_bytes;
}

// The MPI communicator's own MPI communicator and its most elements per call; nullptr comm
// when `c` is not the MPI communicator (mpi_communicator.cpp).
struct MpiHandle {
  MPI_Comm comm = MPI_COMM_NULL;
  size_t max_count_per_call = 0;  // in [1, INT_MAX]
};
MpiHandle mpi_handle_of(Communicator& c);

}  // namespace qisa::detail
