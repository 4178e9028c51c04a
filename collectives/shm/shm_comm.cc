#include "collectives/shm/shm_comm.h"

#include <fcntl.h>
#include <immintrin.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstring>
#include <ctime>
#include <random>

#include "common/status.h"

namespace weft::coll::detail {
namespace {

constexpr size_t kLine = 128;  // counters on their own lines (and their prefetch neighbours)
constexpr size_t kPage = 4096;
constexpr uint32_t kSpinLimit = 2048;
constexpr uint32_t kYieldsBeforeSleep = 4;  // oversubscribed: then sleep on a futex
constexpr char kNameKey[] = "shm/name";
constexpr char kFailed[] = "!failed";

size_t roundUp(size_t v, size_t to) {
  return (v + to - 1) / to * to;
}

// The futex word of a counter: its low half (x86-64 is little endian). Counters never pass
// 2^32 stages in practice, and a wrap would only cost a spurious wake-up.
uint32_t* futexWord(std::atomic<uint64_t>& ctr) {
  return reinterpret_cast<uint32_t*>(&ctr);
}

const char* counterName(uint32_t c) {
  return c == 0 ? "posted" : c == 1 ? "reduced" : "done";
}

// Copies to memory nobody reads soon: non-temporal stores skip the read-for-ownership of
// every destination line (a third of the memory traffic of a large copy).
void copyOut(std::byte* dst, const std::byte* src, size_t bytes, bool stream) {
  if (!stream || bytes < 256) {
    std::memcpy(dst, src, bytes);
    return;
  }
  const size_t head = (16 - reinterpret_cast<uintptr_t>(dst) % 16) % 16;
  std::memcpy(dst, src, head);
  size_t i = head;
  for (; i + 64 <= bytes; i += 64) {
    const auto* s = reinterpret_cast<const __m128i*>(src + i);
    auto* d = reinterpret_cast<__m128i*>(dst + i);
    const __m128i a = _mm_loadu_si128(s), b = _mm_loadu_si128(s + 1);
    const __m128i c = _mm_loadu_si128(s + 2), e = _mm_loadu_si128(s + 3);
    _mm_stream_si128(d, a);
    _mm_stream_si128(d + 1, b);
    _mm_stream_si128(d + 2, c);
    _mm_stream_si128(d + 3, e);
  }
  std::memcpy(dst + i, src + i, bytes - i);
  _mm_sfence();
}

// Inode of this process's PID namespace (0 when unknown).
uint64_t pidNamespace() {
  struct stat st {};
  return stat("/proc/self/ns/pid", &st) == 0 ? static_cast<uint64_t>(st.st_ino) : 0;
}

// The node's CPUs (not this process's affinity: ranks pinned to one CPU each are not
// oversubscribed).
bool cpusFewerThan(int ranks) {
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  return cpus > 0 && cpus < ranks;
}

}  // namespace

// What one stage of a reduction moves: part j of the input at in + j * in_step (len(j)
// elements, parts of q elements covering n), lands at slot offset j * q; this rank's reduced
// part goes to out + rank * out_step, and with copy-back part j to out + j * out_step.
struct ShmComm::Parts {
  const std::byte* in;
  size_t in_step;
  std::byte* out;
  size_t out_step;
  size_t q;
  size_t n;
  size_t es;
  bool stream;  // write the user's output with non-temporal stores (large calls)
  size_t len(int j) const {
    const size_t start = static_cast<size_t>(j) * q;
    return start >= n ? 0 : std::min(q, n - start);
  }
};

ShmComm::ShmComm(int rank, int size, size_t chunk, std::byte* base, size_t bytes, std::string name)
    : rank_(rank),
      size_(size),
      chunk_(chunk),
      base_(base),
      bytes_(bytes),
      name_(std::move(name)),
      oversubscribed_(cpusFewerThan(size)),
      known_done_(new uint64_t[static_cast<size_t>(size)]()) {}

ShmComm::~ShmComm() {
  if (rank_ == 0 && !name_.empty()) shm_unlink(name_.c_str());
  munmap(base_, bytes_);
}

Result<std::unique_ptr<ShmComm>> ShmComm::create(Store& store, int rank, int size, size_t chunk,
                                                 uint64_t comm_id, Deadline deadline) {
  chunk = roundUp(std::max<size_t>(chunk, kPage), kPage);
  const size_t bytes = controlBytes(size) + static_cast<size_t>(size) * 2 * kSlots * chunk;
  std::string name;
  int fd = -1;
  if (rank == 0) {
    // The name carries random bits besides pid, communicator and serial: a segment left in
    // /dev/shm by a job that died (its rank 0 never unlinked it) can have this process's pid
    // after pid reuse, or come from another pid namespace sharing /dev/shm. Never reuse one.
    static std::atomic<uint64_t> serial{0};
    static thread_local std::mt19937_64 rng{std::random_device{}() ^
                                            static_cast<uint64_t>(getpid()) << 32};
    for (int attempt = 0; attempt < 8 && fd < 0; ++attempt) {
      name = strCat("/weft-coll-", getpid(), "-", comm_id, "-", serial++, "-",
                    static_cast<uint32_t>(rng()));
      fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
      if (fd < 0 && errno != EEXIST) break;
    }
    if (fd >= 0 && ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
      const int err = errno;
      close(fd);
      shm_unlink(name.c_str());
      fd = -1;
      errno = err;
    }
    if (fd < 0) {
      const int err = errno;
      store.set(kNameKey, kFailed).ignore();
      return WEFT_ERROR(StatusCode::kNoResource, "shared-memory collectives: creating ", name, " (",
                        bytes, " bytes) on rank 0: ", errnoString(err))
          .withHint("is /dev/shm mounted and large enough? WEFT_COLL_SHM=0 disables this path");
    }
    WEFT_RETURN_IF_ERROR(store.set(kNameKey, name));
  } else {
    WEFT_ASSIGN_OR_RETURN(name, store.get(kNameKey, deadline));
    if (name == kFailed) {
      return WEFT_ERROR(StatusCode::kNoResource,
                        "shared-memory collectives: rank 0 could not "
                        "create the segment (its error says why)");
    }
    fd = shm_open(name.c_str(), O_RDWR, 0600);
    if (fd < 0) {
      return WEFT_ERROR(StatusCode::kNoResource, "shared-memory collectives: rank ", rank,
                        " opening ", name, ": ", errnoString(errno));
    }
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  const int err = errno;
  close(fd);
  if (p == MAP_FAILED) {
    if (rank == 0) shm_unlink(name.c_str());
    return WEFT_ERROR(StatusCode::kNoResource, "shared-memory collectives: rank ", rank,
                      " mapping ", name, " (", bytes, " bytes): ", errnoString(err));
  }
  std::unique_ptr<ShmComm> shm(
      new ShmComm(rank, size, chunk, static_cast<std::byte*>(p), bytes, std::move(name)));
  shm->pidNamespaceOf(rank).store(pidNamespace(), std::memory_order_relaxed);
  shm->pidOf(rank).store(static_cast<int32_t>(getpid()), std::memory_order_release);
  return shm;
}

std::atomic<uint64_t>& ShmComm::counter(int r, Counter c) const {
  std::byte* at = base_ + (static_cast<size_t>(r) * 3 + c) * kLine;
  return *reinterpret_cast<std::atomic<uint64_t>*>(at);
}

size_t ShmComm::controlBytes(int size) {
  return roundUp(static_cast<size_t>(size) * (3 + kSlots) * kLine, kPage);
}

ShmComm::InlineLine& ShmComm::inlineLine(int r, uint64_t stage) const {
  const size_t line =
      static_cast<size_t>(size_) * 3 + static_cast<size_t>(r) * kSlots + stage % kSlots;
  return *reinterpret_cast<InlineLine*>(base_ + line * kLine);
}

std::byte* ShmComm::inSlot(int r, uint64_t stage) const {
  const size_t slot = static_cast<size_t>(r) * 2 * kSlots + stage % kSlots;
  return base_ + controlBytes(size_) + slot * chunk_;
}

std::byte* ShmComm::outSlot(int r, uint64_t stage) const {
  return inSlot(r, stage) + kSlots * chunk_;
}

std::atomic<uint32_t>& ShmComm::sleepers(int r, Counter c) const {
  std::byte* at = base_ + (static_cast<size_t>(r) * 3 + c) * kLine + kLine / 2;
  return *reinterpret_cast<std::atomic<uint32_t>*>(at);
}

void ShmComm::publish(Counter c, uint64_t value) {
  std::atomic<uint64_t>& ctr = counter(rank_, c);
  if (!oversubscribed_) {
    ctr.store(value, std::memory_order_release);
    return;
  }
  // seq_cst store, then seq_cst load of the sleepers (sleepWhile does the mirror image):
  // either a sleeper sees the new value or this sees the sleeper and wakes it.
  ctr.store(value, std::memory_order_seq_cst);
  if (sleepers(rank_, c).load(std::memory_order_seq_cst) != 0) {
    syscall(SYS_futex, futexWord(ctr), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
  }
}

void ShmComm::sleepWhile(int r, Counter c, uint64_t below) {
  std::atomic<uint64_t>& ctr = counter(r, c);
  std::atomic<uint32_t>& waiting = sleepers(r, c);
  waiting.fetch_add(1, std::memory_order_seq_cst);
  const uint64_t seen = ctr.load(std::memory_order_seq_cst);
  if (seen < below) {
    timespec nap{0, 2000000};  // re-check deadlines and the engine every 2 ms at least
    syscall(SYS_futex, futexWord(ctr), FUTEX_WAIT, static_cast<uint32_t>(seen), &nap, nullptr, 0);
  }
  waiting.fetch_sub(1, std::memory_order_seq_cst);
}

template <typename WordOf>
Status ShmComm::waitEach(WordOf word_of, Counter c, uint64_t value, bool skip_self,
                         ShmDeadline& deadline, int only) {
  uint32_t spins = 0;
  uint32_t checks = 0;
  for (int j = 0; j < size_; ++j) {
    if ((skip_self && j == rank_) || (only >= 0 && j != only)) continue;
    const std::atomic<uint64_t>& word = word_of(j);
    while (word.load(std::memory_order_acquire) < value) {
      ++spins;
      if (!oversubscribed_ && spins < kSpinLimit) {
        _mm_pause();
        continue;
      }
      // One increment per round: with two, the count past kSpinLimit stayed odd and the
      // checks (deadline, dead peer) never ran when the ranks had a CPU each.
      const bool sleeping = oversubscribed_ && spins > kYieldsBeforeSleep;
      if ((spins & 63) == 0 || sleeping) {
        WEFT_RETURN_IF_ERROR(slowChecks(c, value, j, deadline, ++checks));
      }
      if (sleeping) {
        sleepWhile(j, c, value);  // let the ranks that have work run
      } else {
        sched_yield();
      }
    }
    // A rank that reached any counter of stage k finished stage k - 1 (ranks run stages in
    // order): its slots of earlier stages are known free without reading its "done" line.
    uint64_t& known = known_done_[static_cast<size_t>(j)];
    known = std::max(known, c == kDone ? value : value - 1);
  }
  return Status::ok();
}

Status ShmComm::waitAll(Counter c, uint64_t value, bool skip_self, ShmDeadline& deadline,
                        int only) {
  return waitEach([&](int j) -> const std::atomic<uint64_t>& { return counter(j, c); }, c, value,
                  skip_self, deadline, only);
}

Status ShmComm::slowChecks(Counter c, uint64_t value, int waited, ShmDeadline& deadline,
                           uint32_t checks) {
  if (idle_) idle_();
  if ((checks & 15) == 0 && !alive(waited)) {
    failed_rank_ = waited;
    unlinkSegment();
    return WEFT_ERROR(StatusCode::kPeerFailure, "rank ", waited, " (pid ",
                      pidOf(waited).load(std::memory_order_relaxed),
                      ") exited before reaching shared-memory stage ", value);
  }
  if (!deadline.expired()) return Status::ok();
  std::string late;
  for (int x = 0; x < size_; ++x) {
    if (counter(x, c).load(std::memory_order_acquire) >= value) continue;
    late += strCat(late.empty() ? "" : ", ", x);
  }
  unlinkSegment();
  return WEFT_ERROR(StatusCode::kTimeout, "shared-memory stage ", value, ": ranks ", late,
                    " did not reach '", counterName(c), "' before the deadline");
}

std::atomic<int32_t>& ShmComm::pidOf(int r) const {
  std::byte* at = base_ + static_cast<size_t>(r) * 3 * kLine + kLine / 2 + 16;
  return *reinterpret_cast<std::atomic<int32_t>*>(at);
}

std::atomic<uint64_t>& ShmComm::pidNamespaceOf(int r) const {
  std::byte* at = base_ + static_cast<size_t>(r) * 3 * kLine + kLine / 2 + 24;
  return *reinterpret_cast<std::atomic<uint64_t>*>(at);
}

bool ShmComm::alive(int r) const {
  const int32_t pid = pidOf(r).load(std::memory_order_acquire);
  // Only a peer in this PID namespace can be looked up by its pid.
  if (pid <= 0 || pidNamespaceOf(r).load(std::memory_order_acquire) != pidNamespace()) {
    return true;
  }
  return kill(pid, 0) == 0 || errno != ESRCH;
}

Status ShmComm::waitSlotFree(uint64_t stage, ShmDeadline& deadline) {
  if (stage < kSlots) return Status::ok();
  const uint64_t need = stage + 1 - kSlots;
  for (int j = 0; j < size_; ++j) {
    if (j == rank_ || known_done_[static_cast<size_t>(j)] >= need) continue;
    WEFT_RETURN_IF_ERROR(waitAll(kDone, need, false, deadline, j));
    known_done_[static_cast<size_t>(j)] = std::max(
        known_done_[static_cast<size_t>(j)], counter(j, kDone).load(std::memory_order_acquire));
  }
  return Status::ok();
}

void ShmComm::unlinkSegment() {
  if (rank_ != 0 || name_.empty()) return;
  shm_unlink(name_.c_str());
  name_.clear();
}

void ShmComm::finishCall() {
  if (rank_ != 0 || name_.empty()) return;
  // A rank stores its pid right after mapping the segment, before it publishes anything:
  // once every pid is there nobody needs the name any more.
  for (int j = 1; j < size_; ++j) {
    if (pidOf(j).load(std::memory_order_acquire) == 0) return;  // not attached yet
  }
  unlinkSegment();
}

Status ShmComm::barrier(ShmDeadline& deadline) {
  const uint64_t k = stage_++;
  publish(kPosted, k + 1);
  WEFT_RETURN_IF_ERROR(waitAll(kPosted, k + 1, true, deadline));
  publish(kDone, k + 1);
  finishCall();
  return Status::ok();
}

Status ShmComm::reduceInline(const std::byte* in, std::byte* out, size_t count,
                             const Reducer& reducer, int root, ShmDeadline& deadline) {
  const uint64_t k = stage_++;
  WEFT_RETURN_IF_ERROR(waitSlotFree(k, deadline));
  InlineLine& mine = inlineLine(rank_, k);
  std::memcpy(mine.data, in, count * reducer.elementSize());
  mine.seq.store(k + 1, std::memory_order_release);
  publish(kPosted, k + 1);  // for sleepers, timeouts and the liveness check
  if (root < 0 || rank_ == root) {
    WEFT_RETURN_IF_ERROR(
        waitEach([&](int j) -> const std::atomic<uint64_t>& { return inlineLine(j, k).seq; },
                 kPosted, k + 1, true, deadline, -1));
    // This rank's term comes from its input, not its line: peers polling that line take it
    // away, and reading it back would cost a transfer. In place, the input is overwritten
    // by the first step, so ranks past the first two read their line after all.
    const std::byte* own = in == out && rank_ >= 2 ? mine.data : in;
    auto term = [&](int j) { return j == rank_ ? own : inlineLine(j, k).data; };
    reducer.reduce(out, term(0), term(1), count);
    for (int j = 2; j < size_; ++j) reducer.reduce(out, term(j), count);
    if (reducer.needsFinalize()) reducer.finalize(out, count, static_cast<size_t>(size_));
  }
  publish(kDone, k + 1);
  return Status::ok();
}

Status ShmComm::reduceSmall(const std::byte* in, std::byte* out, size_t count,
                            const Reducer& reducer, int root, ShmDeadline& deadline) {
  const size_t bytes = count * reducer.elementSize();
  if (bytes <= kInlineBytes) return reduceInline(in, out, count, reducer, root, deadline);
  const uint64_t k = stage_++;
  WEFT_RETURN_IF_ERROR(waitSlotFree(k, deadline));
  std::memcpy(inSlot(rank_, k), in, bytes);
  publish(kPosted, k + 1);
  if (root < 0 || rank_ == root) {
    WEFT_RETURN_IF_ERROR(waitAll(kPosted, k + 1, true, deadline));
    reducer.reduce(out, inSlot(0, k), inSlot(1, k), count);
    for (int j = 2; j < size_; ++j) reducer.reduce(out, inSlot(j, k), count);
    if (reducer.needsFinalize()) reducer.finalize(out, count, static_cast<size_t>(size_));
  }
  publish(kDone, k + 1);
  return Status::ok();
}

Status ShmComm::reduceStage(const Parts& p, const Reducer& reducer, Collect collect, int root,
                            ShmDeadline& deadline) {
  const uint64_t k = stage_++;
  WEFT_RETURN_IF_ERROR(waitSlotFree(k, deadline));
  std::byte* mine = inSlot(rank_, k);
  for (int j = 0; j < size_; ++j) {
    if (j != rank_ && p.len(j) != 0) {
      std::memcpy(mine + static_cast<size_t>(j) * p.q * p.es,
                  p.in + static_cast<size_t>(j) * p.in_step, p.len(j) * p.es);
    }
  }
  publish(kPosted, k + 1);
  WEFT_RETURN_IF_ERROR(waitAll(kPosted, k + 1, true, deadline));
  const size_t n = p.len(rank_);
  const size_t at = static_cast<size_t>(rank_) * p.q * p.es;
  // When parts travel to other ranks, the result is built in this rank's output slot (cache)
  // and streamed from there to the users' buffers.
  std::byte* acc = collect == Collect::kOwnPart ? p.out + static_cast<size_t>(rank_) * p.out_step
                                                : outSlot(rank_, k) + at;
  // This rank also wants its own part (allreduce, reduce at the root) and the output is not
  // streamed: reduce block by block into the user's output and copy each block, still in
  // cache, to the slot the others read (the copy-out then skips the own part).
  const bool own_direct = collect != Collect::kOwnPart && !p.stream &&
                          (collect == Collect::kEveryone || rank_ == root);
  if (own_direct && n != 0) {
    std::byte* user = p.out + static_cast<size_t>(rank_) * p.out_step;
    const std::byte* own_in = p.in + static_cast<size_t>(rank_) * p.in_step;
    const size_t block = std::max<size_t>(1, kDirectBlockBytes / p.es);
    for (size_t b0 = 0; b0 < n; b0 += block) {
      const size_t m = std::min(block, n - b0);
      const size_t off = b0 * p.es;
      const std::byte* a = own_in + off;
      for (int j = 0; j < size_; ++j) {
        if (j == rank_) continue;
        reducer.reduce(user + off, a, inSlot(j, k) + at + off, m);
        a = user + off;
      }
      if (reducer.needsFinalize()) reducer.finalize(user + off, m, static_cast<size_t>(size_));
      std::memcpy(acc + off, user + off, m * p.es);
    }
  } else if (n != 0) {
    const std::byte* a = p.in + static_cast<size_t>(rank_) * p.in_step;
    for (int j = 0; j < size_; ++j) {
      if (j == rank_) continue;
      reducer.reduce(acc, a, inSlot(j, k) + at, n);
      a = acc;
    }
    if (reducer.needsFinalize()) reducer.finalize(acc, n, static_cast<size_t>(size_));
  }
  if (collect != Collect::kOwnPart) {
    publish(kReduced, k + 1);
    if (collect == Collect::kEveryone || rank_ == root) {
      for (int j = 0; j < size_; ++j) {
        if (p.len(j) == 0 || (j == rank_ && own_direct)) continue;
        if (j != rank_) WEFT_RETURN_IF_ERROR(waitAll(kReduced, k + 1, false, deadline, j));
        copyOut(p.out + static_cast<size_t>(j) * p.out_step,
                outSlot(j, k) + static_cast<size_t>(j) * p.q * p.es, p.len(j) * p.es, p.stream);
      }
    }
  }
  publish(kDone, k + 1);
  return Status::ok();
}

Status ShmComm::reduceLarge(const std::byte* in, std::byte* out, size_t count,
                            const Reducer& reducer, Collect collect, int root,
                            ShmDeadline& deadline) {
  const size_t es = reducer.elementSize();
  const size_t perStage = chunk_ / es;
  const size_t align = std::max<size_t>(1, 64 / es);
  const bool stream = count * es >= kStreamBytes;
  const bool has_out = collect == Collect::kEveryone || rank_ == root;
  for (size_t e0 = 0; e0 < count; e0 += perStage) {
    const size_t n = std::min(perStage, count - e0);
    const size_t q = roundUp((n + size_ - 1) / static_cast<size_t>(size_), align);
    const Parts parts{in + e0 * es, q * es, has_out ? out + e0 * es : nullptr, q * es, q, n,
                      es,           stream};
    WEFT_RETURN_IF_ERROR(reduceStage(parts, reducer, collect, root, deadline));
  }
  return Status::ok();
}

Status ShmComm::allreduce(const std::byte* in, std::byte* out, size_t count, const Reducer& reducer,
                          ShmDeadline& deadline) {
  if (count * reducer.elementSize() <= std::min(kSmallBytes, chunk_)) {
    WEFT_RETURN_IF_ERROR(reduceSmall(in, out, count, reducer, -1, deadline));
  } else {
    WEFT_RETURN_IF_ERROR(reduceLarge(in, out, count, reducer, Collect::kEveryone, -1, deadline));
  }
  finishCall();
  return Status::ok();
}

Status ShmComm::reduce(const std::byte* in, std::byte* out, size_t count, const Reducer& reducer,
                       int root, ShmDeadline& deadline) {
  if (count * reducer.elementSize() <= std::min(kSmallBytes, chunk_)) {
    WEFT_RETURN_IF_ERROR(reduceSmall(in, out, count, reducer, root, deadline));
  } else {
    WEFT_RETURN_IF_ERROR(reduceLarge(in, out, count, reducer, Collect::kRoot, root, deadline));
  }
  finishCall();
  return Status::ok();
}

Status ShmComm::reduceScatter(const std::byte* in, std::byte* out, size_t count,
                              const Reducer& reducer, ShmDeadline& deadline) {
  const size_t es = reducer.elementSize();
  const size_t perStage = std::max<size_t>(1, chunk_ / es / static_cast<size_t>(size_));
  for (size_t e0 = 0; e0 < count; e0 += perStage) {
    const size_t m = std::min(perStage, count - e0);
    // Part j is block j's elements [e0, e0 + m); this rank's result lands at out + e0.
    const Parts parts{in + e0 * es, count * es, out + e0 * es, 0, m, m * static_cast<size_t>(size_),
                      es,           false};
    WEFT_RETURN_IF_ERROR(reduceStage(parts, reducer, Collect::kOwnPart, -1, deadline));
  }
  finishCall();
  return Status::ok();
}

Status ShmComm::alltoall(const std::byte* in, std::byte* out, size_t count, size_t es,
                         ShmDeadline& deadline) {
  const auto p = static_cast<size_t>(size_);
  const auto r = static_cast<size_t>(rank_);
  const size_t perStage = std::max<size_t>(1, chunk_ / es / p);
  const size_t block = count * es;
  for (size_t e0 = 0; e0 < count; e0 += perStage) {
    const size_t bytes = std::min(perStage, count - e0) * es;
    const size_t part = perStage * es;  // slot layout: part j for rank j
    const uint64_t k = stage_++;
    WEFT_RETURN_IF_ERROR(waitSlotFree(k, deadline));
    for (size_t j = 0; j < p; ++j) {
      if (j != r) std::memcpy(inSlot(rank_, k) + j * part, in + j * block + e0 * es, bytes);
    }
    publish(kPosted, k + 1);
    if (in != out) std::memcpy(out + r * block + e0 * es, in + r * block + e0 * es, bytes);
    for (int j = 0; j < size_; ++j) {
      if (j == rank_) continue;
      WEFT_RETURN_IF_ERROR(waitAll(kPosted, k + 1, false, deadline, j));
      std::memcpy(out + static_cast<size_t>(j) * block + e0 * es, inSlot(j, k) + r * part, bytes);
    }
    publish(kDone, k + 1);
  }
  finishCall();
  return Status::ok();
}

Status ShmComm::broadcast(std::byte* buf, size_t count, size_t es, int root,
                          ShmDeadline& deadline) {
  const size_t perStage = chunk_ / es;
  for (size_t e0 = 0; e0 < count; e0 += perStage) {
    const size_t bytes = std::min(perStage, count - e0) * es;
    const uint64_t k = stage_++;
    if (rank_ == root) {
      WEFT_RETURN_IF_ERROR(waitSlotFree(k, deadline));
      std::memcpy(inSlot(rank_, k), buf + e0 * es, bytes);
      publish(kPosted, k + 1);
    } else {
      WEFT_RETURN_IF_ERROR(waitAll(kPosted, k + 1, false, deadline, root));
      std::memcpy(buf + e0 * es, inSlot(root, k), bytes);
    }
    publish(kDone, k + 1);
  }
  finishCall();
  return Status::ok();
}

Status ShmComm::gather(const std::byte* in, std::byte* out, const Blocks& blocks, size_t es,
                       int root, ShmDeadline& deadline) {
  const size_t perStage = chunk_ / es;
  const bool receiver = root < 0 || rank_ == root;
  for (size_t e0 = 0; e0 < blocks.longest(size_); e0 += perStage) {
    auto len = [&](int j) { return blocks.stageBytes(j, e0, perStage, es); };
    auto at = [&](int j) { return out + (blocks.displ(j) + e0) * es; };
    const uint64_t k = stage_++;
    if (root < 0 || rank_ != root) {
      WEFT_RETURN_IF_ERROR(waitSlotFree(k, deadline));
      if (len(rank_) != 0) std::memcpy(inSlot(rank_, k), in + e0 * es, len(rank_));
      publish(kPosted, k + 1);
    }
    if (receiver) {
      if (len(rank_) != 0 && at(rank_) != in + e0 * es) {
        std::memcpy(at(rank_), in + e0 * es, len(rank_));
      }
      for (int j = 0; j < size_; ++j) {
        if (j == rank_ || j == root) continue;
        WEFT_RETURN_IF_ERROR(waitAll(kPosted, k + 1, false, deadline, j));
        if (len(j) != 0) std::memcpy(at(j), inSlot(j, k), len(j));
      }
    }
    publish(kDone, k + 1);
  }
  finishCall();
  return Status::ok();
}

Status ShmComm::scatter(const std::byte* in, std::byte* out, const Blocks& blocks, size_t es,
                        int root, ShmDeadline& deadline) {
  const auto p = static_cast<size_t>(size_);
  const size_t perStage = std::max<size_t>(1, chunk_ / es / p);
  const size_t part = perStage * es;  // slot layout: part j for rank j
  for (size_t e0 = 0; e0 < blocks.longest(size_); e0 += perStage) {
    auto len = [&](int j) { return blocks.stageBytes(j, e0, perStage, es); };
    auto from = [&](int j) { return in + (blocks.displ(j) + e0) * es; };
    const uint64_t k = stage_++;
    if (rank_ == root) {
      WEFT_RETURN_IF_ERROR(waitSlotFree(k, deadline));
      for (int j = 0; j < size_; ++j) {
        if (j != root && len(j) != 0) {
          std::memcpy(inSlot(rank_, k) + static_cast<size_t>(j) * part, from(j), len(j));
        }
      }
      publish(kPosted, k + 1);
      if (len(root) != 0 && from(root) != out + e0 * es) {
        std::memcpy(out + e0 * es, from(root), len(root));
      }
    } else {
      WEFT_RETURN_IF_ERROR(waitAll(kPosted, k + 1, false, deadline, root));
      if (len(rank_) != 0) {
        std::memcpy(out + e0 * es, inSlot(root, k) + static_cast<size_t>(rank_) * part, len(rank_));
      }
    }
    publish(kDone, k + 1);
  }
  finishCall();
  return Status::ok();
}

}  // namespace weft::coll::detail
