// The none communicator (one process, no MPI at all) and make_communicator.
#include "trainer/comm/communicator.h"

#include <cstdio>
#include <cstdlib>

#include "kernels/error.h"

namespace qisa {

namespace {

// A world of one: every reduction is the identity.
class NoneCommunicator final : public Communicator {
 public:
  std::string name() const override { return "none"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }

  void allreduce_sum(double*, size_t) override {}
  void allreduce_max(int64_t*, size_t) override {}
  void broadcast(void*, size_t, int root) override {
    QISA_CHECK(root == 0, "broadcast from root " + std::to_string(root) + " in a world of 1 rank",
               "the none communicator has only rank 0");
  }
  // A blocking send to oneself could only deadlock; a 1-rank world has no peer to talk to.
  void send(const void*, size_t, int dest, int) override {
    throw Error("send to rank " + std::to_string(dest) + " in a world of 1 rank",
                "the none communicator has no peers; loops over other ranks should be empty");
  }
  void recv(void*, size_t, int src, int) override {
    throw Error("recv from rank " + std::to_string(src) + " in a world of 1 rank",
                "the none communicator has no peers; loops over other ranks should be empty");
  }
  void barrier() override {}
  [[noreturn]] void abort(int code) noexcept override {
    std::fflush(nullptr);  // _Exit skips stdio's flush; keep what was already printed
    std::_Exit(code);
  }
};

}  // namespace

void broadcast_string(Communicator& comm, std::string& s, int root) {
  if (comm.size() == 1) return;
  int64_t n = static_cast<int64_t>(s.size());
  comm.broadcast(&n, sizeof n, root);
  s.resize(static_cast<size_t>(n));
  if (n > 0) comm.broadcast(s.data(), static_cast<size_t>(n), root);
}

void run_on_root(Communicator& comm, const std::function<void()>& fn, int root) {
  std::string error, hint;
  if (comm.rank() == root) {
    try {
      fn();
    } catch (const Error& e) {
      error = e.what();
      hint = e.hint();
    }
  }
  broadcast_string(comm, error, root);
  broadcast_string(comm, hint, root);
  if (!error.empty()) throw CollectiveError(error, hint);
}

std::unique_ptr<Communicator> make_communicator(const std::string& kind) {
  return make_communicator(kind, CommOptions{});
}

std::unique_ptr<Communicator> make_communicator(const std::string& kind, const CommOptions& options) {
  QISA_CHECK(kind == "auto" || kind == "none" || kind == "mpi", "unknown communicator '" + kind + "'",
             "use auto, none or mpi");
  const WorldInfo world = detect_world();
  if (kind == "mpi" || (kind == "auto" && world.size > 1))
    return detail::make_mpi_communicator(world, options);
  QISA_CHECK(world.size == 1,
             "communicator 'none' in a job of " + std::to_string(world.size) + " ranks (" + world.launcher +
                 ": " + world.variables + ")",
             "set dist.comm to auto or mpi, or start a single process without " + world.launcher);
  return std::make_unique<NoneCommunicator>();
}

}  // namespace qisa
