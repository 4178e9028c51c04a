#include "bench/coll_bench_ops.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "collectives/api/hierarchical.h"
#include "collectives/reduce/half.h"
#include "collectives/reduce/reducer.h"

namespace weft::bench {
namespace {

using coll::DataType;
using coll::ReduceOp;

struct OpName {
  std::string_view name;
  BenchOp op;
};
constexpr std::array<OpName, 13> kOpNames = {{
    {"barrier", BenchOp::kBarrier},
    {"broadcast", BenchOp::kBroadcast},
    {"scatter", BenchOp::kScatter},
    {"gather", BenchOp::kGather},
    {"allgather", BenchOp::kAllgather},
    {"reduce", BenchOp::kReduce},
    {"allreduce", BenchOp::kAllreduce},
    {"reduce_scatter", BenchOp::kReduceScatter},
    {"alltoall", BenchOp::kAlltoall},
    {"sendrecv", BenchOp::kSendRecv},
    // aliases (nccl-tests / MPI names)
    {"bcast", BenchOp::kBroadcast},
    {"reducescatter", BenchOp::kReduceScatter},
    {"reduce_scatter_block", BenchOp::kReduceScatter},
}};
constexpr size_t kNumCanonical = 10;

uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A value whose reductions over any number of ranks are exact (see the header).
double floatValue(ReduceOp op, uint64_t h) {
  if (op == ReduceOp::kProd) {
    constexpr double kPow2[] = {1.0, 2.0, 0.5, -1.0};
    return kPow2[h % 4];
  }
  return static_cast<double>(static_cast<int64_t>(h % 17) - 8);
}

void storeElement(DataType t, ReduceOp op, uint64_t h, std::byte* dst) {
  switch (t) {
    case DataType::kF32: {
      const float f = static_cast<float>(floatValue(op, h));
      std::memcpy(dst, &f, 4);
      return;
    }
    case DataType::kF64: {
      const double d = floatValue(op, h);
      std::memcpy(dst, &d, 8);
      return;
    }
    case DataType::kF16:
    case DataType::kBF16: {
      const float f = static_cast<float>(floatValue(op, h));
      const uint16_t v = t == DataType::kF16 ? coll::floatToHalf(f) : coll::floatToBf16(f);
      std::memcpy(dst, &v, 2);
      return;
    }
    default: std::memcpy(dst, &h, coll::sizeOf(t)); return;  // little endian: low bytes
  }
}

// Elements [first, first + n) of `rank`'s input.
void pattern(DataType t, ReduceOp op, int rank, size_t first, size_t n, std::byte* dst) {
  const size_t es = coll::sizeOf(t);
  const uint64_t base = static_cast<uint64_t>(rank) << 40;
  for (size_t i = 0; i < n; ++i) storeElement(t, op, mix(base + first + i), dst + i * es);
}

// The reduction over all ranks of input elements [first, first + n).
std::vector<std::byte> expectedReduction(const Shape& s, size_t first, size_t n) {
  const size_t es = coll::sizeOf(s.type);
  std::vector<std::byte> acc(n * es);
  std::vector<std::byte> other(n * es);
  pattern(s.type, s.reduce_op, 0, first, n, acc.data());
  auto reducer = coll::Reducer::create(s.type, s.reduce_op);
  if (!reducer.isOk()) return acc;  // the option parser rejects invalid pairs
  for (int r = 1; r < s.nranks; ++r) {
    pattern(s.type, s.reduce_op, r, first, n, other.data());
    reducer->reduce(acc.data(), other.data(), n);
  }
  if (reducer->needsFinalize()) reducer->finalize(acc.data(), n, static_cast<size_t>(s.nranks));
  return acc;
}

uint64_t countDiff(const std::byte* got, const std::byte* want, size_t n, size_t es) {
  uint64_t wrong = 0;
  for (size_t i = 0; i < n; ++i) wrong += std::memcmp(got + i * es, want + i * es, es) != 0;
  return wrong;
}

// Compares out[at .. at+n) with rank `src`'s input elements [first, first + n).
uint64_t wrongCopy(const Shape& s, const std::byte* out, size_t at, int src, size_t first,
                   size_t n) {
  const size_t es = coll::sizeOf(s.type);
  std::vector<std::byte> want(n * es);
  pattern(s.type, s.reduce_op, src, first, n, want.data());
  return countDiff(out + at * es, want.data(), n, es);
}

uint64_t wrongReduction(const Shape& s, const std::byte* out, size_t first, size_t n) {
  const std::vector<std::byte> want = expectedReduction(s, first, n);
  return countDiff(out, want.data(), n, coll::sizeOf(s.type));
}

Result<coll::Request> issue(coll::Communicator& comm, const Shape& s, BenchBuffers& b,
                            const coll::CallOptions& o) {
  const size_t n = s.count;
  const DataType t = s.type;
  switch (s.op) {
    case BenchOp::kBarrier: return coll::ibarrier(comm, o);
    case BenchOp::kBroadcast: return coll::ibroadcast(comm, b.out(), n, t, s.root, o);
    case BenchOp::kScatter: return coll::iscatter(comm, b.in(), b.out(), n, t, s.root, o);
    case BenchOp::kGather: return coll::igather(comm, b.in(), b.out(), n, t, s.root, o);
    case BenchOp::kAllgather: return coll::iallgather(comm, b.in(), b.out(), n, t, o);
    case BenchOp::kReduce:
      return coll::ireduce(comm, b.in(), b.out(), n, t, s.reduce_op, s.root, o);
    case BenchOp::kAllreduce: return coll::iallreduce(comm, b.in(), b.out(), n, t, s.reduce_op, o);
    case BenchOp::kReduceScatter:
      return coll::ireduceScatter(comm, b.in(), b.out(), n, t, s.reduce_op, o);
    case BenchOp::kAlltoall: return coll::ialltoall(comm, b.in(), b.out(), n, t, o);
    case BenchOp::kSendRecv: break;
  }
  return WEFT_ERROR(StatusCode::kInternal, "weft-bench: no single request for ", toString(s.op));
}

// The blocking form of each operation (what the timed loop calls, like the MPI benchmarks).
Status callBlocking(coll::Communicator& comm, const Shape& s, BenchBuffers& b,
                    const coll::CallOptions& o) {
  const size_t n = s.count;
  const DataType t = s.type;
  switch (s.op) {
    case BenchOp::kBarrier: return coll::barrier(comm, o);
    case BenchOp::kBroadcast: return coll::broadcast(comm, b.out(), n, t, s.root, o);
    case BenchOp::kScatter: return coll::scatter(comm, b.in(), b.out(), n, t, s.root, o);
    case BenchOp::kGather: return coll::gather(comm, b.in(), b.out(), n, t, s.root, o);
    case BenchOp::kAllgather: return coll::allgather(comm, b.in(), b.out(), n, t, o);
    case BenchOp::kReduce:
      return coll::reduce(comm, b.in(), b.out(), n, t, s.reduce_op, s.root, o);
    case BenchOp::kAllreduce: return coll::allreduce(comm, b.in(), b.out(), n, t, s.reduce_op, o);
    case BenchOp::kReduceScatter:
      return coll::reduceScatter(comm, b.in(), b.out(), n, t, s.reduce_op, o);
    case BenchOp::kAlltoall: return coll::alltoall(comm, b.in(), b.out(), n, t, o);
    case BenchOp::kSendRecv: break;
  }
  return WEFT_ERROR(StatusCode::kInternal, "weft-bench: no blocking call for ", toString(s.op));
}

Status sendRecv(coll::Communicator& comm, const Shape& s, BenchBuffers& b,
                const coll::CallOptions& o) {
  const int to = (s.rank + 1) % s.nranks;
  const int from = (s.rank + s.nranks - 1) % s.nranks;
  WEFT_ASSIGN_OR_RETURN(coll::Request r, coll::irecv(comm, b.out(), s.count, s.type, from, 1, o));
  WEFT_ASSIGN_OR_RETURN(coll::Request w, coll::isend(comm, b.in(), s.count, s.type, to, 1, o));
  Status st = w.wait();
  Status st2 = r.wait();
  return st.isOk() ? st2 : st;
}

}  // namespace

std::string_view toString(BenchOp op) {
  for (const OpName& n : kOpNames) {
    if (n.op == op) return n.name;
  }
  return "invalid";
}

Result<BenchOp> parseBenchOp(std::string_view name) {
  std::string names;
  for (size_t i = 0; i < kOpNames.size(); ++i) {
    if (kOpNames[i].name == name) return kOpNames[i].op;
    if (i >= kNumCanonical) continue;  // aliases are not listed
    names += names.empty() ? "" : ", ";
    names += kOpNames[i].name;
  }
  return WEFT_ERROR(StatusCode::kInvalidArgument, "unknown operation \"", name,
                    "\" (operations: ", names, ", all)");
}

bool isReduction(BenchOp op) {
  return op == BenchOp::kReduce || op == BenchOp::kAllreduce || op == BenchOp::kReduceScatter;
}

bool isRooted(BenchOp op) {
  return op == BenchOp::kBroadcast || op == BenchOp::kScatter || op == BenchOp::kGather ||
         op == BenchOp::kReduce;
}

double busFactor(BenchOp op, int nranks) {
  const double n = nranks;
  switch (op) {
    case BenchOp::kAllreduce: return 2 * (n - 1) / n;
    case BenchOp::kAllgather:
    case BenchOp::kReduceScatter:
    case BenchOp::kAlltoall:
    case BenchOp::kGather:
    case BenchOp::kScatter: return (n - 1) / n;
    default: return 1;
  }
}

Shape shapeFor(BenchOp op, size_t bytes, DataType type, ReduceOp reduce_op, int root, int rank,
               int nranks) {
  Shape s{op, type, reduce_op, root, rank, nranks, 0, 0, 0, 0};
  const size_t es = coll::sizeOf(type);
  const auto p = static_cast<size_t>(nranks);
  const bool isRoot = rank == root;
  switch (op) {
    case BenchOp::kBarrier: return s;
    case BenchOp::kAllreduce:
    case BenchOp::kSendRecv:
      s.count = bytes / es;
      s.in_count = s.out_count = s.count;
      break;
    case BenchOp::kBroadcast:
      s.count = bytes / es;
      s.out_count = s.count;
      break;
    case BenchOp::kReduce:
      s.count = s.in_count = bytes / es;
      s.out_count = isRoot ? s.count : 0;
      break;
    case BenchOp::kAllgather:
    case BenchOp::kGather:
      s.count = s.in_count = bytes / es / p;
      s.out_count = op == BenchOp::kGather && !isRoot ? 0 : s.count * p;
      break;
    case BenchOp::kReduceScatter:
    case BenchOp::kScatter:
      s.count = s.out_count = bytes / es / p;
      s.in_count = op == BenchOp::kScatter && !isRoot ? 0 : s.count * p;
      break;
    case BenchOp::kAlltoall:
      s.count = bytes / es / p;
      s.in_count = s.out_count = s.count * p;
      break;
  }
  const bool perRank = op == BenchOp::kAllgather || op == BenchOp::kGather ||
                       op == BenchOp::kReduceScatter || op == BenchOp::kScatter ||
                       op == BenchOp::kAlltoall;
  s.bytes = s.count * es * (perRank ? p : 1);
  return s;
}

void BenchBuffers::Free::operator()(std::byte* p) const {
  std::free(p);
}

void BenchBuffers::reserve(size_t in_bytes, size_t out_bytes) {
  auto grow = [](std::unique_ptr<std::byte, Free>& buf, size_t& have, size_t want) {
    if (want <= have && buf) return;
    const size_t bytes = (std::max<size_t>(want, 64) + 4095) / 4096 * 4096;
    auto* p = static_cast<std::byte*>(std::aligned_alloc(4096, bytes));
    if (p == nullptr) throw std::bad_alloc();
    std::memset(p, 0, bytes);  // touch every page now, not while timing
    buf.reset(p);
    have = bytes;
  };
  grow(in_, in_bytes_, in_bytes);
  grow(out_, out_bytes_, out_bytes);
}

// allreduce with algorithm innet (--algo or WEFT_ALGO_ALLREDUCE) or hierarchical (--algo)
// has a blocking form only.
bool blockingOnly(coll::Communicator& comm, const Shape& s, const coll::CallOptions& opts) {
  if (s.op != BenchOp::kAllreduce) return false;
  const std::string_view algo = opts.algorithm.empty()
                                    ? std::string_view(comm.tuner().overrideFor(
                                          coll::CollKind::kAllreduce))
                                    : opts.algorithm;
  return algo == "innet" || algo == coll::kHierarchicalAlgorithm;
}

Status runOnce(coll::Communicator& comm, const Shape& s, BenchBuffers& b,
               const coll::CallOptions& opts) {
  if (s.op == BenchOp::kSendRecv) return sendRecv(comm, s, b, opts);
  return callBlocking(comm, s, b, opts);
}

Result<std::string> algorithmOf(coll::Communicator& comm, const Shape& s, BenchBuffers& b,
                                const coll::CallOptions& opts) {
  if (s.op == BenchOp::kSendRecv) {
    WEFT_RETURN_IF_ERROR(sendRecv(comm, s, b, opts));
    return std::string("direct");
  }
  if (blockingOnly(comm, s, opts)) {
    WEFT_RETURN_IF_ERROR(runOnce(comm, s, b, opts));
    return std::string(opts.algorithm.empty() ? "innet" : opts.algorithm);
  }
  WEFT_ASSIGN_OR_RETURN(coll::Request r, issue(comm, s, b, opts));
  std::string name(r.algorithm());
  WEFT_RETURN_IF_ERROR(r.wait());
  return name;
}

void fillForCheck(const Shape& s, BenchBuffers& b) {
  const size_t es = coll::sizeOf(s.type);
  if (s.op == BenchOp::kBarrier) return;
  pattern(s.type, s.reduce_op, s.rank, 0, s.in_count, b.in());
  std::memset(b.out(), 0xA5, s.out_count * es);
  if (s.op == BenchOp::kBroadcast && s.rank == s.root) {
    pattern(s.type, s.reduce_op, s.rank, 0, s.count, b.out());
  }
}

uint64_t countWrong(const Shape& s, BenchBuffers& b) {
  const std::byte* out = b.out();
  const size_t n = s.count;
  const auto p = static_cast<size_t>(s.nranks);
  const size_t mine = static_cast<size_t>(s.rank) * n;
  uint64_t wrong = 0;
  switch (s.op) {
    case BenchOp::kBarrier: return 0;
    case BenchOp::kAllreduce: return wrongReduction(s, out, 0, n);
    case BenchOp::kReduce: return s.rank == s.root ? wrongReduction(s, out, 0, n) : 0;
    case BenchOp::kReduceScatter: return wrongReduction(s, out, mine, n);
    case BenchOp::kBroadcast: return wrongCopy(s, out, 0, s.root, 0, n);
    case BenchOp::kScatter: return wrongCopy(s, out, 0, s.root, mine, n);
    case BenchOp::kSendRecv:
      return wrongCopy(s, out, 0, static_cast<int>((s.rank + s.nranks - 1) % s.nranks), 0, n);
    case BenchOp::kGather:
      if (s.rank != s.root) return 0;
      [[fallthrough]];
    case BenchOp::kAllgather:
      for (size_t j = 0; j < p; ++j) wrong += wrongCopy(s, out, j * n, static_cast<int>(j), 0, n);
      return wrong;
    case BenchOp::kAlltoall:
      for (size_t j = 0; j < p; ++j) {
        wrong += wrongCopy(s, out, j * n, static_cast<int>(j), mine, n);
      }
      return wrong;
  }
  return wrong;
}

}  // namespace weft::bench
