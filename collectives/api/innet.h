// In-network aggregation (SHARP-style) allreduce, emulated in software: a tree of
// "switches" reduces the ranks' data on its way up and broadcasts the result down.
//
//   WEFT_ASSIGN_OR_RETURN(auto net, coll::InNetwork::create(*world));   // collective
//   WEFT_RETURN_IF_ERROR(net->allreduce(in, out, n, DataType::kF32, ReduceOp::kSum));
//
// What it does (see collectives/innet/innet_tree.h for the tree and its hosting rules)
//  - Switches form a tree of radix WEFT_INNET_RADIX over the ranks. Each switch is a state
//    machine that runs inside one chosen rank's process, driven by that rank's own
//    allreduce call (no extra thread, no extra process: it shares the rank's transport
//    Context and uses a tag space of its own, a private communicator split off `parent`).
//  - Data path, as with SHARP: every rank streams its whole buffer once, in chunks of
//    WEFT_INNET_CHUNK bytes, to its leaf switch, and receives the result once, from it.
//    A switch reduces chunk c of its children in a fixed child order (the reducer kernels
//    of reduce/reducer.h) and forwards the partial result up; the root finalizes it (kAvg)
//    and sends it down, each switch forwarding it to its children. Chunks pipeline through
//    the levels, so large messages stream and latency grows with log_radix(ranks) hops.
//  - Credit-based flow control on every edge (WEFT_INNET_CREDITS): a switch holds at most
//    credits x chunk bytes per child, plus the same for its own output and parent link.
//  - Every chunk carries a header (sequence number, count, type, op, chunk number) that
//    the receiver checks.
//
// Contract
//  - create() is collective over `parent` (one split(): one sequence number of parent)
//    and connects the endpoints this rank's tree edges need. Options left 0 come from
//    WEFT_INNET_RADIX, WEFT_INNET_CHUNK and WEFT_INNET_CREDITS; they must be equal on
//    every rank. The InNetwork keeps its own communicator; `parent`'s world (its Context)
//    must outlive it.
//  - allreduce() is collective over the parent's ranks, called in the same order on every
//    rank, with the same count, type and op; arguments and in-place rules as
//    coll::allreduce (send == recv allowed; other overlaps are kInvalidArgument). All
//    types and ops of validateReduce(). Results are bit-identical on every rank (each
//    element is reduced once, in the tree's fixed order, then copied down).
//  - Errors: every wait is bounded by CallOptions::deadline (default WEFT_TIMEOUT). A rank
//    that died or a switch whose host died fails the operation with kPeerFailure naming
//    the operation, the edge (switch level.index, host and peer) and the dead rank; ranks
//    not next to it learn it through the store (Engine failure reports) or fail with
//    kTimeout listing the edges they were still waiting on. A count / type / op that
//    differs between ranks is kInvalidArgument on the switch host that sees it (the other
//    ranks then time out). Errors are sticky: later calls fail at once.
//  - Threads: the world's thread (as every communicator of the world).
//  - Memory: after a failure, the receive buffers are kept until process exit (the
//    transport may still write them).
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "collectives/api/collectives.h"
#include "collectives/api/communicator.h"
#include "collectives/api/types.h"
#include "common/deadline.h"
#include "common/result.h"
#include "common/status.h"

namespace weft::coll {

struct InNetOptions {
  int radix = 0;           // children per switch (>= 2); 0: WEFT_INNET_RADIX
  size_t chunk_bytes = 0;  // payload bytes per chunk message (>= 64); 0: WEFT_INNET_CHUNK
  int credits = 0;         // chunks in flight per tree edge (>= 1); 0: WEFT_INNET_CREDITS
};

class InNetwork {
 public:
  static Result<std::unique_ptr<InNetwork>> create(Communicator& parent,
                                                   const InNetOptions& options = {},
                                                   std::optional<Deadline> deadline = {});
  ~InNetwork();
  InNetwork(const InNetwork&) = delete;
  InNetwork& operator=(const InNetwork&) = delete;

  Status allreduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op,
                   const CallOptions& opts = {});

  int radix() const;
  size_t chunkBytes() const;
  int credits() const;
  int levels() const;
  // Switches this rank hosts, as "L<level>.<index>".
  std::vector<std::string> hostedSwitches() const;
  // The whole tree, one line per switch (innet_tree.h, InNetTree::toString).
  std::string describeTree() const;

  struct Impl;

 private:
  explicit InNetwork(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::coll
