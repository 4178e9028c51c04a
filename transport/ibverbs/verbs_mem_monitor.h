// MemoryMonitor: tells registration caches when cached memory is unmapped or its pages are
// dropped, so that a cached MR never outlives the pages it pinned (internal to transport/).
//
// Why: an MR pins the physical pages that backed [addr, addr+len) when it was registered.
// After free() returns a large block to the kernel (munmap), or madvise(MADV_DONTNEED) /
// brk shrink drop pages, a later allocation at the same address gets NEW pages while the
// old MR still points at the OLD ones: a cache hit there would send stale bytes. glibc's
// free() calls munmap internally (not through the PLT), so interposing munmap is not
// enough; malloc hooks are gone since glibc 2.34.
//
// How: one userfaultfd per process with UFFD_FEATURE_EVENT_UNMAP | _REMOVE | _REMAP. Every
// range the cache keeps is registered with it in write-protect mode (no page is ever
// write-protected, so no access ever faults; the registration only subscribes to the
// events). The kernel then blocks every munmap / mremap / madvise(DONTNEED|FREE|REMOVE) /
// brk shrink of such a range until the event is read. A monitor thread reads them and
// appends the ranges to a lock-free ring that caches drain before every lookup.
//
// Ordering guarantee (no stale hit even right after free()): the monitor raises busy()
// BEFORE it reads an event, and lowers it only after the range is in the ring. The thread
// that unmapped is released by that read, so when its next lookup runs, either busy() is
// still up (the lookup waits) or the range is already visible in the ring.
//
// Ranges are never unregistered (uffd registrations are per VMA, not reference counted, so
// unregistering one entry could silently unsubscribe an overlapping one); they disappear
// with their mapping. fork(): the child gets no monitor thread and no registrations (no
// UFFD_FEATURE_EVENT_FORK); it starts its own monitor on first use.
//
// Threads: every method may be called from any thread. The monitor thread never takes a
// lock and never allocates after start (it would deadlock with a thread whose munmap waits
// for it).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/status.h"

namespace weft::transport::verbs {

struct AddressRange {
  uintptr_t start = 0;
  uintptr_t end = 0;  // exclusive
};

// Where a cache learns about invalidated ranges (the monitor, or a fake in unit tests).
class MemoryEvents {
 public:
  virtual ~MemoryEvents() = default;
  // Subscribes [start, end) (page-aligned) to invalidation events. An error means this
  // range cannot be watched (e.g. a file-backed mapping): the caller must not cache it.
  virtual Status watch(uintptr_t start, uintptr_t end) = 0;
  // Sequence number of the newest published event (events are numbered from 1).
  virtual uint64_t published() const = 0;
  // Copies event `seq` into `range`; false if it was overwritten (the reader fell more than
  // the ring size behind and must drop everything it caches).
  virtual bool read(uint64_t seq, AddressRange& range) const = 0;
  // Waits while the producer is between reading an event and publishing it.
  virtual void settle() const = 0;
};

class MemoryMonitor final : public MemoryEvents {
 public:
  // Ring size: events between two lookups of the slowest cache before it must flush all.
  static constexpr size_t kRingSize = 4096;

  // The process-wide monitor, started on first call; nullptr when userfaultfd is not
  // usable here (the reason is in unavailableReason()).
  static MemoryMonitor* instance();
  static std::string unavailableReason();

  Status watch(uintptr_t start, uintptr_t end) override;
  uint64_t published() const override { return published_.load(std::memory_order_acquire); }
  bool read(uint64_t seq, AddressRange& range) const override;
  void settle() const override;

  MemoryMonitor(const MemoryMonitor&) = delete;
  MemoryMonitor& operator=(const MemoryMonitor&) = delete;

 private:
  explicit MemoryMonitor(int fd) : fd_(fd) {}
  void run();
  void publish(uintptr_t start, uintptr_t end);

  int fd_;
  std::atomic<bool> busy_{false};
  std::atomic<uint64_t> published_{0};
  struct Slot {
    std::atomic<uint64_t> seq{0};
    std::atomic<uintptr_t> start{0};
    std::atomic<uintptr_t> end{0};
  };
  Slot ring_[kRingSize];
};

}  // namespace weft::transport::verbs
