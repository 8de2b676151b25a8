// bench_gpu_kernels [--reps N] [--warmup N] [--adamw-n N]: times the hot kernels of
// kernels/cuda at GPT-2 124M shapes on device 0 and prints one JSON line per kernel and storage
// type: the median and min of N cudaEvent-timed launches after the warm-up, the bytes the
// kernel must move at least (each input read once, each output written once) and the GB/s that
// gives. Shapes: B*T = 8*1024 rows, C = 768, V = 50304, gelu over N*4C, AdamW over the 124M
// parameters (124,475,904 with the vocabulary padded to 50304) unless --adamw-n says otherwise.
// Without a device it prints one JSON line saying so and exits 2.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "gpu/device_runner.h"
#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/adamw.cuh"
#include "kernels/cuda/cross_entropy.cuh"
#include "kernels/cuda/device_info.h"
#include "kernels/cuda/layernorm.cuh"

namespace {

using qisa::bf16;
using qisa::test::gpu::DeviceBuffer;

struct Options {
  int reps = 20, warmup = 3;
  int64_t adamw_n = 124475904;
};

// Uniform values in [lo, hi) from a hash of (seed, i): inputs without a host round trip.
template <class T>
__global__ void fill_uniform_kernel(T* p, int64_t n, uint64_t seed, float lo, float hi) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint64_t z = seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(i + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
    qisa::cuda::store_f(p, i, lo + (hi - lo) * u);
  }
}
template <class T>
DeviceBuffer<T> uniform(int64_t n, uint64_t seed, float lo, float hi) {
  DeviceBuffer<T> b(static_cast<size_t>(n));
  fill_uniform_kernel<T><<<1024, 256>>>(b.data(), n, seed, lo, hi);
  QISA_CUDA_CALL(cudaGetLastError());
  return b;
}

class Event {
 public:
  Event() { QISA_CUDA_CALL(cudaEventCreate(&e_)); }
  ~Event() {  // a destructor must not throw: report
    if (const cudaError_t e = cudaEventDestroy(e_); e != cudaSuccess)
      std::fprintf(stderr, "%s:%d: cudaEventDestroy failed: %s (%s); hint: %s\n", __FILE__, __LINE__,
                   cudaGetErrorName(e), cudaGetErrorString(e), qisa::test::gpu::cuda_hint(e));
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_{};
};

struct Timing {
  double median_ms = 0, min_ms = 0;
};

// Warm-up launches, then reps launches each between two events; median and min in ms.
template <class F>
Timing time_launches(const Options& o, F&& launch) {
  for (int i = 0; i < o.warmup; ++i) {
    launch();
    QISA_CUDA_CALL(cudaGetLastError());
  }
  QISA_CUDA_CALL(cudaDeviceSynchronize());
  Event start, stop;
  std::vector<double> ms;
  for (int i = 0; i < o.reps; ++i) {
    QISA_CUDA_CALL(cudaEventRecord(start.get()));
    launch();
    QISA_CUDA_CALL(cudaGetLastError());
    QISA_CUDA_CALL(cudaEventRecord(stop.get()));
    QISA_CUDA_CALL(cudaEventSynchronize(stop.get()));
    float t = 0;
    QISA_CUDA_CALL(cudaEventElapsedTime(&t, start.get(), stop.get()));
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  const size_t k = ms.size();
  return {k % 2 ? ms[k / 2] : 0.5 * (ms[k / 2 - 1] + ms[k / 2]), ms.front()};
}

std::string g_device;

void report(const Options& o, const char* kernel, const char* dtype, const std::string& shape, double bytes,
            const Timing& t) {
  std::printf(
      "{\"bench\":\"gpu_kernel\",\"kernel\":\"%s\",\"dtype\":\"%s\",\"shape\":\"%s\",\"device\":\"%s\","
      "\"reps\":%d,\"warmup\":%d,\"median_ms\":%.4f,\"min_ms\":%.4f,\"bytes\":%.0f,\"gbps\":%.1f}\n",
      kernel, dtype, shape.c_str(), g_device.c_str(), o.reps, o.warmup, t.median_ms, t.min_ms, bytes,
      bytes / (t.median_ms * 1e-3) / 1e9);
  std::fflush(stdout);
}

template <class T>
const char* dtype_name() {
  return sizeof(T) == 4 ? "fp32" : "bf16";
}

constexpr int64_t kRows = 8 * 1024;
constexpr int kC = 768, kV = 50304;

template <class T>
void bench_layernorm(const Options& o) {
  const int64_t N = kRows, nc = N * kC;
  const double sz = sizeof(T);
  auto in = uniform<T>(nc, 1, -2, 3), dout = uniform<T>(nc, 2, -1, 1);
  auto w = uniform<float>(kC, 3, -1, 1), b = uniform<float>(kC, 4, -1, 1);
  DeviceBuffer<T> out(nc), din(nc);
  DeviceBuffer<float> mean(N), rstd(N), dw(kC), db(kC);
  DeviceBuffer<float> part(qisa::cuda::layernorm_backward_workspace(N, kC));
  const std::string shape = "N=" + std::to_string(N) + " C=" + std::to_string(kC);
  const Timing f = time_launches(o, [&] {
    qisa::cuda::layernorm_forward(out.data(), mean.data(), rstd.data(), in.data(), w.data(), b.data(), N, kC, nullptr);
  });
  report(o, "layernorm_forward", dtype_name<T>(), shape, 2 * nc * sz + 2.0 * kC * 4 + 2.0 * N * 4, f);
  QISA_CUDA_CALL(cudaMemset(dw.data(), 0, kC * sizeof(float)));
  QISA_CUDA_CALL(cudaMemset(db.data(), 0, kC * sizeof(float)));
  const Timing g = time_launches(o, [&] {  // as in training: din overwritten, dw/db accumulated
    qisa::cuda::layernorm_backward(din.data(), dw.data(), db.data(), dout.data(), in.data(), w.data(), mean.data(),
                                   rstd.data(), N, kC, qisa::GradMode::overwrite, qisa::GradMode::accumulate,
                                   part.data(), nullptr);
  });
  const double part_bytes = 2.0 * static_cast<double>(part.size()) * 4;  // written, then read
  report(o, "layernorm_backward", dtype_name<T>(), shape, 3 * nc * sz + 2.0 * N * 4 + 5.0 * kC * 4 + part_bytes, g);
}

template <class T>
void bench_cross_entropy(const Options& o) {
  const int64_t N = kRows, nv = N * kV;
  const double sz = sizeof(T);
  auto logits = uniform<T>(nv, 5, -4, 4);
  std::vector<int32_t> t(N);
  for (int64_t i = 0; i < N; ++i) t[i] = static_cast<int32_t>((i * 7919) % kV);
  DeviceBuffer<int32_t> targets(t);
  DeviceBuffer<float> losses(N);
  const std::string shape = "N=" + std::to_string(N) + " V=" + std::to_string(kV);
  const Timing f = time_launches(o, [&] {
    qisa::cuda::cross_entropy_forward(losses.data(), logits.data(), targets.data(), N, kV, nullptr);
  });
  report(o, "cross_entropy_forward", dtype_name<T>(), shape, nv * sz + 8.0 * N, f);
  const Timing g = time_launches(o, [&] {  // in place, as the trainer calls it
    qisa::cuda::cross_entropy_backward(logits.data(), logits.data(), targets.data(), N, kV, 1.0f / N, nullptr);
  });
  report(o, "cross_entropy_backward", dtype_name<T>(), shape, 2 * nv * sz + 4.0 * N, g);
}

template <class T>
void bench_gelu(const Options& o) {
  const int64_t n = kRows * 4 * kC;
  const double sz = sizeof(T);
  auto in = uniform<T>(n, 6, -5, 5), dout = uniform<T>(n, 7, -1, 1);
  DeviceBuffer<T> out(n), din(n);
  const std::string shape = "n=" + std::to_string(n);
  const Timing f = time_launches(o, [&] {
    qisa::cuda::activation_forward(out.data(), in.data(), n, qisa::Activation::gelu, nullptr);
  });
  report(o, "gelu_forward", dtype_name<T>(), shape, 2 * n * sz, f);
  const Timing g = time_launches(o, [&] {
    qisa::cuda::activation_backward(din.data(), dout.data(), in.data(), n, qisa::Activation::gelu,
                                    qisa::GradMode::overwrite, nullptr);
  });
  report(o, "gelu_backward", dtype_name<T>(), shape, 3 * n * sz, g);
}

void bench_adamw(const Options& o) {
  const int64_t n = o.adamw_n;
  auto p = uniform<float>(n, 8, -1, 1), g = uniform<float>(n, 9, -0.1f, 0.1f);
  auto m = uniform<float>(n, 10, -0.01f, 0.01f), v = uniform<float>(n, 11, 0, 1e-3f);
  const qisa::AdamWHyper h{6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, 1.0f};
  const Timing t = time_launches(o, [&] {
    qisa::cuda::adamw_update(p.data(), g.data(), m.data(), v.data(), n, h, nullptr);
  });
  report(o, "adamw_update", "fp32", "n=" + std::to_string(n), 28.0 * n, t);  // read p g m v, write p m v
}

int64_t parse_int(const char* flag, const char* s) {
  char* end = nullptr;
  const long long v = std::strtoll(s, &end, 10);
  if (!s[0] || *end || v < 1) throw std::runtime_error(std::string(flag) + " wants a positive integer, got '" + s + "'");
  return v;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) throw std::runtime_error("unknown or incomplete argument '" + a + "'");
    if (a == "--reps") o.reps = static_cast<int>(parse_int("--reps", argv[++i]));
    else if (a == "--warmup") o.warmup = static_cast<int>(parse_int("--warmup", argv[++i]));
    else if (a == "--adamw-n") o.adamw_n = parse_int("--adamw-n", argv[++i]);
    else throw std::runtime_error("unknown argument '" + a + "' (--reps N, --warmup N, --adamw-n N)");
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    const qisa::cuda::DeviceQuery q = qisa::cuda::query_devices();
    if (q.devices.empty()) {
      std::printf("{\"bench\":\"gpu_kernel\",\"status\":\"no device\",\"reason\":\"%s\",\"driver\":%d,\"runtime\":%d}\n",
                  q.status.c_str(), q.driver_version, q.runtime_version);
      std::fprintf(stderr, "bench_gpu_kernels: no CUDA device (%s): nothing timed\n", q.status.c_str());
      return 2;
    }
    QISA_CUDA_CALL(cudaSetDevice(0));
    g_device = q.devices[0].name;
    bench_layernorm<float>(o);
    bench_layernorm<bf16>(o);
    bench_cross_entropy<float>(o);
    bench_cross_entropy<bf16>(o);
    bench_gelu<float>(o);
    bench_gelu<bf16>(o);
    bench_adamw(o);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gpu_kernels: error: %s\n", e.what());
    return 1;
  }
}
