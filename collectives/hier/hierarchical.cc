#include "collectives/api/hierarchical.h"

#include <algorithm>
#include <vector>

#include "collectives/comm/comm_core.h"
#include "collectives/comm/signature.h"
#include "collectives/reduce/reducer.h"
#include "common/deadline.h"

namespace weft::coll {

Result<std::unique_ptr<Hierarchy>> Hierarchy::create(Communicator& parent,
                                                     std::optional<Deadline> deadline) {
  const Topology& topo = parent.topology();
  WEFT_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> node,
                        parent.split(topo.node, parent.rank(), deadline));
  WEFT_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> slice,
                        parent.split(topo.local_rank, parent.rank(), deadline));
  if (node == nullptr || slice == nullptr) {
    return WEFT_ERROR(StatusCode::kInternal, "hierarchical setup: rank ", parent.rank(),
                      " got no ", node == nullptr ? "node" : "slice", " communicator (node ",
                      topo.node, ", local rank ", topo.local_rank, ")");
  }
  std::vector<int> per_node(static_cast<size_t>(topo.num_nodes), 0);
  for (int n : topo.node_of_rank) ++per_node[static_cast<size_t>(n)];
  const bool even = std::all_of(per_node.begin(), per_node.end(),
                                [&](int k) { return k == per_node.front(); });
  return std::unique_ptr<Hierarchy>(
      new Hierarchy(parent.size(), topo, even, std::move(node), std::move(slice)));
}

Status Hierarchy::leaderForm(const std::byte* send, std::byte* recv, size_t count, DataType type,
                             ReduceOp op, const CallOptions& phase, const CallOptions& across) {
  const ReduceOp sum_op = op == ReduceOp::kAvg ? ReduceOp::kSum : op;
  // 1. Node-local reduce to the leader (local rank 0), into recv.
  Status st = reduce(*node_, send, recv, count, type, sum_op, 0, phase);
  if (!st.isOk()) return st.withContext("hierarchical allreduce, intra-node reduce");
  // 2. Leaders allreduce in place, then divide once for kAvg.
  if (Communicator* leaders = this->leaders()) {
    st = coll::allreduce(*leaders, recv, recv, count, type, sum_op, across);
    if (!st.isOk()) return st.withContext("hierarchical allreduce, inter-node allreduce");
    if (op == ReduceOp::kAvg) {
      st = finalizeReduce(type, op, recv, count, static_cast<size_t>(parent_size_));
      if (!st.isOk()) return st.withContext("hierarchical allreduce");
    }
  }
  // 3. Node-local broadcast of the leader's result.
  st = broadcast(*node_, recv, count, type, 0, phase);
  if (!st.isOk()) return st.withContext("hierarchical allreduce, intra-node broadcast");
  return Status::ok();
}

Status Hierarchy::slicedForm(const std::byte* send, std::byte* recv, size_t block, DataType type,
                             ReduceOp op, const CallOptions& phase, const CallOptions& across) {
  const ReduceOp sum_op = op == ReduceOp::kAvg ? ReduceOp::kSum : op;
  std::byte* mine = recv + static_cast<size_t>(local_rank_) * block * sizeOf(type);
  // 1. Node-local reduce_scatter: slice `local rank` of the node's sum lands in `mine` (the
  //    in-place layout when send == recv).
  Status st = reduceScatter(*node_, send, mine, block, type, sum_op, phase);
  if (!st.isOk()) return st.withContext("hierarchical allreduce, intra-node reduce_scatter");
  // 2. The slice across nodes, in place; kAvg divides once, here.
  st = coll::allreduce(*slice_, mine, mine, block, type, sum_op, across);
  if (!st.isOk()) return st.withContext("hierarchical allreduce, inter-node allreduce");
  if (op == ReduceOp::kAvg) {
    st = finalizeReduce(type, op, mine, block, static_cast<size_t>(parent_size_));
    if (!st.isOk()) return st.withContext("hierarchical allreduce");
  }
  // 3. Node-local allgather of the slices, in place.
  st = allgather(*node_, mine, recv, block, type, phase);
  if (!st.isOk()) return st.withContext("hierarchical allreduce, intra-node allgather");
  return Status::ok();
}

Status Hierarchy::allreduce(const void* send, void* recv, size_t count, DataType type,
                            ReduceOp op, const CallOptions& opts) {
  WEFT_RETURN_IF_ERROR(validateReduce(type, op));
  CallOptions phase = opts;
  if (!phase.deadline) {
    phase.deadline = Deadline::afterSeconds(node_->core().config().timeout_s);
  }
  phase.algorithm = {};
  CallOptions across = phase;
  across.algorithm = opts.algorithm;
  const auto* in = static_cast<const std::byte*>(send);
  auto* out = static_cast<std::byte*>(recv);
  const size_t es = sizeOf(type);
  if ((in == nullptr || out == nullptr) && count != 0) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "hierarchical allreduce of ", count,
                      " elements: ", in == nullptr ? "send" : "recv", " buffer is null");
  }
  if (!sliced(count * es)) return leaderForm(in, out, count, type, op, phase, across);
  const size_t block = count / static_cast<size_t>(local_size_);
  const size_t main = block * static_cast<size_t>(local_size_);
  WEFT_RETURN_IF_ERROR(slicedForm(in, out, block, type, op, phase, across));
  if (main == count) return Status::ok();
  return leaderForm(in + main * es, out + main * es, count - main, type, op, phase, across);
}

namespace detail {

bool wantsHierarchical(const CallOptions& opts) {
  return opts.algorithm == kHierarchicalAlgorithm;
}

Status hierarchicalAllreduce(Communicator& comm, const void* send, void* recv, size_t count,
                             DataType type, ReduceOp op, const CallOptions& opts) {
  WEFT_RETURN_IF_ERROR(checkAllreduceCall(comm, kHierarchicalAlgorithm, count, type, op, opts));
  std::shared_ptr<Hierarchy>& h = comm.core().hierarchy();
  if (h == nullptr) {
    Result<std::unique_ptr<Hierarchy>> made = Hierarchy::create(comm, opts.deadline);
    if (!made.isOk()) return made.status().withContext("allreduce, algorithm hierarchical");
    h = std::move(*made);
  }
  CallOptions phases = opts;
  phases.algorithm = {};  // the phases pick their own (tuner, WEFT_ALGO_<OP>)
  return h->allreduce(send, recv, count, type, op, phases);
}

}  // namespace detail
}  // namespace weft::coll
