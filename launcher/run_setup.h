// Shared by the commands: config + overrides -> a config checked against its corpus; the
// communicator; the CPU thread count per rank; the one factory of compute backends.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "io/config.h"
#include "kernels/backend.h"
#include "trainer/comm/collectives.h"
#include "trainer/comm/communicator.h"

namespace qisa::cli {

// Loads CONFIG with the overrides, applies --threads (when > 0) as train.threads, reads the
// corpus metadata, checks its token ids against vocab_size (check_token_ids) and the config
// against it. A corpus error names the config file and data.corpus.
Config load_checked_config(const std::string& path, std::vector<std::string> overrides, int threads);

// Threads for this rank, in this order: `requested` when > 0 (train.threads or --threads);
// else OMP_NUM_THREADS when set (its first entry: users, mpirun lines and Slurm scripts set
// it); else the cores this process may run on, shared by the ranks of this node when the
// launcher did not bind them (so that ranks do not oversubscribe the cores, which makes
// OpenMP's spinning threads crawl). At most max(8, 4 x the cores this process may use): more
// is an error naming `key` and the limit (libgomp crashes at some hundred thousand threads).
struct ThreadChoice {
  int threads;
  std::string from;  // "train.threads", "--threads", "OMP_NUM_THREADS", "cores"
};
ThreadChoice resolve_threads(int requested, const std::string& key);
int threads_per_rank(const Config& cfg);  // resolve_threads(train.threads, "<config>: train.threads")

// The compute backend for `device` with `threads` CPU threads (0 = OpenMP's default): the one
// place every command gets its Backend from. `key` ("train.device", "--device") and `source`
// (the config file, or "") name where the device was chosen, for the error. Device::cuda: the
// CUDA backend on the local rank's device (tf32: train.tf32); one line naming the key when this
// build has no CUDA or the machine no usable device.
std::unique_ptr<Backend> make_backend(Device device, int threads, const std::string& key,
                                      const std::string& source = "", bool tf32 = false);
// The training commands' form: train.device with threads_per_rank(cfg) threads.
std::unique_ptr<Backend> make_backend(const Config& cfg);

// `--device cpu|cuda` for the commands that take a model file instead of a config (eval, sample,
// probe-leak): parsed into `device` once by CLI11, which lists the allowed names on a bad one.
CLI::Option* add_device_option(CLI::App& cmd, Device& device);

// Runs `body` with the communicator of dist.comm and the collectives made from it on
// `backend`'s memory (make_collectives; destroyed before the communicator). Under more than
// one rank an error on any rank prints one line (with the rank) and aborts the whole job, so
// that no rank waits forever in a collective. dist.comm: nccl (which config validation allows
// only with train.device: cuda): the host communicator is auto's (mpi with more than one rank)
// and the collectives are NCCL's (make_nccl_collectives, dist.timeout_s). A
// CollectiveError (raised by every rank together) instead ends every rank with exit status 1
// after a normal MPI_Finalize, printed once by rank 0.
void with_communicator(const Config& cfg, Backend& backend,
                       const std::function<void(Communicator&, Collectives&)>& body);

}  // namespace qisa::cli
