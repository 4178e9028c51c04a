#include "paramserver/server/admission.h"

#include <algorithm>
#include <limits>

#include "paramserver/util/hash.h"

namespace weft::ps {

CountMinSketch::CountMinSketch(uint32_t width, uint32_t depth)
    : width_(width), depth_(depth), counters_(new std::atomic<uint32_t>[size_t{width} * depth]) {
  for (size_t i = 0; i < size_t{width_} * depth_; ++i) {
    counters_[i].store(0, std::memory_order_relaxed);
  }
}

size_t CountMinSketch::cell(uint32_t row, uint64_t key) const {
  const uint64_t h = hashKey(key, kSketchSeed + row);
  return size_t{row} * width_ + (h & (width_ - 1));
}

uint32_t CountMinSketch::add(uint64_t key) {
  uint32_t estimate = std::numeric_limits<uint32_t>::max();
  for (uint32_t r = 0; r < depth_; ++r) {
    std::atomic<uint32_t>& c = counters_[cell(r, key)];
    uint32_t old = c.load(std::memory_order_relaxed);
    while (old != std::numeric_limits<uint32_t>::max() &&
           !c.compare_exchange_weak(old, old + 1, std::memory_order_relaxed)) {
    }
    const uint32_t now = old == std::numeric_limits<uint32_t>::max() ? old : old + 1;
    estimate = std::min(estimate, now);
  }
  return estimate;
}

uint32_t CountMinSketch::estimate(uint64_t key) const {
  uint32_t estimate = std::numeric_limits<uint32_t>::max();
  for (uint32_t r = 0; r < depth_; ++r) {
    estimate = std::min(estimate, counters_[cell(r, key)].load(std::memory_order_relaxed));
  }
  return estimate;
}

}  // namespace weft::ps
