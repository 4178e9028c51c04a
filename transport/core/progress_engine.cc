#include "transport/core/progress_engine.h"

#include <poll.h>

#include <cerrno>

#include "common/logging.h"

namespace weft::transport::detail {

ProgressEngine::ProgressEngine(EventSource* source, const EngineOptions& options)
    : source_(source),
      options_(options),
      locking_(options.thread_safe || options.progress_thread) {}

ProgressEngine::~ProgressEngine() {
  stop();
}

Status ProgressEngine::start() {
  if (!options_.progress_thread || thread_.joinable()) return Status::ok();
  stop_.store(false);
  thread_ = std::thread([this] { threadMain(); });
  running_.store(true);
  return Status::ok();
}

void ProgressEngine::stop() {
  if (!thread_.joinable()) return;
  stop_.store(true);
  source_->wakeUp();
  thread_.join();
  running_.store(false);
}

unsigned ProgressEngine::progress() {
  lock();
  const unsigned n = source_->pollEvents();
  unlock();
  if (n > 0) noteActivity();
  return n;
}

void ProgressEngine::napOnEventFd(Deadline deadline) {
  int timeout = kMaxNapMs;
  const int left = deadline.pollTimeoutMs();
  if (left >= 0 && left < timeout) timeout = left;
  const int fd = source_->eventFd();
  if (fd < 0) {
    ::poll(nullptr, 0, timeout > 1 ? 1 : timeout);
    return;
  }
  struct pollfd pfd = {fd, POLLIN, 0};
  const int rc = ::poll(&pfd, 1, timeout);
  if (rc < 0 && errno != EINTR) {
    WEFT_LOG(kWarn, "transport") << "poll on the progress event fd " << fd
                                 << " failed: " << errnoString(errno);
  }
  // A backend can leave its fd readable with nothing to progress (UCX 1.13's tcp transport
  // with peer error handling: the armed fd polls ready ~10,000 times a second), which turns
  // every sleep into a spin. After kQuickNapsBeforeSleep naps in a row that ended with the
  // fd ready but no activity between them (callers reset the count when a poll finds
  // work), sleep a fixed kSpuriousNapUs instead: a wait then costs little CPU, and a
  // message arriving meanwhile waits at most that long. (No "woke at once" time test: on a
  // slow or emulated machine a spurious wake-up took more than the 20 us it once required,
  // and the wait spun at 43 % of a core.)
  if (rc > 0) {
    const uint32_t quick = quick_naps_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (quick > kQuickNapsBeforeSleep) {
      const auto nap = std::chrono::microseconds(kSpuriousNapUs);
      if (deadline.isNever() || deadline.remaining() > nap) std::this_thread::sleep_for(nap);
    }
  }
}

void ProgressEngine::waitForActivity(Deadline deadline) {
  if (running_.load(std::memory_order_relaxed)) {
    std::unique_lock<std::mutex> lk(mutex_);
    ++waiters_;
    cv_.wait_for(lk, std::chrono::milliseconds(kMaxNapMs));
    --waiters_;
    return;
  }
  const auto spin_until = Deadline::Clock::now() + std::chrono::microseconds(options_.spin_us);
  for (uint32_t spins = 1;; ++spins) {
    if (progress() > 0) return;
    if (spins > kSpinsBeforeYield) std::this_thread::yield();
    const auto now = Deadline::Clock::now();
    if (!deadline.isNever() && now >= deadline.when()) return;
    if (now >= spin_until) break;
  }
  lock();
  source_->onIdle();
  const bool armed = source_->armEvents();
  unlock();
  if (armed) napOnEventFd(deadline);
  progress();
}

void ProgressEngine::threadMain() {
  while (!stop_.load(std::memory_order_relaxed)) {
    lock();
    const unsigned n = source_->pollEvents();
    if (n > 0) {
      noteActivity();
      notifyWaiters();
      unlock();
      continue;
    }
    source_->onIdle();
    const bool armed = source_->armEvents();
    sleeping_.store(armed, std::memory_order_relaxed);
    unlock();
    if (armed) {
      napOnEventFd(Deadline::never());
      sleeping_.store(false, std::memory_order_relaxed);
    }
  }
}

}  // namespace weft::transport::detail
