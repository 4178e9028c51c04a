// Runs every rank's plan of one collective in memory, to test schedules without a network.
//
// What it models (collectives/schedule/plan.h):
//  - Per-rank buffers: input (inputCount), output (outputCount) and scratch (scratch_count
//    elements). Output and scratch start filled with a sentinel, so a plan that leaves an
//    element unwritten or reads scratch before writing it shows up in the results. In place,
//    input and output share memory the way plan.h says.
//  - Messages are rendezvous: a send and its receive (matched by plan order per rank pair)
//    complete together, once both are ready. Order kStrict runs each rank's rounds one after
//    another; kDependencies lets a step start once the earlier-round steps it conflicts
//    with (overlapping memory, one of them writing; empty steps are fences) are done, which
//    is what the executor may do.
//  - Reductions are sums.
// What it reports (SimResult::error, empty when all went well): a step with a bad peer or
// out-of-bounds / partially overlapping slices, two steps of one round that race on memory,
// sends without receives (and the reverse), element-count mismatches, and deadlocks (which
// step of which rank waits for what). Each message names the rank, round and step.
//
// Thread-compatible: no shared state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "collectives/schedule/plan.h"

namespace weft::testing {

enum class SimOrder : uint8_t { kStrict, kDependencies };

struct SimOptions {
  bool in_place = false;
  SimOrder order = SimOrder::kDependencies;
};

template <typename T>
struct SimResult {
  std::string error;                    // empty: every plan ran to completion
  std::vector<std::vector<T>> outputs;  // per rank, outputCount() elements
  std::vector<size_t> scratch_used;     // per rank, highest scratch element touched + 1
  std::vector<size_t> sends;            // per rank, messages sent
  std::vector<size_t> rounds;           // per rank, plan.rounds.size()
  // Per rank: the rank's last step causally follows every rank's first (the barrier
  // property; for data collectives it follows from the data dependencies).
  std::vector<bool> heard_from_all;

  bool ok() const { return error.empty(); }
};

// The value output and scratch elements start with.
template <typename T>
T simSentinel();

// Runs plans[r] as rank r of `spec` (spec.rank is ignored). inputs[r] must hold
// inputCount() elements of rank r (inputs may be empty for count-0 buffers).
template <typename T>
SimResult<T> simulatePlans(const coll::CollSpec& spec, const std::vector<coll::Plan>& plans,
                           const std::vector<std::vector<T>>& inputs,
                           const SimOptions& options = {});

// Builds every rank's plan with `build` and simulates them.
template <typename T>
SimResult<T> simulateAlgorithm(coll::Plan (*build)(const coll::CollSpec&),
                               const coll::CollSpec& spec,
                               const std::vector<std::vector<T>>& inputs,
                               const SimOptions& options = {});

extern template SimResult<int64_t> simulatePlans(const coll::CollSpec&,
                                                 const std::vector<coll::Plan>&,
                                                 const std::vector<std::vector<int64_t>>&,
                                                 const SimOptions&);
extern template SimResult<double> simulatePlans(const coll::CollSpec&,
                                                const std::vector<coll::Plan>&,
                                                const std::vector<std::vector<double>>&,
                                                const SimOptions&);
extern template SimResult<int64_t> simulateAlgorithm(coll::Plan (*)(const coll::CollSpec&),
                                                     const coll::CollSpec&,
                                                     const std::vector<std::vector<int64_t>>&,
                                                     const SimOptions&);
extern template SimResult<double> simulateAlgorithm(coll::Plan (*)(const coll::CollSpec&),
                                                    const coll::CollSpec&,
                                                    const std::vector<std::vector<double>>&,
                                                    const SimOptions&);

}  // namespace weft::testing
