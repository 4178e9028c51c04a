// CacheBoard and runningRegCacheStats: see verbs_cache_board.h.
#include "transport/ibverbs/verbs_cache_board.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <new>

#include "common/logging.h"
#include "common/status.h"
#include "transport/ibverbs/verbs_info.h"

namespace weft::transport::verbs {
namespace {

constexpr size_t kBoardBytes = 4096;
static_assert(sizeof(CacheBoardData) <= kBoardBytes);

void copyText(char* out, size_t size, const std::string& text) {
  const size_t n = std::min(size - 1, text.size());
  std::memcpy(out, text.data(), n);
  out[n] = '\0';
}

// Alive or not ours to signal (EPERM): either way not known to be gone.
bool processExists(int pid) {
  return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM);
}

// This process's pid namespace (0 when /proc does not say).
uint64_t pidNamespace() {
  struct stat st {};
  return ::stat("/proc/self/ns/pid", &st) == 0 ? static_cast<uint64_t>(st.st_ino) : 0;
}

// Unlinks the boards of dead processes of this pid namespace (killed jobs leave theirs):
// runningRegCacheStats does it as a side effect.
void removeDeadBoards() { (void)runningRegCacheStats(); }

}  // namespace

CacheBoard::CacheBoard(bool publish, int rank, const std::string& device,
                       const std::string& monitor, uint64_t bound) {
  auto fill = [&](CacheBoardData* d) {
    d->version = CacheBoardData::kVersion;
    d->pid = static_cast<int32_t>(::getpid());
    d->pid_ns = pidNamespace();
    d->rank = rank;
    copyText(d->device, sizeof(d->device), device);
    copyText(d->monitor, sizeof(d->monitor), monitor);
    d->bound_bytes.store(bound, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    d->magic = CacheBoardData::kMagic;  // last: readers ignore a board without it
  };
  fill(&local_);
  if (!publish) return;
  removeDeadBoards();
  static std::atomic<int> serial{0};
  const std::string name = strCat("/", kPrefix, ::getpid(), ".", serial.fetch_add(1));
  int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0644);
  if (fd < 0 && errno == EEXIST) {
    // Left by an earlier process with this pid (this process never made this name).
    ::shm_unlink(name.c_str());
    fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0644);
  }
  if (fd < 0) {
    const int err = errno;
    WEFT_LOG(kDebug, "verbs") << "registration-cache counters stay private: shm_open " << name
                              << ": " << errnoString(err);
    return;
  }
  void* p = MAP_FAILED;
  // posix_fallocate, not ftruncate: a sparse tmpfs file on a full /dev/shm would deliver
  // SIGBUS at the first store instead of failing here.
  int err = ::posix_fallocate(fd, 0, kBoardBytes);
  if (err == 0) {
    p = ::mmap(nullptr, kBoardBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) err = errno;
  }
  ::close(fd);
  if (p == MAP_FAILED) {
    ::shm_unlink(name.c_str());
    WEFT_LOG(kDebug, "verbs") << "registration-cache counters stay private: " << name << ": "
                              << errnoString(err);
    return;
  }
  data_ = new (p) CacheBoardData();
  fill(data_);
  name_ = name;
}

CacheBoard::~CacheBoard() {
  if (data_ == &local_) return;
  ::munmap(data_, kBoardBytes);
  ::shm_unlink(name_.c_str());
}

std::vector<RunningCacheStats> runningRegCacheStats() {
  std::vector<RunningCacheStats> out;
  const uint64_t my_ns = pidNamespace();
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) {
    const std::string file = e.path().filename().string();
    if (file.rfind(CacheBoard::kPrefix, 0) != 0) continue;
    const std::string name = "/" + file;
    const int fd = ::shm_open(name.c_str(), O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) continue;
    struct stat st {};
    if (::fstat(fd, &st) != 0 || st.st_size < static_cast<off_t>(kBoardBytes)) {
      ::close(fd);  // being created, or its writer died before sizing it: reading would SIGBUS
      continue;
    }
    void* p = ::mmap(nullptr, kBoardBytes, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) continue;
    const auto* d = static_cast<const CacheBoardData*>(p);
    if (d->magic == CacheBoardData::kMagic && d->version == CacheBoardData::kVersion) {
      std::atomic_thread_fence(std::memory_order_acquire);
      const bool foreign = d->pid_ns != my_ns;  // its pid means nothing here
      if (foreign || processExists(d->pid)) {
        RunningCacheStats r;
        r.pid = d->pid;
        r.rank = d->rank;
        r.other_pid_namespace = foreign;
        r.device.assign(d->device, strnlen(d->device, sizeof(d->device)));
        r.stats.monitor.assign(d->monitor, strnlen(d->monitor, sizeof(d->monitor)));
        r.stats.hits = d->hits.load(std::memory_order_relaxed);
        r.stats.misses = d->misses.load(std::memory_order_relaxed);
        r.stats.evictions = d->evictions.load(std::memory_order_relaxed);
        r.stats.invalidations = d->invalidations.load(std::memory_order_relaxed);
        r.stats.entries = d->entries.load(std::memory_order_relaxed);
        r.stats.bytes = d->bytes.load(std::memory_order_relaxed);
        r.stats.bound_bytes = d->bound_bytes.load(std::memory_order_relaxed);
        out.push_back(std::move(r));
      } else {
        ::shm_unlink(name.c_str());  // its process was killed before closing its Context
      }
    }
    ::munmap(p, kBoardBytes);
  }
  std::sort(out.begin(), out.end(), [](const RunningCacheStats& a, const RunningCacheStats& b) {
    return a.pid != b.pid ? a.pid < b.pid : a.rank < b.rank;
  });
  return out;
}

std::string formatRunningRegCacheStats(const std::vector<RunningCacheStats>& running) {
  if (running.empty()) {
    return "registration caches of running jobs: none (no process on this host has a verbs "
           "Context open; a job logs its final counters when its Context closes, WEFT_LOG=info)\n";
  }
  std::string s = "registration caches of running jobs on this host:\n";
  for (const auto& r : running) {
    s += strCat("  pid ", r.pid, r.other_pid_namespace ? " (another pid namespace)" : "",
                " rank ", r.rank, " ", r.device, ": ", formatRegCacheStats(r.stats), "\n");
  }
  return s;
}

}  // namespace weft::transport::verbs
