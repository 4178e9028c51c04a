#include "collectives/innet/innet_select.h"

#include "collectives/api/innet.h"
#include "collectives/comm/comm_core.h"
#include "collectives/comm/signature.h"
#include "collectives/schedule/plan.h"

namespace weft::coll::detail {

bool wantsInNetwork(Communicator& comm, const CallOptions& opts) {
  if (!opts.algorithm.empty()) return opts.algorithm == kInNetworkAlgorithm;
  return comm.tuner().overrideFor(CollKind::kAllreduce) == kInNetworkAlgorithm;
}

Status inNetworkAllreduce(Communicator& comm, const void* send, void* recv, size_t count,
                          DataType type, ReduceOp op, const CallOptions& opts) {
  WEFT_RETURN_IF_ERROR(checkAllreduceCall(comm, kInNetworkAlgorithm, count, type, op, opts));
  std::shared_ptr<InNetwork>& net = comm.core().inNetwork();
  if (net == nullptr) {
    Result<std::unique_ptr<InNetwork>> made = InNetwork::create(comm, {}, opts.deadline);
    if (!made.isOk()) return made.status().withContext("allreduce, algorithm innet");
    net = std::move(*made);
  }
  return net->allreduce(send, recv, count, type, op, opts);
}

}  // namespace weft::coll::detail
