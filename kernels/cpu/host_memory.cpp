// host_memory.h. Every block has a 64-byte header just below the pointer handed out: how to
// give the block back (free, or munmap of a base and length).
#include "kernels/cpu/host_memory.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/error.h"

namespace qisa::cpu {

namespace {

constexpr size_t kAlign = 64;
constexpr size_t kHuge = size_t{2} << 20;
constexpr size_t kPage = 4096;
constexpr uint64_t kMagicMalloc = 0x71697361'6d616c6cULL, kMagicMap = 0x71697361'6d6d6170ULL;

struct alignas(kAlign) Header {
  void* base;     // what malloc or mmap returned
  size_t length;  // of the mapping (mmap only)
  uint64_t magic;
};
static_assert(sizeof(Header) == kAlign);

uintptr_t round_up(uintptr_t x, size_t a) { return (x + a - 1) / a * a; }

Header* header_of(void* p) { return static_cast<Header*>(p) - 1; }

[[noreturn]] void out_of_memory(size_t bytes, const std::string& how) {
  throw Error("cpu backend: allocating " + std::to_string(bytes) + " bytes failed (" + how + ")",
              "reduce batch_size or model size, or free memory on this machine");
}

void* from_malloc(size_t bytes, bool zeroed) {
  const size_t total = bytes + 2 * kAlign;  // room for the header and the alignment
  void* raw = zeroed ? std::calloc(1, total) : std::malloc(total);
  if (!raw) out_of_memory(bytes, zeroed ? "calloc" : "malloc");
  auto* h = reinterpret_cast<Header*>(round_up(reinterpret_cast<uintptr_t>(raw), kAlign));
  *h = Header{raw, 0, kMagicMalloc};
  return h + 1;
}

// [base | ... header | block (2 MiB aligned) | rest of its last page], the slack after the
// block's last page unmapped again (so running past the block faults).
void* from_mmap(size_t bytes) {
  const size_t length = round_up(bytes + kAlign, kHuge) + kHuge;
  void* base = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) out_of_memory(bytes, std::string("mmap: ") + std::strerror(errno));
  const uintptr_t b = reinterpret_cast<uintptr_t>(base);
  const uintptr_t block = round_up(b + kAlign, kHuge);
  const uintptr_t end = round_up(block + bytes, kPage);
  if (end < b + length) munmap(reinterpret_cast<void*>(end), b + length - end);
  // Advice only: where the kernel has no transparent huge pages the block stays on 4 KiB pages.
  (void)madvise(reinterpret_cast<void*>(block), end - block, MADV_HUGEPAGE);
  auto* h = reinterpret_cast<Header*>(block) - 1;
  *h = Header{base, end - b, kMagicMap};
  return reinterpret_cast<void*>(block);
}

}  // namespace

void* host_alloc(size_t bytes, bool zeroed) {
  QISA_CHECK(bytes > 0 && bytes <= SIZE_MAX / 2, "cpu backend: allocating " + std::to_string(bytes) + " bytes",
             "reduce batch_size or model size (a size of 0 or over half the address space is a bug in the caller)");
  return bytes >= kHugeBlockBytes ? from_mmap(bytes) : from_malloc(bytes, zeroed);
}

void host_free(void* p) noexcept {
  if (!p) return;
  const Header h = *header_of(p);
  if (h.magic == kMagicMap)
    munmap(h.base, h.length);
  else
    std::free(h.base);
}

}  // namespace qisa::cpu
