// Algorithm "innet" of the blocking coll::allreduce: CallOptions::algorithm == "innet", or
// no per-call algorithm and WEFT_ALGO_ALLREDUCE=innet, runs the call through an InNetwork
// (api/innet.h) that the communicator creates on the first such call (collective: every
// rank makes that call, as every rank must pass the same algorithm) and keeps. Non-blocking
// iallreduce does not offer it (the tuner rejects the name). Internal to collectives/.
#pragma once

#include <cstddef>

#include "collectives/api/collectives.h"
#include "collectives/api/communicator.h"
#include "collectives/api/types.h"
#include "common/status.h"

namespace weft::coll::detail {

inline constexpr std::string_view kInNetworkAlgorithm = "innet";

bool wantsInNetwork(Communicator& comm, const CallOptions& opts);
Status inNetworkAllreduce(Communicator& comm, const void* send, void* recv, size_t count,
                          DataType type, ReduceOp op, const CallOptions& opts);

}  // namespace weft::coll::detail
