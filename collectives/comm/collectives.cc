// The collective API (collectives.h): argument validation, then CommCore::issue*().
#include "collectives/api/collectives.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "collectives/api/hierarchical.h"
#include "collectives/comm/comm_core.h"
#include "collectives/comm/v_plans.h"
#include "collectives/executor/tags.h"
#include "collectives/innet/innet_select.h"

namespace weft::coll {

using detail::CallSpec;
using detail::OpCode;

namespace {

const char* nameOf(OpCode op) {
  return detail::opName(op);
}

Status checkType(OpCode op, DataType type) {
  if (isValid(type)) return Status::ok();
  return WEFT_ERROR(StatusCode::kInvalidArgument, nameOf(op), ": invalid data type ",
                    static_cast<int>(type));
}

Status checkBuffer(OpCode op, const char* which, const void* p, size_t count) {
  if (p != nullptr || count == 0) return Status::ok();
  return WEFT_ERROR(StatusCode::kInvalidArgument, nameOf(op), ": ", which, " buffer is null but ",
                    count, " elements are expected");
}

Status checkRank(OpCode op, const char* what, int r, int size) {
  if (r >= 0 && r < size) return Status::ok();
  return WEFT_ERROR(StatusCode::kInvalidArgument, nameOf(op), ": ", what, " ", r, " outside [0, ",
                    size, ")");
}

Status checkCount(OpCode op, size_t count, int size) {
  if (count <= std::numeric_limits<size_t>::max() / 16 / static_cast<size_t>(size)) {
    return Status::ok();
  }
  return WEFT_ERROR(StatusCode::kInvalidArgument, nameOf(op), ": count ", count, " x ", size,
                    " ranks overflows");
}

// Type, reduction, count and both buffers of a call.
Status validate(const CallSpec& c, int size) {
  WEFT_RETURN_IF_ERROR(checkType(c.op, c.type));
  if (c.reduce_op) {
    Status st = validateReduce(c.type, *c.reduce_op);
    if (!st.isOk()) return st.withContext(nameOf(c.op));
  }
  WEFT_RETURN_IF_ERROR(checkCount(c.op, c.count, size));
  WEFT_RETURN_IF_ERROR(checkBuffer(c.op, "input", c.input, c.input_count));
  return checkBuffer(c.op, "output", c.output, c.output_count);
}

Result<Request> issue(Communicator& comm, const Result<CallSpec>& call, const CallOptions& opts) {
  if (!call.isOk()) return call.status();
  WEFT_RETURN_IF_ERROR(validate(*call, comm.size()));
  auto& core = comm.core();
  return core.issueCollective(core.shared_from_this(), *call, opts);
}

Status blocking(Result<Request> r) {
  if (!r.isOk()) return r.status();
  return r->wait();
}

// The blocking form: a call that takes the shared-memory path runs inside this function
// without a Request (small calls feel the bookkeeping); others issue and wait.
Status run(Communicator& comm, const Result<CallSpec>& call, const CallOptions& opts) {
  if (!call.isOk()) return call.status();
  WEFT_RETURN_IF_ERROR(validate(*call, comm.size()));
  auto& core = comm.core();
  if (core.wantsShm(*call, opts)) return core.runShmBlocking(*call, opts);
  return blocking(core.issueCollective(core.shared_from_this(), *call, opts));
}

CallSpec spec(OpCode op, DataType type, size_t count, const void* in, size_t in_count, void* out,
              size_t out_count, std::optional<int64_t> in_place_delta) {
  CallSpec c;
  c.op = op;
  c.type = type;
  c.count = count;
  c.input = in;
  c.input_count = in_count;
  c.output = out;
  c.output_count = out_count;
  c.in_place_delta = in_place_delta;
  return c;
}

size_t times(size_t count, int size) {
  return count * static_cast<size_t>(size);
}
int64_t elems(size_t n) {
  return static_cast<int64_t>(n);
}

// ---- each operation's CallSpec (shared by the non-blocking and the blocking form) ----

CallSpec barrierCall() {
  return spec(OpCode::kBarrier, DataType::kU8, 0, nullptr, 0, nullptr, 0, {});
}

Result<CallSpec> broadcastCall(const Communicator& comm, void* buffer, size_t count, DataType type,
                               int root) {
  WEFT_RETURN_IF_ERROR(checkRank(OpCode::kBroadcast, "root", root, comm.size()));
  const bool isRoot = comm.rank() == root;
  CallSpec c = spec(OpCode::kBroadcast, type, count, isRoot ? buffer : nullptr, isRoot ? count : 0,
                    buffer, count, 0);
  c.root = root;
  return c;
}

Result<CallSpec> reduceCall(const Communicator& comm, const void* send, void* recv, size_t count,
                            DataType type, ReduceOp op, int root) {
  WEFT_RETURN_IF_ERROR(checkRank(OpCode::kReduce, "root", root, comm.size()));
  const bool isRoot = comm.rank() == root;
  CallSpec c = spec(OpCode::kReduce, type, count, send, count, isRoot ? recv : nullptr,
                    isRoot ? count : 0, 0);
  c.reduce_op = op;
  c.root = root;
  return c;
}

CallSpec allreduceCall(const void* send, void* recv, size_t count, DataType type, ReduceOp op) {
  CallSpec c = spec(OpCode::kAllreduce, type, count, send, count, recv, count, 0);
  c.reduce_op = op;
  return c;
}

Result<CallSpec> reduceScatterCall(const Communicator& comm, const void* send, void* recv,
                                   size_t count, DataType type, ReduceOp op) {
  WEFT_RETURN_IF_ERROR(checkCount(OpCode::kReduceScatter, count, comm.size()));
  CallSpec c = spec(OpCode::kReduceScatter, type, count, send, times(count, comm.size()), recv,
                    count, -elems(times(count, comm.rank())));
  c.reduce_op = op;
  return c;
}

Result<CallSpec> allgatherCall(const Communicator& comm, const void* send, void* recv, size_t count,
                               DataType type) {
  WEFT_RETURN_IF_ERROR(checkCount(OpCode::kAllgather, count, comm.size()));
  return spec(OpCode::kAllgather, type, count, send, count, recv, times(count, comm.size()),
              elems(times(count, comm.rank())));
}

Result<CallSpec> gatherCall(const Communicator& comm, const void* send, void* recv, size_t count,
                            DataType type, int root) {
  WEFT_RETURN_IF_ERROR(checkRank(OpCode::kGather, "root", root, comm.size()));
  WEFT_RETURN_IF_ERROR(checkCount(OpCode::kGather, count, comm.size()));
  const bool isRoot = comm.rank() == root;
  CallSpec c = spec(OpCode::kGather, type, count, send, count, isRoot ? recv : nullptr,
                    isRoot ? times(count, comm.size()) : 0, elems(times(count, comm.rank())));
  c.root = root;
  return c;
}

Result<CallSpec> scatterCall(const Communicator& comm, const void* send, void* recv, size_t count,
                             DataType type, int root) {
  WEFT_RETURN_IF_ERROR(checkRank(OpCode::kScatter, "root", root, comm.size()));
  WEFT_RETURN_IF_ERROR(checkCount(OpCode::kScatter, count, comm.size()));
  const bool isRoot = comm.rank() == root;
  CallSpec c =
      spec(OpCode::kScatter, type, count, isRoot ? send : nullptr,
           isRoot ? times(count, comm.size()) : 0, recv, count, -elems(times(count, root)));
  c.root = root;
  return c;
}

Result<CallSpec> alltoallCall(const Communicator& comm, const void* send, void* recv, size_t count,
                              DataType type) {
  WEFT_RETURN_IF_ERROR(checkCount(OpCode::kAlltoall, count, comm.size()));
  const size_t all = times(count, comm.size());
  return spec(OpCode::kAlltoall, type, count, send, all, recv, all, 0);
}

}  // namespace

Result<Request> ibarrier(Communicator& comm, const CallOptions& opts) {
  return issue(comm, barrierCall(), opts);
}
Result<Request> ibroadcast(Communicator& comm, void* buffer, size_t count, DataType type, int root,
                           const CallOptions& opts) {
  return issue(comm, broadcastCall(comm, buffer, count, type, root), opts);
}
Result<Request> ireduce(Communicator& comm, const void* send, void* recv, size_t count,
                        DataType type, ReduceOp op, int root, const CallOptions& opts) {
  return issue(comm, reduceCall(comm, send, recv, count, type, op, root), opts);
}
Result<Request> iallreduce(Communicator& comm, const void* send, void* recv, size_t count,
                           DataType type, ReduceOp op, const CallOptions& opts) {
  return issue(comm, allreduceCall(send, recv, count, type, op), opts);
}
Result<Request> ireduceScatter(Communicator& comm, const void* send, void* recv, size_t count,
                               DataType type, ReduceOp op, const CallOptions& opts) {
  return issue(comm, reduceScatterCall(comm, send, recv, count, type, op), opts);
}
Result<Request> iallgather(Communicator& comm, const void* send, void* recv, size_t count,
                           DataType type, const CallOptions& opts) {
  return issue(comm, allgatherCall(comm, send, recv, count, type), opts);
}
Result<Request> igather(Communicator& comm, const void* send, void* recv, size_t count,
                        DataType type, int root, const CallOptions& opts) {
  return issue(comm, gatherCall(comm, send, recv, count, type, root), opts);
}
Result<Request> iscatter(Communicator& comm, const void* send, void* recv, size_t count,
                         DataType type, int root, const CallOptions& opts) {
  return issue(comm, scatterCall(comm, send, recv, count, type, root), opts);
}
Result<Request> ialltoall(Communicator& comm, const void* send, void* recv, size_t count,
                          DataType type, const CallOptions& opts) {
  return issue(comm, alltoallCall(comm, send, recv, count, type), opts);
}

Status barrier(Communicator& comm, const CallOptions& opts) {
  return run(comm, barrierCall(), opts);
}
Status broadcast(Communicator& comm, void* buffer, size_t count, DataType type, int root,
                 const CallOptions& opts) {
  return run(comm, broadcastCall(comm, buffer, count, type, root), opts);
}
Status reduce(Communicator& comm, const void* send, void* recv, size_t count, DataType type,
              ReduceOp op, int root, const CallOptions& opts) {
  return run(comm, reduceCall(comm, send, recv, count, type, op, root), opts);
}
Status allreduce(Communicator& comm, const void* send, void* recv, size_t count, DataType type,
                 ReduceOp op, const CallOptions& opts) {
  if (detail::wantsInNetwork(comm, opts)) {
    return detail::inNetworkAllreduce(comm, send, recv, count, type, op, opts);
  }
  if (detail::wantsHierarchical(opts)) {
    return detail::hierarchicalAllreduce(comm, send, recv, count, type, op, opts);
  }
  return run(comm, allreduceCall(send, recv, count, type, op), opts);
}
Status reduceScatter(Communicator& comm, const void* send, void* recv, size_t count, DataType type,
                     ReduceOp op, const CallOptions& opts) {
  return run(comm, reduceScatterCall(comm, send, recv, count, type, op), opts);
}
Status allgather(Communicator& comm, const void* send, void* recv, size_t count, DataType type,
                 const CallOptions& opts) {
  return run(comm, allgatherCall(comm, send, recv, count, type), opts);
}
Status gather(Communicator& comm, const void* send, void* recv, size_t count, DataType type,
              int root, const CallOptions& opts) {
  return run(comm, gatherCall(comm, send, recv, count, type, root), opts);
}
Status scatter(Communicator& comm, const void* send, void* recv, size_t count, DataType type,
               int root, const CallOptions& opts) {
  return run(comm, scatterCall(comm, send, recv, count, type, root), opts);
}
Status alltoall(Communicator& comm, const void* send, void* recv, size_t count, DataType type,
                const CallOptions& opts) {
  return run(comm, alltoallCall(comm, send, recv, count, type), opts);
}

// ---- v-variants ----

namespace {

// counts / displs have one entry per rank; returns the extent (max displ + count) and
// checks that the non-empty blocks do not overlap.
Result<size_t> blockExtent(OpCode op, const char* which, std::span<const size_t> counts,
                           std::span<const size_t> displs, int size, bool disjoint) {
  if (counts.size() != static_cast<size_t>(size) || displs.size() != static_cast<size_t>(size)) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, nameOf(op), ": ", which, " counts (",
                      counts.size(), ") and displacements (", displs.size(),
                      ") need one entry per rank (", size, ")");
  }
  std::vector<std::pair<size_t, size_t>> blocks;
  size_t extent = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    if (counts[r] > (size_t{1} << 56) || displs[r] > (size_t{1} << 56)) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, nameOf(op), ": ", which, " block ", r,
                        " is too large");
    }
    if (counts[r] == 0) continue;
    extent = std::max(extent, displs[r] + counts[r]);
    blocks.push_back({displs[r], displs[r] + counts[r]});
  }
  std::sort(blocks.begin(), blocks.end());
  for (size_t i = 1; disjoint && i < blocks.size(); ++i) {
    if (blocks[i].first < blocks[i - 1].second) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, nameOf(op), ": ", which,
                        " blocks overlap at element ", blocks[i].first);
    }
  }
  return extent;
}

Status checkOwnCount(OpCode op, const char* what, size_t given, std::span<const size_t> counts,
                     int rank) {
  if (given == counts[static_cast<size_t>(rank)]) return Status::ok();
  return WEFT_ERROR(StatusCode::kInvalidArgument, nameOf(op), ": ", what, " ", given,
                    " differs from counts[", rank, "] = ", counts[static_cast<size_t>(rank)]);
}

// The v-variants' blocks: the signature hash (WEFT_CHECK) and the arrays (shared memory).
void setBlocks(CallSpec& c, std::span<const size_t> counts, std::span<const size_t> displs) {
  c.counts_hash = detail::hashCounts(counts, displs);
  c.v_counts = counts.data();
  c.v_displs = displs.data();
}

// build: () -> Plan, called only when the call does not take the shared-memory path.
template <typename BuildFn>
Result<Request> issueV(Communicator& comm, const CallSpec& call, BuildFn&& build,
                       const CallOptions& opts) {
  WEFT_RETURN_IF_ERROR(validate(call, comm.size()));
  auto& core = comm.core();
  if (core.wantsShm(call, opts)) return core.issueShm(core.shared_from_this(), call, opts);
  const Plan plan = build();
  if (!opts.algorithm.empty() && opts.algorithm != plan.algorithm) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, nameOf(call.op), ": unknown algorithm \"",
                      opts.algorithm, "\"; valid: ", plan.algorithm, ", shm");
  }
  return core.issuePlan(core.shared_from_this(), call, plan, opts);
}

}  // namespace

Result<Request> igatherv(Communicator& comm, const void* send, size_t send_count, void* recv,
                         std::span<const size_t> counts, std::span<const size_t> displs,
                         DataType type, int root, const CallOptions& opts) {
  const OpCode op = OpCode::kGatherv;
  WEFT_RETURN_IF_ERROR(checkRank(op, "root", root, comm.size()));
  WEFT_ASSIGN_OR_RETURN(size_t extent,
                        blockExtent(op, "receive", counts, displs, comm.size(), true));
  WEFT_RETURN_IF_ERROR(checkOwnCount(op, "send count", send_count, counts, comm.rank()));
  const bool isRoot = comm.rank() == root;
  CallSpec c = spec(op, type, send_count, send, send_count, isRoot ? recv : nullptr,
                    isRoot ? extent : 0, elems(displs[static_cast<size_t>(comm.rank())]));
  c.root = root;
  setBlocks(c, counts, displs);
  return issueV(
      comm, c,
      [&] { return detail::buildGathervPlan(comm.rank(), comm.size(), root, counts, displs); },
      opts);
}

Result<Request> iscatterv(Communicator& comm, const void* send, std::span<const size_t> counts,
                          std::span<const size_t> displs, void* recv, size_t recv_count,
                          DataType type, int root, const CallOptions& opts) {
  const OpCode op = OpCode::kScatterv;
  WEFT_RETURN_IF_ERROR(checkRank(op, "root", root, comm.size()));
  WEFT_ASSIGN_OR_RETURN(size_t extent, blockExtent(op, "send", counts, displs, comm.size(), false));
  WEFT_RETURN_IF_ERROR(checkOwnCount(op, "receive count", recv_count, counts, comm.rank()));
  const bool isRoot = comm.rank() == root;
  CallSpec c = spec(op, type, recv_count, isRoot ? send : nullptr, isRoot ? extent : 0, recv,
                    recv_count, -elems(displs[static_cast<size_t>(root)]));
  c.root = root;
  setBlocks(c, counts, displs);
  return issueV(
      comm, c,
      [&] { return detail::buildScattervPlan(comm.rank(), comm.size(), root, counts, displs); },
      opts);
}

Result<Request> iallgatherv(Communicator& comm, const void* send, size_t send_count, void* recv,
                            std::span<const size_t> counts, std::span<const size_t> displs,
                            DataType type, const CallOptions& opts) {
  const OpCode op = OpCode::kAllgatherv;
  WEFT_ASSIGN_OR_RETURN(size_t extent,
                        blockExtent(op, "receive", counts, displs, comm.size(), true));
  WEFT_RETURN_IF_ERROR(checkOwnCount(op, "send count", send_count, counts, comm.rank()));
  CallSpec c = spec(op, type, send_count, send, send_count, recv, extent,
                    elems(displs[static_cast<size_t>(comm.rank())]));
  setBlocks(c, counts, displs);
  return issueV(
      comm, c,
      [&] { return detail::buildAllgathervPlan(comm.rank(), comm.size(), counts, displs); }, opts);
}

Result<Request> ialltoallv(Communicator& comm, const void* send,
                           std::span<const size_t> send_counts, std::span<const size_t> send_displs,
                           void* recv, std::span<const size_t> recv_counts,
                           std::span<const size_t> recv_displs, DataType type,
                           const CallOptions& opts) {
  const OpCode op = OpCode::kAlltoallv;
  WEFT_ASSIGN_OR_RETURN(size_t inExtent,
                        blockExtent(op, "send", send_counts, send_displs, comm.size(), false));
  WEFT_ASSIGN_OR_RETURN(size_t outExtent,
                        blockExtent(op, "receive", recv_counts, recv_displs, comm.size(), true));
  CallSpec c = spec(op, type, 0, send, inExtent, recv, outExtent, std::nullopt);
  return issueV(
      comm, c,
      [&] {
        return detail::buildAlltoallvPlan(comm.rank(), comm.size(), send_counts, send_displs,
                                          recv_counts, recv_displs);
      },
      opts);
}

Status gatherv(Communicator& comm, const void* send, size_t send_count, void* recv,
               std::span<const size_t> counts, std::span<const size_t> displs, DataType type,
               int root, const CallOptions& opts) {
  return blocking(igatherv(comm, send, send_count, recv, counts, displs, type, root, opts));
}
Status scatterv(Communicator& comm, const void* send, std::span<const size_t> counts,
                std::span<const size_t> displs, void* recv, size_t recv_count, DataType type,
                int root, const CallOptions& opts) {
  return blocking(iscatterv(comm, send, counts, displs, recv, recv_count, type, root, opts));
}
Status allgatherv(Communicator& comm, const void* send, size_t send_count, void* recv,
                  std::span<const size_t> counts, std::span<const size_t> displs, DataType type,
                  const CallOptions& opts) {
  return blocking(iallgatherv(comm, send, send_count, recv, counts, displs, type, opts));
}
Status alltoallv(Communicator& comm, const void* send, std::span<const size_t> send_counts,
                 std::span<const size_t> send_displs, void* recv,
                 std::span<const size_t> recv_counts, std::span<const size_t> recv_displs,
                 DataType type, const CallOptions& opts) {
  return blocking(
      ialltoallv(comm, send, send_counts, send_displs, recv, recv_counts, recv_displs, type, opts));
}

// ---- point to point ----

namespace {

Result<Request> issueP2p(Communicator& comm, OpCode op, const void* in, void* out, size_t count,
                         DataType type, int peer, int64_t tag, const CallOptions& opts) {
  WEFT_RETURN_IF_ERROR(checkRank(op, "peer", peer, comm.size()));
  if (peer == comm.rank()) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, nameOf(op), ": rank ", peer,
                      " cannot message itself");
  }
  if (tag < 0 || tag > detail::kMaxUserTag) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, nameOf(op), ": tag ", tag, " outside [0, ",
                      detail::kMaxUserTag, "]");
  }
  CallSpec c = spec(op, type, count, in, in ? count : 0, out, out ? count : 0, std::nullopt);
  if (op == OpCode::kSend) c.input_count = count;
  if (op == OpCode::kRecv) c.output_count = count;
  c.root = peer;
  c.tag = tag;
  WEFT_RETURN_IF_ERROR(validate(c, comm.size()));
  auto& core = comm.core();
  return core.issuePointToPoint(core.shared_from_this(), c, opts);
}

}  // namespace

Result<Request> isend(Communicator& comm, const void* buffer, size_t count, DataType type, int peer,
                      int64_t tag, const CallOptions& opts) {
  return issueP2p(comm, OpCode::kSend, buffer, nullptr, count, type, peer, tag, opts);
}
Result<Request> irecv(Communicator& comm, void* buffer, size_t count, DataType type, int peer,
                      int64_t tag, const CallOptions& opts) {
  return issueP2p(comm, OpCode::kRecv, nullptr, buffer, count, type, peer, tag, opts);
}
Status send(Communicator& comm, const void* buffer, size_t count, DataType type, int peer,
            int64_t tag, const CallOptions& opts) {
  return blocking(isend(comm, buffer, count, type, peer, tag, opts));
}
Status recv(Communicator& comm, void* buffer, size_t count, DataType type, int peer, int64_t tag,
            const CallOptions& opts) {
  return blocking(irecv(comm, buffer, count, type, peer, tag, opts));
}

}  // namespace weft::coll
