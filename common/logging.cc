#include "common/logging.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "common/config.h"

namespace weft::log {
namespace {

constexpr std::string_view kLevelNames[] = {"ERROR", "WARN", "INFO", "DEBUG", "TRACE"};

struct State {
  std::mutex mu;
  bool loaded = false;
  std::atomic<int> level{static_cast<int>(Level::kWarn)};
  bool all_subsys = true;
  std::vector<std::string> subsys;
  std::atomic<int> rank{-1};
  std::string host;
};

State& state() {
  static State s;
  return s;
}

Level parseLevel(std::string_view v) {
  for (int i = 0; i < 5; ++i) {
    std::string lower(kLevelNames[i]);
    for (auto& c : lower) c = static_cast<char>(c - 'A' + 'a');
    if (v == lower) return static_cast<Level>(i);
  }
  return Level::kWarn;
}

void loadLocked(State& s) {
  char host[256] = "?";
  gethostname(host, sizeof(host) - 1);
  s.host = host;
  auto level = config::getString("WEFT_LOG");
  if (level.isOk()) {
    s.level = static_cast<int>(parseLevel(*level));
  } else {
    std::fprintf(stderr, "weft: %s; using WEFT_LOG=warn\n", level.status().message().c_str());
  }
  auto subs = config::getList("WEFT_LOG_SUBSYS");
  s.all_subsys = true;
  s.subsys.clear();
  if (subs.isOk()) {
    s.subsys = *subs;
    s.all_subsys = s.subsys.empty();
    for (const auto& x : s.subsys) s.all_subsys = s.all_subsys || x == "all";
  } else {
    std::fprintf(stderr, "weft: %s; logging all subsystems\n",
                 subs.status().message().c_str());
  }
  auto rank = config::getInt("WEFT_RANK");
  if (rank.isOk() && s.rank.load() < 0) s.rank = static_cast<int>(*rank);
  s.loaded = true;
}

State& loaded() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.loaded) loadLocked(s);
  return s;
}

}  // namespace

bool enabled(Level level, std::string_view subsys) {
  static std::once_flag once;
  std::call_once(once, [] { loaded(); });
  State& s = state();
  if (static_cast<int>(level) > s.level.load(std::memory_order_relaxed)) return false;
  if (level == Level::kError) return true;  // errors are never filtered by subsystem
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.all_subsys) return true;
  for (const auto& x : s.subsys) {
    if (x == subsys) return true;
  }
  return false;
}

void write(Level level, std::string_view subsys, std::string_view message) {
  State& s = loaded();
  std::string line;
  line.reserve(message.size() + 64);
  line += s.host;
  line += ':';
  line += std::to_string(getpid());
  line += " rank ";
  int r = s.rank.load();
  line += r >= 0 ? std::to_string(r) : std::string("?");
  line += " [";
  line += subsys;
  line += "] ";
  line += kLevelNames[static_cast<int>(level)];
  line += ' ';
  line += message;
  line += '\n';
  // One write(2) per line so that lines of concurrent threads/processes do not interleave.
  ssize_t rc = ::write(STDERR_FILENO, line.data(), line.size());
  (void)rc;
}

void setRank(int rank) { state().rank = rank; }

void reload() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  loadLocked(s);
}

}  // namespace weft::log
