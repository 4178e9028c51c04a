#include "bench/coll_bench_options.h"

#include <cerrno>
#include <cstdlib>
#include <string_view>

#include "collectives/tuner/tuner.h"
#include "common/status.h"

namespace weft::bench {
namespace {

constexpr size_t kMaxBytes = size_t{1} << 32;  // 4 GiB per buffer at most
constexpr size_t kMaxSizes = 4096;

Status badValue(std::string_view option, std::string_view value, std::string_view allowed) {
  return WEFT_ERROR(StatusCode::kInvalidArgument, "option ", option, ": bad value \"", value,
                    "\" (", allowed, ")");
}

Result<size_t> parseBytes(std::string_view option, std::string_view text) {
  Result<size_t> v = coll::parseByteSize(text);
  if (!v.isOk()) return badValue(option, text, "a byte count such as 8, 64K, 1M, 2G");
  if (*v > kMaxBytes) return badValue(option, text, strCat("at most ", kMaxBytes, " bytes"));
  return *v;
}

Result<int64_t> parseInt(std::string_view option, std::string_view text, int64_t min, int64_t max) {
  const std::string s(text);
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || end == s.c_str() || *end != '\0' || errno != 0 || v < min || v > max) {
    return badValue(option, text, strCat("an integer in [", min, ", ", max, "]"));
  }
  return static_cast<int64_t>(v);
}

Result<double> parseSeconds(std::string_view option, std::string_view text, double min) {
  const std::string s(text);
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end == s.c_str() || *end != '\0' || errno != 0 || !(v >= min) || v > 1e6) {
    return badValue(option, text, strCat("seconds, at least ", min));
  }
  return v;
}

Status parseOps(std::string_view text, BenchOptions& o) {
  if (text == "all") {
    for (int i = 0; i <= static_cast<int>(BenchOp::kSendRecv); ++i) {
      o.ops.push_back(static_cast<BenchOp>(i));
    }
    return Status::ok();
  }
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    WEFT_ASSIGN_OR_RETURN(BenchOp op, parseBenchOp(text.substr(start, comma - start)));
    o.ops.push_back(op);
    start = comma + 1;
  }
  return Status::ok();
}

Status parseSizeList(std::string_view option, std::string_view text, std::vector<size_t>& out) {
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    WEFT_ASSIGN_OR_RETURN(size_t v, parseBytes(option, text.substr(start, comma - start)));
    out.push_back(v);
    start = comma + 1;
  }
  return Status::ok();
}

// -b / -e / -f / -i: a geometric (or arithmetic) sweep, as nccl-tests.
struct Sweep {
  size_t min = 8, max = 64 * 1024 * 1024;
  int64_t factor = 2;
  size_t step = 0;
};

Status expandSweep(const Sweep& w, std::vector<size_t>& out) {
  if (w.min > w.max) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "option -b/--minbytes (", w.min,
                      ") is larger than -e/--maxbytes (", w.max, ")");
  }
  for (size_t s = w.min; s <= w.max;) {
    out.push_back(s);
    if (out.size() > kMaxSizes) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, "the sweep -b ", w.min, " -e ", w.max,
                        " has more than ", kMaxSizes, " sizes")
          .withHint("use a larger -f/--stepfactor or -i/--stepbytes");
    }
    const size_t next = w.step != 0 ? s + w.step : s * static_cast<size_t>(w.factor);
    if (next <= s) break;  // -b 0 with a factor
    s = next;
  }
  return Status::ok();
}

struct Parser {
  BenchOptions& o;
  Sweep sweep;
  bool have_sizes = false;

  // Options that take a value.
  Status value(std::string_view opt, std::string_view v) {
    if (opt == "-b" || opt == "--minbytes") return assign(sweep.min, parseBytes(opt, v));
    if (opt == "-e" || opt == "--maxbytes") return assign(sweep.max, parseBytes(opt, v));
    if (opt == "-f" || opt == "--stepfactor")
      return assign(sweep.factor, parseInt(opt, v, 2, 1024));
    if (opt == "-i" || opt == "--stepbytes") return assign(sweep.step, parseBytes(opt, v));
    if (opt == "-s" || opt == "--sizes") {
      have_sizes = true;
      return parseSizeList(opt, v, o.sizes);
    }
    if (opt == "-t" || opt == "--type") return assign(o.type, coll::parseDataType(v), opt);
    if (opt == "-o" || opt == "--op") return assign(o.reduce_op, coll::parseReduceOp(v), opt);
    if (opt == "-r" || opt == "--root") return assign(o.root, parseInt(opt, v, 0, 1 << 20));
    if (opt == "-n" || opt == "--iters") return assign(o.iters, parseInt(opt, v, 1, 1 << 30));
    if (opt == "-w" || opt == "--warmup") return assign(o.warmup, parseInt(opt, v, 0, 1 << 30));
    if (opt == "--batches") return assign(o.batches, parseInt(opt, v, 1, 1000));
    if (opt == "--time") return assign(o.time_target_s, parseSeconds(opt, v, 0.001));
    if (opt == "-a" || opt == "--algo") return set(o.algorithm, v);
    if (opt == "--chunk") return assign(o.chunk_bytes, parseBytes(opt, v));
    if (opt == "--label") return set(o.label, v);
    if (opt == "--backend") return set(o.backend, v);
    if (opt == "--timeout") {
      o.timeout_given = true;
      return assign(o.timeout_s, parseSeconds(opt, v, 1));
    }
    return WEFT_ERROR(StatusCode::kInvalidArgument, "unknown option ", opt);
  }

  template <typename T, typename V>
  static Status assign(T& field, Result<V> r, std::string_view opt = {}) {
    if (!r.isOk()) {
      return opt.empty()
                 ? r.status()
                 : Status(r.status().code(), strCat("option ", opt, ": ", r.status().message()));
    }
    field = static_cast<T>(*r);
    return Status::ok();
  }
  static Status set(std::string& field, std::string_view v) {
    field = std::string(v);
    return Status::ok();
  }

  // Flags; false when `opt` is not one.
  bool flag(std::string_view opt) {
    if (opt == "-c" || opt == "--check") return o.check = true;
    if (opt == "--csv") return o.csv = true;
    if (opt == "--json") return o.json = true;
    if (opt == "--bind") return o.bind = true;
    if (opt == "-h" || opt == "--help") return o.help = true;
    return false;
  }

  Status finish() {
    if (o.ops.empty()) {
      return WEFT_ERROR(StatusCode::kInvalidArgument,
                        "no operation given (e.g. weft-bench allreduce -b 8 -e 64M)");
    }
    if (o.csv && o.json) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, "--csv and --json exclude each other");
    }
    if (!have_sizes) WEFT_RETURN_IF_ERROR(expandSweep(sweep, o.sizes));
    for (BenchOp op : o.ops) {
      if (!isReduction(op)) continue;
      Status st = coll::validateReduce(o.type, o.reduce_op);
      if (!st.isOk()) return Status(st.code(), strCat("options -t/-o: ", st.message()));
    }
    return Status::ok();
  }
};

}  // namespace

Result<BenchOptions> parseBenchOptions(int argc, const char* const* argv) {
  BenchOptions o;
  Parser p{o, {}, false};
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (p.flag(a)) continue;
    if (o.help) return o;
    if (a.empty() || a[0] != '-') {
      WEFT_RETURN_IF_ERROR(parseOps(a, o));
      continue;
    }
    std::string_view v;
    const size_t eq = a.find('=');
    if (a.starts_with("--") && eq != std::string_view::npos) {
      v = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else if (i + 1 < argc) {
      v = argv[++i];
    } else {
      return WEFT_ERROR(StatusCode::kInvalidArgument, "option ", a, " needs a value");
    }
    WEFT_RETURN_IF_ERROR(p.value(a, v));
  }
  if (o.help) return o;
  WEFT_RETURN_IF_ERROR(p.finish());
  return o;
}

std::string benchUsage() {
  return R"(usage: weft-run -n N weft-bench OPS [options]

Collective benchmark in the style of nccl-tests. OPS: a comma-separated list of barrier,
broadcast, scatter, gather, allgather, reduce, allreduce, reduce_scatter, alltoall, sendrecv,
or "all". Every rank of the job runs it; rank 0 prints one row per (operation, size):
size, count, type, redop, root, algorithm, time (us), algbw and busbw (GB/s, 1e9 B/s) and
#wrong. Size is nccl-tests' convention (allgather/gather: the gathered output;
reduce_scatter/scatter/alltoall: the whole send buffer of a rank; others: the vector).

Sizes:
  -b, --minbytes N     smallest size (default 8); K/M/G suffixes are powers of 1024
  -e, --maxbytes N     largest size (default 64M)
  -f, --stepfactor F   multiply the size by F (default 2)
  -i, --stepbytes N    add N bytes instead (arithmetic sweep)
  -s, --sizes LIST     explicit sizes instead of the sweep, e.g. 8,1K,1M,64M
Data:
  -t, --type T         i8 u8 i32 u32 i64 u64 f16 bf16 f32 f64 (default f32)
  -o, --op OP          sum prod min max avg band bor bxor (default sum)
  -r, --root R         root of broadcast/scatter/gather/reduce (default 0)
  -a, --algo NAME      force an algorithm (ring, rabenseifner, ...; default: the tuner's)
                       allreduce also takes innet: the in-network aggregation emulation
                       (WEFT_INNET_RADIX / _CHUNK / _CREDITS), and hierarchical (intra-node,
                       then across nodes: collectives/api/hierarchical.h)
  --chunk N            pipelining chunk (default WEFT_COLL_CHUNK)
Timing:
  -n, --iters N        timed iterations per size (default: as many as fit in --time)
  -w, --warmup N       untimed iterations first (default: 5, fewer for large sizes)
  --time S             target timed seconds per size when -n is not given (default 0.25)
  --batches B          timed iterations run in B batches, each started by a barrier; a
                       batch's time per call is the maximum over ranks, the row shows the
                       median batch (default 5; with fewer iterations, one per batch)
  --bind               pin each rank to one CPU (local rank modulo the online CPUs)
Checking and output:
  -c, --check          verify every result (a separate, untimed call) and count wrong elements
  --csv                CSV rows (header line first) instead of the table
  --json               one JSON document instead of the table
  --label L            first CSV column / JSON label (default weft)
  --backend B          transport backend (default ucx)
  --timeout S          deadline of every step, collectives included (default:
                       WEFT_TIMEOUT, 300)
  -h, --help           this text

At the end each rank's peak resident set size (getrusage) is printed. Exit status: 0, 1 when
a collective failed or --check found wrong elements, 2 for bad options.
)";
}

}  // namespace weft::bench
