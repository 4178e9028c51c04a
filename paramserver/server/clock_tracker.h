// ClockTracker: the consistency bookkeeping of one table (pure logic, no waiting).
//
// Each of num_workers workers reports when it finished a clock (iteration); its clock is
// then the number of clocks it finished. A pull issued at clock c (the worker is working
// on iteration c) must see every update pushed during clocks < c - s, where
//   BSP: s = 0      SSP(s): s = staleness      ASP: no requirement
// so it is readable when minClock() >= c - s. When it is not, readWait() tells what it
// must wait for: the table reaching that min clock, and which workers lag behind.
// A table without workers (num_workers 0, ASP) keeps one table clock, advanced by
// any report, used for eviction.
//
// Contract: thread-safe (one mutex); never blocks. Worker indexes are [0, num_workers).
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include "common/status.h"
#include "paramserver/table_spec.h"

namespace weft::ps {

struct ReadWait {
  bool ready = true;
  uint32_t need_min_clock = 0;    // the min clock the table must reach
  std::vector<uint32_t> lagging;  // workers whose clock is below need_min_clock
};

class ClockTracker {
 public:
  explicit ClockTracker(const ConsistencySpec& spec);

  // Worker `worker` finished clock `clock`: its clock becomes max(old, clock + 1).
  // Returns the table's min clock afterwards. kInvalidArgument for a bad worker index.
  Status finish(uint32_t worker, uint32_t clock, uint32_t* min_clock);
  // The slowest worker's clock (the table clock when there are no workers).
  uint32_t minClock() const;
  uint32_t workerClock(uint32_t worker) const;
  // Whether a pull at `clock` may be served now.
  bool canRead(uint32_t clock) const;
  // What a pull at `clock` must wait for (ready == canRead(clock)).
  ReadWait readWait(uint32_t clock) const;
  // The min clock a pull at `clock` needs (0: none).
  uint32_t requiredMinClock(uint32_t clock) const;

  // Checkpoint support: every worker's clock (one entry, the table clock, without workers).
  std::vector<uint32_t> snapshot() const;
  Status restore(const std::vector<uint32_t>& clocks);
  // Rows handed over by a shard-map change: every clock becomes max(own, snapshot's), so
  // reports the previous owner received count here too. Sets *min_clock (may be null).
  Status raise(const std::vector<uint32_t>& clocks, uint32_t* min_clock);

 private:
  uint32_t minLocked() const;

  const ConsistencySpec spec_;
  mutable std::mutex mu_;
  std::vector<uint32_t> clocks_;
};

}  // namespace weft::ps
