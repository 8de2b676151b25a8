// A Backend whose memory the host must not address (host_addressable() false), for the
// communication tests: it stands for device memory (cuda) on a machine without a GPU. Its
// buffers are host allocations holding every byte XOR a key drawn from the byte's address, so
// code that reads, writes or moves one directly (instead of through download, upload and copy)
// sees or leaves wrong values, and a test comparing results fails. It has memory, events and
// copies; its compute ops throw.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/error.h"

namespace qisa::test {

class FakeDeviceBackend final : public Backend {
 public:
  std::string name() const override { return "fake-device"; }
  int threads() const override { return 1; }
  bool host_addressable() const override { return false; }

  void* alloc(size_t bytes) override {
    if (bytes == 0) return nullptr;
    void* p = std::malloc(bytes);
    QISA_CHECK(p != nullptr, "fake device: allocating " + std::to_string(bytes) + " bytes failed", "free memory");
    return p;
  }
  void release(void* p) noexcept override { std::free(p); }
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
  void synchronize() override {}
  std::unique_ptr<Event> make_event() override { return std::make_unique<DoneEvent>(); }
  void record(Event&) override {}

  // ---- no compute
  void embedding_forward(float*, const int32_t*, const float*, const float*, int64_t, int, int) override { none(); }
  void embedding_backward(float*, float*, const float*, const int32_t*, int64_t, int, int) override { none(); }
  void layernorm_forward(float*, float*, float*, const float*, const float*, const float*, int64_t, int) override {
    none();
  }
  void layernorm_backward(float*, float*, float*, const float*, const float*, const float*, const float*, const float*,
                          int64_t, int) override {
    none();
  }
  void linear_forward(float*, const float*, const float*, const float*, int64_t, int, int) override { none(); }
  void linear_backward(float*, float*, float*, const float*, const float*, const float*, int64_t, int, int) override {
    none();
  }
  void activation_forward(float*, const float*, int64_t, Activation) override { none(); }
  void activation_backward(float*, const float*, const float*, int64_t, Activation) override { none(); }
  void dropout_add_forward(float*, const float*, const float*, int64_t, const Dropout&) override { none(); }
  void dropout_add_backward(float*, float*, const float*, int64_t, const Dropout&) override { none(); }
  void csa_forward(float*, int, float*, const float*, const float*, const float*, int, int64_t, int, int, int, float,
                   const Dropout&) override {
    none();
  }
  void csa_backward(float*, float*, float*, const float*, int, const float*, const float*, const float*, const float*,
                    int, int64_t, int, int, int, float, const Dropout&) override {
    none();
  }
  void gaussian_attention_forward(float*, int, float*, const float*, const float*, int, const float*, int, int64_t, int,
                                  int, int, AttnMask) override {
    none();
  }
  void gaussian_attention_backward(float*, float*, int, float*, int, const float*, int, const float*, const float*,
                                   const float*, const float*, int64_t, int, int, int, AttnMask) override {
    none();
  }
  void pauli_value_forward(float*, int, const float*, int, const PauliTerm*, int64_t, int, int, int, int) override {
    none();
  }
  void pauli_value_backward(float*, int, const float*, int, const float*, const PauliTerm*, int64_t, int, int, int,
                            int) override {
    none();
  }
  void qisa_a_forward(float*, int, const float*, int, const float*, const float*, const float*, const PauliTerm*,
                      int64_t, int, int, int, int) override {
    none();
  }
  void qisa_a_backward(float*, int, float*, float*, float*, const float*, int, const float*, const float*,
                       const float*, const float*, const PauliTerm*, int64_t, int, int, int, int) override {
    none();
  }
  void cross_entropy_forward(float*, const float*, const int32_t*, int64_t, int) override { none(); }
  void cross_entropy_backward(float*, const float*, const int32_t*, int64_t, int, float) override { none(); }
  void adamw_update(float*, const float*, float*, float*, int64_t, const AdamWHyper&) override { none(); }
  double sum_squares(const float*, int64_t) override { none(); }
  void scale(float*, float, int64_t) override { none(); }

 private:
  class DoneEvent final : public Event {  // every op finishes before it returns
   public:
    void wait() override {}
    bool query() override { return true; }
  };

  // The key of the byte at address p (splitmix64 of the address).
  static unsigned char key(const void* p) {
    uint64_t x = reinterpret_cast<uintptr_t>(p) + 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return static_cast<unsigned char>(x ^ (x >> 31));
  }
  [[noreturn]] static void none() {
    throw Error("fake device backend: no compute ops", "it stands for device memory in communication tests only");
  }
};

}  // namespace qisa::test
