// Libraries the CUDA half opens itself when first used (cuBLASLt: kernels/cuda/gemm.cpp; NCCL:
// kernels/cuda/nccl_api.cpp) instead of linking them, so that a process that never uses them
// does not load them. Failures throw qisa::Error: one line naming the library or the function,
// and the caller's hint.
#pragma once
#include <string>

namespace qisa::cuda {

// dlopen(soname); `what` says what it is for ("cuBLASLt, for the CUDA backend's GEMMs"). The
// handle is kept for the process's life.
void* open_shared_library(const std::string& soname, const std::string& what, const std::string& hint);

// dlsym(library, name) of a library open_shared_library opened as `soname`.
void* shared_library_symbol(void* library, const std::string& soname, const char* name, const std::string& hint);

}  // namespace qisa::cuda
