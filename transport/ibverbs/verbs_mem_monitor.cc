// The userfaultfd memory monitor (see verbs_mem_monitor.h).
#include "transport/ibverbs/verbs_mem_monitor.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <thread>

#include "common/logging.h"

namespace weft::transport::verbs {
namespace {

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

std::mutex g_mutex;  // guards g_monitor / g_reason / g_tried (not used by the monitor thread)
MemoryMonitor* g_monitor = nullptr;
std::string g_reason;
bool g_tried = false;
pid_t g_pid = 0;

void forgetInChild() {
  // The parent's userfaultfd belongs to the parent's address space and its thread did not
  // survive fork(): start over (the parent's monitor object is leaked on purpose).
  g_monitor = nullptr;
  g_tried = false;
  g_reason.clear();
}

int openUffd(std::string& why) {
  int fd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
  if (fd < 0 && errno == EINVAL) {  // kernels before 5.11 lack UFFD_USER_MODE_ONLY
    fd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  }
  if (fd < 0) {
    why = strCat("userfaultfd: ", errnoString(errno));
    return -1;
  }
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_REMAP;
  if (::ioctl(fd, UFFDIO_API, &api) != 0) {
    why = strCat("userfaultfd UFFDIO_API (unmap/remove/remap events): ", errnoString(errno));
    ::close(fd);
    return -1;
  }
  if ((api.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP) == 0) {
    why = "userfaultfd lacks write-protect mode (kernel older than 5.7)";
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

MemoryMonitor* MemoryMonitor::instance() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_tried && g_pid != ::getpid()) forgetInChild();
  if (g_tried) return g_monitor;
  g_tried = true;
  g_pid = ::getpid();
  static bool atfork = [] { return ::pthread_atfork(nullptr, nullptr, forgetInChild) == 0; }();
  (void)atfork;
  const int fd = openUffd(g_reason);
  if (fd < 0) {
    WEFT_LOG(kInfo, "verbs") << "no memory monitor (" << g_reason
                             << "): buffers are registered per operation, not cached";
    return nullptr;
  }
  auto* m = new MemoryMonitor(fd);  // lives as long as the process (its thread uses it)
  std::thread([m] { m->run(); }).detach();
  g_monitor = m;
  return m;
}

std::string MemoryMonitor::unavailableReason() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_reason;
}

Status MemoryMonitor::watch(uintptr_t start, uintptr_t end) {
  uffdio_register reg{};
  reg.range.start = start;
  reg.range.len = end - start;
  reg.mode = UFFDIO_REGISTER_MODE_WP;
  if (::ioctl(fd_, UFFDIO_REGISTER, &reg) != 0) {
    return WEFT_ERROR(StatusCode::kNotSupported, "userfaultfd cannot watch [0x", std::hex, start,
                      ", 0x", end, std::dec, "): ", errnoString(errno));
  }
  return Status::ok();
}

void MemoryMonitor::publish(uintptr_t start, uintptr_t end) {
  const uint64_t seq = published_.load(std::memory_order_relaxed) + 1;
  Slot& s = ring_[seq % kRingSize];
  s.seq.store(0, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  s.start.store(start, std::memory_order_relaxed);
  s.end.store(end, std::memory_order_relaxed);
  s.seq.store(seq, std::memory_order_release);
  published_.store(seq, std::memory_order_release);
}

bool MemoryMonitor::read(uint64_t seq, AddressRange& range) const {
  const Slot& s = ring_[seq % kRingSize];
  if (s.seq.load(std::memory_order_acquire) != seq) return false;
  range.start = s.start.load(std::memory_order_relaxed);
  range.end = s.end.load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  return s.seq.load(std::memory_order_relaxed) == seq;
}

void MemoryMonitor::settle() const {
  while (busy_.load(std::memory_order_acquire)) std::this_thread::yield();
}

void MemoryMonitor::run() {
  for (;;) {
    pollfd pfd{fd_, POLLIN, 0};
    if (::poll(&pfd, 1, -1) < 0) {
      if (errno == EINTR) continue;
      WEFT_LOG(kError, "verbs") << "memory monitor: poll: " << errnoString(errno)
                                << "; cached registrations are no longer checked";
      return;
    }
    busy_.store(true, std::memory_order_seq_cst);  // before the read that releases the unmapper
    uffd_msg msg;
    for (;;) {
      const ssize_t n = ::read(fd_, &msg, sizeof(msg));
      if (n != static_cast<ssize_t>(sizeof(msg))) break;  // EAGAIN: drained
      switch (msg.event) {
        case UFFD_EVENT_UNMAP: publish(msg.arg.remove.start, msg.arg.remove.end); break;
        case UFFD_EVENT_REMOVE: publish(msg.arg.remove.start, msg.arg.remove.end); break;
        case UFFD_EVENT_REMAP:
          publish(msg.arg.remap.from, msg.arg.remap.from + msg.arg.remap.len);
          break;
        default: break;  // page faults cannot happen: nothing is write-protected
      }
    }
    busy_.store(false, std::memory_order_release);
  }
}

}  // namespace weft::transport::verbs
