// One collective call as a test case: runs it on a communicator with generated inputs and
// checks this rank's result against the serial reference (coll_test_util.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "collectives/api/collectives.h"
#include "collectives/schedule/plan.h"

namespace weft::coll::testing {

struct Case {
  CollKind kind = CollKind::kAllreduce;
  std::string_view algorithm;  // "" = automatic
  size_t count = 0;
  bool in_place = false;
  int root = 0;
  size_t chunk_bytes = 0;
  DataType type = DataType::kI32;
  ReduceOp op = ReduceOp::kSum;  // reductions only
  uint64_t seed = 1;

  std::string describe() const;
};

// "" when the call succeeded and this rank's output is right; else what went wrong.
std::string runCase(Communicator& comm, const Case& c);

// The v-variants with irregular counts (some zero); in_place where the operation has it.
// Irregular blocks (some empty, gaps between them) of up to 12 * scale elements.
std::string runGatherv(Communicator& comm, int root, bool in_place, uint64_t seed,
                       const CallOptions& o = {}, size_t scale = 1);
std::string runScatterv(Communicator& comm, int root, bool in_place, uint64_t seed,
                        const CallOptions& o = {}, size_t scale = 1);
std::string runAllgatherv(Communicator& comm, bool in_place, uint64_t seed,
                          const CallOptions& o = {}, size_t scale = 1);
std::string runAlltoallv(Communicator& comm, uint64_t seed);
// Ring exchange with send / recv (isend to rank+1, irecv from rank-1).
std::string runSendRecv(Communicator& comm, size_t count, int64_t tag, uint64_t seed);

}  // namespace weft::coll::testing
