// The operations a communicator runs, for signatures, plan caching and messages. Internal
// to collectives/.
#pragma once

#include <cstdint>

#include "collectives/schedule/plan.h"

namespace weft::coll::detail {

// The first nine values equal CollKind's.
enum class OpCode : uint8_t {
  kBarrier,
  kBroadcast,
  kReduce,
  kAllreduce,
  kReduceScatter,
  kAllgather,
  kGather,
  kScatter,
  kAlltoall,
  kGatherv,
  kScatterv,
  kAllgatherv,
  kAlltoallv,
  kSend,
  kRecv,
};

inline OpCode opCodeOf(CollKind kind) {
  return static_cast<OpCode>(kind);
}

inline const char* opName(OpCode op) {
  switch (op) {
    case OpCode::kGatherv: return "gatherv";
    case OpCode::kScatterv: return "scatterv";
    case OpCode::kAllgatherv: return "allgatherv";
    case OpCode::kAlltoallv: return "alltoallv";
    case OpCode::kSend: return "send";
    case OpCode::kRecv: return "recv";
    default: return toString(static_cast<CollKind>(op));
  }
}

inline bool isPointToPoint(OpCode op) {
  return op == OpCode::kSend || op == OpCode::kRecv;
}

}  // namespace weft::coll::detail
