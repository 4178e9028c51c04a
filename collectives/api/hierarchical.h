// Hierarchical allreduce: ranks of a node combine through the node's communicator (shared
// memory on one host), and only across nodes does data travel over the network.
//
//   WEFT_ASSIGN_OR_RETURN(auto h, coll::Hierarchy::create(*world));   // collective
//   WEFT_RETURN_IF_ERROR(h->allreduce(in, out, n, DataType::kF32, ReduceOp::kSum));
//
// Two forms, chosen per call (the same on every rank):
//  - sliced (every node has the same number L > 1 of ranks, vectors of kSlicedMinBytes or
//    more): intra-node reduce_scatter into L slices, allreduce of slice i among the ranks of
//    local rank i (one per node, L allreduces in parallel across the network), intra-node
//    allgather. Each rank sends 1/L of the vector across nodes and every link carries its
//    share. The count % L elements left over take the leader form.
//  - leader (otherwise): intra-node reduce to local rank 0, allreduce across the nodes'
//    leaders, intra-node broadcast.
//
// Contract
//  - create() is collective over `parent` (two split() calls: one sequence number each) and
//    keeps two derived communicators: the ranks of this rank's node (topology().node), and
//    the slice of this rank's local rank (one rank per node; local rank 0's slice is the
//    nodes' leaders). The parent must outlive the Hierarchy only as far as the Communicator
//    contract requires (shared internals); calls follow the parent's rules (same order on
//    every rank, one thread).
//  - allreduce() is collective over the parent's ranks; same arguments and in-place rules
//    as coll::allreduce. Each phase picks its own algorithm (tuner, WEFT_ALGO_<OP>);
//    CallOptions::algorithm applies to the allreduce across nodes. kAvg sums in every phase
//    and divides once per element on the rank that owns it after the cross-node phase, so
//    every rank gets bit-identical results. One deadline covers all phases.
//  - Errors name the phase ("hierarchical allreduce, intra-node reduce: ...") around the
//    collective's own error (operation, sequence number, waited-for ranks).
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>

#include "collectives/api/collectives.h"
#include "collectives/api/communicator.h"
#include "collectives/api/types.h"
#include "common/result.h"
#include "common/status.h"

namespace weft::coll {

// Also reachable as the blocking coll::allreduce's CallOptions::algorithm "hierarchical"
// (the communicator creates its Hierarchy on the first such call, collectively, and keeps
// it; iallreduce and WEFT_ALGO_ALLREDUCE do not offer it).
inline constexpr std::string_view kHierarchicalAlgorithm = "hierarchical";

class Hierarchy {
 public:
  static Result<std::unique_ptr<Hierarchy>> create(Communicator& parent,
                                                   std::optional<Deadline> deadline = {});

  Status allreduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op,
                   const CallOptions& opts = {});

  // Vectors from this size on take the sliced form (when the nodes are even).
  static constexpr size_t kSlicedMinBytes = 64 * 1024;

  int numNodes() const { return num_nodes_; }
  Communicator& nodeComm() { return *node_; }
  // nullptr on ranks that are not their node's leader.
  Communicator* leaders() { return local_rank_ == 0 ? slice_.get() : nullptr; }
  // Whether a call of this many bytes takes the sliced form.
  bool sliced(size_t bytes) const {
    return even_ && local_size_ > 1 && num_nodes_ > 1 && bytes >= kSlicedMinBytes;
  }

 private:
  Hierarchy(int parent_size, const Topology& topo, bool even, std::unique_ptr<Communicator> node,
            std::unique_ptr<Communicator> slice)
      : parent_size_(parent_size),
        num_nodes_(topo.num_nodes),
        local_rank_(topo.local_rank),
        local_size_(topo.local_size),
        even_(even),
        node_(std::move(node)),
        slice_(std::move(slice)) {}

  // The leader form over count elements (all of them, or the sliced form's leftover).
  Status leaderForm(const std::byte* send, std::byte* recv, size_t count, DataType type,
                    ReduceOp op, const CallOptions& phase, const CallOptions& across);
  Status slicedForm(const std::byte* send, std::byte* recv, size_t block, DataType type,
                    ReduceOp op, const CallOptions& phase, const CallOptions& across);

  int parent_size_;
  int num_nodes_;
  int local_rank_;
  int local_size_;
  bool even_;  // every node has local_size_ ranks
  std::unique_ptr<Communicator> node_;
  std::unique_ptr<Communicator> slice_;
};

namespace detail {
bool wantsHierarchical(const CallOptions& opts);
Status hierarchicalAllreduce(Communicator& comm, const void* send, void* recv, size_t count,
                             DataType type, ReduceOp op, const CallOptions& opts);
}  // namespace detail

}  // namespace weft::coll
