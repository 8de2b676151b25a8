// A Backend whose memory the host must not address (host_addressable() false), for the
// communication tests: it stands for device memory (cuda) on a machine without a GPU. Its
// buffers are host allocations holding every byte XOR a key drawn from the byte's address, so
// code that reads, writes or moves one directly (instead of through download, upload and copy)
// sees or leaves wrong values, and a test comparing results fails. Only its memory calls are
// meant for use: the compute ops it forwards to the CPU backend would see the encoded bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "forwarding_backend.h"

namespace qisa::test {

class FakeDeviceBackend final : public ForwardingBackend {
 public:
  std::string name() const override { return "fake-device"; }
  bool host_addressable() const override { return false; }

  void upload(void* dst, const void* host_src, size_t bytes) override {
    auto* d = static_cast<unsigned char*>(dst);
    const auto* h = static_cast<const unsigned char*>(host_src);
    for (size_t i = 0; i < bytes; ++i) d[i] = static_cast<unsigned char>(h[i] ^ key(d + i));
  }
  void download(void* host_dst, const void* src, size_t bytes) override {
    auto* h = static_cast<unsigned char*>(host_dst);
    const auto* d = static_cast<const unsigned char*>(src);
    for (size_t i = 0; i < bytes; ++i) h[i] = static_cast<unsigned char>(d[i] ^ key(d + i));
  }
  void copy(void* dst, const void* src, size_t bytes) override {  // may overlap, as memmove
    std::vector<unsigned char> plain(bytes);
    download(plain.data(), src, bytes);
    upload(dst, plain.data(), bytes);
  }
  void zero(void* dst, size_t bytes) override {
    const std::vector<unsigned char> zeros(bytes, 0);
    upload(dst, zeros.data(), bytes);
  }

 private:
  // The key of the byte at address p (splitmix64 of the address).
  static unsigned char key(const void* p) {
    uint64_t x = reinterpret_cast<uintptr_t>(p) + 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return static_cast<unsigned char>(x ^ (x >> 31));
  }
};

}  // namespace qisa::test
