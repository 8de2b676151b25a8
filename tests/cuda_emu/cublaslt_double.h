// Test controls of the cuBLASLt test double (tests/cuda_emu/cublaslt_double.cpp), which the
// emulated test build links instead of libcublasLt. No CUDA header here, so a test that also
// includes the CUDA emulator (cuda_emu.h) can use it.
#pragma once
#include <cstdint>

namespace qisa::test::cublaslt_double {

// cublasStatus_t values (cublas_api.h; cublaslt_double.cpp checks them with static_assert).
inline constexpr int kStatusSuccess = 0;
inline constexpr int kStatusInvalidValue = 7;
inline constexpr int kStatusExecutionFailed = 13;
inline constexpr int kStatusNotSupported = 15;

// The nth cublasLtMatmul from now on (1 = the next one) returns `status` without computing.
void fail_nth_matmul(int nth, int status = kStatusExecutionFailed);
// cublasLtMatmul calls since the process started (failed ones included).
int64_t matmul_calls();
// Handles and descriptors created and not yet destroyed (a leak check for the RAII owners).
int64_t live_objects();

}  // namespace qisa::test::cublaslt_double
