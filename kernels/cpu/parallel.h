// Parallel partition helpers and reusable scratch for the CPU ops.
//
// Determinism rule (backend.h): work is cut into items whose boundaries depend on the
// problem size only, never on the thread count. An item writes disjoint outputs, or a
// partial result in its own slot that the caller combines afterwards in item order. Which
// thread runs an item then cannot change a single bit of the result.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "kernels/error.h"

namespace qisa::cpu {

// Threads the next parallel region will use (the caller sets it, e.g. CpuBackend).
inline int max_threads() { return omp_get_max_threads(); }
inline int thread_index() { return omp_get_thread_num(); }

// body(item) for item in [0, count) on the current OpenMP team.
template <class Body>
void parallel_for(int64_t count, Body&& body) {
#pragma omp parallel for schedule(static) if (count > 1)
  for (int64_t i = 0; i < count; ++i) body(i);
}

// [0, n) cut into ceil(n / chunk) fixed ranges; body(item, begin, end).
template <class Body>
void parallel_chunks(int64_t n, int64_t chunk, Body&& body) {
  const int64_t items = (n + chunk - 1) / chunk;
  parallel_for(items, [&](int64_t c) { body(c, c * chunk, std::min(n, (c + 1) * chunk)); });
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Scratch buffers that grow and are kept between calls (no allocation in steady state).
// Each slot is one 64-byte aligned buffer; get() on a slot invalidates earlier pointers
// into that slot only. Not thread-safe: call get() outside parallel regions. `purpose` names
// the buffer for the error when it cannot be allocated (a qisa::Error with the bytes and the
// settings that shrink it, never a bare std::bad_alloc).
class Workspace {
 public:
  template <typename T>
  T* get(int slot, size_t count, const char* purpose = "kernel scratch") {
    if (static_cast<size_t>(slot) >= slots_.size()) slots_.resize(static_cast<size_t>(slot) + 1);
    Slot& s = slots_[static_cast<size_t>(slot)];
    // Over PTRDIFF_MAX no allocator can deliver (and the size would overflow): refuse unasked.
    constexpr size_t kMaxBytes = static_cast<size_t>(PTRDIFF_MAX) - 63;
    if (count > kMaxBytes / sizeof(T)) fail(std::to_string(count) + " x " + std::to_string(sizeof(T)), purpose, slot);
    const size_t bytes = std::max<size_t>(count * sizeof(T), 64);
    if (s.bytes < bytes) {
      const size_t rounded = (bytes + 63) / 64 * 64;
      void* p = std::aligned_alloc(64, rounded);
      if (!p) fail(std::to_string(rounded), purpose, slot);
      s.ptr.reset(static_cast<std::byte*>(p));
      s.bytes = rounded;
    }
    return reinterpret_cast<T*>(s.ptr.get());
  }

  // Bytes held over all slots (what the ops have asked for so far, each slot at its largest).
  size_t bytes() const {
    size_t n = 0;
    for (const Slot& s : slots_) n += s.bytes;
    return n;
  }

 private:
  [[noreturn]] static void fail(const std::string& bytes, const char* purpose, int slot) {
    throw Error("cannot allocate " + bytes + " bytes of " + purpose + " (CPU backend workspace slot " +
                    std::to_string(slot) + ")",
                "lower train.micro_batch_size (scratch grows with the rows of one micro-batch), model.block_size "
                "(attention scratch grows with T per thread) or train.threads");
  }
  struct Free {
    void operator()(std::byte* p) const noexcept { std::free(p); }
  };
  struct Slot {
    std::unique_ptr<std::byte[], Free> ptr;
    size_t bytes = 0;
  };
  std::vector<Slot> slots_;
};

}  // namespace qisa::cpu
