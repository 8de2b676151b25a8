#include "launcher/run_setup.h"

#include <omp.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <thread>

#include "io/corpus.h"
#include "kernels/error.h"

#if defined(QISA_HAVE_CUDA)
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device_info.h"
#endif

namespace qisa::cli {

Config load_checked_config(const std::string& path, std::vector<std::string> overrides, int threads) {
  if (threads > 0) overrides.push_back("train.threads=" + std::to_string(threads));
  Config cfg = load_config(path, overrides);
  CorpusInfo info;
  try {  // before anything is written: a bad corpus ends the run at start, naming the config key
    info = read_corpus_info(cfg.data.corpus);
    check_token_ids(cfg.data.corpus);
  } catch (const Error& e) {
    throw Error(cfg.source + ": data.corpus = '" + cfg.data.corpus + "': " + e.what(), e.hint());
  }
  check_against_corpus(cfg, info);
  return cfg;
}

namespace {
int max_threads_allowed() { return std::max(8, 4 * omp_get_num_procs()); }

int checked_thread_count(long long n, const std::string& what) {
  const int limit = max_threads_allowed();
  QISA_CHECK(n <= limit,
             what + " = " + std::to_string(n) + " is more than 4 x the " + std::to_string(omp_get_num_procs()) +
                 " cores this process may use (at most " + std::to_string(limit) + ")",
             "use at most " + std::to_string(limit) + " threads, or leave it unset for one per core");
  return static_cast<int>(n);
}

// OMP_NUM_THREADS as OpenMP reads it: a positive count, or a list whose first entry is the
// outer level's ("4,2"). Unset or empty: 0.
int omp_num_threads_env() {
  const char* e = std::getenv("OMP_NUM_THREADS");
  if (!e || !*e) return 0;
  const std::string v = e;
  const std::string first = v.substr(0, v.find(','));
  char* end = nullptr;
  errno = 0;
  const long long n = std::strtoll(first.c_str(), &end, 10);
  QISA_CHECK(!first.empty() && *end == '\0' && errno == 0 && n >= 1,
             "OMP_NUM_THREADS = '" + v + "' is not a positive thread count",
             "set it to a number of threads (e.g. OMP_NUM_THREADS=2), or unset it for one per core");
  return checked_thread_count(n, "OMP_NUM_THREADS");
}
}  // namespace

ThreadChoice resolve_threads(int requested, const std::string& key) {
  if (requested > 0) return {checked_thread_count(requested, key), key};
  if (const int env = omp_num_threads_env(); env > 0) return {env, "OMP_NUM_THREADS"};
  const int allowed = omp_get_num_procs();  // the cores in this process's affinity mask
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (allowed < cores) return {std::max(1, allowed), "cores"};  // bound by the launcher: use what we got
  const int local = std::max(1, detect_world().local_size);
  return {std::max(1, cores / local), "cores"};
}

int threads_per_rank(const Config& cfg) {
  return resolve_threads(cfg.train.threads, (cfg.source.empty() ? "" : cfg.source + ": ") + "train.threads").threads;
}

namespace {

// The CUDA backend on this rank's device: the local rank's, modulo the devices this process sees
// (one each when the launcher binds a device per rank through CUDA_VISIBLE_DEVICES).
std::unique_ptr<Backend> make_cuda(const std::string& key, const std::string& source, bool tf32) {
  const std::string where = (source.empty() ? "" : source + ": ") + key + (key.starts_with("--") ? " " : " = ");
  const std::string to_cpu = "use the CPU backend: " + key + (key.starts_with("--") ? " cpu" : ": cpu");
#if defined(QISA_HAVE_CUDA)
  const cuda::DeviceQuery q = cuda::query_devices();
  QISA_CHECK(!q.devices.empty(),
             where + "cuda: no usable CUDA device (" + q.status + ", driver " + std::to_string(q.driver_version) +
                 ", runtime " + std::to_string(q.runtime_version) + ")",
             "run on a GPU machine (nvidia-smi lists its devices; check CUDA_VISIBLE_DEVICES), or " + to_cpu);
  CudaOptions o;
  o.device = std::max(0, detect_world().local_rank) % static_cast<int>(q.devices.size());
  o.allow_tf32 = tf32;
  return make_cuda_backend(o);
#else
  (void)tf32;
  throw Error(where + "cuda: this build has no CUDA backend (nvcc was not found when it was configured)",
              "rebuild where the CUDA toolkit is installed (cmake finds nvcc), or " + to_cpu);
#endif
}

}  // namespace

std::unique_ptr<Backend> make_backend(Device device, int threads, const std::string& key, const std::string& source,
                                      bool tf32) {
  switch (device) {
    case Device::cpu: return make_cpu_backend(resolve_threads(threads, "--threads").threads);
    case Device::cuda: break;
  }
  return make_cuda(key, source, tf32);
}

std::unique_ptr<Backend> make_backend(const Config& cfg) {
  return make_backend(cfg.train.device, threads_per_rank(cfg), "train.device", cfg.source, cfg.train.tf32);
}

CLI::Option* add_device_option(CLI::App& cmd, Device& device) {
  static constexpr Device kDevices[] = {Device::cpu, Device::cuda};
  std::vector<std::string> names;
  for (Device d : kDevices) names.push_back(to_string(d));
  auto parse = [&device](const std::string& name) {  // IsMember has accepted it
    for (Device d : kDevices)
      if (name == to_string(d)) device = d;
  };
  return cmd.add_option_function<std::string>("--device", parse,
                                              "where the math runs: cpu, or cuda (builds with nvcc)")
      ->check(CLI::IsMember(names))
      ->default_str(to_string(device));
}

namespace {
// dist.comm as the communicator library names it (it knows no config). nccl: MPI (or none, for
// one rank) carries the control traffic and NCCL's id; the gradients go through NCCL.
std::unique_ptr<Communicator> communicator_of(const Config& cfg) {
  return make_communicator(cfg.dist.comm == CommKind::nccl ? "auto" : to_string(cfg.dist.comm));
}
std::unique_ptr<Collectives> collectives_of(const Config& cfg, Communicator& comm, Backend& backend) {
  if (cfg.dist.comm == CommKind::nccl) return make_nccl_collectives(comm, backend, cfg.dist.timeout_s);
  return make_collectives(comm, backend);
}
}  // namespace

void with_communicator(const Config& cfg, Backend& backend,
                       const std::function<void(Communicator&, Collectives&)>& body) {
  std::unique_ptr<Communicator> comm = communicator_of(cfg);
  std::unique_ptr<Collectives> coll;  // declared after comm: destroyed before it
  const auto run = [&] {
    coll = collectives_of(cfg, *comm, backend);
    body(*comm, *coll);
  };
  if (comm->size() == 1) {
    run();
    return;
  }
  if (comm->rank() != 0) std::fflush(stdout);
  try {
    run();
  } catch (const CollectiveError& e) {
    // Every rank is here, having agreed: finish MPI normally and exit 1 everywhere.
    if (comm->rank() == 0) std::fprintf(stderr, "qisa: error: %s [%s]\n", e.message().c_str(), e.where().c_str());
    std::fflush(stdout);
    std::fflush(stderr);
    coll.reset();
    comm.reset();
    std::exit(1);
  } catch (const Error& e) {
    std::fprintf(stderr, "qisa: error (rank %d of %d): %s [%s]\n", comm->rank(), comm->size(), e.message().c_str(),
                 e.where().c_str());
    std::fflush(stderr);
    comm->abort(1);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qisa: error (rank %d of %d): %s\n", comm->rank(), comm->size(), e.what());
    std::fflush(stderr);
    comm->abort(1);
  }
}

}  // namespace qisa::cli
