// Collective algorithms as pure per-rank schedule builders, and the registry the tuner and
// the WEFT_ALGO_<OP> overrides pick them from.
//
// Contract
//  - Every builder is a pure, deterministic function of the CollSpec (no network, no
//    globals, no clock): every rank builds its own plan and the plans of all ranks fit
//    together (plan.h). The spec must be valid (validateSpec()); the builders do not check.
//  - Every builder handles any size >= 1, any root, any count (0 gives an empty plan,
//    count < size leaves out the messages of empty blocks) and in-place calls.
//  - Reductions are computed once per element block and then copied (broadcast / allgather),
//    so every rank's allreduce result is bit-identical whatever the op's rounding.
//  - Functions here are thread-safe; the registry is immutable.
#pragma once

#include <span>
#include <string_view>
#include <vector>

#include "collectives/schedule/plan.h"
#include "common/result.h"
#include "common/status.h"

namespace weft::coll {

// Ring (reduce-scatter + allgather over size balanced blocks; a chain for broadcast).
Plan buildRingAllreduce(const CollSpec& spec);
Plan buildRingReduceScatter(const CollSpec& spec);
Plan buildRingAllgather(const CollSpec& spec);
Plan buildRingBroadcast(const CollSpec& spec);  // root -> root+1 -> ... (pipelined by chunks)

// Recursive halving (reduce-scatter) then doubling (allgather), Rabenseifner. Non-powers of
// two fold the first 2*(size - pof2) ranks in pairs first and hand the result back at the end.
Plan buildRabenseifnerAllreduce(const CollSpec& spec);
Plan buildRabenseifnerReduceScatter(const CollSpec& spec);

// Recursive doubling: log2(pof2) exchanges of the whole vector (same fold as above).
Plan buildRecursiveDoublingAllreduce(const CollSpec& spec);
Plan buildRecursiveDoublingAllgather(const CollSpec& spec);

// Two complementary binary trees (NCCL's), each reducing then broadcasting half the data.
Plan buildDoubleTreeAllreduce(const CollSpec& spec);

// One balanced binary tree rooted at `root` (children of relative rank v: 2v+1, 2v+2).
Plan buildBinaryTreeReduce(const CollSpec& spec);
Plan buildBinaryTreeBroadcast(const CollSpec& spec);

// Binomial trees rooted at `root`.
Plan buildBinomialBroadcast(const CollSpec& spec);
Plan buildBinomialReduce(const CollSpec& spec);
Plan buildBinomialGather(const CollSpec& spec);
Plan buildBinomialScatter(const CollSpec& spec);

// Bruck: ceil(log2 size) messages per rank; the local rotations are kCopy steps via scratch.
Plan buildBruckAllgather(const CollSpec& spec);
Plan buildBruckAlltoall(const CollSpec& spec);

// Pairwise exchange: in step k = 1..size-1 rank r sends block r+k and receives block r-k.
Plan buildPairwiseAlltoall(const CollSpec& spec);

// Barriers (0-count messages): dissemination (ceil(log2 size) rounds) and a token passed
// twice around the ring (2*size - 1 messages in all).
Plan buildDisseminationBarrier(const CollSpec& spec);
Plan buildTokenRingBarrier(const CollSpec& spec);

// ---- Registry ----

using PlanBuildFn = Plan (*)(const CollSpec&);

struct AlgorithmEntry {
  std::string_view name;  // "ring", "rabenseifner", "recursive_doubling", "double_tree", ...
  CollKind kind;
  PlanBuildFn build;
};

// Every (algorithm, kind) pair, grouped by algorithm name in a fixed order.
std::span<const AlgorithmEntry> allAlgorithms();
// The algorithms that implement `kind`, in registry order.
std::vector<const AlgorithmEntry*> algorithmsFor(CollKind kind);
// nullptr when `name` does not implement `kind`.
const AlgorithmEntry* findAlgorithm(std::string_view name, CollKind kind);
// Distinct algorithm names, in registry order.
std::vector<std::string_view> algorithmNames();

// "allreduce" -> kAllreduce, ...; the error lists the accepted names.
Result<CollKind> parseCollKind(std::string_view name);

// kInvalidArgument naming the bad field: size < 1, rank or root outside [0, size), or a
// size*count that overflows.
Status validateSpec(const CollSpec& spec);

// Validates the spec, finds `name` for spec.kind and builds this rank's plan. An unknown or
// unsuitable name is kInvalidArgument listing the algorithms that implement the kind.
Result<Plan> buildPlan(std::string_view name, const CollSpec& spec);

}  // namespace weft::coll
