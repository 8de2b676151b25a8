// Write-then-rename: a file appears under its final name only when complete and on disk.
// Usage: AtomicFile f(path); write to f.tmp_path(); f.commit();  Destruction without commit
// removes the temporary, so a failed or interrupted write leaves no partial file behind. A
// temporary that a killed writer (kill -9) left for the same final name is removed by the next
// AtomicFile of that name, which says so on stderr.
#pragma once
#include <string>

namespace qisa {

class AtomicFile {
 public:
  explicit AtomicFile(std::string final_path);
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  const std::string& tmp_path() const { return tmp_; }
  const std::string& final_path() const { return final_; }
  // fsync the temporary, rename it over the final name, fsync the directory.
  void commit();

 private:
  std::string final_;
  std::string tmp_;
  bool committed_ = false;
};

// fsync a file or directory by path (throws qisa::Error naming it).
void fsync_path(const std::string& path, bool directory = false);
// Write `text` to `path` atomically (temp, fsync, rename, fsync dir).
void write_text_atomic(const std::string& path, const std::string& text);

}  // namespace qisa
