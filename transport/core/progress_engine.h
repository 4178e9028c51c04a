// ProgressEngine: the one progress loop of a Context (internal to transport/).
//
// It owns the Context's lock (a real mutex only when the Context is thread-safe), drives
// the backend through EventSource, implements the spin-then-sleep wait used by every
// blocking call, and runs the optional progress thread.
//
// Threads: lock()/unlock() bracket every backend call (EngineLock does it for a scope). waitUntil()
// calls its predicate with the lock held. EventSource methods are called with the lock held, except
// wakeUp().
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "common/deadline.h"
#include "common/status.h"

namespace weft::transport::detail {

// The backend side of the engine.
class EventSource {
 public:
  virtual ~EventSource() = default;
  // One round of backend progress; returns the number of events processed.
  virtual unsigned pollEvents() = 0;
  // Arms the event fd for sleeping. False when events are pending (poll again first).
  virtual bool armEvents() = 0;
  // The fd that becomes readable on activity; -1 when the backend has none (the engine
  // naps briefly instead).
  virtual int eventFd() const = 0;
  // Wakes a thread sleeping on eventFd(). Any thread, no lock.
  virtual void wakeUp() = 0;
  // Called before the engine sleeps (lock held): periodic duties that must run even when
  // no event arrives (peer liveness checks).
  virtual void onIdle() {}
};

struct EngineOptions {
  bool thread_safe = false;
  bool progress_thread = false;
  int64_t spin_us = 0;
};

class ProgressEngine {
 public:
  // Longest single sleep on the event fd. Some backend duties only run inside progress
  // (UCX keepalive, which detects dead peers over shared memory; connection timers), so a
  // sleeper wakes at least this often to run them. 100 ms bounds the added detection
  // latency while costing a sleeping rank ~10 wakeups per second.
  static constexpr int kMaxNapMs = 100;
  // Busy polls of a blocking wait before each further poll yields the CPU (sched_yield):
  // when ranks outnumber cores, the peer a waiter depends on may need this core, and a
  // pure spin would hold it for the whole spin phase (WEFT_TRANSPORT_SPIN_US). On an idle
  // core a yield returns at once, so the first message still arrives within a few polls.
  static constexpr uint32_t kSpinsBeforeYield = 64;
  // Naps that end with the event fd ready but nothing to do, in a row, before a nap sleeps
  // kSpuriousNapUs instead (see napOnEventFd).
  static constexpr uint32_t kQuickNapsBeforeSleep = 8;
  static constexpr int64_t kSpuriousNapUs = 500;

  ProgressEngine(EventSource* source, const EngineOptions& options);
  ~ProgressEngine();
  ProgressEngine(const ProgressEngine&) = delete;
  ProgressEngine& operator=(const ProgressEngine&) = delete;

  // Starts the progress thread when requested. Idempotent.
  Status start();
  // Stops and joins it. Idempotent; the destructor calls it.
  void stop();

  void lock() {
    if (locking_) mutex_.lock();
  }
  void unlock() {
    if (locking_) mutex_.unlock();
  }
  bool threadSafe() const { return locking_; }
  // True while the progress thread runs (waits then sleep on a condition variable).
  bool hasProgressThread() const { return running_.load(std::memory_order_relaxed); }

  // lock + one backend round + unlock.
  unsigned progress();
  // After posting work: wakes the progress thread if it sleeps (cheap check otherwise).
  void kick() {
    if (sleeping_.load(std::memory_order_relaxed)) source_->wakeUp();
  }
  // Wakes threads blocked in waitUntil (call with the lock held after completing work).
  void notifyWaiters() {
    if (waiters_ > 0) cv_.notify_all();
  }

  // Waits until done() (called with the lock held) is true: true; false at the deadline.
  template <typename Pred>
  bool waitUntil(Pred&& done, Deadline deadline) {
    return running_.load(std::memory_order_relaxed) ? waitWithThread(done, deadline)
                                                    : waitDriving(done, deadline);
  }

  // Spin-then-sleep until the backend reports activity (one wait cycle).
  void waitForActivity(Deadline deadline);

 private:
  template <typename Pred>
  bool waitDriving(Pred& done, Deadline deadline);
  template <typename Pred>
  bool waitWithThread(Pred& done, Deadline deadline);
  // Sleeps once on the (armed) event fd: at most kMaxNapMs, never past the deadline.
  void napOnEventFd(Deadline deadline);
  // A poll found work: the event fd's readiness was real.
  void noteActivity() {
    if (quick_naps_.load(std::memory_order_relaxed) != 0) {
      quick_naps_.store(0, std::memory_order_relaxed);
    }
  }
  void threadMain();

  EventSource* source_;
  EngineOptions options_;
  bool locking_;
  std::mutex mutex_;
  std::condition_variable cv_;
  int waiters_ = 0;  // guarded by mutex_
  std::atomic<bool> sleeping_{false};
  std::atomic<uint32_t> quick_naps_{0};  // see napOnEventFd
  std::atomic<bool> stop_{false};
  std::atomic<bool> running_{false};
  std::thread thread_;
};

template <typename Pred>
bool ProgressEngine::waitDriving(Pred& done, Deadline deadline) {
  const auto spin_until = Deadline::Clock::now() + std::chrono::microseconds(options_.spin_us);
  for (uint32_t round = 1;; ++round) {
    lock();
    bool finished = done();
    if (!finished) {
      if (source_->pollEvents() > 0) noteActivity();
      finished = done();
    }
    unlock();
    if (finished) return true;
    if (round > kSpinsBeforeYield) std::this_thread::yield();  // see kSpinsBeforeYield
    if ((round & 15) != 0) continue;  // read the clock every 16 rounds only
    const auto now = Deadline::Clock::now();
    if (!deadline.isNever() && now >= deadline.when()) return false;
    if (now < spin_until) continue;
    // Sleep phase: drain, re-check, arm, and sleep only if nothing is pending.
    lock();
    bool drained = false;
    while (source_->pollEvents() > 0) drained = true;
    if (drained) noteActivity();
    source_->onIdle();
    finished = done();
    const bool armed = !finished && source_->armEvents();
    unlock();
    if (finished) return true;
    if (armed) napOnEventFd(deadline);
  }
}

template <typename Pred>
bool ProgressEngine::waitWithThread(Pred& done, Deadline deadline) {
  const auto spin_until = Deadline::Clock::now() + std::chrono::microseconds(options_.spin_us);
  std::unique_lock<std::mutex> lk(mutex_);
  while (!done()) {
    const auto now = Deadline::Clock::now();
    if (!deadline.isNever() && now >= deadline.when()) return false;
    if (now < spin_until) {
      lk.unlock();
      std::this_thread::yield();
      lk.lock();
      continue;
    }
    auto nap = std::chrono::milliseconds(kMaxNapMs);
    if (!deadline.isNever() && deadline.remaining() < nap) {
      nap = std::chrono::duration_cast<std::chrono::milliseconds>(deadline.remaining()) +
            std::chrono::milliseconds(1);
    }
    ++waiters_;
    cv_.wait_for(lk, nap);
    --waiters_;
  }
  return true;
}

// Scoped engine lock.
class EngineLock {
 public:
  explicit EngineLock(ProgressEngine& engine) : engine_(engine) { engine_.lock(); }
  ~EngineLock() { engine_.unlock(); }
  EngineLock(const EngineLock&) = delete;
  EngineLock& operator=(const EngineLock&) = delete;

 private:
  ProgressEngine& engine_;
};

}  // namespace weft::transport::detail
