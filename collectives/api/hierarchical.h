// Hierarchical allreduce: reduce inside each node, allreduce across the nodes' leaders,
// broadcast inside each node. Across nodes only one rank per node sends, so the slow links
// carry 1/local_size of what a flat ring over all ranks would put on them.
//
//   WEFT_ASSIGN_OR_RETURN(auto h, coll::Hierarchy::create(*world));   // collective
//   WEFT_RETURN_IF_ERROR(h->allreduce(in, out, n, DataType::kF32, ReduceOp::kSum));
//
// Contract
//  - create() is collective over `parent` (two split() calls: one sequence number each) and
//    keeps two derived communicators: the ranks of this rank's node (topology().node), and
//    the node leaders (local rank 0 of every node; nullptr elsewhere). The parent must
//    outlive the Hierarchy only as far as the Communicator contract requires (shared
//    internals); calls follow the parent's rules (same order on every rank, one thread).
//  - allreduce() is collective over the parent's ranks; same arguments and in-place rules
//    as coll::allreduce. Each phase picks its own algorithm (tuner, WEFT_ALGO_REDUCE /
//    _ALLREDUCE / _BROADCAST); CallOptions::algorithm applies to the leaders' allreduce.
//    kAvg sums in both phases and divides once on the leader, so every rank gets the
//    leader's bit-identical result. One deadline covers the three phases.
//  - Errors name the phase ("hierarchical allreduce, intra-node reduce: ...") around the
//    collective's own error (operation, sequence number, waited-for ranks).
#pragma once

#include <cstddef>
#include <memory>

#include "collectives/api/collectives.h"
#include "collectives/api/communicator.h"
#include "collectives/api/types.h"
#include "common/result.h"
#include "common/status.h"

namespace weft::coll {

class Hierarchy {
 public:
  static Result<std::unique_ptr<Hierarchy>> create(Communicator& parent,
                                                   std::optional<Deadline> deadline = {});

  Status allreduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op,
                   const CallOptions& opts = {});

  int numNodes() const { return num_nodes_; }
  Communicator& nodeComm() { return *node_; }
  // nullptr on ranks that are not their node's leader.
  Communicator* leaders() { return leaders_.get(); }

 private:
  Hierarchy(int parent_size, int num_nodes, std::unique_ptr<Communicator> node,
            std::unique_ptr<Communicator> leaders)
      : parent_size_(parent_size),
        num_nodes_(num_nodes),
        node_(std::move(node)),
        leaders_(std::move(leaders)) {}

  int parent_size_;
  int num_nodes_;
  std::unique_ptr<Communicator> node_;
  std::unique_ptr<Communicator> leaders_;
};

}  // namespace weft::coll
