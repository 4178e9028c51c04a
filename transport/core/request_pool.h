// RequestPool: the slots behind Request handles (internal to transport/).
//
// Slots live in chunks that never move (backends hand slot pointers to the library as
// completion context), a free list recycles them, and a generation number detects stale
// handles. After warm-up (the pool has grown to the working set) acquire/complete/release
// allocate nothing.
//
// Threads: every method is called with the engine lock held, except the Request
// accessors, which take it themselves.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/status.h"
#include "transport/api/request.h"
#include "transport/api/types.h"
#include "transport/core/progress_engine.h"

namespace weft::transport::detail {

inline constexpr uint32_t kNoSlot = UINT32_MAX;

struct RequestList;

// state (in SlotHead): kSlotFree / kSlotPending / kSlotDone (transport/api/request.h).
struct RequestSlot : SlotHead {
  OpKind op = OpKind::kNone;
  bool detached = false;         // the handle is gone: free on completion
  bool backend_pending = false;  // done for the caller, but the backend still owns it
  uint8_t stage = 0;             // step of a multi-step backend operation
  uint32_t index = 0;
  uint32_t gen = 0;
  uint32_t prev = kNoSlot;  // links in `list`
  uint32_t next = kNoSlot;
  RequestList* list = nullptr;        // the owner's list of pending slots (nullptr: none)
  void* owner = nullptr;              // backend object that posted it (endpoint)
  void* handle = nullptr;             // backend request handle (UCX request pointer)
  size_t bytes = 0;                   // bytes moved / received
  size_t capacity = 0;                // posted length (receive buffer size)
  Tag tag = 0;                        // matched tag (recv)
  uint64_t value = 0;                 // atomic reply / notification immediate
  uint64_t operand = 0;               // atomic operand / notification immediate to send
  Status status;                      // final status
  Status forced;                      // replaces a cancellation status (peer failure, close)
  class RequestPool* pool = nullptr;  // the pool owning the slot (completions without owner)
};

// Intrusive list of an owner's pending slots (for failing / canceling them together).
struct RequestList {
  uint32_t head = kNoSlot;
  size_t size = 0;
};

class RequestPool {
 public:
  // Slots per chunk: a chunk is allocated when the pool grows (warm-up only).
  static constexpr uint32_t kChunkSlots = 1024;

  RequestPool(ProgressEngine* engine, size_t max_slots);
  ~RequestPool();
  RequestPool(const RequestPool&) = delete;
  RequestPool& operator=(const RequestPool&) = delete;

  ProgressEngine* engine() const { return engine_; }
  size_t maxSlots() const { return max_slots_; }
  size_t inUse() const { return in_use_; }

  // A pending slot for `op`, linked into `list` (may be nullptr); nullptr when the pool
  // is at max_slots (back-pressure).
  RequestSlot* acquire(OpKind op, RequestList* list, void* owner);
  // The handle for a freshly acquired slot.
  static Request handle(RequestSlot* slot) {
    return Request(slot, slot->gen, slot->op, Request::kSlot);
  }
  // A handle for an operation that completed successfully while being posted (no slot):
  // sends, puts and flushes (receives always take a slot: their length and tag live there).
  static Request completed(OpKind op, uint32_t bytes) {
    return Request(nullptr, bytes, op, Request::kCompleted);
  }
  // The pool of a slot-backed handle.
  static RequestPool* poolOf(const SlotHead* head) {
    return static_cast<const RequestSlot*>(head)->pool;
  }
  // Marks the slot done with `status` (or slot->forced when set and status is a
  // cancellation), unlinks it, frees it if detached, wakes waiters. On an abandoned slot it
  // only ends the backend's ownership.
  void complete(RequestSlot* slot, Status status);
  // complete(slot, Status::ok()), inline for the hot path of every successful completion.
  // A pending slot's status is already OK (acquire() gets it from freeSlot()).
  void completeOk(RequestSlot* s) {
    if (s->state.load(std::memory_order_relaxed) != kSlotPending) [[unlikely]] {
      complete(s, Status::ok());
      return;
    }
    unlink(s);
    s->handle = nullptr;
    s->state.store(kSlotDone, std::memory_order_release);
    if (s->detached) freeSlot(s);
    engine_->notifyWaiters();
  }
  // Completes a pending slot now, for the caller, while the backend may still hold its
  // request (a peer died or an endpoint went away and the library did not complete it).
  // The slot forgets its owner and is not recycled until the backend's own completion
  // arrives (complete() then only releases it), so a late callback is harmless.
  void abandon(RequestSlot* slot, Status status);
  RequestSlot* slot(uint32_t index) { return &chunks_[index / kChunkSlots][index % kChunkSlots]; }
  // The kNoResource error for a full pool.
  Status exhausted(OpKind op) const;

  // Calls fn(slot) for each slot in list; fn may complete the slot.
  template <typename Fn>
  void forEach(RequestList& list, Fn&& fn) {
    uint32_t i = list.head;
    while (i != kNoSlot) {
      RequestSlot* s = slot(i);
      i = s->next;
      fn(s);
    }
  }

  // Request handle operations on slot-backed handles (take the engine lock).
  bool handleTest(SlotHead* head, uint32_t gen);
  Status handleWait(SlotHead* head, uint32_t gen, Deadline deadline);
  Status handleStatus(SlotHead* head, uint32_t gen);
  void handleRelease(SlotHead* head, uint32_t gen);
  // Reads a field of a done slot (0 when pending or stale).
  size_t handleBytes(SlotHead* head, uint32_t gen);
  Tag handleTag(SlotHead* head, uint32_t gen);
  uint64_t handleValue(SlotHead* head, uint32_t gen);

 private:
  bool grow();
  void unlink(RequestSlot* s) {
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
  void freeSlot(RequestSlot* s) {
    if (!s->status.isOk() || !s->forced.isOk()) [[unlikely]]
      clearStatuses(s);
    ++s->gen;
    s->state.store(kSlotFree, std::memory_order_relaxed);
    free_.push_back(s->index);  // capacity reserved in grow(): never allocates
    --in_use_;
  }
  [[gnu::cold, gnu::noinline]] static void clearStatuses(RequestSlot* s);
  // handleStatus() of a stale or pending handle (cold: builds the message).
  [[gnu::cold, gnu::noinline]] static Status notDoneStatus(const RequestSlot* s);
  // The slot if the handle is current, nullptr if stale (lock held).
  static RequestSlot* current(SlotHead* head, uint32_t gen) {
    auto* s = static_cast<RequestSlot*>(head);
    if (s->gen != gen || s->state.load(std::memory_order_relaxed) == kSlotFree) return nullptr;
    return s;
  }

  ProgressEngine* engine_;
  size_t max_slots_;
  size_t in_use_ = 0;
  std::vector<std::unique_ptr<RequestSlot[]>> chunks_;
  std::vector<uint32_t> free_;
};

}  // namespace weft::transport::detail
