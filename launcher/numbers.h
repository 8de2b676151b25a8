// The one check every numeric command-line option goes through: the text must be a finite
// number (a whole one for counts) inside a range that means something for the option, and the
// error says that range as a person would write it ("a whole number from 1 to 100000"), never
// CLI11's default with 1.797693e+308 in it. NaN and infinity are refused everywhere.
#pragma once
#include <CLI/CLI.hpp>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string>

namespace qisa::cli {

namespace detail {
inline std::string plain(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.15g", v);
  return buf;
}

// The whole text is one finite number (strtod's syntax, so "1e3" too).
inline bool parse_finite(const std::string& s, double& v) {
  char* end = nullptr;
  errno = 0;
  v = std::strtod(s.c_str(), &end);
  return !s.empty() && end && *end == '\0' && errno == 0 && std::isfinite(v);
}
}  // namespace detail

// Whole numbers lo..hi.
inline CLI::Validator count_in(long long lo, long long hi) {
  const std::string range = "a whole number from " + std::to_string(lo) + " to " + std::to_string(hi);
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        double v = 0;
        if (!detail::parse_finite(s, v) || v != std::floor(v) || v < static_cast<double>(lo) || v > static_cast<double>(hi))
          return "'" + s + "' is not " + range;
        s = std::to_string(static_cast<long long>(v));  // "1e3" -> "1000" for CLI11's integer conversion
        return {};
      },
      "INT in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
}

// Finite numbers in [lo, hi], or (lo, hi] with lo_open.
inline CLI::Validator real_in(double lo, double hi, bool lo_open = false) {
  const std::string range = "a finite number " + std::string(lo_open ? "> " : ">= ") + detail::plain(lo) +
                            " and <= " + detail::plain(hi);
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        double v = 0;
        if (!detail::parse_finite(s, v) || (lo_open ? v <= lo : v < lo) || v > hi) return "'" + s + "' is not " + range;
        return {};
      },
      std::string("NUMBER in ") + (lo_open ? "(" : "[") + detail::plain(lo) + ", " + detail::plain(hi) + "]");
}

}  // namespace qisa::cli
