#include "io/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "kernels/error.h"

namespace qisa {

namespace {
std::string parent_dir(const std::string& path) {
  auto p = std::filesystem::path(path).parent_path();
  return p.empty() ? std::string(".") : p.string();
}

// Temporaries "<final>.tmp-<pid>" of the same final name whose writer is gone (kill -9, a
// crash, power loss) are removed, and said on stderr; one whose pid is alive (another writer,
// or an unknown owner: EPERM) is left alone. Only digits after ".tmp-" count: nothing else of
// the user's is touched.
void remove_stale_temporaries(const std::string& final_path) {
  namespace fs = std::filesystem;
  const std::string prefix = fs::path(final_path).filename().string() + ".tmp-";
  std::error_code ec;
  for (fs::directory_iterator it(parent_dir(final_path), ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const long pid = std::stol(digits);
    if (pid <= 0 || pid == ::getpid() || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    std::error_code rm;
    if (fs::remove(it->path(), rm))
      std::fprintf(stderr, "qisa: removed '%s', a temporary file left by a writer that is gone (pid %ld)\n",
                   it->path().string().c_str(), pid);
  }
}
}  // namespace

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) throw Error("cannot open '" + path + "' to fsync: " + std::strerror(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) throw Error("fsync of '" + path + "' failed: " + std::strerror(err), "the disk may be full or failing");
}

AtomicFile::AtomicFile(std::string final_path) : final_(std::move(final_path)) {
  tmp_ = final_ + ".tmp-" + std::to_string(::getpid());
  std::remove(tmp_.c_str());  // a leftover from a crashed process with our pid
  remove_stale_temporaries(final_);
}

AtomicFile::~AtomicFile() {
  if (!committed_) std::remove(tmp_.c_str());
}

void AtomicFile::commit() {
  fsync_path(tmp_);
  if (std::rename(tmp_.c_str(), final_.c_str()) != 0)
    throw Error("cannot rename '" + tmp_ + "' to '" + final_ + "': " + std::strerror(errno),
                "check that the directory is writable");
  committed_ = true;
  fsync_path(parent_dir(final_), /*directory=*/true);
}

void write_text_atomic(const std::string& path, const std::string& text) {
  AtomicFile f(path);
  FILE* fp = std::fopen(f.tmp_path().c_str(), "wb");
  if (!fp)
    throw Error("cannot write '" + path + "': " + std::strerror(errno), "check that the directory exists and is writable");
  size_t n = std::fwrite(text.data(), 1, text.size(), fp);
  int rc = std::fclose(fp);
  if (n != text.size() || rc != 0) throw Error("writing '" + path + "' failed", "the disk may be full");
  f.commit();
}

}  // namespace qisa
