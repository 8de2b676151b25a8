// Fuzz target: the checkpoint reader (io/checkpoint.h) on mutated checkpoint files: open,
// every accessor, piecewise tensor reads, verify() and inspect_checkpoint() (what `qisa
// inspect` and resume use). qisa::Error is the expected rejection of a damaged file.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "io/checkpoint.h"
#include "kernels/error.h"

namespace {

void read_everything(const qisa::CheckpointReader& r) {
  r.config_yaml();
  r.code_version();
  r.state();
  r.vocab();
  std::vector<float> buf;
  for (const char* group : {"params", "optim/m", "optim/v"}) {
    for (const auto& t : r.tensors(group)) {
      // A piece at the start and one at the end, at most 4096 elements each.
      const int64_t n = t.numel();
      const int64_t c = std::min<int64_t>(n, 4096);
      buf.resize(static_cast<size_t>(c));
      r.read_piece(group, t.name, 0, buf.data(), c);
      r.read_piece(group, t.name, n - c, buf.data(), c);
    }
  }
  for (const auto& name : r.string_names()) {
    std::vector<int64_t> shape;
    const std::vector<std::string> v = r.read_strings(name, &shape);
    QISA_FUZZ_REQUIRE(static_cast<int64_t>(v.size()) == qisa::fuzz::shape_elements(shape), "read_strings: count != product of the shape");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static qisa::fuzz::ScratchFile file(".ckpt.h5");
  const std::string& path = file.write(data, size);
  try {
    qisa::CheckpointReader r(path);
    try {
      read_everything(r);
    } catch (const qisa::Error&) {
    }
    try {
      r.verify();
    } catch (const qisa::Error&) {
    }
  } catch (const qisa::Error&) {
  }
  try {
    const qisa::CheckpointSummary s = qisa::inspect_checkpoint(path);
    QISA_FUZZ_REQUIRE(s.checksums_ok == s.checksum_error.empty(), "inspect: checksums_ok disagrees with the error");
  } catch (const qisa::Error&) {
  }
  return 0;
}
