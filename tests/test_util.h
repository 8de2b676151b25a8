// Shared helpers for the GoogleTest suites.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace qisa::test {

// Golden files: $QISA_GOLDEN_DIR, else tests/golden of the source tree.
inline std::string golden_dir() {
  if (const char* e = std::getenv("QISA_GOLDEN_DIR"); e && *e) return e;
  return std::string(QISA_SOURCE_DIR) + "/tests/golden";
}
inline std::string golden(const std::string& file) { return golden_dir() + "/" + file; }

// The qisa executable built with the tests.
inline std::string qisa_bin() { return QISA_BIN; }

// SPEC §4 measure: max|got - want| / max|want| (max|want| floored at 1e-30).
template <typename A, typename B>
double max_rel_err(const A& got, const B& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num = std::max(num, std::abs(static_cast<double>(got[i]) - static_cast<double>(want[i])));
    den = std::max(den, std::abs(static_cast<double>(want[i])));
  }
  return num / std::max(den, 1e-30);
}

// A fresh seed per run (printed by the test on failure through SCOPED_TRACE), unless
// QISA_TEST_SEED pins it.
inline uint64_t fresh_seed() {
  if (const char* e = std::getenv("QISA_TEST_SEED"); e && *e) return std::strtoull(e, nullptr, 10);
  return std::random_device{}();
}

// True when a shared library whose path contains `name` is mapped into this process.
inline bool library_mapped(const std::string& name) {
  std::ifstream f("/proc/self/maps");
  std::stringstream s;
  s << f.rdbuf();
  return s.str().find(name) != std::string::npos;
}

template <typename T>
std::vector<T> random_vector(std::mt19937_64& rng, size_t n, double lo = -1.0, double hi = 1.0) {
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(d(rng));
  return v;
}

// A scratch directory removed at destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "qisa-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::error_code ec; std::filesystem::remove_all(path_, ec); }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace qisa::test

#include <sched.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace qisa::test {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Run a shell command, capturing its output and exit status.
inline CommandResult run_command(const std::string& cmd) {
  CommandResult r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A tmpfs of `size` (e.g. "256k") mounted on `dir` in a mount namespace of this process's own,
// so that a test can fill a disk for real; the mount goes away with the process (and the
// namespace). Needs CAP_SYS_ADMIN (root in most containers and CI runners) and a process with
// one thread; returns why not when it cannot, for GTEST_SKIP.
inline std::string mount_private_tmpfs(const std::string& dir, const std::string& size) {
  if (::unshare(CLONE_NEWNS) != 0) return std::string("unshare(CLONE_NEWNS): ") + std::strerror(errno);
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    return std::string("making / private: ") + std::strerror(errno);
  if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, ("size=" + size).c_str()) != 0)
    return "mounting a tmpfs on " + dir + ": " + std::strerror(errno);
  return "";
}

// Bytes free on the file system holding `path` (for an unprivileged user).
inline uint64_t free_bytes(const std::string& path) {
  struct statvfs v {};
  if (::statvfs(path.c_str(), &v) != 0) return 0;
  return static_cast<uint64_t>(v.f_bavail) * v.f_frsize;
}

// Fills the file system holding `dir` with one file; returns its path.
inline std::string fill_disk(const std::string& dir) {
  const std::string path = dir + "/filler";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return path;
  std::setvbuf(f, nullptr, _IONBF, 0);
  const std::string block(4096, 'x');
  while (std::fwrite(block.data(), 1, block.size(), f) == block.size()) {
  }
  std::fclose(f);
  return path;
}

// A small English-like text with structure a tiny model can learn (deterministic).
inline std::string make_training_text(size_t sentences) {
  static const char* subjects[] = {"the cat", "a dog", "the old king", "my friend", "the queen"};
  static const char* verbs[] = {"sees", "likes", "follows", "calls", "waits for"};
  static const char* objects[] = {"the moon", "a bird", "the river", "her son", "the door"};
  std::string text;
  uint64_t s = 12345;
  auto next = [&s] { s = s * 6364136223846793005ull + 1442695040888963407ull; return (s >> 33) % 5; };
  for (size_t i = 0; i < sentences; ++i) {
    text += subjects[next()];
    text += ' ';
    text += verbs[next()];
    text += ' ';
    text += objects[next()];
    text += (i % 4 == 3) ? ".\n" : ". ";
  }
  return text;
}

}  // namespace qisa::test
