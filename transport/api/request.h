// Request: the completion handle of one non-blocking transport operation.
//
// Contract:
// - Every operation that returns a Request completes exactly once: successfully, with an
//   error (peer failure, truncation, ...), or canceled (Endpoint::close, Context teardown).
// - A Request is a move-only typed handle {slot, generation} into its Context's request
//   pool: creating, testing and destroying one allocates nothing once the pool has grown
//   to the working-set size (warm-up). Operations that complete while being posted (small
//   eager sends) return a slot-less completed Request; done() and wait() are inline.
// - Destroying (or release()-ing) a pending Request detaches it: the operation still runs
//   and completes, and its slot is recycled then. The buffers it uses must stay valid until
//   it completes (wait on a later flush(), or close the Endpoint).
// - Lifetime: a Request must be destroyed before its Context is destroyed (Endpoints and
//   MemoryRegions keep the Context's internals alive; Requests do not).
// - Threads: with ContextOptions::thread_safe (or a progress thread) any thread may call
//   any method; otherwise only the thread that uses the Context.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "common/deadline.h"
#include "common/status.h"
#include "transport/api/types.h"

namespace weft::transport {

namespace detail {
class RequestPool;
// The part of a request slot that a Request reads inline (RequestSlot in
// core/request_pool.h derives from it). State values: kSlotFree, kSlotPending, kSlotDone.
struct SlotHead {
  std::atomic<uint8_t> state{0};
  // Set with the final status, before state becomes kSlotDone: the status is not OK (lets
  // Request::status() answer a successful completion inline).
  bool failed = false;
};
inline constexpr uint8_t kSlotFree = 0;
inline constexpr uint8_t kSlotPending = 1;
inline constexpr uint8_t kSlotDone = 2;
}  // namespace detail

class [[nodiscard]] Request {
 public:
  Request() = default;  // an empty handle: valid() is false
  ~Request() {
    if (kind() == kSlot) releaseSlow();
  }
  Request(Request&& other) noexcept : slot_(other.slot_), aux_(other.aux_), bits_(other.bits_) {
    other.setEmpty();
  }
  Request& operator=(Request&& other) noexcept;
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;

  bool valid() const { return kind() != kEmpty; }
  // True once the operation has completed (successfully or not). Drives no progress.
  bool done() const {
    return kind() != kSlot || slot_->state.load(std::memory_order_acquire) == detail::kSlotDone;
  }
  // Drives progress once if not done yet, then returns done().
  bool test() { return done() || testSlow(); }
  // Waits until done (spinning, then sleeping on the backend's event fd) or until the
  // deadline. Returns status() when done; kTimeout naming the operation otherwise (the
  // request stays pending and may be waited on again).
  Status wait(Deadline deadline) {
    if (kind() == kCompleted) return Status::ok();
    return waitSlow(deadline);
  }
  // The final status once done(); before that kUnavailable "... still in progress".
  // An empty handle gives kInvalidArgument. A success is answered inline.
  Status status() const {
    if (kind() == kCompleted) return Status::ok();
    if (kind() == kSlot && slot_->state.load(std::memory_order_acquire) == detail::kSlotDone &&
        !slot_->failed) [[likely]] {
      return Status::ok();
    }
    return statusSlow();
  }
  // Bytes received (recv) or moved (send, put, get) once done; 0 before.
  size_t bytes() const;
  // recv: the matched tag (caller bits only).
  Tag tag() const;
  // fetchAdd / compareSwap: the remote word before the operation; recvNotify: the
  // immediate value.
  uint64_t value() const;
  OpKind op() const { return static_cast<OpKind>(bits_ & 0xff); }
  // Detaches the handle (see above); valid() becomes false.
  void release() {
    if (kind() == kSlot) releaseSlow();
    setEmpty();
  }

 private:
  friend class detail::RequestPool;
  enum Kind : uint8_t {
    kEmpty = 0,
    kSlot = 1,       // tracks a pool slot: slot_ and its generation in aux_
    kCompleted = 2,  // completed successfully when posted (no slot): aux_ holds bytes
  };
  Request(detail::SlotHead* slot, uint32_t aux, OpKind op, uint8_t kind)
      : slot_(slot),
        aux_(aux),
        bits_(static_cast<uint16_t>(static_cast<uint8_t>(op) | kind << 8)) {}
  Kind kind() const { return static_cast<Kind>(bits_ >> 8); }
  void setEmpty() { bits_ = static_cast<uint16_t>(bits_ & 0xff); }
  void releaseSlow();
  bool testSlow();
  Status statusSlow() const;
  Status waitSlow(Deadline deadline);

  detail::SlotHead* slot_ = nullptr;
  uint32_t aux_ = 0;
  // The operation (low byte) and the Kind (high byte) in one field: handles are built by
  // one 16-bit store and moved by one 16-bit load. (As two byte fields, a handle built on
  // the stack and moved into its Result at once had its two byte stores read back by one
  // merged 16-bit load, which store forwarding cannot serve: a stall of ~4 % of an 8-byte
  // receive, perf annotate on weft-perf send_bw.)
  uint16_t bits_ = static_cast<uint16_t>(OpKind::kNone);
};

}  // namespace weft::transport
