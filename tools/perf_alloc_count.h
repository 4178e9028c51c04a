// Heap-allocation counter for weft-perf's timed phases: the binary interposes malloc and
// friends (perf_alloc_count.cc) and counts the calls a thread makes while counting is on,
// so weft-perf reports how many allocations its timed loops made (ours and UCX's alike).
//
// Contract: per thread, no locks; start/stop on the thread that runs the loop. Under
// ASan / TSan (which own malloc) nothing is interposed and available() is false.
#pragma once

#include <cstdint>

namespace weft::perf {

bool allocCountAvailable();
// Counts this thread's allocations from now on.
void startAllocCount();
// Stops counting; returns the allocations since startAllocCount().
uint64_t stopAllocCount();

}  // namespace weft::perf
