// Monotonic deadlines. Every blocking call in Weft takes one.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace weft {

class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  static Deadline never() { return Deadline(Clock::time_point::max()); }
  static Deadline after(std::chrono::nanoseconds d);
  static Deadline afterSeconds(double s);
  static Deadline at(Clock::time_point t) { return Deadline(t); }

  bool isNever() const { return when_ == Clock::time_point::max(); }
  bool expired() const { return !isNever() && Clock::now() >= when_; }
  // Time left, clamped at zero; nanoseconds::max() for never().
  std::chrono::nanoseconds remaining() const;
  // Milliseconds left rounded up, clamped to [0, INT32_MAX]: suits poll(2). -1 for never().
  int pollTimeoutMs() const;
  Clock::time_point when() const { return when_; }
  // The earlier of two deadlines.
  Deadline min(Deadline other) const { return other.when_ < when_ ? other : *this; }

 private:
  explicit Deadline(Clock::time_point t) : when_(t) {}
  Clock::time_point when_;
};

// Seconds since some fixed point of the monotonic clock, for elapsed-time messages.
double monotonicSeconds();
// "1.50 s" / "250 ms" for messages.
std::string formatDuration(std::chrono::nanoseconds d);

}  // namespace weft
