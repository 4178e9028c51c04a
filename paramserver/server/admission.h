// CountMinSketch: approximate per-key counts in fixed memory, for feature admission.
//
// depth rows of width counters; a key increments one counter per row (each row with its
// own hash) and its estimate is the minimum of those counters. Estimates never undercount;
// they overcount by at most e*N/width with probability 1 - exp(-depth) (N: total count).
// So with admission threshold T, a key seen T times is always admitted, and a rare key may
// be admitted early only through collisions.
//
// Contract: thread-safe (relaxed atomic counters); counters saturate at 2^32-1.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace weft::ps {

class CountMinSketch {
 public:
  // width: a power of two; depth: 1..16 (validated by validateTableSpec).
  CountMinSketch(uint32_t width, uint32_t depth);

  // Counts one occurrence and returns the new estimate.
  uint32_t add(uint64_t key);
  uint32_t estimate(uint64_t key) const;
  size_t bytes() const { return size_t{width_} * depth_ * sizeof(uint32_t); }

 private:
  size_t cell(uint32_t row, uint64_t key) const;

  uint32_t width_;
  uint32_t depth_;
  std::unique_ptr<std::atomic<uint32_t>[]> counters_;
};

}  // namespace weft::ps
