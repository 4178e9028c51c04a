#include "tools/perf_options.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iterator>

#include "common/status.h"

namespace weft::perf {
namespace {

// Largest message weft-perf allocates (both buffers are this large).
constexpr size_t kMaxSize = size_t{1} << 30;
constexpr int64_t kMaxIters = int64_t{1} << 32;

Status badOption(std::string_view option, std::string_view value, std::string_view allowed) {
  return WEFT_ERROR(StatusCode::kInvalidArgument, "option ", option, ": bad value \"", value,
                    "\" (", allowed, ")");
}

// "8", "64K", "64KiB", "1M", "2G" -> bytes (K = 1024).
Result<size_t> parseSize(std::string_view option, std::string_view text) {
  const std::string s(text);
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (s.empty() || s[0] == '-' || end == s.c_str() || errno != 0) {
    return badOption(option, text, "a byte count such as 8, 64K, 1M");
  }
  std::string_view suffix(end);
  size_t scale = 1;
  if (!suffix.empty()) {
    const char c = static_cast<char>(std::toupper(static_cast<unsigned char>(suffix[0])));
    scale = c == 'K' ? 1024 : c == 'M' ? 1024 * 1024 : c == 'G' ? 1024 * 1024 * 1024 : 0;
    suffix.remove_prefix(1);
    if (suffix == "iB" || suffix == "B" || suffix == "ib") suffix = {};
    if (scale == 0 || !suffix.empty()) {
      return badOption(option, text, "suffixes are K, M, G (powers of 1024)");
    }
  }
  if (v > kMaxSize / scale) {
    return badOption(option, text, strCat("at most ", kMaxSize, " bytes"));
  }
  return static_cast<size_t>(v) * scale;
}

Result<int64_t> parseInt(std::string_view option, std::string_view text, int64_t min,
                         int64_t max) {
  const std::string s(text);
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || end == s.c_str() || *end != '\0' || errno != 0 || v < min || v > max) {
    return badOption(option, text, strCat("an integer in [", min, ", ", max, "]"));
  }
  return static_cast<int64_t>(v);
}

Result<double> parseDouble(std::string_view option, std::string_view text, double min) {
  const std::string s(text);
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end == s.c_str() || *end != '\0' || errno != 0 || !std::isfinite(v) ||
      v < min) {
    return badOption(option, text, strCat("a number >= ", min));
  }
  return v;
}

std::vector<std::string_view> splitCommas(std::string_view text) {
  std::vector<std::string_view> parts;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    parts.push_back(text.substr(pos, comma - pos));
    pos = comma + 1;
  }
  return parts;
}

std::string testNames() {
  std::string names;
  for (const TestSpec& t : allTests()) names += strCat(names.empty() ? "" : ", ", t.name);
  return names;
}

Status parseTests(std::string_view text, Options& o) {
  o.tests.clear();
  for (std::string_view name : splitCommas(text)) {
    const TestSpec* t = findTest(name);
    if (t == nullptr) return badOption("-t/--test", name, strCat("tests: ", testNames()));
    o.tests.push_back(t);
  }
  return Status::ok();
}

Status parseSizeList(std::string_view text, Options& o) {
  o.sizes.clear();
  for (std::string_view part : splitCommas(text)) {
    WEFT_ASSIGN_OR_RETURN(size_t n, parseSize("-s/--sizes", part));
    o.sizes.push_back(n);
  }
  return Status::ok();
}

Status parseCpus(std::string_view text, Options& o) {
  o.cpus.clear();
  for (std::string_view part : splitCommas(text)) {
    WEFT_ASSIGN_OR_RETURN(int64_t cpu, parseInt("--cpus", part, 0, 4095));
    o.cpus.push_back(static_cast<int>(cpu));
  }
  return Status::ok();
}

Status parseSet(std::string_view text, Options& o) {
  const size_t eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return badOption("--set", text, "NAME=VALUE, a backend setting such as TLS=posix");
  }
  o.backend_config.emplace_back(std::string(text.substr(0, eq)), std::string(text.substr(eq + 1)));
  return Status::ok();
}

// The sweep -b MIN -e MAX -f FACTOR: MIN, MIN*F, ... up to MAX (MAX itself is included).
Result<std::vector<size_t>> sweep(size_t min, size_t max, double factor) {
  if (min > max) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "options -b/-e: min size ", min,
                      " is larger than max size ", max);
  }
  if (factor <= 1.0) return badOption("-f/--factor", strCat(factor), "a factor > 1");
  std::vector<size_t> sizes;
  double v = static_cast<double>(min);
  while (sizes.size() < 4096) {
    size_t n = static_cast<size_t>(std::llround(v));
    if (n > max) break;
    if (sizes.empty() || n > sizes.back()) sizes.push_back(n);
    v = std::max(v * factor, v + 1.0);
  }
  if (sizes.empty() || sizes.back() != max) sizes.push_back(max);
  return sizes;
}

struct SweepArgs {
  size_t min = 8;
  size_t max = 0;
  double factor = 2.0;
  bool given = false;
  bool max_given = false;
};

// One option with its value; returns false (through `used`) for an unknown option.
Status applyOption(std::string_view opt, std::string_view val, Options& o, SweepArgs& sw) {
  if (opt == "-t" || opt == "--test") return parseTests(val, o);
  if (opt == "--send-buffer") {
    if (val != "written" && val != "untouched") {
      return WEFT_ERROR(StatusCode::kInvalidArgument, "option --send-buffer takes written or "
                        "untouched, not \"", val, "\"");
    }
    o.untouched_send = val == "untouched";
    return Status::ok();
  }
  if (opt == "--memory") {
    if (val != "private" && val != "transport") {
      return WEFT_ERROR(StatusCode::kInvalidArgument,
                        "option --memory takes private or transport, not \"", val, "\"");
    }
    o.transport_memory = val == "transport";
    return Status::ok();
  }
  if (opt == "-s" || opt == "--sizes") return parseSizeList(val, o);
  if (opt == "-b" || opt == "--min-bytes") {
    sw.given = true;
    WEFT_ASSIGN_OR_RETURN(sw.min, parseSize(opt, val));
    return Status::ok();
  }
  if (opt == "-e" || opt == "--max-bytes") {
    sw.given = true;
    sw.max_given = true;
    WEFT_ASSIGN_OR_RETURN(sw.max, parseSize(opt, val));
    return Status::ok();
  }
  if (opt == "-f" || opt == "--factor") {
    sw.given = true;
    WEFT_ASSIGN_OR_RETURN(sw.factor, parseDouble(opt, val, 0.0));
    return Status::ok();
  }
  if (opt == "-n" || opt == "--iters") {
    WEFT_ASSIGN_OR_RETURN(o.iters, parseInt(opt, val, 1, kMaxIters));
    return Status::ok();
  }
  if (opt == "-w" || opt == "--warmup") {
    WEFT_ASSIGN_OR_RETURN(o.warmup, parseInt(opt, val, 0, kMaxIters));
    return Status::ok();
  }
  if (opt == "-W" || opt == "--window") {
    WEFT_ASSIGN_OR_RETURN(o.window, parseInt(opt, val, 1, 65536));
    return Status::ok();
  }
  if (opt == "--cpus") return parseCpus(val, o);
  if (opt == "--backend") {
    o.backend = std::string(val);
    return Status::ok();
  }
  if (opt == "--set") return parseSet(val, o);
  if (opt == "--timeout") {
    WEFT_ASSIGN_OR_RETURN(o.timeout_s, parseDouble(opt, val, 0.001));
    o.timeout_given = true;
    return Status::ok();
  }
  return WEFT_ERROR(StatusCode::kNotSupported, "unknown option ", opt);
}

bool takesValue(std::string_view opt) {
  static constexpr std::string_view kWithValue[] = {
      "-t",          "--test",   "-s",       "--sizes",   "-b",      "--min-bytes", "-e",
      "--max-bytes", "-f",       "--factor", "-n",        "--iters", "-w",          "--warmup",
      "-W",          "--window", "--cpus",   "--backend", "--set",   "--timeout",   "--send-buffer",
      "--memory"};
  return std::find(std::begin(kWithValue), std::end(kWithValue), opt) != std::end(kWithValue);
}

Status finish(Options& o, const SweepArgs& sw) {
  if (sw.given) {
    if (!o.sizes.empty()) {
      return WEFT_ERROR(StatusCode::kInvalidArgument,
                        "options -s/--sizes and -b/-e/-f both give the sizes: use one of them");
    }
    WEFT_ASSIGN_OR_RETURN(o.sizes, sweep(sw.min, sw.max_given ? sw.max : sw.min, sw.factor));
  }
  if (o.untouched_send && o.transport_memory) {
    return WEFT_ERROR(StatusCode::kInvalidArgument,
                      "--memory transport gives zero-filled "
                      "buffers, so it cannot be combined with --send-buffer untouched");
  }
  if (o.untouched_send && o.validate) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "--validate writes a pattern into the send "
                      "buffer, so it cannot be combined with --send-buffer untouched");
  }
  if (o.sizes.empty()) o.sizes.push_back(8);
  if (o.tests.empty()) o.tests.push_back(findTest("send_lat"));
  for (const TestSpec* t : o.tests) {
    if (t->op == PerfOp::kSend || o.sizes.empty()) continue;
    for (size_t n : o.sizes) {
      if (t->pattern == PerfPattern::kLatency && n == 0) {
        return WEFT_ERROR(StatusCode::kInvalidArgument, "test ", t->name,
                          " needs messages of at least 1 byte (the last byte carries the "
                          "sequence number); size 0 was requested");
      }
    }
  }
  return Status::ok();
}

}  // namespace

const std::vector<TestSpec>& allTests() {
  static const std::vector<TestSpec> tests = {
      {"send_lat", PerfOp::kSend, PerfPattern::kLatency, "tagged send/recv ping-pong latency"},
      {"put_lat", PerfOp::kPut, PerfPattern::kLatency,
       "put ping-pong latency (the target polls the last byte)"},
      {"send_bw", PerfOp::kSend, PerfPattern::kUni, "tagged send bandwidth, rank 0 -> rank 1"},
      {"put_bw", PerfOp::kPut, PerfPattern::kUni, "put bandwidth, rank 0 -> rank 1 (+ flush)"},
      {"get_bw", PerfOp::kGet, PerfPattern::kUni, "get bandwidth, rank 0 reads rank 1"},
      {"send_bibw", PerfOp::kSend, PerfPattern::kBi, "tagged send bandwidth, both directions"},
      {"put_bibw", PerfOp::kPut, PerfPattern::kBi, "put bandwidth, both directions"},
      {"get_bibw", PerfOp::kGet, PerfPattern::kBi, "get bandwidth, both directions"},
      {"send_mr", PerfOp::kSend, PerfPattern::kUni,
       "message rate: send_bw, for small sizes (same loop; read the MR column)"},
  };
  return tests;
}

const TestSpec* findTest(std::string_view name) {
  for (const TestSpec& t : allTests()) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

Result<Options> parseOptions(int argc, const char* const* argv) {
  Options o;
  SweepArgs sw;
  for (int i = 1; i < argc; ++i) {
    std::string_view opt = argv[i];
    if (opt == "-h" || opt == "--help") {
      o.help = true;
      return o;
    }
    if (opt == "--json") {
      o.json = true;
      continue;
    }
    if (opt == "--validate") {
      o.validate = true;
      continue;
    }
    if (opt == "--markers") {
      o.markers = true;
      continue;
    }
    std::string_view val;
    const size_t eq = opt.find('=');
    if (opt.starts_with("--") && eq != std::string_view::npos) {
      val = opt.substr(eq + 1);
      opt = opt.substr(0, eq);
    } else if (!takesValue(opt)) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, "unknown option \"", opt, "\"");
    } else if (i + 1 >= argc) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, "option ", opt, " needs a value");
    } else {
      val = argv[++i];
    }
    Status st = applyOption(opt, val, o, sw);
    if (st.code() == StatusCode::kNotSupported) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, "unknown option \"", opt, "\"");
    }
    WEFT_RETURN_IF_ERROR(st);
  }
  WEFT_RETURN_IF_ERROR(finish(o, sw));
  return o;
}

int64_t autoIterations(const TestSpec& test, size_t bytes) {
  const double budget = test.pattern == PerfPattern::kLatency ? 256.0 * (1 << 20) : 2048.0 * (1 << 20);
  const int64_t max = test.pattern == PerfPattern::kLatency ? 100000 : 1000000;
  const double n = budget / static_cast<double>(std::max<size_t>(bytes, 1));
  return std::clamp<int64_t>(static_cast<int64_t>(n), 20, max);
}

int64_t autoWarmup(const TestSpec& /*test*/, int64_t iters) {
  return std::clamp<int64_t>(iters / 10, 2, 10000);
}

std::string usage() {
  std::string u =
      "usage: weft-run -n 2 -- weft-perf [options]\n"
      "\n"
      "Point-to-point benchmark of the Weft transport API (like ucx_perftest / perftest):\n"
      "rank 0 measures against rank 1 and prints one row per message size:\n"
      "  bytes iterations t_min t_typical t_p99 BW_average(GB/s) MR(Mpps)\n"
      "Latency tests report one-way times (half the round trip), bandwidth tests the time\n"
      "per message; times in microseconds, GB = 1e9 bytes, bibw rows count both directions.\n"
      "\n"
      "Options:\n"
      "  -t, --test LIST      tests to run, comma-separated (default send_lat):\n";
  for (const TestSpec& t : allTests()) u += strCat("                         ", t.name, ": ", t.what, "\n");
  u += "  -s, --sizes LIST     message sizes, e.g. 8,64K,1M,16M (K/M/G = powers of 1024)\n"
       "  -b, --min-bytes N    sweep from N bytes (default 8) ...\n"
       "  -e, --max-bytes N    ... to N bytes (default: min) ...\n"
       "  -f, --factor F       ... multiplying by F (default 2)\n"
       "  -n, --iters N        timed iterations per size (default: by size, <= 256 MiB moved\n"
       "                       for latency, <= 2 GiB for bandwidth; 20 .. 100000 / 1000000)\n"
       "  -w, --warmup N       warm-up iterations per size (default iters/10, 2 .. 10000)\n"
       "  -W, --window N       operations in flight in bandwidth tests (default 32)\n"
       "  --cpus LIST          bind rank r to CPU LIST[r % len] (e.g. --cpus 0,1)\n"
       "  --backend NAME       transport backend (default ucx)\n"
       "  --set NAME=VALUE     backend setting, repeatable (UCX: TLS=posix wins over UCX_TLS)\n"
       "  --validate           check the received data after each size (not timed)\n"
       "  --send-buffer KIND   written (default): the send buffer is zero-filled real pages;\n"
       "                       untouched: never written, so the kernel maps its shared zero\n"
       "                       page there and every copy out of it reads one cache-hot page,\n"
       "                       as ucx_perftest's tag tests do (they never write their buffer)\n"
       "  --memory KIND        private (default): buffers are anonymous memory registered\n"
       "                       with the transport; transport: allocated by it\n"
       "                       (Context::allocateMemory; UCX: shared-memory segments the\n"
       "                       peer maps, like ucx_perftest's default buffers)\n"
       "  --markers            call getppid() just before and after each timed phase, so that\n"
       "                       `strace -f` shows which system calls the timed loops make\n"
       "  --json               print one JSON document instead of the table\n"
       "  --timeout S          deadline in seconds of each connect / sync / test (default:\n"
       "                       WEFT_TIMEOUT when set, else 600)\n"
       "  -h, --help           this text\n"
       "\n"
       "Example: weft-run -n 2 -- weft-perf -t send_lat,send_bw -s 8,64K,1M,16M\n"
       "         UCX_TLS=posix weft-run -n 2 -- weft-perf -t put_bw -b 8 -e 16M -f 4 --json\n";
  return u;
}

}  // namespace weft::perf
