#include "paramserver/server/clock_tracker.h"

#include <algorithm>

namespace weft::ps {

ClockTracker::ClockTracker(const ConsistencySpec& spec)
    : spec_(spec), clocks_(std::max<uint32_t>(spec.num_workers, 1), 0) {}

uint32_t ClockTracker::minLocked() const {
  return *std::min_element(clocks_.begin(), clocks_.end());
}

Status ClockTracker::finish(uint32_t worker, uint32_t clock, uint32_t* min_clock) {
  if (spec_.num_workers > 0 && worker >= spec_.num_workers) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "clock report from worker ", worker,
                      ", but the table has ", spec_.num_workers, " workers (0..",
                      spec_.num_workers - 1, ")");
  }
  if (clock == UINT32_MAX) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "clock ", clock, " is out of range");
  }
  std::lock_guard<std::mutex> lock(mu_);
  uint32_t& mine = clocks_[spec_.num_workers > 0 ? worker : 0];
  mine = std::max(mine, clock + 1);
  if (min_clock != nullptr) *min_clock = minLocked();
  return Status::ok();
}

uint32_t ClockTracker::minClock() const {
  std::lock_guard<std::mutex> lock(mu_);
  return minLocked();
}

uint32_t ClockTracker::workerClock(uint32_t worker) const {
  std::lock_guard<std::mutex> lock(mu_);
  return worker < clocks_.size() ? clocks_[worker] : 0;
}

uint32_t ClockTracker::requiredMinClock(uint32_t clock) const {
  switch (spec_.model) {
    case ConsistencyModel::kAsp: return 0;
    case ConsistencyModel::kBsp: return clock;
    case ConsistencyModel::kSsp: return clock > spec_.staleness ? clock - spec_.staleness : 0;
  }
  return 0;
}

bool ClockTracker::canRead(uint32_t clock) const {
  const uint32_t need = requiredMinClock(clock);
  return need == 0 || minClock() >= need;
}

ReadWait ClockTracker::readWait(uint32_t clock) const {
  ReadWait wait;
  wait.need_min_clock = requiredMinClock(clock);
  std::lock_guard<std::mutex> lock(mu_);
  for (uint32_t w = 0; w < clocks_.size(); ++w) {
    if (clocks_[w] < wait.need_min_clock) wait.lagging.push_back(w);
  }
  wait.ready = wait.lagging.empty();
  return wait;
}

std::vector<uint32_t> ClockTracker::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return clocks_;
}

Status ClockTracker::restore(const std::vector<uint32_t>& clocks) {
  std::lock_guard<std::mutex> lock(mu_);
  if (clocks.size() != clocks_.size()) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "clock snapshot has ", clocks.size(),
                      " entries, the table tracks ", clocks_.size());
  }
  clocks_ = clocks;
  return Status::ok();
}

Status ClockTracker::raise(const std::vector<uint32_t>& clocks, uint32_t* min_clock) {
  std::lock_guard<std::mutex> lock(mu_);
  if (clocks.size() != clocks_.size()) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "clock snapshot has ", clocks.size(),
                      " entries, the table tracks ", clocks_.size());
  }
  for (size_t i = 0; i < clocks.size(); ++i) clocks_[i] = std::max(clocks_[i], clocks[i]);
  if (min_clock != nullptr) *min_clock = minLocked();
  return Status::ok();
}

}  // namespace weft::ps
