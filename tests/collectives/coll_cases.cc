#include "tests/collectives/coll_cases.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "tests/collectives/coll_test_util.h"

namespace weft::coll::testing {
namespace {

constexpr std::byte kSentinel{0xCD};

Buffer filled(DataType t, size_t count) {
  Buffer b(t, count);
  std::fill(b.bytes.begin(), b.bytes.end(), kSentinel);
  return b;
}

CallOptions optionsOf(const Case& c) {
  CallOptions o;
  o.algorithm = c.algorithm;
  o.chunk_bytes = c.chunk_bytes;
  return o;
}

// Checks the blocks of an allgather / gather output (block j from rank j).
std::string checkBlocks(const Buffer& out, size_t base, int p, size_t n, const Case& c) {
  for (int j = 0; j < p; ++j) {
    std::string e = checkCopy(out, base + static_cast<size_t>(j) * n, n, c.op, c.seed, j, 0);
    if (!e.empty()) return strCat("block ", j, ": ", e);
  }
  return "";
}

std::string runReductions(Communicator& comm, const Case& c, const CallOptions& o) {
  const int p = comm.size();
  const int r = comm.rank();
  const size_t n = c.count;
  Status st;
  if (c.kind == CollKind::kReduceScatter) {
    Buffer in(c.type, n * static_cast<size_t>(p));
    fillInput(in, 0, in.count(), c.op, c.seed, r, 0);
    Buffer out = filled(c.type, n);
    std::byte* recv = c.in_place ? in.at(static_cast<size_t>(r) * n) : out.data();
    st = reduceScatter(comm, in.data(), recv, n, c.type, c.op, o);
    if (!st.isOk()) return st.toString();
    Buffer& res = c.in_place ? in : out;
    return checkReduction(res, c.in_place ? static_cast<size_t>(r) * n : 0, n, c.op, c.seed, p,
                          static_cast<size_t>(r) * n);
  }
  Buffer in(c.type, n);
  fillInput(in, 0, n, c.op, c.seed, r, 0);
  Buffer out = filled(c.type, n);
  void* recv = c.in_place ? static_cast<void*>(in.data()) : out.data();
  if (c.kind == CollKind::kAllreduce) {
    st = allreduce(comm, in.data(), recv, n, c.type, c.op, o);
  } else {
    st = reduce(comm, in.data(), r == c.root ? recv : nullptr, n, c.type, c.op, c.root, o);
  }
  if (!st.isOk()) return st.toString();
  if (c.kind == CollKind::kReduce && r != c.root) return "";
  return checkReduction(c.in_place ? in : out, 0, n, c.op, c.seed, p, 0);
}

std::string runGatherLike(Communicator& comm, const Case& c, const CallOptions& o) {
  const int p = comm.size();
  const int r = comm.rank();
  const size_t n = c.count;
  const size_t all = n * static_cast<size_t>(p);
  const bool gather = c.kind == CollKind::kGather;
  const bool receives = !gather || r == c.root;
  Buffer out = filled(c.type, receives ? all : 0);
  Buffer in(c.type, n);
  fillInput(in, 0, n, c.op, c.seed, r, 0);
  const void* send = in.data();
  if (c.in_place && receives) {
    fillInput(out, static_cast<size_t>(r) * n, n, c.op, c.seed, r, 0);
    send = out.at(static_cast<size_t>(r) * n);
  }
  Status st = gather
                  ? coll::gather(comm, send, receives ? out.data() : nullptr, n, c.type, c.root, o)
                  : allgather(comm, send, out.data(), n, c.type, o);
  if (!st.isOk()) return st.toString();
  return receives ? checkBlocks(out, 0, p, n, c) : "";
}

std::string runScatter(Communicator& comm, const Case& c, const CallOptions& o) {
  const int r = comm.rank();
  const size_t n = c.count;
  const bool isRoot = r == c.root;
  Buffer in(c.type, isRoot ? n * static_cast<size_t>(comm.size()) : 0);
  if (isRoot) fillInput(in, 0, in.count(), c.op, c.seed, r, 0);
  Buffer out = filled(c.type, n);
  std::byte* recv = c.in_place && isRoot ? in.at(static_cast<size_t>(r) * n) : out.data();
  Status st = scatter(comm, isRoot ? in.data() : nullptr, recv, n, c.type, c.root, o);
  if (!st.isOk()) return st.toString();
  const Buffer& res = c.in_place && isRoot ? in : out;
  return checkCopy(res, c.in_place && isRoot ? static_cast<size_t>(r) * n : 0, n, c.op, c.seed,
                   c.root, static_cast<size_t>(r) * n);
}

std::string runMoves(Communicator& comm, const Case& c, const CallOptions& o) {
  const int p = comm.size();
  const int r = comm.rank();
  const size_t n = c.count;
  if (c.kind == CollKind::kBroadcast) {
    Buffer buf = filled(c.type, n);
    if (r == c.root) fillInput(buf, 0, n, c.op, c.seed, r, 0);
    Status st = broadcast(comm, buf.data(), n, c.type, c.root, o);
    if (!st.isOk()) return st.toString();
    return checkCopy(buf, 0, n, c.op, c.seed, c.root, 0);
  }
  if (c.kind == CollKind::kAlltoall) {
    const size_t all = n * static_cast<size_t>(p);
    Buffer in(c.type, all);
    fillInput(in, 0, all, c.op, c.seed, r, 0);
    Buffer out = filled(c.type, all);
    Status st = alltoall(comm, in.data(), c.in_place ? in.data() : out.data(), n, c.type, o);
    if (!st.isOk()) return st.toString();
    const Buffer& res = c.in_place ? in : out;
    for (int j = 0; j < p; ++j) {
      std::string e = checkCopy(res, static_cast<size_t>(j) * n, n, c.op, c.seed, j,
                                static_cast<size_t>(r) * n);
      if (!e.empty()) return strCat("block ", j, ": ", e);
    }
    return "";
  }
  if (c.kind == CollKind::kScatter) return runScatter(comm, c, o);
  return runGatherLike(comm, c, o);
}

// Irregular counts: some ranks contribute nothing; displacements leave gaps.
void irregular(int p, uint64_t seed, std::vector<size_t>& counts, std::vector<size_t>& displs,
               size_t scale = 1) {
  counts.assign(static_cast<size_t>(p), 0);
  displs.assign(static_cast<size_t>(p), 0);
  size_t at = 0;
  for (int r = 0; r < p; ++r) {
    counts[static_cast<size_t>(r)] = (static_cast<size_t>(r) * 7 + seed) % 5 * 3 * scale;
    displs[static_cast<size_t>(r)] = at;
    at += counts[static_cast<size_t>(r)] + 2;
  }
}

size_t extent(const std::vector<size_t>& counts, const std::vector<size_t>& displs) {
  size_t e = 0;
  for (size_t i = 0; i < counts.size(); ++i) e = std::max(e, displs[i] + counts[i]);
  return e;
}

constexpr DataType kVType = DataType::kF32;
constexpr ReduceOp kVOp = ReduceOp::kSum;

}  // namespace

std::string Case::describe() const {
  return strCat(toString(kind), " algorithm=", algorithm.empty() ? "auto" : algorithm,
                " count=", count, in_place ? " in-place" : "", " root=", root,
                " chunk=", chunk_bytes, " ", toString(type), " ", toString(op), " seed=", seed);
}

std::string runCase(Communicator& comm, const Case& c) {
  const CallOptions o = optionsOf(c);
  switch (c.kind) {
    case CollKind::kBarrier: {
      Status st = barrier(comm, o);
      return st.isOk() ? "" : st.toString();
    }
    case CollKind::kAllreduce:
    case CollKind::kReduce:
    case CollKind::kReduceScatter: return runReductions(comm, c, o);
    default: return runMoves(comm, c, o);
  }
}

std::string runGatherv(Communicator& comm, int root, bool in_place, uint64_t seed,
                       const CallOptions& o, size_t scale) {
  const int r = comm.rank();
  std::vector<size_t> counts, displs;
  irregular(comm.size(), seed, counts, displs, scale);
  const size_t mine = counts[static_cast<size_t>(r)];
  Buffer out = filled(kVType, r == root ? extent(counts, displs) : 0);
  Buffer in(kVType, mine);
  fillInput(in, 0, mine, kVOp, seed, r, 0);
  const void* send = in.data();
  if (in_place && r == root) {
    fillInput(out, displs[static_cast<size_t>(r)], mine, kVOp, seed, r, 0);
    send = out.at(displs[static_cast<size_t>(r)]);
  }
  Status st = gatherv(comm, send, mine, out.data(), counts, displs, kVType, root, o);
  if (!st.isOk()) return st.toString();
  for (int j = 0; j < comm.size() && r == root; ++j) {
    std::string e = checkCopy(out, displs[static_cast<size_t>(j)], counts[static_cast<size_t>(j)],
                              kVOp, seed, j, 0);
    if (!e.empty()) return strCat("gatherv block ", j, ": ", e);
  }
  return "";
}

std::string runScatterv(Communicator& comm, int root, bool in_place, uint64_t seed,
                        const CallOptions& o, size_t scale) {
  const int r = comm.rank();
  std::vector<size_t> counts, displs;
  irregular(comm.size(), seed, counts, displs, scale);
  const size_t mine = counts[static_cast<size_t>(r)];
  Buffer in(kVType, r == root ? extent(counts, displs) : 0);
  if (r == root) fillInput(in, 0, in.count(), kVOp, seed, r, 0);
  Buffer out = filled(kVType, mine);
  const bool inPlace = in_place && r == root;
  std::byte* recv = inPlace ? in.at(displs[static_cast<size_t>(r)]) : out.data();
  Status st = scatterv(comm, in.data(), counts, displs, recv, mine, kVType, root, o);
  if (!st.isOk()) return st.toString();
  std::string e = checkCopy(inPlace ? in : out, inPlace ? displs[static_cast<size_t>(r)] : 0, mine,
                            kVOp, seed, root, displs[static_cast<size_t>(r)]);
  return e.empty() ? "" : "scatterv: " + e;
}

std::string runAllgatherv(Communicator& comm, bool in_place, uint64_t seed,
                          const CallOptions& o, size_t scale) {
  const int r = comm.rank();
  std::vector<size_t> counts, displs;
  irregular(comm.size(), seed, counts, displs, scale);
  const size_t mine = counts[static_cast<size_t>(r)];
  Buffer out = filled(kVType, extent(counts, displs));
  Buffer in(kVType, mine);
  fillInput(in, 0, mine, kVOp, seed, r, 0);
  const void* send = in.data();
  if (in_place) {
    fillInput(out, displs[static_cast<size_t>(r)], mine, kVOp, seed, r, 0);
    send = out.at(displs[static_cast<size_t>(r)]);
  }
  Status st = allgatherv(comm, send, mine, out.data(), counts, displs, kVType, o);
  if (!st.isOk()) return st.toString();
  for (int j = 0; j < comm.size(); ++j) {
    std::string e = checkCopy(out, displs[static_cast<size_t>(j)], counts[static_cast<size_t>(j)],
                              kVOp, seed, j, 0);
    if (!e.empty()) return strCat("allgatherv block ", j, ": ", e);
  }
  return "";
}

std::string runAlltoallv(Communicator& comm, uint64_t seed) {
  const int p = comm.size();
  const int r = comm.rank();
  auto amount = [seed](int from, int to) {
    return static_cast<size_t>((from * 5 + to * 3 + static_cast<int>(seed)) % 4) * 2;
  };
  std::vector<size_t> sc(static_cast<size_t>(p)), sd(sc.size()), rc(sc.size()), rd(sc.size());
  size_t sAt = 0, rAt = 1;
  for (int j = 0; j < p; ++j) {
    const auto u = static_cast<size_t>(j);
    sc[u] = amount(r, j);
    sd[u] = sAt;
    sAt += sc[u] + 1;
    rc[u] = amount(j, r);
    rd[u] = rAt;
    rAt += rc[u] + 3;
  }
  Buffer in(kVType, sAt);
  fillInput(in, 0, sAt, kVOp, seed, r, 0);
  Buffer out = filled(kVType, rAt);
  Status st = alltoallv(comm, in.data(), sc, sd, out.data(), rc, rd, kVType);
  if (!st.isOk()) return st.toString();
  for (int j = 0; j < p; ++j) {
    // Rank j sent its elements [sd_j[r], sd_j[r] + rc[j]); recompute sd_j[r].
    size_t at = 0;
    for (int k = 0; k < r; ++k) at += amount(j, k) + 1;
    std::string e =
        checkCopy(out, rd[static_cast<size_t>(j)], rc[static_cast<size_t>(j)], kVOp, seed, j, at);
    if (!e.empty()) return strCat("alltoallv block from ", j, ": ", e);
  }
  return "";
}

std::string runSendRecv(Communicator& comm, size_t count, int64_t tag, uint64_t seed) {
  const int p = comm.size();
  const int r = comm.rank();
  Buffer in(kVType, count);
  fillInput(in, 0, count, kVOp, seed, r, 0);
  Buffer out = filled(kVType, count);
  const int next = (r + 1) % p;
  const int prev = (r + p - 1) % p;
  Result<Request> rr = irecv(comm, out.data(), count, kVType, prev, tag);
  if (!rr.isOk()) return rr.status().toString();
  Result<Request> sr = isend(comm, in.data(), count, kVType, next, tag);
  if (!sr.isOk()) return sr.status().toString();
  for (Request* q : {&sr.value(), &rr.value()}) {
    Status st = q->wait();
    if (!st.isOk()) return st.toString();
  }
  std::string e = checkCopy(out, 0, count, kVOp, seed, prev, 0);
  return e.empty() ? "" : "recv: " + e;
}

}  // namespace weft::coll::testing
