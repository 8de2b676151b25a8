#include "kernels/cuda/nccl_api.h"

#include <string_view>

#include "kernels/cuda/shared_library.h"

namespace qisa::cuda {
namespace {

const NcclApi* g_double = nullptr;  // use_nccl_api

const NcclApi& library() {
  static const NcclApi api = load_nccl_library();
  return api;
}

}  // namespace

NcclApi load_nccl_library(const std::string& soname) {
  void* so = open_shared_library(soname, "NCCL, for dist.comm: nccl",
                                 "NCCL comes with the CUDA toolkit's NCCL package or the nvidia-nccl wheel; add "
                                 "its lib directory to LD_LIBRARY_PATH, or use dist.comm: mpi");
  const std::string too_old = "an NCCL older than the " + std::to_string(NCCL_MAJOR) + "." +
                              std::to_string(NCCL_MINOR) + " headers qisa was built with: install a matching NCCL";
  NcclApi api;
#define QISA_NCCL_BIND(name) \
  api.name = reinterpret_cast<decltype(api.name)>(shared_library_symbol(so, soname, #name, too_old));
  QISA_NCCL_FUNCTIONS(QISA_NCCL_BIND)
#undef QISA_NCCL_BIND
  api.source = soname;
  return api;
}

const NcclApi& nccl_api() { return g_double ? *g_double : library(); }

void use_nccl_api(const NcclApi* api) { g_double = api; }

void check_nccl(ncclResult_t r, const char* call, const char* hint, bool in_progress_ok, SourceLocation loc) {
  if (r == ncclSuccess || (in_progress_ok && r == ncclInProgress)) return;
  const std::string_view text(call);  // "nccl_api().ncclX(args)"
  const size_t at = text.find("nccl", text.find('.') == std::string_view::npos ? 0 : text.find('.'));
  const std::string name(text.substr(at, text.find('(', at) - at));
  const NcclApi& api = nccl_api();
  const char* last = api.ncclGetLastError ? api.ncclGetLastError(nullptr) : nullptr;
  const Error site("", {}, loc);  // where(): the call site, without the build machine's path
  throw Error(site.where() + ": " + name + "(...) failed: " + api.ncclGetErrorString(r) +
                  (last && *last ? std::string(" (") + last + ")" : std::string()),
              hint, loc);
}

}  // namespace qisa::cuda
