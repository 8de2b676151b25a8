#include "io/metrics_log.h"

#include <cerrno>
#include <cstring>

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

}  // namespace qisa
