#include "io/fault.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>
#include <thread>
#include <vector>

#include "kernels/error.h"

namespace qisa {

namespace {
struct Fault {
  std::string spec, point, action;
  int rank = -1;
  int64_t step = -1;
  long long arg = 0;
};

Fault parse(const std::string& spec) {
  Fault f;
  f.spec = spec;
  const auto colon = spec.find(':');
  QISA_CHECK(colon != std::string::npos, "QISA_FAULT entry '" + spec + "' has no ':ACTION'",
             "format: POINT[@rank=R][@step=S]:ACTION, e.g. train.step@rank=1:exit=3");
  std::string where = spec.substr(0, colon), what = spec.substr(colon + 1);
  std::stringstream parts(where);
  std::getline(parts, f.point, '@');
  for (std::string kv; std::getline(parts, kv, '@');) {
    if (kv.rfind("rank=", 0) == 0) f.rank = std::atoi(kv.c_str() + 5);
    else if (kv.rfind("step=", 0) == 0) f.step = std::atoll(kv.c_str() + 5);
    else throw Error("QISA_FAULT entry '" + spec + "': unknown qualifier '" + kv + "'", "use @rank=R or @step=S");
  }
  const auto eq = what.find('=');
  f.action = what.substr(0, eq);
  if (eq != std::string::npos) f.arg = std::atoll(what.c_str() + eq + 1);
  return f;
}

// The entries of QISA_FAULT that match this point, rank and step.
std::vector<Fault> matching(const std::string& point, int rank, int64_t step) {
  std::vector<Fault> out;
  const char* env = std::getenv("QISA_FAULT");
  if (!env || !*env) return out;
  std::stringstream all(env);
  for (std::string spec; std::getline(all, spec, ',');) {
    Fault f = parse(spec);
    if (f.point != point || (f.rank >= 0 && f.rank != rank) || (f.step >= 0 && f.step != step)) continue;
    out.push_back(std::move(f));
  }
  return out;
}

bool is_data_action(const std::string& action) { return action == "nan" || action == "inf" || action == "value"; }
}  // namespace

void fault_point(const std::string& point, int rank, int64_t step) {
  for (const Fault& f : matching(point, rank, step)) {
    if (f.action == "sleep") std::this_thread::sleep_for(std::chrono::milliseconds(f.arg));
    else if (f.action == "exit") std::_Exit(static_cast<int>(f.arg));
    else if (f.action == "kill") ::raise(SIGKILL);
    else if (f.action == "signal") ::raise(static_cast<int>(f.arg));
    else if (f.action == "throw")
      throw Error("fault injected at " + point + " (QISA_FAULT)", "unset QISA_FAULT for a normal run");
    else if (f.action == "enospc")  // what a write(2) on a full disk reports
      throw Error("write at " + point + " failed (fault injected by QISA_FAULT): " + std::strerror(ENOSPC),
                  "unset QISA_FAULT for a normal run");
    else if (!is_data_action(f.action))
      throw Error("QISA_FAULT entry '" + f.spec + "': unknown action '" + f.action + "'",
                  "use sleep=MS, exit=CODE, throw, kill, signal=N, enospc, nan, inf or value=N");
  }
}

std::optional<float> fault_poison(const std::string& point, int rank, int64_t step) {
  for (const Fault& f : matching(point, rank, step)) {
    if (f.action == "nan") return std::numeric_limits<float>::quiet_NaN();
    if (f.action == "inf") return std::numeric_limits<float>::infinity();
    if (f.action == "value") return static_cast<float>(f.arg);
  }
  return std::nullopt;
}

}  // namespace qisa
