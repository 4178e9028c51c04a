// Logging. Each line reads "host:pid rank R [subsys] LEVEL message" and goes to stderr.
//
//   WEFT_LOG(kInfo, "store") << "listening on " << addr;
//
// The level comes from WEFT_LOG (error|warn|info|debug|trace, default warn), the subsystems
// from WEFT_LOG_SUBSYS (comma list or "all"). Both are read once, on first use; a malformed
// value is reported on stderr and the defaults stay in force (the config check of a tool
// turns it into a hard error). Thread-safe: one line is written with one write(2).
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace weft::log {

enum class Level : int { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3, kTrace = 4 };

// True when a line at this level and subsystem would be printed.
bool enabled(Level level, std::string_view subsys);
// Writes one formatted line.
void write(Level level, std::string_view subsys, std::string_view message);
// Sets the rank printed in each line (-1: "rank ?"). Bootstrap calls it.
void setRank(int rank);
// Re-reads WEFT_LOG / WEFT_LOG_SUBSYS (tests and tools after they change the environment).
void reload();

class Line {
 public:
  Line(Level level, std::string_view subsys) : level_(level), subsys_(subsys) {}
  ~Line() { write(level_, subsys_, os_.str()); }
  Line(const Line&) = delete;
  Line& operator=(const Line&) = delete;
  template <typename T>
  Line& operator<<(const T& v) {
    os_ << v;
    return *this;
  }

 private:
  Level level_;
  std::string_view subsys_;
  std::ostringstream os_;
};

}  // namespace weft::log

// The stream expression is evaluated only when the line is enabled.
#define WEFT_LOG(level, subsys)                                        \
  if (!::weft::log::enabled(::weft::log::Level::level, (subsys))) {    \
  } else                                                               \
    ::weft::log::Line(::weft::log::Level::level, (subsys))
