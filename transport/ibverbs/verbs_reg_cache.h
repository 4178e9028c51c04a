// RegistrationCache: memory registrations of user buffers reused across operations
// (internal to transport/; unit-tested with a fake Registrar and fake MemoryEvents).
//
// Keyed by (page-aligned start, page-aligned end, memory type, writable): a lookup hits any
// live entry of the same type that covers the buffer and allows the access (a read-only
// entry serves only reading operations). Entries hold a reference count while
// operations use them; unreferenced entries sit in an LRU list and are evicted when the
// cache would exceed its bound (bytes, from RLIMIT_MEMLOCK, and entries, from the device's
// max_mr). A buffer that fits nowhere under the bound is still registered, uncached, and
// deregistered when its last operation ends.
//
// Freed-and-reused memory: every cached range is watched through MemoryEvents (the
// userfaultfd monitor, verbs_mem_monitor.h); before each lookup the cache drains the
// published unmap / page-drop events and drops every entry they overlap (in-use entries
// are marked stale and deregistered when released). Without an event source (no
// userfaultfd here, or WEFT_IB_REG_CACHE=off) nothing is cached: every acquire registers
// and the last release deregisters, which is always correct, only slower.
//
// Counters: stats() here; also stored into a CacheBoard after every acquire and
// invalidate, so that `weft-info --devices` shows them while the job runs.
//
// Read-only registrations (read-only memory) are never cached: the monitor does not see
// mprotect, and a read-only pin of a private file page would keep the old page after the
// process made it writable and wrote it. They are registered per operation.
//
// Threads: owned by one Context and used under its engine lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "transport/api/types.h"
#include "transport/ibverbs/verbs_cache_board.h"
#include "transport/ibverbs/verbs_info.h"
#include "transport/ibverbs/verbs_mem_monitor.h"

namespace weft::transport::verbs {

// What an operation lets the NIC do with its local buffer: read it (send, put source,
// rendezvous source a peer reads) or also write it (receive and get destinations).
// Read-only memory (a const object in .rodata, a PROT_READ mapping) cannot be pinned for
// writing (ibv_reg_mr fails with EFAULT), but registered with remote-read access only it
// serves every reading use.
enum class LocalAccess : uint8_t { kRead, kWrite };

struct Registration {
  void* handle = nullptr;  // the Registrar's object (an ibv_mr)
  uint32_t lkey = 0;
  uint32_t rkey = 0;
  bool writable = true;  // false: registered for reading only (read-only memory)
};

// Registers and deregisters ranges (ibv_reg_mr on a PD; a fake in tests). A kRead request
// may come back read-only (writable false) when the memory cannot be registered for writing.
class Registrar {
 public:
  virtual ~Registrar() = default;
  virtual Result<Registration> registerRange(void* address, size_t length, MemoryType type,
                                             LocalAccess access) = 0;
  virtual void deregister(const Registration& registration) = 0;
};

struct RegEntry {
  uintptr_t start = 0;
  uintptr_t end = 0;
  MemoryType type = MemoryType::kHost;
  Registration reg;
  int refs = 0;
  bool cached = false;  // in the lookup map (else: uncached or stale, freed on last release)
  bool in_lru = false;  // unreferenced and cached: in the LRU list (intrusive: no allocation)
  RegEntry* lru_prev = nullptr;
  RegEntry* lru_next = nullptr;
};

class RegistrationCache {
 public:
  struct Options {
    size_t max_bytes = 0;    // bound on cached bytes
    size_t max_entries = 0;  // bound on cached entries
    size_t page_size = 4096;
    std::string off_reason;  // non-empty: caching is off (events == nullptr), and why
    CacheBoardData* board = nullptr;  // where the counters are published too (may be null)
  };

  // events may be nullptr: then nothing is cached (see above).
  RegistrationCache(Registrar* registrar, MemoryEvents* events, Options options);
  ~RegistrationCache();
  RegistrationCache(const RegistrationCache&) = delete;
  RegistrationCache& operator=(const RegistrationCache&) = delete;

  // A registration covering [address, address + length) (length > 0), referenced until
  // release(). Errors come from the Registrar (with its hint).
  Result<RegEntry*> acquire(const void* address, size_t length, MemoryType type,
                            LocalAccess access);
  void release(RegEntry* entry);
  // A registration of exactly [address, address + length), never cached nor counted,
  // deregistered at its release: device memory, whose frees the monitor cannot see.
  Result<RegEntry*> acquireUncached(const void* address, size_t length, MemoryType type,
                                    LocalAccess access);

  // Drops cached entries overlapping [start, end) (also called for monitor events).
  void invalidate(uintptr_t start, uintptr_t end);
  RegCacheStats stats() const;
  bool caching() const { return events_ != nullptr; }

 private:
  void drainEvents();
  void publish();  // the counters to options_.board
  RegEntry* lookup(uintptr_t start, uintptr_t end, MemoryType type, LocalAccess access);
  void touch(RegEntry* e);  // takes e out of the LRU list
  void lruPushBack(RegEntry* e);
  void makeRoom(size_t bytes);
  void drop(RegEntry* e, bool invalidated);
  void destroy(RegEntry* e);

  Registrar* registrar_;
  MemoryEvents* events_;
  Options options_;
  uint64_t seen_ = 0;  // last event sequence number drained
  std::multimap<uintptr_t, std::unique_ptr<RegEntry>> by_start_;
  std::vector<std::unique_ptr<RegEntry>> detached_;  // uncached / stale entries still in use
  RegEntry* lru_head_ = nullptr;                     // unreferenced cached entries, oldest first
  RegEntry* lru_tail_ = nullptr;
  size_t max_length_ = 0;                            // longest cached entry (invalidate's scan)
  uint64_t bytes_ = 0;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
  uint64_t evictions_ = 0;
  uint64_t invalidations_ = 0;
};

}  // namespace weft::transport::verbs
