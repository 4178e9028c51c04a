// ShmComm: collectives through one shared-memory segment, for communicators whose ranks all
// live on one node. Internal to collectives/ (CommCore picks it, see comm/shm_ops.cc).
//
// Segment: created by communicator rank 0 (shm_open + ftruncate + mmap with MAP_POPULATE; its
// name travels through the communicator's store under "shm/name"), attached by the others at
// the first call, and unlinked by rank 0 once every rank has mapped it (at the end of the first
// call), or when a call fails (dead peer, timeout), so nothing is left in /dev/shm while the
// job runs. Its name carries random bits: a segment that a crashed job left behind never
// collides with a new one (pid reuse, other pid namespaces). It holds, per rank, three
// progress counters (own cache lines), kSlots inline slots (one cache line each, for tiny
// reductions) and kSlots input and output slots of `chunk` bytes.
//
// Protocol. Every call is cut into stages of at most `chunk` bytes; stages are numbered
// globally (the same on all ranks, since every rank makes the same calls in the same order)
// and stage k uses slot k % kSlots. A rank may write its slots for stage k once every rank has
// finished stage k - kSlots ("done" counters). Counters only grow (release stores, acquire
// loads), so no reset between calls is needed.
//  - allreduce, large: rank r copies the parts of its input that the other ranks reduce into its
//    input slot ("posted"), reduces its own part from its input and the others' slots into
//    its output slot ("reduced"), then copies the other ranks' reduced parts into its output
//    ("done"; non-temporal stores from kStreamBytes on). Below kStreamBytes the own part is
//    reduced into the user's output in blocks, each copied on to the output slot while still
//    in cache, so that a rank's output slot is read only by the others, not by its owner at
//    the same time (2 ranks, 1 MiB f32: +10-20 % algbw when the two vCPUs share a cache,
//    +75-85 % when they do not); from kStreamBytes on it goes through the slot and is
//    streamed out like the others. Per rank, the user buffers are read and written once;
//    the peers' data passes through cache-sized slots.
//  - allreduce, small (<= kSmallBytes): every rank posts its whole input and reduces all
//    inputs itself, in rank order (bit-identical on every rank): one synchronisation. Up to
//    kInlineBytes, the input goes into an inline slot, a cache line holding the data and the
//    stage number written after it (x86 stores become visible in order), so a waiter gets
//    the data with the line it polls; "posted" is published too (sleepers, errors).
//  - reduce_scatter: as the large allreduce without the copy back; reduce: as the allreduce
//    with only the root copying back (small: only the root reduces); allgather / gather /
//    broadcast / scatter / alltoall: post (scatter, alltoall: the block of every other rank),
//    then the ranks that want the data copy it out.
//  - barrier: one stage without data.
// Results are bit-identical on all ranks (each element is reduced by one rank, or by all in
// the same order). kAvg is finalized by the rank that reduces.
//
// A waiter also checks now and then that the rank it waits for is still alive (its pid, when
// it runs in the same PID namespace): a dead rank fails the call with kPeerFailure naming it.
// Waiting spins (PAUSE) briefly, then yields the CPU, calling `idle` (the engine's progress)
// now and then. When the node has fewer CPUs than the communicator has ranks, a waiter yields
// a few times and then sleeps on a futex on the counter it waits for (publishers wake the
// sleepers), so that the ranks with work get the CPUs. Deadlines: an
// expired deadline fails the call with kTimeout naming the stage and the ranks that had not
// arrived; the segment is then unusable (the communicator's error is sticky anyway).
//
// No allocation and no page faults after the segment exists (it is pre-faulted).
// Threads: one thread at a time (the communicator's).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "collectives/reduce/reducer.h"
#include "common/deadline.h"
#include "common/result.h"
#include "common/store/store.h"

namespace weft::coll::detail {

// A call's deadline: a fixed one, or `timeout` from the first wait that checks it, so that a
// call completing within the spin phase never reads the clock (small calls feel the read);
// the lazy form starts at most one spin phase (microseconds) late.
class ShmDeadline {
 public:
  ShmDeadline(Deadline at) : at_(at) {}  // NOLINT(google-explicit-constructor): fixed
  static ShmDeadline lazy(std::chrono::nanoseconds timeout) {
    ShmDeadline d(Deadline::never());
    d.lazy_ = timeout;
    return d;
  }
  // The deadline, fixed from the first call on.
  Deadline get() {
    if (lazy_.count() >= 0) {
      at_ = Deadline::after(lazy_);
      lazy_ = std::chrono::nanoseconds(-1);
    }
    return at_;
  }
  bool expired() { return get().expired(); }

 private:
  Deadline at_;
  std::chrono::nanoseconds lazy_{-1};
};

class ShmComm {
 public:
  static constexpr uint32_t kSlots = 4;
  static constexpr size_t kSmallBytes = 8192;
  // Reductions of up to this many bytes travel inline: data and stage number in one cache
  // line per rank and slot, so a peer's data arrives with the line it polls.
  static constexpr size_t kInlineBytes = 56;
  // Allreduce calls from this size on stream their output (non-temporal stores): the buffer
  // exceeds the caches, so it is written to memory anyway.
  static constexpr size_t kStreamBytes = size_t{4} << 20;
  // Below kStreamBytes, a rank reduces its own part into its output in blocks of this size
  // and copies each block (from cache) to its output slot for the others. Measured (2 ranks,
  // f32, 256 KiB - 2 MiB, algbw): 4 KiB < 8 KiB < 16 KiB < 32 KiB < 64 KiB ~ whole part.
  static constexpr size_t kDirectBlockBytes = 65536;

  // Collective over the communicator's ranks (all on this node). chunk: bytes per stage.
  static Result<std::unique_ptr<ShmComm>> create(Store& store, int rank, int size, size_t chunk,
                                                 uint64_t comm_id, Deadline deadline);
  ~ShmComm();
  ShmComm(const ShmComm&) = delete;
  ShmComm& operator=(const ShmComm&) = delete;

  void setIdle(std::function<void()> idle) { idle_ = std::move(idle); }
  // After a kPeerFailure: the communicator rank that exited (-1 if none).
  int failedRank() const { return failed_rank_; }

  Status barrier(ShmDeadline& deadline);
  // count elements of reducer's type; in == out allowed (in place).
  Status allreduce(const std::byte* in, std::byte* out, size_t count, const Reducer& reducer,
                   ShmDeadline& deadline);
  // in: size * count elements; out: block `rank` of the reduction (count elements).
  Status reduceScatter(const std::byte* in, std::byte* out, size_t count, const Reducer& reducer,
                       ShmDeadline& deadline);
  // in, out: size * count elements; block j of in goes to rank j (in == out allowed).
  Status alltoall(const std::byte* in, std::byte* out, size_t count, size_t elem_size,
                  ShmDeadline& deadline);
  // buf: count elements, input at the root.
  Status broadcast(std::byte* buf, size_t count, size_t elem_size, int root, ShmDeadline& deadline);
  // count elements; out is used at the root only (in == out allowed there).
  Status reduce(const std::byte* in, std::byte* out, size_t count, const Reducer& reducer, int root,
                ShmDeadline& deadline);
  // The blocks of a gather / scatter: block j has count(j) elements at element displ(j) of
  // the root's (allgather: every rank's) buffer. Uniform blocks of `uniform` elements unless
  // counts / displs (one entry per rank, outliving the call) are given (the v-variants).
  struct Blocks {
    size_t uniform = 0;
    const size_t* counts = nullptr;
    const size_t* displs = nullptr;
    size_t count(int j) const { return counts != nullptr ? counts[j] : uniform; }
    size_t displ(int j) const {
      return displs != nullptr ? displs[j] : static_cast<size_t>(j) * uniform;
    }
    size_t longest(int ranks) const {
      size_t n = 0;
      for (int j = 0; j < ranks; ++j) n = std::max(n, count(j));
      return n;
    }
    // Bytes of block j in the stage that moves elements [e0, e0 + per).
    size_t stageBytes(int j, size_t e0, size_t per, size_t elem_size) const {
      const size_t n = count(j);
      return e0 < n ? std::min(per, n - e0) * elem_size : 0;
    }
  };
  // in: this rank's block (count(rank) elements); out: the blocks, at the root (root >= 0)
  // or at every rank (root < 0: allgather). in == out + displ(rank) allowed.
  Status gather(const std::byte* in, std::byte* out, const Blocks& blocks, size_t elem_size,
                int root, ShmDeadline& deadline);
  // in (root only): the blocks; out: this rank's block (count(rank) elements).
  // out == in + displ(root) allowed at the root.
  Status scatter(const std::byte* in, std::byte* out, const Blocks& blocks, size_t elem_size,
                 int root, ShmDeadline& deadline);

 private:
  enum Counter : uint32_t { kPosted = 0, kReduced = 1, kDone = 2 };
  struct Parts;
  // One inline slot: the stage number (+1) written after the data.
  struct InlineLine {
    std::atomic<uint64_t> seq;
    std::byte data[kInlineBytes];
  };
  static_assert(sizeof(InlineLine) == 64);
  // The counter lines and the inline slots (kSlots per rank) before the data slots.
  static size_t controlBytes(int size);
  InlineLine& inlineLine(int r, uint64_t stage) const;
  ShmComm(int rank, int size, size_t chunk, std::byte* base, size_t bytes, std::string name);

  std::atomic<uint64_t>& counter(int r, Counter c) const;
  // Each rank's pid and PID namespace (for the liveness check).
  std::atomic<int32_t>& pidOf(int r) const;
  std::atomic<uint64_t>& pidNamespaceOf(int r) const;
  bool alive(int r) const;
  // Engine progress, peer liveness (every 16th call) and the deadline, while waiting.
  Status slowChecks(Counter c, uint64_t value, int waited, ShmDeadline& deadline, uint32_t checks);
  // Ranks sleeping on counter c of rank r (oversubscribed nodes only).
  std::atomic<uint32_t>& sleepers(int r, Counter c) const;
  // Sleeps on rank r's counter c (futex, 2 ms at most) unless it is already >= below.
  void sleepWhile(int r, Counter c, uint64_t below);
  std::byte* inSlot(int r, uint64_t stage) const;
  std::byte* outSlot(int r, uint64_t stage) const;
  void publish(Counter c, uint64_t value);
  // Waits until every rank (but this one when skip_self; only rank `only` when >= 0) has
  // counter c >= value.
  Status waitAll(Counter c, uint64_t value, bool skip_self, ShmDeadline& deadline, int only = -1);
  // waitAll on the word word_of(j) of each rank j; c names the stage's counter in errors
  // and is the one sleepers wait on (published after the word).
  template <typename WordOf>
  Status waitEach(WordOf word_of, Counter c, uint64_t value, bool skip_self, ShmDeadline& deadline,
                  int only);
  Status waitSlotFree(uint64_t stage, ShmDeadline& deadline);
  // Where the reduced parts of a stage go: each rank's own part to its output
  // (reduce_scatter), every part to every rank (allreduce), or every part to one root (reduce).
  enum class Collect { kOwnPart, kEveryone, kRoot };
  // Every rank posts its whole input; the ranks that want the result (all, or only `root`
  // when >= 0) reduce all inputs in rank order.
  Status reduceSmall(const std::byte* in, std::byte* out, size_t count, const Reducer& reducer,
                     int root, ShmDeadline& deadline);
  // reduceSmall for up to kInlineBytes: through the inline slots.
  Status reduceInline(const std::byte* in, std::byte* out, size_t count, const Reducer& reducer,
                      int root, ShmDeadline& deadline);
  // One stage of the large allreduce / reduce / reduce_scatter (see Parts in the .cc).
  Status reduceStage(const Parts& parts, const Reducer& reducer, Collect collect, int root,
                     ShmDeadline& deadline);
  // Large allreduce / reduce: stages over the whole count.
  Status reduceLarge(const std::byte* in, std::byte* out, size_t count, const Reducer& reducer,
                     Collect collect, int root, ShmDeadline& deadline);
  void finishCall();
  // Rank 0: removes the segment's name now (a failed call: the communicator is broken, and
  // a process that exits without its destructor would leave it in /dev/shm).
  void unlinkSegment();

  int rank_;
  int size_;
  size_t chunk_;
  std::byte* base_;
  size_t bytes_;
  std::string name_;  // unlinked once every rank attached ("" then)
  bool oversubscribed_;
  uint64_t stage_ = 0;  // stages run so far (same on every rank)
  int failed_rank_ = -1;
  // The highest "done" counter seen of each rank, or implied by any of its counters seen
  // (see waitEach): a slot is known to be free without reading the peers' "done" lines
  // (one cache-line transfer less per small call).
  std::unique_ptr<uint64_t[]> known_done_;
  std::function<void()> idle_;
};

}  // namespace weft::coll::detail
