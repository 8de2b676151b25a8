// The CUDA execution-model emulator (cuda_emu.h). One mutex per block guards all of its
// synchronisation state; each thread waits on its own futex permit, and whoever completes a
// barrier or a warp collective wakes exactly the threads it releases, after it has let go of
// the mutex (a thread woken while the waker holds it would only wake to wait for the mutex:
// with condition variables notified under the lock, a training step of a tiny GPT spent twice
// its user time in the kernel, 2.5 million context switches in 36 s).
#include "cuda_emu.h"

#include <barrier>
#include <bit>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>
#include <vector>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace qisa::emu {

namespace {

constexpr size_t kMaxSharedBytes = 48 * 1024;  // without cudaFuncSetAttribute opt-in
constexpr unsigned kMaxBlockThreads = 1024;
std::atomic<int> g_skip_site{-2};  // -2: no barrier is skipped

// A source position and the function around it (a template instance has its own name, and its
// own __shared__ arrays on the GPU). The names are static strings: views, compared by content.
using SiteKey = std::tuple<std::string_view, unsigned, unsigned, std::string_view>;
SiteKey key_of(const std::source_location& l) { return {l.file_name(), l.line(), l.column(), l.function_name()}; }
std::string where(const std::source_location& l) { return std::string(l.file_name()) + ":" + std::to_string(l.line()); }

const char* op_name(WarpOp op) {
  static const char* names[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
                                "__ballot_sync", "__all_sync",   "__any_sync",       "__syncwarp"};
  return names[static_cast<int>(op)];
}
std::string hex(unsigned m) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", m);
  return buf;
}

struct Collective {
  WarpOp op;
  unsigned mask;
  size_t bytes;
  unsigned arrived = 0;
  uint64_t value[32] = {};
  int src[32] = {};
};

struct Warp {
  std::vector<Collective> pending;
  uint64_t result[32] = {};
  unsigned ready = 0;   // lanes whose result is waiting to be taken
  unsigned exists = 0;  // lanes that exist (the last warp of a block may be partial)
};

struct LaunchState {  // shared by the blocks of one launch (they run one after another)
  std::map<SiteKey, int> barrier_sites;
  int skip = -2;
};

// One thread's wake-up: a permit on a futex. A permit may come early or twice (waiters re-check
// what they wait for). No spinning: hundreds of emulated threads share two cores, and the
// standard semaphore's spin (with sched_yield) tripled the context switches.
class Wakeup {
 public:
  void release() {
    permit_.store(1, std::memory_order_release);
    syscall(SYS_futex, reinterpret_cast<int*>(&permit_), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  }
  void acquire() {
    while (permit_.exchange(0, std::memory_order_acquire) == 0)
      syscall(SYS_futex, reinterpret_cast<int*>(&permit_), FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);
  }

 private:
  std::atomic<int> permit_{0};
  static_assert(sizeof(std::atomic<int>) == sizeof(int));
};

struct Block {
  int n = 0;
  LaunchState* launch = nullptr;
  std::mutex mu;
  std::unique_ptr<Wakeup[]> wakeup;  // one per thread
  std::vector<int> to_wake;          // released by whoever holds mu, once it lets go (Locked)
  std::vector<Warp> warps;
  std::vector<bool> exited, gate_passed;
  int next_start = 1;  // threads below this index may start
  int alive = 0, blocked = 0, first_exited = -1;
  int bar_count = 0;
  uint64_t bar_gen = 0;
  std::source_location bar_loc;
  std::string error;
  std::map<SiteKey, std::unique_ptr<std::byte[]>> shared;
  size_t static_bytes = 0, dynamic_bytes = 0;
  std::unique_ptr<std::byte[]> dynamic;
};

struct Ctx {
  Block* b;
  int tid, warp, lane;
};
thread_local Ctx* ctx = nullptr;
struct Abort {};  // unwinds a thread after the block has failed

// The block's mutex, held; the threads that holder woke are released when it lets go.
class Locked {
 public:
  explicit Locked(Block& b) : b_(b), lk_(b.mu) {}
  ~Locked() { unlock_and_wake(); }
  Locked(const Locked&) = delete;
  Locked& operator=(const Locked&) = delete;

  // Waits for a wake-up (the mutex is let go meanwhile) and takes the mutex again.
  void sleep(int t) {
    unlock_and_wake();
    b_.wakeup[t].acquire();
    lk_.lock();
  }

 private:
  void unlock_and_wake() {
    if (!lk_.owns_lock()) return;
    thread_local std::vector<int> mine;
    mine.clear();
    std::swap(mine, b_.to_wake);
    lk_.unlock();
    for (int t : mine) b_.wakeup[t].release();
  }
  Block& b_;
  std::unique_lock<std::mutex> lk_;
};

Ctx& here() {
  if (!ctx) throw std::logic_error("CUDA device function called outside emu::launch");
  return *ctx;
}

void wake(Block& b, int t) { b.to_wake.push_back(t); }
void wake_all(Block& b) {
  for (int t = 0; t < b.n; ++t) wake(b, t);
}
void set_error(Block& b, const std::string& msg) {
  if (b.error.empty()) b.error = msg;
  wake_all(b);
}
[[noreturn]] void fail(Block& b, const std::string& msg) {
  set_error(b, msg);
  throw Abort{};
}

// Thread t lets thread t+1 start once it first blocks or returns.
void pass_gate(Block& b, int t) {
  if (b.gate_passed[t]) return;
  b.gate_passed[t] = true;
  if (b.next_start == t + 1 && t + 1 < b.n) {
    ++b.next_start;
    wake(b, t + 1);
  }
}

std::string waiting_summary(const Block& b) {
  std::string s;
  if (b.bar_count > 0) s += " " + std::to_string(b.bar_count) + " at __syncthreads() " + where(b.bar_loc) + ";";
  for (size_t w = 0; w < b.warps.size(); ++w)
    for (const Collective& c : b.warps[w].pending)
      s += " warp " + std::to_string(w) + " in " + op_name(c.op) + " mask " + hex(c.mask) + " (lanes " +
           hex(c.arrived) + " arrived);";
  return s;
}

void check_deadlock(Block& b) {
  if (b.alive > 0 && b.blocked == b.alive)
    set_error(b, "deadlock: every live thread (" + std::to_string(b.alive) + ") waits:" + waiting_summary(b));
}

// The caller (thread t) waits until done() or the block fails. Whoever releases it lowers `blocked`.
template <class Pred>
void wait_for(Block& b, Locked& lk, int t, Pred done) {
  pass_gate(b, t);
  ++b.blocked;
  check_deadlock(b);
  while (!done() && b.error.empty()) lk.sleep(t);
  if (!b.error.empty()) throw Abort{};
}

uint64_t complete(Block& b, Warp& w, const Collective& c, int caller_lane) {
  unsigned votes = 0;
  for (int l = 0; l < 32; ++l)
    if ((c.mask >> l & 1u) && c.value[l]) votes |= 1u << l;
  for (int l = 0; l < 32; ++l) {
    if (!(c.mask >> l & 1u)) continue;
    uint64_t r = 0;
    switch (c.op) {
      case WarpOp::ballot: r = votes; break;
      case WarpOp::all: r = votes == c.mask; break;
      case WarpOp::any: r = votes != 0; break;
      case WarpOp::syncwarp: break;
      default: {
        const int s = c.src[l] < 0 ? l : c.src[l];
        if (!(c.mask >> s & 1u))
          fail(b, std::string(op_name(c.op)) + ": lane " + std::to_string(l) + " reads lane " + std::to_string(s) +
                      ", which is not in the mask " + hex(c.mask) + " (inactive lane)");
        r = c.value[s];
      }
    }
    w.result[l] = r;
    if (l != caller_lane) w.ready |= 1u << l;
  }
  return w.result[caller_lane];
}

void thread_exits(Block& b, int t) {
  const int lane = t % 32;
  Warp& w = b.warps[t / 32];
  b.exited[t] = true;
  if (b.first_exited < 0) b.first_exited = t;
  --b.alive;
  if (b.bar_count > 0)
    set_error(b, "thread " + std::to_string(t) + " returned while " + std::to_string(b.bar_count) +
                     " threads wait at __syncthreads() " + where(b.bar_loc));
  for (const Collective& c : w.pending)
    if ((c.mask >> lane & 1u) && !(c.arrived >> lane & 1u))
      set_error(b, "lane " + std::to_string(lane) + " of warp " + std::to_string(t / 32) + " returned while lanes " +
                       hex(c.arrived) + " wait for it in " + op_name(c.op) + " with mask " + hex(c.mask));
  pass_gate(b, t);
  check_deadlock(b);
}

void run_thread(Block& b, int t, dim3 grid, dim3 block, dim3 bidx, const std::function<void()>& body) {
  Ctx c{&b, t, t / 32, t % 32};
  ctx = &c;
  gridDim = grid;
  blockDim = block;
  blockIdx = bidx;
  threadIdx = dim3(t % block.x, t / block.x % block.y, t / (block.x * block.y));
  {
    Locked lk(b);
    while (b.next_start <= t && b.error.empty()) lk.sleep(t);
    if (!b.error.empty()) return;
  }
  try {
    body();
  } catch (const Abort&) {
    return;
  } catch (const std::exception& e) {
    Locked lk(b);
    set_error(b, "thread " + std::to_string(t) + " threw: " + e.what());
    return;
  }
  Locked lk(b);
  thread_exits(b, t);
  ctx = nullptr;
}

void check_dims(dim3 grid, dim3 block, size_t smem) {
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  if (threads == 0 || threads > kMaxBlockThreads || block.z > 64)
    throw LaunchError("invalid block " + std::to_string(block.x) + "x" + std::to_string(block.y) + "x" +
                      std::to_string(block.z) + " (1..1024 threads, z <= 64)");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535)
    throw LaunchError("invalid grid " + std::to_string(grid.x) + "x" + std::to_string(grid.y) + "x" +
                      std::to_string(grid.z));
  if (smem > kMaxSharedBytes)
    throw LaunchError("dynamic shared memory of " + std::to_string(smem) + " bytes exceeds 48 KiB");
}

// A block's state before its threads start: no thread has run, shared memory is 0xFF bytes.
std::unique_ptr<Block> make_block(LaunchState& ls, int n, size_t smem) {
  auto b = std::make_unique<Block>();
  b->n = n;
  b->launch = &ls;
  b->wakeup = std::make_unique<Wakeup[]>(n);
  b->to_wake.reserve(n);
  b->warps.resize((n + 31) / 32);
  for (int t = 0; t < n; ++t) b->warps[t / 32].exists |= 1u << (t % 32);
  b->exited.assign(n, false);
  b->gate_passed.assign(n, false);
  b->alive = n;
  b->dynamic_bytes = smem;
  b->dynamic = std::make_unique<std::byte[]>(smem + 1);
  std::memset(b->dynamic.get(), 0xFF, smem + 1);
  return b;
}

}  // namespace

// One OS thread per thread of a block, created once per launch and reused for every block; the
// blocks run one after another, and the first failing block ends the launch.
void run_grid(dim3 grid, dim3 block, size_t smem, const std::function<void()>& body) {
  check_dims(grid, block, smem);
  LaunchState ls;
  ls.skip = g_skip_site.load();
  const int n = static_cast<int>(block.x * block.y * block.z);
  std::unique_ptr<Block> current;
  dim3 bidx;
  bool stop = false;
  std::barrier<> sync(n + 1);  // block start and block end
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (int t = 0; t < n; ++t)
    threads.emplace_back([&, t] {
      for (;;) {
        sync.arrive_and_wait();
        if (stop) return;
        run_thread(*current, t, grid, block, bidx, body);
        sync.arrive_and_wait();
      }
    });
  std::string error;
  for (unsigned z = 0; z < grid.z && error.empty(); ++z)
    for (unsigned y = 0; y < grid.y && error.empty(); ++y)
      for (unsigned x = 0; x < grid.x && error.empty(); ++x) {
        current = make_block(ls, n, smem);
        bidx = dim3(x, y, z);
        sync.arrive_and_wait();  // the block's threads run
        sync.arrive_and_wait();
        if (!current->error.empty())
          error = "block (" + std::to_string(x) + "," + std::to_string(y) + "," + std::to_string(z) + "): " +
                  current->error;
      }
  stop = true;
  sync.arrive_and_wait();
  for (auto& th : threads) th.join();
  if (!error.empty()) throw LaunchError(error);
}


SkipBarriers::SkipBarriers(int site) { g_skip_site.store(site); }
SkipBarriers::~SkipBarriers() { g_skip_site.store(-2); }

void syncthreads(std::source_location loc) {
  Ctx& c = here();
  Block& b = *c.b;
  Locked lk(b);
  if (!b.error.empty()) throw Abort{};
  const int site = b.launch->barrier_sites.emplace(key_of(loc), int(b.launch->barrier_sites.size())).first->second;
  if (b.launch->skip == kAllBarriers || b.launch->skip == site) return;
  if (b.first_exited >= 0)
    fail(b, "thread " + std::to_string(c.tid) + " reached __syncthreads() " + where(loc) + " after thread " +
                std::to_string(b.first_exited) + " returned: every thread of the block must reach each barrier");
  if (b.bar_count == 0) {
    b.bar_loc = loc;
  } else if (key_of(b.bar_loc) != key_of(loc)) {
    fail(b, "threads wait at different barriers: thread " + std::to_string(c.tid) + " at " + where(loc) + ", " +
                std::to_string(b.bar_count) + " others at " + where(b.bar_loc));
  }
  if (++b.bar_count == b.n) {
    b.bar_count = 0;
    ++b.bar_gen;
    b.blocked -= b.n - 1;
    for (int t = 0; t < b.n; ++t)
      if (t != c.tid) wake(b, t);
    return;
  }
  const uint64_t gen = b.bar_gen;
  wait_for(b, lk, c.tid, [&] { return b.bar_gen != gen; });
}

uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int src, size_t bytes) {
  Ctx& c = here();
  Block& b = *c.b;
  Warp& w = b.warps[c.warp];
  const unsigned bit = 1u << c.lane;
  Locked lk(b);
  if (!b.error.empty()) throw Abort{};
  const auto who = [&] {
    return std::string(op_name(op)) + " by lane " + std::to_string(c.lane) + " of warp " + std::to_string(c.warp) +
           " with mask " + hex(mask);
  };
  if (!(mask & bit)) fail(b, who() + ": the caller is not in its mask");
  if (mask & ~w.exists) fail(b, who() + ": the mask names lanes that do not exist in this block");
  for (int l = 0; l < 32; ++l)
    if ((mask >> l & 1u) && b.exited[c.warp * 32 + l])
      fail(b, who() + ": lane " + std::to_string(l) + " of the mask has returned");
  Collective* col = nullptr;
  for (Collective& p : w.pending)
    if (p.mask == mask && !(p.arrived & bit)) col = &p;
  if (!col) {
    w.pending.push_back(Collective{op, mask, bytes});
    col = &w.pending.back();
  } else if (col->op != op || col->bytes != bytes) {
    fail(b, who() + ": other lanes of the mask called " + op_name(col->op) + " (" + std::to_string(col->bytes) +
                " bytes), every lane must call the same intrinsic");
  }
  col->value[c.lane] = value;
  col->src[c.lane] = src;
  col->arrived |= bit;
  if (col->arrived == mask) {
    const Collective done = *col;
    w.pending.erase(w.pending.begin() + (col - w.pending.data()));
    const uint64_t r = complete(b, w, done, c.lane);
    b.blocked -= std::popcount(mask) - 1;
    for (int l = 0; l < 32; ++l)
      if ((mask >> l & 1u) && l != c.lane) wake(b, c.warp * 32 + l);
    return r;
  }
  wait_for(b, lk, c.tid, [&] { return (w.ready & bit) != 0; });
  w.ready &= ~bit;
  return w.result[c.lane];
}

int lane_id() { return here().lane; }

int shfl_source(WarpOp op, int lane, int arg, int width) {
  if (width < 1 || width > 32 || (width & (width - 1)))
    throw std::invalid_argument("shuffle width " + std::to_string(width) + " is not a power of two <= 32");
  const int seg = lane & ~(width - 1), pos = lane & (width - 1);
  switch (op) {
    case WarpOp::shfl: return seg + ((arg % width) + width) % width;
    case WarpOp::shfl_up: return pos >= arg ? lane - arg : -1;
    case WarpOp::shfl_down: return pos + arg < width ? lane + arg : -1;
    case WarpOp::shfl_xor: {
      const int s = lane ^ arg;
      return (s >= 0 && s < 32 && (s & ~(width - 1)) == seg) ? s : -1;
    }
    default: return -1;
  }
}

void* shared_array(size_t bytes, std::source_location loc) {
  Block& b = *here().b;
  Locked lk(b);
  if (!b.error.empty()) throw Abort{};
  auto [it, fresh] = b.shared.try_emplace(key_of(loc));
  if (fresh) {
    b.static_bytes += bytes;
    if (b.static_bytes + b.dynamic_bytes > kMaxSharedBytes)
      fail(b, "shared memory " + std::to_string(b.static_bytes) + " + " + std::to_string(b.dynamic_bytes) +
                  " bytes exceeds 48 KiB at " + where(loc));
    it->second = std::make_unique<std::byte[]>(bytes);
    std::memset(it->second.get(), 0xFF, bytes);
  }
  return it->second.get();
}

void* dynamic_shared() { return here().b->dynamic.get(); }

}  // namespace qisa::emu
