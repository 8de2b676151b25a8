#include "kernels/error.h"

#include <cstring>

namespace qisa {

namespace {
// Strip the build machine's absolute path: keep from the first top-level project folder.
std::string short_path(const char* file) {
  std::string f(file);
  for (const char* dir : {"/kernels/", "/io/", "/trainer/", "/launcher/", "/tests/"}) {
    auto pos = f.rfind(dir);
    if (pos != std::string::npos) return f.substr(pos + 1);
  }
  return f;
}
}  // namespace

Error::Error(const std::string& what, std::string hint, SourceLocation loc)
    : std::runtime_error(what),
      hint_(std::move(hint)),
      where_(short_path(loc.file_name()) + ":" + std::to_string(loc.line())) {}

std::string Error::message() const {
  std::string m = what();
  if (!hint_.empty()) m += "; hint: " + hint_;
  return m;
}

}  // namespace qisa
