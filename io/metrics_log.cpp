#include "io/metrics_log.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "kernels/error.h"

namespace qisa {

MetricsLog::MetricsLog(const std::string& path, bool append) : path_(path) {
  fp_ = std::fopen(path.c_str(), append ? "ab" : "wb");
  if (!fp_)
    throw Error("cannot open metrics log '" + path + "': " + std::strerror(errno),
                "check that log.dir is writable");
}

MetricsLog::~MetricsLog() {
  if (fp_) std::fclose(fp_);
}

void MetricsLog::write(const std::string& json_line) {
  if (std::fputs(json_line.c_str(), fp_) < 0 || std::fputc('\n', fp_) == EOF || std::fflush(fp_) != 0)
    throw Error("writing metrics log '" + path_ + "' failed: " + std::strerror(errno), "the disk may be full");
}

RunMetrics read_metrics(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read metrics log '" + path + "': " + std::strerror(errno), "is this a run directory of qisa train?");
  std::map<int64_t, std::pair<double, double>> losses;  // step -> (loss, ms)
  std::map<int64_t, double> evals;
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) continue;
    const int64_t step = j["step"].get<int64_t>();
    if (j.contains("loss") && j["loss"].is_number())
      losses[step] = {j["loss"].get<double>(), j.contains("ms") && j["ms"].is_number() ? j["ms"].get<double>() : 0.0};
    if (j.contains("eval") && j["eval"].is_object() && j["eval"].contains("ce") && j["eval"]["ce"].is_number())
      evals[step] = j["eval"]["ce"].get<double>();
  }
  RunMetrics m;
  for (const auto& [step, v] : losses) {
    m.loss_step.push_back(step);
    m.loss.push_back(v.first);
    m.step_ms.push_back(v.second);
  }
  for (const auto& [step, ce] : evals) {
    m.eval_step.push_back(step);
    m.eval_ce.push_back(ce);
  }
  return m;
}

}  // namespace qisa
