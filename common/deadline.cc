#include "common/deadline.h"

#include <climits>
#include <cstdio>

namespace weft {

using std::chrono::nanoseconds;

Deadline Deadline::after(nanoseconds d) {
  auto now = Clock::now();
  if (d >= Clock::time_point::max() - now) return never();
  return Deadline(now + d);
}

Deadline Deadline::afterSeconds(double s) {
  if (s >= 1e9) return never();
  if (s < 0) s = 0;
  return after(nanoseconds(static_cast<int64_t>(s * 1e9)));
}

nanoseconds Deadline::remaining() const {
  if (isNever()) return nanoseconds::max();
  auto left = when_ - Clock::now();
  return left.count() > 0 ? std::chrono::duration_cast<nanoseconds>(left) : nanoseconds(0);
}

int Deadline::pollTimeoutMs() const {
  if (isNever()) return -1;
  int64_t ns = remaining().count();
  int64_t ms = (ns + 999999) / 1000000;
  return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

double monotonicSeconds() {
  return std::chrono::duration<double>(Deadline::Clock::now().time_since_epoch()).count();
}

std::string formatDuration(nanoseconds d) {
  char buf[64];
  double s = std::chrono::duration<double>(d).count();
  if (s >= 1.0) {
    std::snprintf(buf, sizeof(buf), "%.2f s", s);
  } else if (s >= 1e-3) {
    std::snprintf(buf, sizeof(buf), "%.1f ms", s * 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f us", s * 1e6);
  }
  return buf;
}

}  // namespace weft
