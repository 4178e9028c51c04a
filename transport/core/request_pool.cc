#include "transport/core/request_pool.h"

#include <utility>

#include "common/logging.h"

namespace weft::transport::detail {

RequestPool::RequestPool(ProgressEngine* engine, size_t max_slots)
    : engine_(engine), max_slots_(max_slots < kChunkSlots ? kChunkSlots : max_slots) {}

RequestPool::~RequestPool() {
  if (in_use_ > 0) {
    WEFT_LOG(kWarn, "transport") << in_use_
                                 << " requests still exist while their Context is destroyed";
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
  s->state.store(SlotState::kPending, std::memory_order_relaxed);
  s->op = op;
  s->detached = false;
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

void RequestPool::unlink(RequestSlot* s) {
  RequestList* list = s->list;
  if (list == nullptr) return;
  if (s->prev != kNoSlot) {
    slot(s->prev)->next = s->next;
  } else {
    list->head = s->next;
  }
  if (s->next != kNoSlot) slot(s->next)->prev = s->prev;
  --list->size;
  s->list = nullptr;
  s->prev = kNoSlot;
  s->next = kNoSlot;
}

void RequestPool::freeSlot(RequestSlot* s) {
  s->status = Status();
  s->forced = Status();
  ++s->gen;
  s->state.store(SlotState::kFree, std::memory_order_relaxed);
  free_.push_back(s->index);  // capacity reserved in grow(): never allocates
  --in_use_;
}

void RequestPool::complete(RequestSlot* s, Status status) {
  if (s->state.load(std::memory_order_relaxed) != SlotState::kPending) {
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
  s->state.store(SlotState::kDone, std::memory_order_release);
  if (s->detached) {
    freeSlot(s);
  }
  engine_->notifyWaiters();
}

Status RequestPool::exhausted(OpKind op) const {
  return WEFT_ERROR(StatusCode::kNoResource, opKindName(op), ": ", in_use_,
                    " requests are in flight, the Context's limit")
      .withHint("back-pressure: wait for earlier requests (or call progress()) and retry; "
                "raise WEFT_TRANSPORT_MAX_REQUESTS if the working set is really this large");
}

RequestSlot* RequestPool::current(uint32_t index, uint32_t gen) {
  if (index / kChunkSlots >= chunks_.size()) return nullptr;
  RequestSlot* s = slot(index);
  if (s->gen != gen || s->state.load(std::memory_order_relaxed) == SlotState::kFree) {
    return nullptr;
  }
  return s;
}

bool RequestPool::handleDone(uint32_t index, uint32_t gen) {
  engine_->lock();
  RequestSlot* s = current(index, gen);
  const bool done = s == nullptr || s->state.load(std::memory_order_acquire) == SlotState::kDone;
  engine_->unlock();
  return done;
}

bool RequestPool::handleTest(uint32_t index, uint32_t gen) {
  if (handleDone(index, gen)) return true;
  engine_->progress();
  return handleDone(index, gen);
}

Status RequestPool::handleWait(uint32_t index, uint32_t gen, Deadline deadline) {
  RequestSlot* s = nullptr;
  const bool done = engine_->waitUntil(
      [&] {
        s = current(index, gen);
        return s == nullptr || s->state.load(std::memory_order_acquire) == SlotState::kDone;
      },
      deadline);
  if (!done) {
    engine_->lock();
    s = current(index, gen);
    const OpKind op = s != nullptr ? s->op : OpKind::kNone;
    engine_->unlock();
    return WEFT_ERROR(StatusCode::kTimeout, opKindName(op),
                      " request did not complete before the deadline (still pending)");
  }
  return handleStatus(index, gen);
}

Status RequestPool::handleStatus(uint32_t index, uint32_t gen) {
  engine_->lock();
  RequestSlot* s = current(index, gen);
  Status st;
  if (s == nullptr) {
    st = WEFT_ERROR(StatusCode::kInternal, "stale request handle (slot ", index, ")");
  } else if (s->state.load(std::memory_order_acquire) != SlotState::kDone) {
    st = WEFT_ERROR(StatusCode::kUnavailable, opKindName(s->op),
                    " request is still in progress");
  } else {
    st = s->status;
  }
  engine_->unlock();
  return st;
}

void RequestPool::handleRelease(uint32_t index, uint32_t gen) {
  engine_->lock();
  RequestSlot* s = current(index, gen);
  if (s != nullptr) {
    if (s->state.load(std::memory_order_relaxed) == SlotState::kDone) {
      freeSlot(s);
    } else {
      s->detached = true;
    }
  }
  engine_->unlock();
}

size_t RequestPool::handleBytes(uint32_t index, uint32_t gen) {
  engine_->lock();
  RequestSlot* s = current(index, gen);
  const size_t v = s != nullptr && s->state.load() == SlotState::kDone ? s->bytes : 0;
  engine_->unlock();
  return v;
}

Tag RequestPool::handleTag(uint32_t index, uint32_t gen) {
  engine_->lock();
  RequestSlot* s = current(index, gen);
  const Tag v = s != nullptr && s->state.load() == SlotState::kDone ? s->tag : 0;
  engine_->unlock();
  return v;
}

uint64_t RequestPool::handleValue(uint32_t index, uint32_t gen) {
  engine_->lock();
  RequestSlot* s = current(index, gen);
  const uint64_t v = s != nullptr && s->state.load() == SlotState::kDone ? s->value : 0;
  engine_->unlock();
  return v;
}

OpKind RequestPool::handleOp(uint32_t index, uint32_t gen) {
  engine_->lock();
  RequestSlot* s = current(index, gen);
  const OpKind v = s != nullptr ? s->op : OpKind::kNone;
  engine_->unlock();
  return v;
}

}  // namespace weft::transport::detail

namespace weft::transport {

Request& Request::operator=(Request&& other) noexcept {
  if (this != &other) {
    if (pool_ != nullptr) releaseSlow();
    pool_ = other.pool_;
    index_ = other.index_;
    gen_ = other.gen_;
    other.pool_ = nullptr;
  }
  return *this;
}

void Request::releaseSlow() { pool_->handleRelease(index_, gen_); }

bool Request::done() const { return pool_ == nullptr || pool_->handleDone(index_, gen_); }

bool Request::test() { return pool_ == nullptr || pool_->handleTest(index_, gen_); }

Status Request::wait(Deadline deadline) {
  if (pool_ == nullptr) return status();
  return pool_->handleWait(index_, gen_, deadline);
}

Status Request::status() const {
  if (pool_ == nullptr) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "status() of an empty Request handle");
  }
  return pool_->handleStatus(index_, gen_);
}

size_t Request::bytes() const { return pool_ ? pool_->handleBytes(index_, gen_) : 0; }
Tag Request::tag() const { return pool_ ? pool_->handleTag(index_, gen_) : 0; }
uint64_t Request::value() const { return pool_ ? pool_->handleValue(index_, gen_) : 0; }
OpKind Request::op() const { return pool_ ? pool_->handleOp(index_, gen_) : OpKind::kNone; }

}  // namespace weft::transport
