// The CUDA runtime test double (cuda_runtime_emu.h). One mutex guards the registry of
// allocations, streams and events; the last error is per host thread, as in the runtime.
#include "cuda_runtime_emu.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <vector>

namespace qisa::emu::runtime {
namespace {

constexpr size_t kAlign = 256;  // cudaMalloc's documented minimum alignment
constexpr size_t kEmuMemory = size_t{16} << 30;

std::mutex g_mu;
std::condition_variable g_released;    // a stream hold was released
std::map<uintptr_t, size_t> g_allocs;  // base -> bytes
std::set<const void*> g_streams;
// Stream holds (hold_stream): the open ones, those of each stream, and for each event the holds
// of its stream when it was last recorded (it is complete once they are all released).
std::set<uint64_t> g_open_holds;
uint64_t g_next_hold = 1;
std::map<const void*, std::set<uint64_t>> g_stream_holds;
std::map<const void*, std::vector<uint64_t>> g_events;
constexpr auto kHoldDeadline = std::chrono::seconds(30);
int g_device = 0;
thread_local cudaError_t t_last = cudaSuccess;

struct Fault {
  std::string call;
  cudaError_t error = cudaSuccess;
  int skip = 0;
  bool armed = false, fired = false;
} g_fault;

cudaError_t set_last(cudaError_t e) {
  if (e != cudaSuccess) t_last = e;
  return e;
}

// The injected fault of `call`, if this is the call that fails (g_mu held).
cudaError_t injected(const char* call) {
  if (!g_fault.armed || g_fault.fired || g_fault.call != call) return cudaSuccess;
  if (g_fault.skip-- > 0) return cudaSuccess;
  g_fault.fired = true;
  return g_fault.error;
}

// [p, p+bytes) lies inside one live allocation (g_mu held).
bool is_device(const void* p, size_t bytes) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = g_allocs.upper_bound(a);
  if (it == g_allocs.begin()) return false;
  --it;
  return a >= it->first && a + bytes <= it->first + it->second && bytes <= it->second;
}
bool is_stream(cudaStream_t s) { return s == nullptr || g_streams.count(s) != 0; }

bool released(const std::vector<uint64_t>& holds) {
  for (uint64_t h : holds)
    if (g_open_holds.count(h)) return false;
  return true;
}
std::vector<uint64_t> holds_of(cudaStream_t s) {
  const auto it = g_stream_holds.find(s);
  return it == g_stream_holds.end() ? std::vector<uint64_t>{} : std::vector<uint64_t>(it->second.begin(), it->second.end());
}

// Work that must follow `holds` runs once they are released (the host blocks: the emulator runs
// a stream's work when it is enqueued). A hold still open after kHoldDeadline is a collective
// that never completes: a real program would hang here, the emulator fails the call instead.
cudaError_t wait_released(std::unique_lock<std::mutex>& lock, const std::vector<uint64_t>& holds, const char* call) {
  if (g_released.wait_for(lock, kHoldDeadline, [&] { return released(holds); })) return cudaSuccess;
  std::fprintf(stderr, "cuda emulator: %s waited %lld s for a stream hold (a collective) that never completed\n",
               call, static_cast<long long>(kHoldDeadline.count()));
  return set_last(cudaErrorLaunchTimeout);
}

// Host and device ranges of a copy, as its kind says (Default: inferred from the pointers).
bool kind_ok(const void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  const bool dd = is_device(dst, n), sd = is_device(src, n);
  switch (kind) {
    case cudaMemcpyHostToHost: return !dd && !sd;
    case cudaMemcpyHostToDevice: return dd && !sd;
    case cudaMemcpyDeviceToHost: return !dd && sd;
    case cudaMemcpyDeviceToDevice: return dd && sd;
    case cudaMemcpyDefault: return true;
  }
  return false;
}

#define QISA_EMU_FAULT(call)                                          \
  std::unique_lock<std::mutex> lock(g_mu);                            \
  if (const cudaError_t f = injected(call); f != cudaSuccess) return set_last(f)

}  // namespace

cudaError_t cudaGetDeviceCount(int* count) {
  QISA_EMU_FAULT("cudaGetDeviceCount");
  if (!count) return set_last(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  QISA_EMU_FAULT("cudaSetDevice");
  if (device != 0) return set_last(cudaErrorInvalidDevice);
  g_device = device;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  QISA_EMU_FAULT("cudaGetDevice");
  if (!device) return set_last(cudaErrorInvalidValue);
  *device = g_device;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  QISA_EMU_FAULT("cudaGetDeviceProperties");
  if (!prop) return set_last(cudaErrorInvalidValue);
  if (device != 0) return set_last(cudaErrorInvalidDevice);
  *prop = {};
  std::strncpy(prop->name, "qisa CUDA emulator", sizeof prop->name - 1);
  prop->totalGlobalMem = kEmuMemory;
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = 1;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  QISA_EMU_FAULT("cudaMalloc");
  if (!ptr) return set_last(cudaErrorInvalidValue);
  *ptr = nullptr;
  if (bytes == 0) return cudaSuccess;  // documented: returns success and a null pointer... or any
  if (bytes > kEmuMemory) return set_last(cudaErrorMemoryAllocation);
  void* p = std::aligned_alloc(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);
  if (!p) return set_last(cudaErrorMemoryAllocation);
  std::memset(p, 0xFF, bytes);  // not cleared: NaN until written
  g_allocs[reinterpret_cast<uintptr_t>(p)] = bytes;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  QISA_EMU_FAULT("cudaFree");
  if (!ptr) return cudaSuccess;
  const auto it = g_allocs.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == g_allocs.end()) return set_last(cudaErrorInvalidValue);  // not an allocation's base
  g_allocs.erase(it);
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  QISA_EMU_FAULT("cudaMemcpyAsync");
  if (!is_stream(stream)) return set_last(cudaErrorInvalidResourceHandle);
  if (bytes == 0) return cudaSuccess;
  if (!dst || !src || !kind_ok(dst, src, bytes, kind)) return set_last(cudaErrorInvalidValue);
  if (const cudaError_t e = wait_released(lock, holds_of(stream), "cudaMemcpyAsync"); e != cudaSuccess) return e;
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  {
    QISA_EMU_FAULT("cudaMemcpy");
  }
  return cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  QISA_EMU_FAULT("cudaMemsetAsync");
  if (!is_stream(stream)) return set_last(cudaErrorInvalidResourceHandle);
  if (bytes == 0) return cudaSuccess;
  if (!is_device(dst, bytes)) return set_last(cudaErrorInvalidValue);
  if (const cudaError_t e = wait_released(lock, holds_of(stream), "cudaMemsetAsync"); e != cudaSuccess) return e;
  std::memset(dst, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned /*flags*/) {
  QISA_EMU_FAULT("cudaStreamCreateWithFlags");
  if (!stream) return set_last(cudaErrorInvalidValue);
  *stream = reinterpret_cast<cudaStream_t>(new char);
  g_streams.insert(*stream);
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  QISA_EMU_FAULT("cudaStreamDestroy");
  // Documented: returns at once; work still pending completes, then the resources are freed.
  if (!stream || !g_streams.erase(stream)) return set_last(cudaErrorInvalidResourceHandle);
  g_stream_holds.erase(stream);
  delete reinterpret_cast<char*>(stream);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  QISA_EMU_FAULT("cudaStreamSynchronize");
  if (!is_stream(stream)) return set_last(cudaErrorInvalidResourceHandle);
  return wait_released(lock, holds_of(stream), "cudaStreamSynchronize");
}

cudaError_t cudaDeviceSynchronize() {
  QISA_EMU_FAULT("cudaDeviceSynchronize");
  return wait_released(lock, std::vector<uint64_t>(g_open_holds.begin(), g_open_holds.end()), "cudaDeviceSynchronize");
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned /*flags*/) {
  QISA_EMU_FAULT("cudaEventCreateWithFlags");
  if (!event) return set_last(cudaErrorInvalidValue);
  *event = reinterpret_cast<cudaEvent_t>(new char);
  g_events[*event] = {};
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  QISA_EMU_FAULT("cudaEventDestroy");
  if (!event || !g_events.erase(event)) return set_last(cudaErrorInvalidResourceHandle);
  delete reinterpret_cast<char*>(event);
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  QISA_EMU_FAULT("cudaEventRecord");
  if (!g_events.count(event) || !is_stream(stream)) return set_last(cudaErrorInvalidResourceHandle);
  g_events[event] = holds_of(stream);
  return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  QISA_EMU_FAULT("cudaEventQuery");
  const auto it = g_events.find(event);
  if (it == g_events.end()) return set_last(cudaErrorInvalidResourceHandle);
  return released(it->second) ? cudaSuccess : cudaErrorNotReady;  // not an error: not sticky, not "last"
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  QISA_EMU_FAULT("cudaEventSynchronize");
  const auto it = g_events.find(event);
  if (it == g_events.end()) return set_last(cudaErrorInvalidResourceHandle);
  return wait_released(lock, it->second, "cudaEventSynchronize");
}

// Later work on `stream` waits for the event's work: the stream takes on the event's open holds.
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags) {
  QISA_EMU_FAULT("cudaStreamWaitEvent");
  const auto it = g_events.find(event);
  if (it == g_events.end() || !is_stream(stream)) return set_last(cudaErrorInvalidResourceHandle);
  if (flags != 0) return set_last(cudaErrorInvalidValue);  // cudaEventWaitDefault is the only flag qisa uses
  for (uint64_t h : it->second)
    if (g_open_holds.count(h)) g_stream_holds[stream].insert(h);
  return cudaSuccess;
}

// A fault injected here stands for a launch the runtime refused (its error is what the next
// cudaGetLastError returns).
cudaError_t cudaGetLastError() {
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (const cudaError_t f = injected("cudaGetLastError"); f != cudaSuccess) return f;  // returned and reset
  }
  const cudaError_t e = t_last;
  t_last = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() { return t_last; }

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
#define QISA_EMU_NAME(e) \
  case e: return #e;
    QISA_EMU_NAME(cudaSuccess)
    QISA_EMU_NAME(cudaErrorInvalidValue)
    QISA_EMU_NAME(cudaErrorMemoryAllocation)
    QISA_EMU_NAME(cudaErrorInitializationError)
    QISA_EMU_NAME(cudaErrorInvalidConfiguration)
    QISA_EMU_NAME(cudaErrorInsufficientDriver)
    QISA_EMU_NAME(cudaErrorInvalidDeviceFunction)
    QISA_EMU_NAME(cudaErrorNoDevice)
    QISA_EMU_NAME(cudaErrorInvalidDevice)
    QISA_EMU_NAME(cudaErrorNoKernelImageForDevice)
    QISA_EMU_NAME(cudaErrorInvalidResourceHandle)
    QISA_EMU_NAME(cudaErrorNotReady)
    QISA_EMU_NAME(cudaErrorIllegalAddress)
    QISA_EMU_NAME(cudaErrorLaunchOutOfResources)
    QISA_EMU_NAME(cudaErrorLaunchTimeout)
    QISA_EMU_NAME(cudaErrorLaunchFailure)
    QISA_EMU_NAME(cudaErrorUnknown)
#undef QISA_EMU_NAME
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorLaunchTimeout: return "the launch timed out and was terminated";
    default: return "emulated CUDA error";
  }
}

}  // namespace qisa::emu::runtime

namespace qisa::emu {

using namespace runtime;

FailCall::FailCall(std::string call, cudaError_t error, int skip) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_fault.armed) throw std::logic_error("FailCall: one fault at a time");
  g_fault = {std::move(call), error, skip, true, false};
}
FailCall::~FailCall() {
  std::lock_guard<std::mutex> lock(g_mu);
  g_fault = {};
}
bool FailCall::fired() const {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_fault.fired;
}

uint64_t hold_stream(CUstream_st* stream) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!is_stream(stream)) throw std::logic_error("hold_stream: not a live stream");
  const uint64_t h = g_next_hold++;
  g_open_holds.insert(h);
  g_stream_holds[stream].insert(h);
  return h;
}

void release_hold(uint64_t hold) {
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g_open_holds.erase(hold);
    for (auto& [stream, holds] : g_stream_holds) holds.erase(hold);
  }
  g_released.notify_all();
}

bool is_device_range(const void* p, size_t bytes) {
  std::lock_guard<std::mutex> lock(g_mu);
  return is_device(p, bytes);
}

bool is_live_stream(CUstream_st* stream) {
  std::lock_guard<std::mutex> lock(g_mu);
  return stream != nullptr && g_streams.count(stream) != 0;
}

size_t live_device_allocations() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_allocs.size();
}
size_t live_device_bytes() {
  std::lock_guard<std::mutex> lock(g_mu);
  size_t n = 0;
  for (const auto& [p, b] : g_allocs) n += b;
  return n;
}

}  // namespace qisa::emu
