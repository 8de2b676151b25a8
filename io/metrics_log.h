// Append-only JSON-lines log (one object per line, flushed per line so that `tail -f` and a
// crash both see every finished line).
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

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

// What a run's metrics.jsonl holds, for reports and plots. Lines that are not JSON objects (a
// line cut short by a crash) are skipped; a later line for the same step (after a resume)
// replaces the earlier one.
struct RunMetrics {
  std::vector<int64_t> loss_step;   // steps with a training-loss line
  std::vector<double> loss;
  std::vector<double> step_ms;      // wall time of those steps
  std::vector<int64_t> eval_step;   // steps with an evaluation
  std::vector<double> eval_ce;
};
// Throws qisa::Error naming the file when it cannot be read.
RunMetrics read_metrics(const std::string& path);

}  // namespace qisa
