#include "transport/core/request_pool.h"

#include <utility>

#include "common/logging.h"

namespace weft::transport::detail {

RequestPool::RequestPool(ProgressEngine* engine, size_t max_slots)
    : engine_(engine), max_slots_(max_slots < kChunkSlots ? kChunkSlots : max_slots) {}

RequestPool::~RequestPool() {
  size_t held = 0;  // handles the caller still holds (abandoned slots do not count)
  for (const auto& chunk : chunks_) {
    for (uint32_t i = 0; i < kChunkSlots; ++i) {
      const RequestSlot& s = chunk[i];
      if (s.state.load(std::memory_order_relaxed) != kSlotFree && !s.detached) ++held;
    }
  }
  if (held > 0) {
    WEFT_LOG(kWarn, "transport") << held << " Request handles still exist while their Context "
                                 << "is destroyed (destroy Requests first)";
  }
}

bool RequestPool::grow() {
  const size_t have = chunks_.size() * kChunkSlots;
  if (have >= max_slots_) return false;
  auto chunk = std::make_unique<RequestSlot[]>(kChunkSlots);
  const auto base = static_cast<uint32_t>(have);
  free_.reserve(have + kChunkSlots);
  for (uint32_t i = kChunkSlots; i > 0; --i) {
    chunk[i - 1].index = base + i - 1;
    chunk[i - 1].pool = this;
    free_.push_back(base + i - 1);
  }
  chunks_.push_back(std::move(chunk));
  return true;
}

RequestSlot* RequestPool::acquire(OpKind op, RequestList* list, void* owner) {
  if (free_.empty() && !grow()) return nullptr;
  RequestSlot* s = slot(free_.back());
  free_.pop_back();
  ++in_use_;
  s->state.store(kSlotPending, std::memory_order_relaxed);
  s->op = op;
  s->detached = false;
  s->backend_pending = false;
  s->stage = 0;
  s->owner = owner;
  s->handle = nullptr;
  s->bytes = 0;
  s->capacity = 0;
  s->tag = 0;
  s->value = 0;
  s->operand = 0;
  s->list = list;
  s->prev = kNoSlot;
  s->next = kNoSlot;
  if (list != nullptr) {
    s->next = list->head;
    if (list->head != kNoSlot) slot(list->head)->prev = s->index;
    list->head = s->index;
    ++list->size;
  }
  return s;
}

void RequestPool::clearStatuses(RequestSlot* s) {
  s->status = Status();
  s->forced = Status();
  s->failed = false;
}

void RequestPool::abandon(RequestSlot* s, Status status) {
  if (s->state.load(std::memory_order_relaxed) != kSlotPending) return;
  unlink(s);
  s->owner = nullptr;
  s->backend_pending = s->handle != nullptr;
  s->handle = nullptr;
  s->status = std::move(status);
  s->failed = !s->status.isOk();
  s->state.store(kSlotDone, std::memory_order_release);
  if (s->detached && !s->backend_pending) freeSlot(s);
  engine_->notifyWaiters();
}

void RequestPool::complete(RequestSlot* s, Status status) {
  if (s->state.load(std::memory_order_relaxed) == kSlotDone && s->backend_pending) {
    s->backend_pending = false;  // the backend let go of an abandoned slot
    if (s->detached) freeSlot(s);
    return;
  }
  if (s->state.load(std::memory_order_relaxed) != kSlotPending) {
    WEFT_LOG(kError, "transport") << "internal: " << opKindName(s->op)
                                  << " request completed twice (ignored)";
    return;
  }
  if (!status.isOk() && !s->forced.isOk() && status.code() == StatusCode::kCanceled) {
    status = s->forced;
  }
  unlink(s);
  s->handle = nullptr;
  s->status = std::move(status);
  s->failed = !s->status.isOk();
  s->state.store(kSlotDone, std::memory_order_release);
  if (s->detached) {
    freeSlot(s);
  }
  engine_->notifyWaiters();
}

Status RequestPool::exhausted(OpKind op) const {
  return WEFT_ERROR(StatusCode::kNoResource, opKindName(op), ": ", in_use_,
                    " requests are in flight, the Context's limit")
      .withHint(
          "back-pressure: wait for earlier requests (or call progress()) and retry; "
          "raise WEFT_TRANSPORT_MAX_REQUESTS if the working set is really this large");
}

bool RequestPool::handleTest(SlotHead* head, uint32_t gen) {
  engine_->progress();
  engine_->lock();
  RequestSlot* s = current(head, gen);
  const bool done = s == nullptr || s->state.load(std::memory_order_acquire) == kSlotDone;
  engine_->unlock();
  return done;
}

Status RequestPool::handleWait(SlotHead* head, uint32_t gen, Deadline deadline) {
  RequestSlot* s = nullptr;
  const bool done = engine_->waitUntil(
      [&] {
        s = current(head, gen);
        return s == nullptr || s->state.load(std::memory_order_acquire) == kSlotDone;
      },
      deadline);
  if (!done) {
    engine_->lock();
    s = current(head, gen);
    const OpKind op = s != nullptr ? s->op : OpKind::kNone;
    engine_->unlock();
    return WEFT_ERROR(StatusCode::kTimeout, opKindName(op),
                      " request did not complete before the deadline (still pending)");
  }
  return handleStatus(head, gen);
}

Status RequestPool::notDoneStatus(const RequestSlot* s) {
  if (s == nullptr) return WEFT_ERROR(StatusCode::kInternal, "stale request handle");
  return WEFT_ERROR(StatusCode::kUnavailable, opKindName(s->op), " request is still in progress");
}

Status RequestPool::handleStatus(SlotHead* head, uint32_t gen) {
  engine_->lock();
  RequestSlot* s = current(head, gen);
  if (s != nullptr && s->state.load(std::memory_order_acquire) == kSlotDone) [[likely]] {
    Status st = s->status;
    engine_->unlock();
    return st;
  }
  engine_->unlock();
  return notDoneStatus(s);  // reads s->op for the message only
}

void RequestPool::handleRelease(SlotHead* head, uint32_t gen) {
  engine_->lock();
  RequestSlot* s = current(head, gen);
  if (s != nullptr) {
    if (s->state.load(std::memory_order_relaxed) == kSlotDone && !s->backend_pending) {
      freeSlot(s);
    } else {
      s->detached = true;
    }
  }
  engine_->unlock();
}

size_t RequestPool::handleBytes(SlotHead* head, uint32_t gen) {
  engine_->lock();
  RequestSlot* s = current(head, gen);
  const size_t v = s != nullptr && s->state.load() == kSlotDone ? s->bytes : 0;
  engine_->unlock();
  return v;
}

Tag RequestPool::handleTag(SlotHead* head, uint32_t gen) {
  engine_->lock();
  RequestSlot* s = current(head, gen);
  const Tag v = s != nullptr && s->state.load() == kSlotDone ? s->tag : 0;
  engine_->unlock();
  return v;
}

uint64_t RequestPool::handleValue(SlotHead* head, uint32_t gen) {
  engine_->lock();
  RequestSlot* s = current(head, gen);
  const uint64_t v = s != nullptr && s->state.load() == kSlotDone ? s->value : 0;
  engine_->unlock();
  return v;
}

}  // namespace weft::transport::detail

namespace weft::transport {

using detail::RequestPool;

Request& Request::operator=(Request&& other) noexcept {
  if (this != &other) {
    if (kind() == kSlot) releaseSlow();
    slot_ = other.slot_;
    aux_ = other.aux_;
    bits_ = other.bits_;
    other.setEmpty();
  }
  return *this;
}

void Request::releaseSlow() {
  RequestPool::poolOf(slot_)->handleRelease(slot_, aux_);
}

bool Request::testSlow() {
  return RequestPool::poolOf(slot_)->handleTest(slot_, aux_);
}

Status Request::waitSlow(Deadline deadline) {
  if (kind() == kEmpty) return status();
  return RequestPool::poolOf(slot_)->handleWait(slot_, aux_, deadline);
}

namespace {
[[gnu::cold, gnu::noinline]] Status emptyHandleStatus() {
  return WEFT_ERROR(StatusCode::kInvalidArgument, "status() of an empty Request handle");
}
}  // namespace

Status Request::statusSlow() const {
  if (kind() == kSlot) return RequestPool::poolOf(slot_)->handleStatus(slot_, aux_);
  return emptyHandleStatus();
}

size_t Request::bytes() const {
  if (kind() == kCompleted) return aux_;
  return kind() == kSlot ? RequestPool::poolOf(slot_)->handleBytes(slot_, aux_) : 0;
}

Tag Request::tag() const {
  return kind() == kSlot ? RequestPool::poolOf(slot_)->handleTag(slot_, aux_) : 0;
}

uint64_t Request::value() const {
  return kind() == kSlot ? RequestPool::poolOf(slot_)->handleValue(slot_, aux_) : 0;
}

}  // namespace weft::transport
