// coll::Request: the completion handle of one non-blocking collective or point-to-point
// operation (collectives.h: iallreduce, ibroadcast, isend, ...).
//
// Contract
//  - Every operation completes exactly once: OK, or an error naming the operation, its
//    sequence number and the peers involved (kTimeout when its deadline passed, kPeerFailure
//    when a rank died, kInvalidArgument when WEFT_CHECK found mismatched calls, ...).
//  - Progress: operations advance while the caller drives them: test(), wait(), or any
//    blocking collective of a communicator of the same world (each of them progresses every
//    running operation of every communicator that shares the transport Context). wait()
//    spins briefly and then sleeps on the transport's event fd, so more ranks than cores
//    still progress.
//  - Buffers passed to the operation must stay valid and untouched until it completes.
//  - Destroying a pending Request detaches it: the operation keeps running (driven by later
//    calls on the same world) and its buffers must stay valid until then. After an
//    operation failed, the transport may still write its receive buffers until the world's
//    communicators are destroyed (the communicator itself is then unusable, see
//    communicator.h).
//  - Threads: a Request is used by the thread that uses its communicator (communicators of
//    one world, their requests and the transport Context are used by one thread at a time).
//  - Lifetime: a Request keeps its communicator's internals alive; it must be destroyed
//    before the transport Context's owner destroys the Context.
//  - No allocation: requests come from a per-communicator pool that grows to the number of
//    operations in flight (warm-up).
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "common/deadline.h"
#include "common/status.h"

namespace weft::coll {

namespace detail {
class CommCore;
struct OpState;
}  // namespace detail

class [[nodiscard]] Request {
 public:
  Request() = default;
  ~Request();
  Request(Request&& other) noexcept;
  Request& operator=(Request&& other) noexcept;
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;

  bool valid() const { return op_ != nullptr; }
  // True once the operation completed (successfully or not). Drives no progress.
  bool done() const;
  // Drives progress once, then returns done().
  bool test();
  // Waits until the operation completes or its own deadline (CallOptions::deadline, default
  // WEFT_TIMEOUT from the call) passes; then the operation has failed with kTimeout.
  Status wait();
  // As wait(), but gives up at `deadline` if that comes first: kTimeout, and the operation
  // stays pending (wait again later).
  Status wait(Deadline deadline);
  // The final status once done(); kUnavailable while pending; kInvalidArgument when empty.
  Status status() const;

  // The operation's sequence number on its communicator (collectives only; 0 for send/recv).
  uint64_t seq() const;
  // "allreduce", "send", ...; the algorithm that runs it ("ring", "direct", ...).
  std::string_view operation() const;
  std::string_view algorithm() const;

  // Detaches the handle (see above); valid() becomes false.
  void release();

 private:
  friend class detail::CommCore;
  Request(std::shared_ptr<detail::CommCore> core, detail::OpState* op, uint32_t generation)
      : core_(std::move(core)), op_(op), generation_(generation) {}
  bool current() const;

  std::shared_ptr<detail::CommCore> core_;
  detail::OpState* op_ = nullptr;
  uint32_t generation_ = 0;
};

}  // namespace weft::coll
