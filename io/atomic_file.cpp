#include "io/atomic_file.h"

#include <fcntl.h>
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
