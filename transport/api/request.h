// Request: the completion handle of one non-blocking transport operation.
//
// Contract:
// - Every operation that returns a Request completes exactly once: successfully, with an
//   error (peer failure, truncation, ...), or canceled (Endpoint::close, Context teardown).
// - A Request is a move-only typed handle {pool, index, generation} into its Context's
//   request pool: creating, testing and destroying one allocates nothing once the pool
//   has grown to the working-set size (warm-up).
// - Destroying (or release()-ing) a pending Request detaches it: the operation still runs
//   and completes, and its slot is recycled then. The buffers it uses must stay valid until
//   it completes (wait on a later flush(), or close the Endpoint).
// - Lifetime: a Request must be destroyed before its Context is destroyed (Endpoints and
//   MemoryRegions keep the Context's internals alive; Requests do not).
// - Threads: with ContextOptions::thread_safe (or a progress thread) any thread may call
//   any method; otherwise only the thread that uses the Context.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/deadline.h"
#include "common/status.h"
#include "transport/api/types.h"

namespace weft::transport {

namespace detail {
class RequestPool;
}

class [[nodiscard]] Request {
 public:
  Request() = default;  // an empty handle: valid() is false
  ~Request() {
    if (pool_ != nullptr) releaseSlow();
  }
  Request(Request&& other) noexcept
      : pool_(other.pool_), index_(other.index_), gen_(other.gen_) {
    other.pool_ = nullptr;
  }
  Request& operator=(Request&& other) noexcept;
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;

  bool valid() const { return pool_ != nullptr; }
  // True once the operation has completed (successfully or not). Drives no progress.
  bool done() const;
  // Drives progress once if not done yet, then returns done().
  bool test();
  // Waits until done (spinning, then sleeping on the backend's event fd) or until the
  // deadline. Returns status() when done; kTimeout naming the operation otherwise (the
  // request stays pending and may be waited on again).
  Status wait(Deadline deadline);
  // The final status once done(); before that kUnavailable "... still in progress".
  // An empty handle gives kInvalidArgument.
  Status status() const;
  // Bytes received (recv) or moved (send, put, get) once done; 0 before.
  size_t bytes() const;
  // recv: the matched tag (caller bits only).
  Tag tag() const;
  // fetchAdd / compareSwap: the remote word before the operation; recvNotify: the
  // immediate value.
  uint64_t value() const;
  OpKind op() const;
  // Detaches the handle (see above); valid() becomes false.
  void release() {
    if (pool_ != nullptr) releaseSlow();
    pool_ = nullptr;
  }

 private:
  friend class detail::RequestPool;
  Request(detail::RequestPool* pool, uint32_t index, uint32_t gen)
      : pool_(pool), index_(index), gen_(gen) {}
  void releaseSlow();

  detail::RequestPool* pool_ = nullptr;
  uint32_t index_ = 0;
  uint32_t gen_ = 0;
};

}  // namespace weft::transport
