// Stream holds of the CUDA runtime test double (cuda_runtime_emu.cpp), in a header that needs no
// CUDA type but the stream's (the NCCL double includes nccl.h, and with it the real runtime's
// declarations, so it cannot include cuda_runtime_emu.h; cudaStream_t is CUstream_st* in both).
//
// A hold stands for work on a stream that has been enqueued but has not finished (a collective
// waiting for its peers): events recorded on the stream while it is open are not complete, and
// calls that must wait for them block until the hold is released (see cuda_runtime_emu.h).
#pragma once
#include <cstddef>
#include <cstdint>

struct CUstream_st;

namespace qisa::emu {

uint64_t hold_stream(CUstream_st* stream);  // a new open hold on a live stream (throws on a dead one)
void release_hold(uint64_t hold);           // idempotent
bool is_device_range(const void* p, size_t bytes);  // [p, p+bytes) inside one live cudaMalloc allocation
bool is_live_stream(CUstream_st* stream);

}  // namespace qisa::emu
