// CacheBoard: a verbs Context's registration-cache counters, published while the job runs
// (internal to transport/; readers use verbs::runningRegCacheStats in verbs_info.h).
//
// Each Context creates a 4 KiB POSIX shared-memory segment "weft-verbs-cache.<pid>.<n>"
// (/dev/shm, mode 0644: other users' `weft-info --devices` may read it) holding a header
// (magic, version, pid, rank, device, monitor) and the counters as relaxed 64-bit atomics.
// The cache stores its counters there after every acquire and invalidate (plain stores to
// memory it owns: no system call, no allocation), and the Context unlinks the segment when
// it closes. A process killed before that leaves its segment behind; readers (and every
// new board) skip and, when they may, remove segments whose process is gone. A segment written from
// another pid namespace (containers sharing /dev/shm) is listed but never judged dead.
//
// When the segment cannot be created (no /dev/shm, full) or WEFT_IB_CACHE_BOARD=0 the counters
// live in process memory only and a debug line says why; nothing else changes.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace weft::transport::verbs {

struct CacheBoardData {
  static constexpr uint64_t kMagic = 0x31304352'54464557ull;  // "WEFTRC01" little-endian
  static constexpr uint32_t kVersion = 1;
  uint64_t magic = 0;
  uint32_t version = 0;
  int32_t pid = 0;
  uint64_t pid_ns = 0;  // inode of the writer's /proc/self/ns/pid (pids compare only within)
  int32_t rank = -1;
  char device[36] = {};
  char monitor[120] = {};  // "userfaultfd" or "off (why)"
  std::atomic<uint64_t> hits{0};
  std::atomic<uint64_t> misses{0};
  std::atomic<uint64_t> evictions{0};
  std::atomic<uint64_t> invalidations{0};
  std::atomic<uint64_t> entries{0};
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> bound_bytes{0};
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);

class CacheBoard {
 public:
  // Never fails: falls back to process memory (see above).
  // publish false (WEFT_IB_CACHE_BOARD=0): process memory only.
  CacheBoard(bool publish, int rank, const std::string& device, const std::string& monitor,
             uint64_t bound);
  ~CacheBoard();
  CacheBoard(const CacheBoard&) = delete;
  CacheBoard& operator=(const CacheBoard&) = delete;

  CacheBoardData* data() { return data_; }
  const std::string& name() const { return name_; }  // "" when not published

  static constexpr const char* kPrefix = "weft-verbs-cache.";

 private:
  CacheBoardData local_;
  CacheBoardData* data_ = &local_;
  std::string name_;
};

}  // namespace weft::transport::verbs
