// The CPU backend's memory: 64-byte aligned blocks; large ones are their own mappings on
// transparent huge pages. At the GPT-2 124M shape the parameters, gradients and AdamW moments
// are 2 GB: on 4 KiB pages their first touch took half a million page faults, seconds of the
// start-up and of the first step (measured on this project's build VM: docs/perf.md).
#pragma once
#include <cstddef>

namespace qisa::cpu {

// Blocks of at least this many bytes are mmap'ed, 2 MiB aligned, with MADV_HUGEPAGE (where the
// kernel's transparent_hugepage setting is `madvise` or `always`, faults then map 2 MiB pages).
inline constexpr size_t kHugeBlockBytes = size_t{4} << 20;

// bytes > 0. zeroed: the block reads as zeros (fresh mappings and calloc's large blocks are
// zero pages already: nothing writes them). Throws qisa::Error when the memory is not there.
void* host_alloc(size_t bytes, bool zeroed);
void host_free(void* p) noexcept;  // p from host_alloc, or null

}  // namespace qisa::cpu
