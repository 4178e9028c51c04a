#include "collectives/executor/plan_run.h"

#include <algorithm>
#include <cstring>

namespace weft::coll::detail {
namespace {

Step asStep(const CompiledStep& st) {
  return Step{st.kind, st.peer, st.src, st.dst};
}

void addUnique(std::vector<int>& v, int x) {
  if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
}

}  // namespace

void PlanRun::start(const RunArgs& args) {
  abandon();
  args_ = args;
  failed_peer_ = -1;
  const CompiledPlan& p = *args.plan;
  remaining_ = p.numTasks();
  pending_.assign(p.num_deps.begin(), p.num_deps.end());
  next_.assign(p.steps.size(), 0);
  in_flight_.assign(p.steps.size(), 0);
  done_.assign(p.steps.size(), 0);
  open_.clear();
  for (uint32_t s = 0; s < p.steps.size(); ++s) open_.push_back(s);
}

std::byte* PlanRun::base(BufferId id) const {
  switch (id) {
    case BufferId::kInput: return args_.input;
    case BufferId::kOutput: return args_.output;
    case BufferId::kScratch: return args_.scratch;
  }
  return nullptr;
}

std::byte* PlanRun::addressOf(const Slice& s, size_t elem_offset) const {
  if (s.count == 0) return nullptr;
  return base(s.buffer) + (s.offset + elem_offset) * args_.elem_size;
}

Status PlanRun::advance(bool* progressed) {
  if (remaining_ == 0) return Status::ok();
  WEFT_RETURN_IF_ERROR(completeFlights(progressed));
  return startReady(progressed);
}

Status PlanRun::completeFlights(bool* progressed) {
  for (size_t i = 0; i < flights_.size();) {
    if (!flights_[i].request.done()) {
      ++i;
      continue;
    }
    Flight f = std::move(flights_[i]);
    if (i + 1 != flights_.size()) flights_[i] = std::move(flights_.back());
    flights_.pop_back();
    *progressed = true;
    WEFT_RETURN_IF_ERROR(finishMessage(f));
  }
  return Status::ok();
}

Status PlanRun::startReady(bool* progressed) {
  const CompiledPlan& p = *args_.plan;
  bool again = true;
  bool backPressure = false;
  while (again && !backPressure) {
    again = false;
    size_t kept = 0;
    for (size_t i = 0; i < open_.size(); ++i) {
      const uint32_t s = open_[i];
      const CompiledStep& st = p.steps[s];
      while (!backPressure && next_[s] < st.num_chunks && in_flight_[s] < args_.depth &&
             pending_[st.first_task + next_[s]] == 0) {
        bool started = false;
        const size_t before = remaining_;
        WEFT_RETURN_IF_ERROR(startTask(s, &started));
        backPressure = !started;
        *progressed = *progressed || started;
        again = again || remaining_ != before;  // something completed: may unlock others
      }
      if (next_[s] < st.num_chunks) open_[kept++] = s;
    }
    open_.resize(kept);
  }
  return Status::ok();
}

Status PlanRun::startTask(uint32_t s, bool* started) {
  const CompiledStep& st = args_.plan->steps[s];
  const uint32_t chunk = next_[s];
  const uint32_t task = st.first_task + chunk;
  if (!st.isMessage()) {
    ++next_[s];
    runLocal(st, chunk);
    completeTask(task);
    *started = true;
    return Status::ok();
  }
  Status posted = postMessage(st, task, chunk);
  if (posted.code() == StatusCode::kNoResource) {
    *started = false;
    return Status::ok();
  }
  WEFT_RETURN_IF_ERROR(posted);
  *started = true;
  ++next_[s];
  ++in_flight_[s];
  if (flights_.back().request.done()) {  // completed while posted (eager send)
    Flight f = std::move(flights_.back());
    flights_.pop_back();
    return finishMessage(f);
  }
  return Status::ok();
}

Status PlanRun::postMessage(const CompiledStep& st, uint32_t task, uint32_t chunk) {
  const size_t off = static_cast<size_t>(chunk) * args_.plan->chunk_elems;
  const size_t bytes = st.fence ? 0 : args_.plan->chunkCount(st, chunk) * args_.elem_size;
  const transport::Tag tag = args_.tag_base | st.pair_index;
  transport::Endpoint* ep = args_.endpoints[static_cast<size_t>(st.peer)];
  Flight f;
  f.task = task;
  if (st.staged) f.staging = args_.staging->acquire(bytes);
  Result<transport::Request> r = st.kind == StepKind::kSend
                                     ? ep->send(addressOf(st.src, off), bytes, tag)
                                 : st.staged ? ep->recv(f.staging.data, bytes, tag)
                                             : ep->recv(addressOf(st.dst, off), bytes, tag);
  if (!r.isOk()) {
    args_.staging->release(f.staging);  // nothing was posted
    if (r.status().code() == StatusCode::kNoResource) return r.status();
    failed_peer_ = st.peer;
    return r.status().withContext(
        strCat("posting ", toString(asStep(st)), " chunk ", chunk + 1, "/", st.num_chunks));
  }
  f.request = std::move(r).value();
  flights_.push_back(std::move(f));
  return Status::ok();
}

Status PlanRun::finishMessage(Flight& f) {
  const uint32_t s = args_.plan->task_step[f.task];
  const CompiledStep& st = args_.plan->steps[s];
  const uint32_t chunk = f.task - st.first_task;
  const size_t n = st.fence ? 0 : args_.plan->chunkCount(st, chunk);
  Status status = f.request.status();
  // A shorter message than expected means mismatched calls. 0 is not conclusive: the UCX
  // backend reports 0 bytes for receives that complete while being posted.
  const size_t got = status.isOk() && st.isReceive() ? f.request.bytes() : n * args_.elem_size;
  if (got != n * args_.elem_size && got != 0) {
    status = WEFT_ERROR(StatusCode::kInvalidArgument, "received ", f.request.bytes(),
                        " bytes, expected ", n * args_.elem_size)
                 .withHint("mismatched calls on the ranks? WEFT_CHECK=1 compares them");
  }
  if (!status.isOk()) {
    // Keep the staging buffer out of the pool: the failed receive is not reused.
    f.staging = BufferPool::Lease{};
    failed_peer_ = st.peer;
    return status.withContext(
        strCat(toString(asStep(st)), " chunk ", chunk + 1, "/", st.num_chunks));
  }
  if (st.kind == StepKind::kRecvReduce) {
    const size_t off = static_cast<size_t>(chunk) * args_.plan->chunk_elems;
    std::byte* dst = addressOf(st.dst, off);
    const std::byte* received = st.staged ? f.staging.data : dst;
    args_.reducer->reduce(dst, addressOf(st.src, off), received, n);
  }
  args_.staging->release(f.staging);
  --in_flight_[s];
  completeTask(f.task);
  return Status::ok();
}

void PlanRun::runLocal(const CompiledStep& st, uint32_t chunk) {
  if (st.noop) return;
  const size_t off = static_cast<size_t>(chunk) * args_.plan->chunk_elems;
  const size_t n = args_.plan->chunkCount(st, chunk);
  std::byte* dst = addressOf(st.dst, off);
  const std::byte* src = addressOf(st.src, off);
  if (st.kind == StepKind::kCopy) {
    std::memcpy(dst, src, n * args_.elem_size);
  } else {
    args_.reducer->reduce(dst, src, n);
  }
}

void PlanRun::completeTask(uint32_t task) {
  const CompiledPlan& p = *args_.plan;
  ++done_[p.task_step[task]];
  --remaining_;
  for (uint32_t i = p.dependents_begin[task]; i < p.dependents_begin[task + 1]; ++i) {
    --pending_[p.dependents[i]];
  }
}

void PlanRun::waitingFor(WaitingFor* out) const {
  if (args_.plan == nullptr) return;
  const CompiledPlan& p = *args_.plan;
  for (uint32_t s = 0; s < p.steps.size(); ++s) {
    const CompiledStep& st = p.steps[s];
    if (!st.isMessage() || done_[s] == st.num_chunks) continue;
    addUnique(st.isReceive() ? out->receive_from : out->send_to, st.peer);
  }
  std::sort(out->receive_from.begin(), out->receive_from.end());
  std::sort(out->send_to.begin(), out->send_to.end());
}

void PlanRun::abandon() {
  for (Flight& f : flights_) {
    f.request.release();
    f.staging = BufferPool::Lease{};  // the transport may still write it: never reuse it
  }
  flights_.clear();
  remaining_ = 0;
}

}  // namespace weft::coll::detail
