// Append-only JSON-lines log (one object per line, flushed per line so that `tail -f` and a
// crash both see every finished line).
#pragma once
#include <cstdio>
#include <string>

namespace qisa {

class MetricsLog {
 public:
  // append=false truncates an existing file.
  MetricsLog(const std::string& path, bool append);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  void write(const std::string& json_line);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  FILE* fp_ = nullptr;
};

}  // namespace qisa
