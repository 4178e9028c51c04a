#include "paramserver/util/fork_join.h"

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <system_error>

#include "common/logging.h"

namespace weft::ps {
namespace {

// How long a helper keeps polling for the next job before it sleeps: a server under load
// sends the next request's parts within a few microseconds.
constexpr auto kHelperSpin = std::chrono::microseconds(50);

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

uint32_t* futexWord(std::atomic<uint32_t>& a) {
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
  return reinterpret_cast<uint32_t*>(&a);
}

}  // namespace

void ForkJoinPool::wake() {
  if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
  syscall(SYS_futex, futexWord(gen_), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
}

void ForkJoinPool::sleep(uint32_t seen) {
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  if (gen_.load(std::memory_order_seq_cst) == seen && !stop_.load(std::memory_order_seq_cst)) {
    syscall(SYS_futex, futexWord(gen_), FUTEX_WAIT_PRIVATE, seen, nullptr, nullptr, 0);
  }
  sleepers_.fetch_sub(1, std::memory_order_seq_cst);
}

ForkJoinPool::ForkJoinPool(uint32_t threads) {
  for (uint32_t i = 1; i < threads; ++i) {
    try {
      helpers_.emplace_back([this] { helperLoop(); });
    } catch (const std::system_error& e) {  // out of threads: fewer helpers, still correct
      WEFT_LOG(kWarn, "ps") << "fork-join pool: started " << helpers_.size() << " of "
                            << threads - 1 << " helper threads (" << e.what() << ")";
      break;
    }
  }
}

ForkJoinPool::~ForkJoinPool() {
  stop_.store(true, std::memory_order_seq_cst);
  gen_.fetch_add(1, std::memory_order_seq_cst);
  wake();
  for (std::thread& t : helpers_) t.join();
}

uint32_t ForkJoinPool::autoThreads(uint32_t cap) {
  cpu_set_t set;
  CPU_ZERO(&set);
  const int cpus = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
  return std::clamp<uint32_t>(static_cast<uint32_t>(cpus), 1, std::max<uint32_t>(cap, 1));
}

void ForkJoinPool::work(uint32_t gen) {
  uint64_t cur = next_.load(std::memory_order_acquire);
  for (;;) {
    // The claim checks the generation and the part count in the word it increments: a
    // helper late for a finished job can neither claim a part of it (its counter stays at
    // the end) nor of the next one, and reads the function only after a claim succeeded,
    // which proves the job is running (its caller waits for this part).
    const uint32_t parts = static_cast<uint32_t>(cur >> 16) & kMaxParts;
    const uint32_t part = static_cast<uint32_t>(cur) & kMaxParts;
    if (cur >> 32 != gen || part >= parts) return;
    if (!next_.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel)) continue;
    (*fn_.load(std::memory_order_acquire))(part);
    done_.fetch_add(1, std::memory_order_release);
    cur = next_.load(std::memory_order_acquire);
  }
}

void ForkJoinPool::helperLoop() {
  uint32_t seen = gen_.load(std::memory_order_acquire);
  for (;;) {
    const auto until = std::chrono::steady_clock::now() + kHelperSpin;
    uint32_t g = gen_.load(std::memory_order_acquire);
    // stop_ too: a pool destroyed before this thread first read gen_ changed it already.
    for (int i = 0; g == seen && !stop_.load(std::memory_order_acquire); ++i) {
      if ((i & 63) == 63 && std::chrono::steady_clock::now() > until) {
        sleep(seen);
      } else {
        cpuRelax();
      }
      g = gen_.load(std::memory_order_acquire);
    }
    if (stop_.load(std::memory_order_acquire)) return;
    seen = g;
    work(g);
  }
}

void ForkJoinPool::run(uint32_t parts, const Part& f) {
  std::unique_lock<std::mutex> lock(run_mu_, std::try_to_lock);
  if (helpers_.empty() || parts <= 1 || parts > kMaxParts || !lock.owns_lock()) {
    for (uint32_t i = 0; i < parts; ++i) f(i);
    return;
  }
  const uint32_t gen = gen_.load(std::memory_order_relaxed) + 1;
  fn_.store(&f, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  next_.store(uint64_t{gen} << 32 | uint64_t{parts} << 16, std::memory_order_release);
  gen_.store(gen, std::memory_order_seq_cst);
  wake();
  work(gen);
  // Parts still running on helpers: poll, yielding the CPU to them when it is shared.
  for (int i = 0; done_.load(std::memory_order_acquire) != parts; ++i) {
    if (i < 256) {
      cpuRelax();
    } else {
      sched_yield();
    }
  }
}

}  // namespace weft::ps
