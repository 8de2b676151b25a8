#include "kernels/cuda/shared_library.h"

#include <dlfcn.h>

#include "kernels/error.h"

namespace qisa::cuda {

void* open_shared_library(const std::string& soname, const std::string& what, const std::string& hint) {
  void* so = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  const char* why = so ? nullptr : dlerror();
  QISA_CHECK(so, "cannot load " + soname + " (" + what + "): " + (why ? why : "unknown error"), hint);
  return so;
}

void* shared_library_symbol(void* library, const std::string& soname, const char* name, const std::string& hint) {
  void* f = dlsym(library, name);
  QISA_CHECK(f, soname + " has no " + name, hint);
  return f;
}

}  // namespace qisa::cuda
