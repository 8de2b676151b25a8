// Shared by the fuzz targets (tests/fuzz/fuzz_*.cpp): the input written to a scratch file for
// the loaders that take a path, and a check that fails the run loudly (libFuzzer reports the
// abort as a crash and saves the input).
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace qisa::fuzz {

// Aborts with a message when a property the code promises does not hold.
#define QISA_FUZZ_REQUIRE(cond, msg)                                                        \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      std::fprintf(stderr, "fuzz property violated at %s:%d: %s\n", __FILE__, __LINE__, msg); \
      std::abort();                                                                         \
    }                                                                                       \
  } while (0)

// The number of elements a shape claims, or -1 when that product does not fit in int64
// (a zero extent makes it 0 whatever the others are). The readers may accept such a shape only
// with no data, so -1 never equals a size.
inline int64_t shape_elements(const std::vector<int64_t>& shape) {
  for (int64_t d : shape)
    if (d == 0) return 0;
  int64_t n = 1;
  for (int64_t d : shape)
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return -1;
  return n;
}

// One scratch file per process in $TMPDIR (cluster/fuzz.sh points it into the build
// directory and empties it after each target), removed at a normal exit. write() replaces its
// content with the input.
class ScratchFile {
 public:
  explicit ScratchFile(const char* suffix) {
    path_ = (std::filesystem::temp_directory_path() / ("qisa-fuzz-" + std::to_string(::getpid()) + suffix)).string();
  }
  ~ScratchFile() { std::remove(path_.c_str()); }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;

  const std::string& path() const { return path_; }
  const std::string& write(const uint8_t* data, size_t size) {
    FILE* f = std::fopen(path_.c_str(), "wb");
    QISA_FUZZ_REQUIRE(f != nullptr, "cannot create the scratch file");
    QISA_FUZZ_REQUIRE(size == 0 || std::fwrite(data, 1, size, f) == size, "cannot write the scratch file");
    QISA_FUZZ_REQUIRE(std::fclose(f) == 0, "cannot close the scratch file");
    return path_;
  }

 private:
  std::string path_;
};

}  // namespace qisa::fuzz
