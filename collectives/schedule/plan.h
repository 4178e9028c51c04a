// A collective as a per-rank plan: what one rank sends, receives, reduces and copies, in
// which order. Algorithms (ring, halving-doubling, trees, Bruck, ...) build plans as pure
// functions of (operation, rank, size, count, root); the executor runs a plan on a
// communicator, splitting slices into chunks and pipelining them. Plans are tested without a
// network: tests/unit/schedule_test.cc runs every rank's plan in memory (plan_sim.h) and
// checks the results, and golden strings pin the exact schedules.
//
// Model
// - Buffers: kInput (the caller's send buffer), kOutput (the caller's receive buffer) and
//   kScratch (executor-owned, `scratch_count` elements). Every element has the collective's
//   data type. inputCount() / outputCount() below give each rank's buffer extents; a rank
//   whose extent is 0 (broadcast input off the root, reduce / gather output off the root,
//   scatter input off the root) may pass nullptr and its plan never touches that buffer.
// - In-place calls: input and output may alias, as follows (the NCCL / MPI conventions);
//   plans never depend on them being distinct or equal, i.e. a plan is correct both ways:
//     allreduce, reduce, broadcast, alltoall: input == output;
//     reduce_scatter: output == input + rank*count;
//     allgather, gather (root): input == output + rank*count;
//     scatter (root): output == input + root*count.
//   A step's source and destination memory are identical or disjoint, never partially
//   overlapping: an identical kCopy is a no-op (the executor skips it), an identical
//   kRecvReduce accumulates in place.
// - Slices are element ranges of a buffer.
// - A plan is a sequence of rounds. The steps of one round may run concurrently (no two of
//   them touch overlapping memory unless both only read it). A step of round k may start on
//   a chunk once every step of an earlier round that touches an overlapping memory range,
//   where at least one of the two writes it, has finished that chunk (read-after-write,
//   write-after-read, write-after-write; the executor derives these dependencies from the
//   resolved addresses, since input and output may alias, and that is what lets it pipeline
//   chunks across rounds). A step whose slices are all empty (a 0-count message, as in
//   barriers) is a fence: it waits for every step of earlier rounds and every step of later
//   rounds waits for it. Running the rounds strictly one after another is also correct.
// - Message matching: the i-th kSend from rank a to rank b in plan order (round by round,
//   steps in order) pairs with the i-th kRecv / kRecvReduce from a on rank b; both sides
//   have the same element count. Count-0 sends and receives are real messages (barriers);
//   data-moving algorithms leave out the messages of empty blocks on both sides.
// - Every plan is deadlock-free when a send completes only once the matching receive has
//   been posted (rendezvous), under both the strict and the dependency-driven round order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace weft::coll {

enum class BufferId : uint8_t { kInput, kOutput, kScratch };

struct Slice {
  BufferId buffer = BufferId::kInput;
  size_t offset = 0;  // elements
  size_t count = 0;   // elements
};

enum class StepKind : uint8_t {
  kSend,        // send src to peer
  kRecv,        // receive from peer into dst
  kRecvReduce,  // receive from peer and reduce: dst = src op received (src may equal dst)
  kCopy,        // local: dst = src
  kReduce,      // local: dst = dst op src
};

struct Step {
  StepKind kind;
  int peer = -1;  // kSend / kRecv / kRecvReduce
  Slice src;      // kSend, kCopy, kReduce, kRecvReduce (the local operand)
  Slice dst;      // kRecv, kRecvReduce, kCopy, kReduce
};

struct Round {
  std::vector<Step> steps;
};

enum class CollKind : uint8_t {
  kBarrier, kBroadcast, kReduce, kAllreduce, kReduceScatter, kAllgather, kGather, kScatter,
  kAlltoall,
};

// What an algorithm is asked to schedule. Counts are in elements. Valid when
// 0 <= rank < size, 0 <= root < size and size*count fits in size_t (validateSpec() in
// algorithms.h); builders assume a valid spec. `root` only matters for broadcast, reduce,
// gather and scatter.
//  - allreduce / reduce / broadcast: `count` elements per rank buffer.
//  - reduce_scatter: input has size*count elements, output `count` (block r for rank r).
//  - allgather / gather: input `count`, output size*count (block r from rank r).
//  - scatter: input size*count at the root, output `count`.
//  - alltoall: input and output size*count; block j of rank i's input goes to block i of j.
struct CollSpec {
  CollKind kind;
  int rank = 0;
  int size = 1;
  size_t count = 0;
  int root = 0;
};

struct Plan {
  std::string algorithm;     // "ring", "rabenseifner", ...
  size_t scratch_count = 0;  // elements of scratch the executor must provide
  // Set on ranks whose output ends up holding a reduction result (every rank for allreduce
  // and reduce_scatter, the root for reduce): the executor then applies the op's finalize
  // (avg: divide by size) to the whole output once the plan has run.
  bool needs_finalize = false;
  std::vector<Round> rounds;

  // A header line "<algorithm> scratch=<n>[ finalize]", then one line per step:
  //   "r0 send->1 in[0+4]", "r1 recv<-3 out[4+4]", "r2 recvred<-3 in[4+4]>out[4+4]"
  //   (src>dst; just "out[4+4]" when src == dst), "r3 copy in[0+4]>scr[0+4]",
  //   "r4 reduce scr[0+4]>out[0+4]" (dst op= src); an empty slice prints as "-".
  // Golden tests pin schedules with it.
  std::string toString() const;

  size_t numSteps() const;
};

// "barrier", "broadcast", "reduce", "allreduce", "reduce_scatter", "allgather", "gather",
// "scatter", "alltoall" (the names WEFT_ALGO_<OP> and the tools use).
const char* toString(CollKind kind);
const char* toString(StepKind kind);  // "send", "recv", "recvred", "copy", "reduce"
// One step as Plan::toString() prints it, without the round: "send->1 in[0+4]".
std::string toString(const Step& step);

// Buffer extents in elements of rank `spec.rank` (see the model above); count*size for the
// big side of reduce_scatter / allgather / gather / scatter / alltoall.
size_t inputCount(const CollSpec& spec);
size_t outputCount(const CollSpec& spec);

}  // namespace weft::coll
