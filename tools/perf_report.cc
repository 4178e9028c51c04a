#include "tools/perf_report.h"

#include <algorithm>
#include <cmath>

namespace weft::perf {
namespace {

std::string jsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// JSON has no NaN / infinity.
std::string jsonNumber(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

std::string patternName(PerfPattern p) {
  switch (p) {
    case PerfPattern::kLatency: return "latency";
    case PerfPattern::kUni: return "unidirectional";
    case PerfPattern::kBi: return "bidirectional";
  }
  return "?";
}

}  // namespace

void TickClock::calibrate() {
#if defined(__x86_64__)
  using Clock = std::chrono::steady_clock;
  const auto c0 = Clock::now();
  const uint64_t t0 = now();
  while (Clock::now() - c0 < std::chrono::milliseconds(20)) {
  }
  const auto c1 = Clock::now();
  const uint64_t t1 = now();
  const double us = std::chrono::duration<double, std::micro>(c1 - c0).count();
  ticks_per_us_ = static_cast<double>(t1 - t0) / us;
#else
  ticks_per_us_ = 1000.0;  // steady_clock counts nanoseconds
#endif
}

void summarize(std::vector<uint64_t>& samples, double per_sample, double total_ticks,
               double messages, double bytes_per_message, Measurement& m) {
  auto us = [&](double ticks) { return TickClock::toUs(ticks) / per_sample; };
  if (!samples.empty()) {
    std::sort(samples.begin(), samples.end());
    const size_t n = samples.size();
    m.t_min = us(static_cast<double>(samples.front()));
    m.t_max = us(static_cast<double>(samples.back()));
    m.t_typical = us(static_cast<double>(samples[n / 2]));
    const size_t p99 = std::min(n - 1, static_cast<size_t>(std::ceil(0.99 * n)) - 1);
    m.t_p99 = us(static_cast<double>(samples[p99]));
  }
  const double total_us = TickClock::toUs(total_ticks);
  m.t_avg = messages > 0 ? total_us / messages : 0;
  m.mr_mpps = total_us > 0 ? messages / total_us : 0;
  m.bw_gbps = total_us > 0 ? messages * bytes_per_message / total_us / 1e3 : 0;
}

void printTableHeader(std::FILE* out, const TestSpec& test, const RunInfo& info, int64_t window) {
  std::fprintf(out, "# weft-perf %s: %s (%s)\n", std::string(test.name).c_str(),
               std::string(test.what).c_str(), patternName(test.pattern).c_str());
  std::fprintf(out, "# backend %s, %s%s%s", info.backend.c_str(), info.transports.c_str(),
               info.config.empty() ? "" : ", ", info.config.c_str());
  if (test.pattern != PerfPattern::kLatency) std::fprintf(out, ", window %lld", (long long)window);
  std::fprintf(out, "\n# times in us (%s)\n",
               test.pattern == PerfPattern::kLatency ? "one-way = half the round trip"
                                                     : "per message");
  std::fprintf(out, "%12s %11s %10s %10s %10s %17s %10s\n", "bytes", "iterations", "t_min",
               "t_typical", "t_p99", "BW_average(GB/s)", "MR(Mpps)");
  std::fflush(out);
}

void printTableRow(std::FILE* out, const Measurement& m) {
  std::string note;
  if (m.validated == 0) note += "  DATA WRONG";
  if (m.allocs > 0) note += " (" + std::to_string(m.allocs) + " heap allocations in the timed loop)";
  std::fprintf(out, "%12zu %11lld %10.3f %10.3f %10.3f %17.4f %10.4f%s\n", m.bytes,
               static_cast<long long>(m.iters), m.t_min, m.t_typical, m.t_p99, m.bw_gbps,
               m.mr_mpps, note.c_str());
  std::fflush(out);
}

void printJson(std::FILE* out, const RunInfo& info, const std::vector<Measurement>& all) {
  std::string s = "{\"tool\": \"weft-perf\", \"backend\": " + jsonString(info.backend) +
                  ", \"transports\": " + jsonString(info.transports) +
                  ", \"config\": " + jsonString(info.config) + ", \"cpus\": [";
  for (size_t i = 0; i < info.cpus.size(); ++i) {
    s += (i ? ", " : "") + std::to_string(info.cpus[i]);
  }
  s += "], \"units\": {\"t\": \"us\", \"bw\": \"GB/s (1e9 B)\", \"mr\": \"Mpps\"}, \"results\": [";
  for (size_t i = 0; i < all.size(); ++i) {
    const Measurement& m = all[i];
    s += i ? ",\n  " : "\n  ";
    s += "{\"test\": " + jsonString(std::string(m.test->name)) +
         ", \"pattern\": " + jsonString(patternName(m.test->pattern)) +
         ", \"bytes\": " + std::to_string(m.bytes) + ", \"iterations\": " +
         std::to_string(m.iters) + ", \"warmup\": " + std::to_string(m.warmup) +
         ", \"window\": " + std::to_string(m.window) + ", \"t_min\": " + jsonNumber(m.t_min) +
         ", \"t_typical\": " + jsonNumber(m.t_typical) + ", \"t_avg\": " + jsonNumber(m.t_avg) +
         ", \"t_p99\": " + jsonNumber(m.t_p99) + ", \"t_max\": " + jsonNumber(m.t_max) +
         ", \"bw_average_gbps\": " + jsonNumber(m.bw_gbps) +
         ", \"mr_mpps\": " + jsonNumber(m.mr_mpps) +
         ", \"timed_allocs\": " + (m.allocs < 0 ? "null" : std::to_string(m.allocs)) +
         ", \"validated\": " +
         (m.validated < 0 ? "null" : m.validated ? "true" : "false") + "}";
  }
  s += "\n]}\n";
  std::fputs(s.c_str(), out);
  std::fflush(out);
}

}  // namespace weft::perf
