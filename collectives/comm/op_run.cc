// CommCore: launching operations and moving them through their phases (comm_core.h).
#include <algorithm>
#include <chrono>

#include "collectives/api/collectives.h"
#include "collectives/comm/comm_core.h"
#include "collectives/executor/tags.h"

namespace weft::coll::detail {

Result<Request> CommCore::launch(std::shared_ptr<CommCore> self, const CallSpec& call,
                                 std::shared_ptr<const CompiledPlan> plan,
                                 std::string_view algorithm, const CallOptions& opts) {
  WEFT_RETURN_IF_ERROR(usable(call.op));
  if (outstanding_ >= kMaxOutstanding) {
    return WEFT_ERROR(StatusCode::kNoResource, opName(call.op), " on communicator ", id_, ": ",
                      outstanding_, " operations already in flight")
        .withHint("wait on earlier requests first");
  }
  std::optional<Reducer> reducer;
  if (call.reduce_op) {
    WEFT_ASSIGN_OR_RETURN(Reducer r, Reducer::create(call.type, *call.reduce_op));
    reducer = r;
  }
  const bool p2p = isPointToPoint(call.op);
  const bool check = config_.check && !p2p && size() > 1;
  std::shared_ptr<const CompiledPlan> checkPlanPtr;
  if (check) {
    WEFT_ASSIGN_OR_RETURN(checkPlanPtr, checkPlan());
  }

  OpState* op = acquireOp();
  fillOp(*op, call, std::move(plan), std::move(checkPlanPtr), algorithm, opts);
  op->reducer = reducer;
  ++outstanding_;

  Status st = connectPeers(*op->plan, op->deadline);
  if (st.isOk() && check) st = connectPeers(*op->check_plan, op->deadline);
  if (!st.isOk()) {
    finish(*op, st.withContext(describe(*op)), true);
    Status failed = op->status;
    releaseOp(op);
    return failed;
  }
  op->scratch = scratch_pool_.acquire(op->plan->scratch_count * sizeOf(call.type));
  if (check) {
    fillSignature(*op, call);
    startCheck(*op);
  } else {
    startMain(*op);
  }
  bool progressed = false;
  advance(*op, &progressed);
  if (op->running) engine_->add(op);
  return Request(std::move(self), op, op->generation);
}

void CommCore::fillOp(OpState& op, const CallSpec& call, std::shared_ptr<const CompiledPlan> plan,
                      std::shared_ptr<const CompiledPlan> check_plan, std::string_view algorithm,
                      const CallOptions& opts) {
  const bool p2p = isPointToPoint(call.op);
  op.op = call.op;
  op.algorithm = algorithm;
  op.seq = p2p ? 0 : seq_++;
  op.issued = std::chrono::steady_clock::now();  // the call's one clock read (small calls feel it)
  if (opts.deadline) {
    op.deadline = *opts.deadline;
  } else if (config_.timeout_s >= 1e9) {
    op.deadline = Deadline::never();
  } else {
    op.deadline = Deadline::at(op.issued + std::chrono::nanoseconds(static_cast<int64_t>(
                                               std::max(config_.timeout_s, 0.0) * 1e9)));
  }
  op.type = call.type;
  op.count = call.count;
  op.root = call.root;
  op.tag = call.tag;
  op.plan = std::move(plan);
  op.check_plan = std::move(check_plan);
  op.input = static_cast<std::byte*>(const_cast<void*>(call.input));  // plans never write it
  op.output = static_cast<std::byte*>(call.output);
  op.output_count = call.output_count;
  op.tag_base = p2p ? p2pTag(tag_id_, call.tag) : collectiveTagBase(tag_id_, op.seq);
  op.status = Status::ok();
  op.running = true;
}

void CommCore::startCheck(OpState& op) {
  op.checking = true;
  op.signatures.resize(static_cast<size_t>(size()));
  op.check_scratch.resize(op.check_plan->scratch_count);
  RunArgs a;
  a.plan = op.check_plan.get();
  a.input = reinterpret_cast<std::byte*>(&op.signature);
  a.output = reinterpret_cast<std::byte*>(op.signatures.data());
  a.scratch = op.check_scratch.data();
  a.elem_size = 1;
  a.tag_base = op.tag_base | kCheckPhaseBit;
  a.endpoints = endpoints_;
  a.staging = &staging_pool_;
  a.depth = config_.depth;
  op.run.start(a);
}

void CommCore::startMain(OpState& op) {
  op.checking = false;
  RunArgs a;
  a.plan = op.plan.get();
  a.input = op.input;
  a.output = op.output;
  a.scratch = op.scratch.data;
  a.elem_size = sizeOf(op.type);
  a.reducer = op.reducer ? &*op.reducer : nullptr;
  a.tag_base = op.tag_base;
  a.endpoints = endpoints_;
  a.staging = &staging_pool_;
  a.depth = config_.depth;
  op.run.start(a);
}

void CommCore::advance(OpState& op, bool* progressed) {
  if (!op.running) return;
  if (!broken_.isOk()) {
    finish(op,
           Status(broken_.code(),
                  strCat(describe(op), ": communicator unusable: ", broken_.message())),
           true);
    return;
  }
  for (;;) {
    Status st = op.run.advance(progressed);
    if (!st.isOk()) {
      failFromRun(op, st);
      return;
    }
    if (!op.run.finished()) break;
    if (op.checking) {
      Status same = compareSignatures(describe(op), op.signatures, world_ranks_);
      if (!same.isOk()) {
        finish(op, same, false);
        return;
      }
      startMain(op);
      *progressed = true;
      continue;
    }
    if (op.reducer && op.plan->needs_finalize && op.reducer->needsFinalize()) {
      op.reducer->finalize(op.output, op.output_count, static_cast<size_t>(size()));
    }
    finish(op, Status::ok(), false);
    return;
  }
  if (op.deadline.expired()) finish(op, timeoutError(op), true);
}

void CommCore::finish(OpState& op, Status status, bool breaks) {
  if (!op.running) return;
  op.running = false;
  op.status = std::move(status);
  --outstanding_;
  if (breaks) {
    op.run.abandon();
    op.scratch = BufferPool::Lease{};  // the transport may still write it: never reuse it
    if (broken_.isOk()) broken_ = op.status;
  } else {
    scratch_pool_.release(op.scratch);
  }
}

void CommCore::failFromRun(OpState& op, const Status& st) {
  const int peer = op.run.failedPeer();
  Status err = st.withContext(describe(op));
  const bool peerDied = st.code() == StatusCode::kPeerFailure && peer >= 0;
  const int world = peerDied ? world_ranks_[static_cast<size_t>(peer)] : -1;
  if (peerDied) {
    err = Status(StatusCode::kPeerFailure,
                 strCat(describe(op), ": ", rankName(peer), " failed: ", st.message()));
  }
  finish(op, err, true);
  if (peerDied && engine_->failureOf(world).isOk()) engine_->reportFailure(world, st);
}

void CommCore::failForPeer(OpState& op, int world_rank, const Status& why) {
  finish(
      op,
      Status(StatusCode::kPeerFailure, strCat(describe(op), ": ", rankName(commRankOf(world_rank)),
                                              " failed: ", why.message())),
      true);
}

Status CommCore::timeoutError(const OpState& op) const {
  WaitingFor w;
  op.run.waitingFor(&w);
  std::string waiting = joinPeers(w.receive_from, "receive");
  const std::string sends = joinPeers(w.send_to, "send");
  if (!sends.empty()) waiting += (waiting.empty() ? "" : ", ") + sends;
  if (waiting.empty()) waiting = "nobody (the operation was still starting)";
  const auto elapsed = std::chrono::steady_clock::now() - op.issued;
  return Status(
             StatusCode::kTimeout,
             strCat(describe(op), ": not complete after ",
                    formatDuration(std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed)),
                    " (its deadline)", op.checking ? " in the WEFT_CHECK exchange" : "",
                    "; still waiting for ", waiting))
      .withHint(
          "did every rank make this call, in the same order? WEFT_CHECK=1 compares the "
          "calls; WEFT_TIMEOUT sets the deadline");
}

std::string CommCore::joinPeers(const std::vector<int>& ranks, const char* what) const {
  std::string s;
  for (int r : ranks) s += strCat(s.empty() ? "" : ", ", rankName(r), " (", what, ")");
  return s;
}

}  // namespace weft::coll::detail
