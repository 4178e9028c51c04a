// Endpoint: one connected peer of a Context.
//
// Contract:
// - Every operation is non-blocking: it validates its arguments, posts the work and
//   returns a Request (see request.h) that completes exactly once. Argument errors are
//   returned at once (kInvalidArgument naming the operation, peer, sizes / offsets) and
//   post nothing. kNoResource means the Context's request pool is full: back-pressure,
//   drive progress (wait on earlier requests) and retry; nothing was posted.
// - Zero-length operations are valid and complete (a 0-byte send matches a receive). A
//   null buffer with a non-zero size is kInvalidArgument. Local buffers need no
//   registration; they must stay valid until the Request completes.
// - Ordering: sends to one peer match that peer's receives in posting order for equal
//   tags (MPI-like non-overtaking). One-sided operations are unordered until flush().
// - One-sided progress: when Capabilities::rma_needs_target_progress is set, put / get /
//   atomics complete only while the target drives its progress engine (UCX emulates RMA
//   with messages over posix / sysv shared memory and tcp; only cma, rc and the like are
//   truly one-sided). A rank that waits for its peers' one-sided accesses must keep
//   driving progress meanwhile (a wait on its Context, waitForEvent, a progress thread).
// - Failure: when the peer dies or the connection breaks, every pending Request of this
//   Endpoint completes with kPeerFailure naming the peer rank, and later operations fail
//   at once with the same sticky error. close() completes pending Requests (canceled
//   ones with kCanceled); any operation after close() is kInvalidArgument.
// - Lifetime: Endpoints keep their Context's internals alive; destroying one closes it
//   (forcefully, without waiting). One Endpoint per peer rank per Context.
// - Threads: as for the Context (see context.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/deadline.h"
#include "common/result.h"
#include "transport/api/memory.h"
#include "transport/api/request.h"
#include "transport/api/types.h"

namespace weft::transport {

class Endpoint {
 public:
  virtual ~Endpoint() = default;
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  // Rank of the peer (as connected / as announced by the peer).
  virtual int peerRank() const = 0;
  // "ucx rank 0 -> rank 1" for messages.
  virtual std::string describe() const = 0;
  // OK while usable; the sticky error after a peer failure; kInvalidArgument after close.
  virtual Status health() const = 0;

  // Tagged messages. recv matches messages from this peer only.
  virtual Result<Request> send(const void* buffer, size_t length, Tag tag) = 0;
  virtual Result<Request> recv(void* buffer, size_t length, Tag tag, Tag mask = kTagMaskAll) = 0;

  // One-sided access to [offset, offset + length) of the peer's region `key`.
  virtual Result<Request> put(const void* source, size_t length, const RemoteKey& key,
                              uint64_t offset) = 0;
  virtual Result<Request> get(void* destination, size_t length, const RemoteKey& key,
                              uint64_t offset) = 0;
  // put, then a notification carrying `immediate` that the peer receives with
  // recvNotify() on its Endpoint to us once the data is visible there (RDMA
  // write-with-immediate semantics). Completes when the notification was delivered.
  virtual Result<Request> putNotify(const void* source, size_t length, const RemoteKey& key,
                                    uint64_t offset, uint64_t immediate) = 0;
  // Receives the next notification from this peer; Request::value() is the immediate.
  virtual Result<Request> recvNotify() = 0;

  // 64-bit atomics on an 8-byte aligned word at key + offset; Request::value() is the
  // word before the operation. compareSwap stores `desired` when it equals `expected`.
  virtual Result<Request> fetchAdd(const RemoteKey& key, uint64_t offset, uint64_t addend) = 0;
  virtual Result<Request> compareSwap(const RemoteKey& key, uint64_t offset, uint64_t expected,
                                      uint64_t desired) = 0;

  // Completes when every one-sided operation posted before it is complete at the peer.
  virtual Result<Request> flush() = 0;

  // Where this process sees [offset, offset + length) of the peer's region `key` in its own
  // address space, when the backend maps that region here: UCX maps a same-node peer's
  // shared-memory segments (Context::allocateMemory) and answers with ucp_rkey_ptr. nullptr
  // when it does not (registered memory, other nodes, verbs): use get / put. Loads and
  // stores through the pointer are plain memory accesses by this CPU, concurrent with the
  // owner's (no ordering with this endpoint's operations). The mapping lasts until
  // releaseMapping(key) or close() / destruction of this endpoint, also when the peer failed
  // or deregistered the region meanwhile (then its bytes are stale, no longer the peer's).
  // A bad key or range is the same error as for get.
  virtual Result<void*> mappedAddress(const RemoteKey& key, uint64_t offset, size_t length) = 0;
  // Ends mappedAddress's mapping of `key`: its pointers become invalid. OK when there is none.
  virtual Status releaseMapping(const RemoteKey& key) = 0;

  // Cancels pending receives (kCanceled), lets posted sends / puts finish until the
  // deadline, then disconnects. Returns kTimeout if the flush did not finish in time (the
  // Endpoint is closed anyway). Idempotent.
  virtual Status close(Deadline deadline) = 0;

 protected:
  Endpoint() = default;
};

}  // namespace weft::transport
