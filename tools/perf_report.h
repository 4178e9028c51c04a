// weft-perf timing and output: a cheap tick clock for the timed loops, the statistics of
// one (test, size) run, and the table / JSON renderings.
//
// Contract: TickClock::now() is inline and makes no system call (rdtsc on x86-64, the vDSO
// steady clock elsewhere); calibrate() once per process before use. Everything else is
// plain values, used by rank 0 after the timed phase. No threads.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "tools/perf_options.h"

namespace weft::perf {

class TickClock {
 public:
  static uint64_t now() {
#if defined(__x86_64__)
    return __rdtsc();
#else
    return static_cast<uint64_t>(
        std::chrono::steady_clock::now().time_since_epoch().count());
#endif
  }
  // Measures ticks per microsecond against the steady clock (spins ~20 ms).
  static void calibrate();
  static double ticksPerUs() { return ticks_per_us_; }
  static double toUs(double ticks) { return ticks / ticks_per_us_; }

 private:
  static inline double ticks_per_us_ = 1000.0;
};

struct Measurement {
  const TestSpec* test = nullptr;
  size_t bytes = 0;
  int64_t iters = 0;
  int64_t warmup = 0;
  int64_t window = 0;   // 0 for latency tests
  double t_min = 0;     // us: one-way (latency) or per message (bandwidth)
  double t_typical = 0;  // median
  double t_avg = 0;
  double t_p99 = 0;
  double t_max = 0;
  double bw_gbps = 0;   // average, GB = 1e9 B; both directions for bibw
  double mr_mpps = 0;   // messages per microsecond (= millions per second)
  int validated = -1;   // -1 not checked, 0 data wrong, 1 data right
  int64_t allocs = -1;  // rank 0's heap allocations in the timed phase (-1: not counted)
};

// Fills the t_* fields from per-sample durations in ticks, each covering `per_sample`
// messages (latency: a round trip of 2 one-way messages; bandwidth: a window), and
// bw / mr from the total time of `messages` messages of `bytes_per_message`.
// Sorts `samples`.
void summarize(std::vector<uint64_t>& samples, double per_sample, double total_ticks,
               double messages, double bytes_per_message, Measurement& m);

struct RunInfo {
  std::string backend;     // "ucx"
  std::string transports;  // Capabilities::transports
  std::string config;      // extra settings that matter for comparisons
  std::vector<int> cpus;
};

// Table output: a header per test, then one row per size (flushed at once).
void printTableHeader(std::FILE* out, const TestSpec& test, const RunInfo& info, int64_t window);
void printTableRow(std::FILE* out, const Measurement& m);
// One JSON document with every measurement.
void printJson(std::FILE* out, const RunInfo& info, const std::vector<Measurement>& all);

}  // namespace weft::perf
