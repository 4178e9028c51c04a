// CommCore: the shared-memory path (collectives/shm/shm_comm.h) for communicators on one node.
// The operation runs to completion inside the call; the Request it returns is already done.
#include <cstring>
#include <optional>

#include "collectives/api/collectives.h"
#include "collectives/comm/comm_core.h"

namespace weft::coll::detail {
namespace {

constexpr std::string_view kShm = "shm";

bool shmKind(OpCode op) {
  return op == OpCode::kAllreduce || op == OpCode::kBarrier || op == OpCode::kReduceScatter ||
         op == OpCode::kAllgather || op == OpCode::kBroadcast || op == OpCode::kAlltoall ||
         op == OpCode::kReduce || op == OpCode::kGather || op == OpCode::kScatter ||
         op == OpCode::kGatherv || op == OpCode::kScatterv || op == OpCode::kAllgatherv;
}

bool vVariant(OpCode op) {
  return op == OpCode::kGatherv || op == OpCode::kScatterv || op == OpCode::kAllgatherv;
}

}  // namespace

bool CommCore::wantsShm(const CallSpec& call, const CallOptions& opts) const {
  if (!shmKind(call.op)) return false;
  // The v-variants have no WEFT_ALGO_<OP> override (their plans are built per call).
  const std::string_view forced =
      !opts.algorithm.empty() || vVariant(call.op)
          ? opts.algorithm
          : std::string_view(tuner_.overrideFor(static_cast<CollKind>(call.op)));
  if (forced == kShm) return true;  // issueShm says why when it cannot
  return forced.empty() && config_.shm && !config_.check && size() > 1 && topology_.num_nodes == 1;
}

Status CommCore::shmUsable(const CallSpec& call) {
  WEFT_RETURN_IF_ERROR(usable(call.op));
  if (topology_.num_nodes != 1) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, opName(call.op),
                      ": algorithm shm needs every rank on one node; communicator ", id_, " spans ",
                      topology_.num_nodes, " nodes");
  }
  return layoutOf(call).status();
}

Status CommCore::shmFailure(const OpState& op, const Status& st) {
  Status err = st.withContext(describe(op));
  if (st.code() == StatusCode::kPeerFailure && shm_ && shm_->failedRank() >= 0) {
    const int dead = shm_->failedRank();
    err = Status(StatusCode::kPeerFailure,
                 strCat(describe(op), ": ", rankName(dead), " failed: ", st.message()));
    const int world = world_ranks_[static_cast<size_t>(dead)];
    if (engine_->failureOf(world).isOk()) engine_->reportFailure(world, st);
  }
  if (broken_.isOk()) broken_ = err;  // the segment's counters are out of step now
  return err;
}

Result<Request> CommCore::issueShm(std::shared_ptr<CommCore> self, const CallSpec& call,
                                   const CallOptions& opts) {
  WEFT_RETURN_IF_ERROR(shmUsable(call));
  OpState* op = acquireOp();
  fillOp(*op, call, nullptr, nullptr, kShm, opts);
  ++outstanding_;
  Status st = runShm(ShmDeadline(op->deadline), call);
  if (st.isOk()) {
    finish(*op, Status::ok(), false);
  } else {
    finish(*op, shmFailure(*op, st), true);
  }
  return Request(std::move(self), op, op->generation);
}

Status CommCore::runShmBlocking(const CallSpec& call, const CallOptions& opts) {
  WEFT_RETURN_IF_ERROR(shmUsable(call));
  const uint64_t seq = seq_++;
  ShmDeadline deadline(opts.deadline.value_or(Deadline::never()));
  if (!opts.deadline && config_.timeout_s < 1e9) {
    deadline = ShmDeadline::lazy(
        std::chrono::nanoseconds(static_cast<int64_t>(std::max(config_.timeout_s, 0.0) * 1e9)));
  }
  Status st = runShm(deadline, call);
  if (st.isOk()) return st;
  OpState op;  // only to describe the call in the error
  op.op = call.op;
  op.algorithm = kShm;
  op.seq = seq;
  op.type = call.type;
  op.count = call.count;
  op.root = call.root;
  return shmFailure(op, st);
}

Status CommCore::runShm(ShmDeadline deadline, const CallSpec& call) {
  if (size() == 1) {  // nothing to exchange: the schedules' single-rank result
    const auto* from = static_cast<const std::byte*>(call.input);
    auto* to = static_cast<std::byte*>(call.output);
    const size_t es = sizeOf(call.type);
    if (vVariant(call.op)) {  // the one block sits at its displacement
      if (call.op == OpCode::kScatterv) {
        if (from != nullptr) from += call.v_displs[0] * es;
      } else if (to != nullptr) {
        to += call.v_displs[0] * es;
      }
    }
    if (to != nullptr && from != nullptr && to != from) std::memmove(to, from, call.count * es);
    return Status::ok();
  }
  if (shm_ == nullptr) {
    WEFT_ASSIGN_OR_RETURN(
        shm_, ShmComm::create(*store_, rank_, size(), config_.shm_chunk, id_, deadline.get()));
    shm_->setIdle([e = engine_.get()] { e->progressAll(); });
  }
  const size_t es = sizeOf(call.type);
  std::optional<Reducer> reducer;
  if (call.reduce_op) {
    WEFT_ASSIGN_OR_RETURN(Reducer r, Reducer::create(call.type, *call.reduce_op));
    reducer = r;
  }
  const auto* in = static_cast<const std::byte*>(call.input);
  auto* out = static_cast<std::byte*>(call.output);
  switch (call.op) {
    case OpCode::kBarrier: return shm_->barrier(deadline);
    case OpCode::kAllreduce: return shm_->allreduce(in, out, call.count, *reducer, deadline);
    case OpCode::kReduceScatter:
      return shm_->reduceScatter(in, out, call.count, *reducer, deadline);
    case OpCode::kAllgather:
      return shm_->gather(in, out, ShmComm::Blocks{call.count}, es, -1, deadline);
    case OpCode::kBroadcast: return shm_->broadcast(out, call.count, es, call.root, deadline);
    case OpCode::kAlltoall: return shm_->alltoall(in, out, call.count, es, deadline);
    case OpCode::kReduce: return shm_->reduce(in, out, call.count, *reducer, call.root, deadline);
    case OpCode::kGather:
      return shm_->gather(in, out, ShmComm::Blocks{call.count}, es, call.root, deadline);
    case OpCode::kScatter:
      return shm_->scatter(in, out, ShmComm::Blocks{call.count}, es, call.root, deadline);
    case OpCode::kGatherv:
    case OpCode::kAllgatherv:
      return shm_->gather(in, out, ShmComm::Blocks{0, call.v_counts, call.v_displs}, es,
                          call.op == OpCode::kGatherv ? call.root : -1, deadline);
    case OpCode::kScatterv:
      return shm_->scatter(in, out, ShmComm::Blocks{0, call.v_counts, call.v_displs}, es, call.root,
                           deadline);
    default: break;
  }
  return WEFT_ERROR(StatusCode::kInternal, opName(call.op), " has no shared-memory form");
}

}  // namespace weft::coll::detail
