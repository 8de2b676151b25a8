// A host Communicator (trainer/comm/communicator.h) whose ranks are threads of one test process:
// the test double that lets NCCL's double (tests/cuda_emu/nccl_double.h) run a job of several
// ranks on the emulated device. It implements the interface's documented semantics: every call
// is collective over the ranks that make it, in the same order on each (a rendezvous per call:
// the last rank to arrive sees every rank's bytes), sums in rank order (the same bits on every
// rank), point to point by (source, destination, tag) in order. abort() ends the process, as
// MPI_Abort ends the job. A rank that stops calling leaves its peers waiting: a rendezvous
// waits at most `deadline` and then throws, so a test fails instead of hanging.
#pragma once
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "kernels/error.h"
#include "trainer/comm/communicator.h"

namespace qisa::test {

class ThreadWorld {
 public:
  explicit ThreadWorld(int size, std::chrono::seconds deadline = std::chrono::seconds(60))
      : size_(size), deadline_(deadline), slots_(static_cast<size_t>(size)) {
    for (int r = 0; r < size; ++r) comms_.push_back(std::make_unique<Rank>(*this, r));
  }
  Communicator& comm(int rank) { return *comms_[static_cast<size_t>(rank)]; }
  int size() const { return size_; }

  // Runs body(rank) on one thread per rank and joins them; the first exception of a rank (by
  // rank order) is rethrown after all have finished.
  template <class Body>
  void run(Body body) {
    std::vector<std::exception_ptr> errors(static_cast<size_t>(size_));
    std::vector<std::thread> threads;
    for (int r = 0; r < size_; ++r)
      threads.emplace_back([&, r] {
        try {
          body(r);
        } catch (...) {
          errors[static_cast<size_t>(r)] = std::current_exception();
        }
      });
    for (auto& t : threads) t.join();
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
  }

 private:
  class Rank final : public Communicator {
   public:
    Rank(ThreadWorld& w, int r) : w_(w), r_(r) {}
    std::string name() const override { return "threads"; }
    int rank() const override { return r_; }
    int size() const override { return w_.size_; }
    int local_rank() const override { return r_; }
    void allreduce_sum(double* buf, size_t n) override {
      const auto all = w_.exchange(r_, buf, n * sizeof(double));
      for (size_t i = 0; i < n; ++i) {
        double s = 0;
        for (const auto& b : all) s += reinterpret_cast<const double*>(b.data())[i];
        buf[i] = s;
      }
    }
    void allreduce_max(int64_t* buf, size_t n) override {
      const auto all = w_.exchange(r_, buf, n * sizeof(int64_t));
      for (size_t i = 0; i < n; ++i)
        for (const auto& b : all) buf[i] = std::max(buf[i], reinterpret_cast<const int64_t*>(b.data())[i]);
    }
    void broadcast(void* buf, size_t bytes, int root) override {
      QISA_CHECK(root >= 0 && root < w_.size_, "threads: broadcast from root " + std::to_string(root), "");
      const auto all = w_.exchange(r_, buf, bytes);
      if (bytes) std::memcpy(buf, all[static_cast<size_t>(root)].data(), bytes);
    }
    void send(const void* buf, size_t bytes, int dest, int tag) override { w_.send(r_, buf, bytes, dest, tag); }
    void recv(void* buf, size_t bytes, int src, int tag) override { w_.recv(r_, buf, bytes, src, tag); }
    void barrier() override { w_.exchange(r_, nullptr, 0); }
    [[noreturn]] void abort(int code) noexcept override {
      std::fprintf(stderr, "ThreadWorld: rank %d aborts the job with code %d\n", r_, code);
      std::_Exit(code);
    }

   private:
    ThreadWorld& w_;
    int r_;
  };

  using Bytes = std::vector<unsigned char>;

  // Every rank's bytes of this call, by rank.
  std::vector<Bytes> exchange(int rank, const void* p, size_t bytes) {
    std::unique_lock<std::mutex> lock(mu_);
    const uint64_t gen = generation_;
    slots_[static_cast<size_t>(rank)].assign(static_cast<const unsigned char*>(p),
                                             static_cast<const unsigned char*>(p) + (p ? bytes : 0));
    if (++arrived_ == size_) {
      result_ = slots_;
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else if (!cv_.wait_for(lock, deadline_, [&] { return generation_ != gen; })) {
      throw Error("ThreadWorld: rank " + std::to_string(rank) + " waited " + std::to_string(deadline_.count()) +
                  " s in a collective that a peer never joined");
    }
    return result_;
  }

  void send(int from, const void* p, size_t bytes, int to, int tag) {
    std::lock_guard<std::mutex> lock(mu_);
    mail_[{from, to, tag}].emplace_back(static_cast<const unsigned char*>(p), static_cast<const unsigned char*>(p) + bytes);
    cv_.notify_all();
  }
  void recv(int me, void* p, size_t bytes, int from, int tag) {
    std::unique_lock<std::mutex> lock(mu_);
    auto& box = mail_[{from, me, tag}];
    if (!cv_.wait_for(lock, deadline_, [&] { return !box.empty(); }))
      throw Error("ThreadWorld: rank " + std::to_string(me) + " waited in recv from " + std::to_string(from));
    QISA_CHECK(box.front().size() == bytes, "ThreadWorld: message size differs", "");
    std::memcpy(p, box.front().data(), bytes);
    box.pop_front();
  }

  const int size_;
  const std::chrono::seconds deadline_;
  std::vector<std::unique_ptr<Rank>> comms_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Bytes> slots_, result_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  std::map<std::tuple<int, int, int>, std::deque<Bytes>> mail_;
};

}  // namespace qisa::test
