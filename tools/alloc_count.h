// Heap-allocation counter for hot-path checks: a binary that links weft_alloc_count
// interposes malloc and friends (alloc_count.cc) and counts the calls a thread makes while
// counting is on: ours, UCX's and libstdc++'s alike. Used by weft-perf (allocations in its
// timed loops) and by the hot-path tests of the transport and the collectives.
//
// Growth of UCX's own memory pools (an allocation made inside ucs_mpool_grow) is counted
// apart as well: UCX keeps descriptors for messages that arrive before their receive is
// posted and grows that pool when the backlog reaches a new high-water mark, which depends
// on how ranks interleave — amortized growth, not per-call work.
//
// Contract: per thread, no locks; start/stop on the thread that runs the loop. Under
// ASan / TSan (which own malloc) nothing is interposed and allocCountAvailable() is false.
#pragma once

#include <cstdint>

namespace weft::alloc {

struct AllocCount {
  uint64_t total = 0;             // every counted allocation
  uint64_t ucx_pool_growths = 0;  // of which made inside ucs_mpool_grow
  // Return addresses of the first allocation that was not a UCX pool growth.
  void* first_stack[32] = {};
  int first_depth = 0;
  uint64_t outsideUcxPools() const { return total - ucx_pool_growths; }
};

bool allocCountAvailable();
// Counts this thread's allocations from now on (loads the unwinder first, so that taking a
// stack inside malloc does not allocate).
void startAllocCount();
// Stops counting; returns what was counted since startAllocCount().
AllocCount stopAllocCount();
// Prints the first allocation's stack (outside UCX pools) to stderr; nothing if there is none.
void printFirstAllocation(const AllocCount& count);

}  // namespace weft::alloc
