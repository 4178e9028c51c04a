// ForkJoinPool: runs the parts of one request on the calling thread and helper threads.
//
//   ForkJoinPool pool(2);                      // the caller + 1 helper
//   pool.run(8, [&](uint32_t part) { ... });   // returns when all 8 calls returned
//
// Why: a parameter-server request touches rows at random addresses of a table much larger
// than the caches, so one thread is bound by its own outstanding cache misses, not by the
// memory system; a second core working on other stripes of the same request adds its miss
// buffers. Parts are claimed dynamically (a helper that is not scheduled costs nothing but
// its share), and requests stay in order: run() returns only after every part.
//
// Helpers spin briefly for the next job, then sleep on a futex, so an idle
// server costs no CPU and an oversubscribed node loses little.
//
// Contract: run() is thread-safe; a run() that finds another one in progress runs its parts
// inline on its own thread, as does one of more than 65,535 parts. f must not throw and
// must not call run() on the same pool.
// The destructor stops and joins the helpers.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace weft::ps {

class ForkJoinPool {
 public:
  using Part = std::function<void(uint32_t)>;

  // threads: threads a run() may use, the caller included (0 and 1: everything inline).
  // Helpers that cannot be started (thread limit) are logged and left out.
  explicit ForkJoinPool(uint32_t threads);
  ~ForkJoinPool();
  ForkJoinPool(const ForkJoinPool&) = delete;
  ForkJoinPool& operator=(const ForkJoinPool&) = delete;

  uint32_t threads() const { return static_cast<uint32_t>(helpers_.size()) + 1; }
  void run(uint32_t parts, const Part& f);

  // Threads a server should use when configured with 0 ("auto"): the CPUs this process may
  // run on, at most `cap`.
  static uint32_t autoThreads(uint32_t cap);

 private:
  void helperLoop();
  void wake();               // wakes sleeping helpers (a syscall only when one sleeps)
  void sleep(uint32_t seen);  // until gen_ != seen (or a spurious wake-up)
  // Claims and runs parts of job `gen` until none is left or the job is no longer current.
  void work(uint32_t gen);

  std::vector<std::thread> helpers_;
  std::mutex run_mu_;  // one job at a time
  // More parts than this run inline (the count shares a word with the claim counter).
  static constexpr uint32_t kMaxParts = 0xffff;
  // The current job: generation (bits 32-63), its part count (16-31) and the next unclaimed
  // part (0-15), claimed by compare-and-swap.
  std::atomic<uint64_t> next_{0};
  std::atomic<uint32_t> gen_{0};  // helpers wait on it
  std::atomic<const Part*> fn_{nullptr};
  std::atomic<uint32_t> done_{0};
  std::atomic<uint32_t> sleepers_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace weft::ps
