#include "collectives/api/hierarchical.h"

#include "collectives/comm/comm_core.h"
#include "collectives/reduce/reducer.h"
#include "common/deadline.h"

namespace weft::coll {

Result<std::unique_ptr<Hierarchy>> Hierarchy::create(Communicator& parent,
                                                     std::optional<Deadline> deadline) {
  const Topology& topo = parent.topology();
  WEFT_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> node,
                        parent.split(topo.node, parent.rank(), deadline));
  const int leader_color = topo.local_rank == 0 ? 0 : Communicator::kUndefinedColor;
  WEFT_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> leaders,
                        parent.split(leader_color, parent.rank(), deadline));
  if (node == nullptr) {
    return WEFT_ERROR(StatusCode::kInternal, "hierarchical setup: rank ", parent.rank(),
                      " got no node communicator for node ", topo.node);
  }
  return std::unique_ptr<Hierarchy>(
      new Hierarchy(parent.size(), topo.num_nodes, std::move(node), std::move(leaders)));
}

Status Hierarchy::allreduce(const void* send, void* recv, size_t count, DataType type,
                            ReduceOp op, const CallOptions& opts) {
  WEFT_RETURN_IF_ERROR(validateReduce(type, op));
  CallOptions phase = opts;
  if (!phase.deadline) {
    phase.deadline = Deadline::afterSeconds(node_->core().config().timeout_s);
  }
  phase.algorithm = {};
  const ReduceOp sum_op = op == ReduceOp::kAvg ? ReduceOp::kSum : op;
  // 1. Node-local reduce to the leader (local rank 0), into recv.
  Status st = reduce(*node_, send, recv, count, type, sum_op, 0, phase);
  if (!st.isOk()) return st.withContext("hierarchical allreduce, intra-node reduce");
  // 2. Leaders allreduce in place, then divide once for kAvg.
  if (leaders_ != nullptr) {
    CallOptions across = phase;
    across.algorithm = opts.algorithm;
    st = coll::allreduce(*leaders_, recv, recv, count, type, sum_op, across);
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

}  // namespace weft::coll
