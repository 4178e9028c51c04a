// Context: one per process and backend. Owns the backend's device / UCP context, the
// progress engine, the request pool, and creates Endpoints, Listeners and MemoryRegions.
//
//   ContextOptions opt;
//   opt.rank = my_rank;
//   WEFT_ASSIGN_OR_RETURN(auto ctx, openContext("ucx", opt));
//   WEFT_ASSIGN_OR_RETURN(auto ep, ctx->connect(store, peer, deadline));
//   WEFT_ASSIGN_OR_RETURN(Request r, ep->send(buf, n, /*tag=*/7));
//   WEFT_RETURN_IF_ERROR(r.wait(deadline));
//
// Contract:
// - Threads: by default a Context and everything it created is used by one thread at a
//   time (no locks on the hot path). With thread_safe (implied by progress_thread) every
//   method may be called from any thread; an internal mutex serializes them.
// - Progress: operations advance only while something drives the engine: progress(),
//   Request::test()/wait(), waitForEvent(), or the progress thread. Blocking waits spin
//   for spin_us, then sleep on the backend's event fd (bounded naps), so more ranks than
//   cores still progress.
// - Lifetime: Endpoints, Listeners and MemoryRegions keep the Context's internals alive;
//   Requests must be gone before the Context and its last Endpoint. Destroying the
//   Context stops the progress thread and closes everything forcefully.
// - Errors: Status / Result, never exceptions; the Context stays usable after any error
//   of a single operation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/deadline.h"
#include "common/result.h"
#include "common/store/store.h"
#include "transport/api/capabilities.h"
#include "transport/api/endpoint.h"
#include "transport/api/memory.h"
#include "transport/api/request.h"
#include "transport/api/types.h"

namespace weft::transport {

struct ContextOptions {
  // This process's identity among its peers: stamped on messages, used for store keys and
  // announced to listeners. Unique among the Contexts that talk to each other;
  // 0 <= rank <= Capabilities::max_rank.
  int rank = 0;
  // Serialize every call with a mutex so several threads may use the Context.
  bool thread_safe = false;
  // Start a thread that drives progress and sleeps on the event fd (implies thread_safe).
  bool progress_thread = false;
  // Microseconds a blocking wait busy-polls before sleeping; -1: WEFT_TRANSPORT_SPIN_US.
  int64_t spin_us = -1;
  // Most requests in flight; 0: WEFT_TRANSPORT_MAX_REQUESTS.
  size_t max_requests = 0;
  // Backend settings that win over the environment, e.g. {"TLS", "posix"} for UCX
  // (UCX_TLS). A malformed value is kInvalidArgument at open (UCX itself only warns about
  // names it does not know).
  std::vector<std::pair<std::string, std::string>> backend_config;
};

// Accepts connections from Context::connectAddress on a socket address.
class Listener {
 public:
  virtual ~Listener() = default;
  // The bound "host:port" (the real port when listening on port 0).
  virtual std::string address() const = 0;
  // Waits for the next client and returns the Endpoint to it (peerRank() is the client's
  // rank). kTimeout naming the address when no client came before the deadline.
  virtual Result<std::unique_ptr<Endpoint>> accept(Deadline deadline) = 0;

 protected:
  Listener() = default;
};

class Context {
 public:
  virtual ~Context() = default;
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  virtual std::string_view backend() const = 0;
  virtual int rank() const = 0;
  virtual const Capabilities& capabilities() const = 0;

  // Registers [address, address + length) for one-sided access by peers. length 0 gives
  // an empty region (its key admits only zero-length operations). Unmapped memory,
  // null-with-size, or an unsupported memory type are clear errors (kInvalidArgument /
  // kNotSupported naming the range and the reason).
  virtual Result<std::unique_ptr<MemoryRegion>> registerMemory(
      void* address, size_t length, MemoryType type = MemoryType::kHost) = 0;

  // Allocates `length` bytes (> 0) of zero-filled host memory, registered as by
  // registerMemory, in the place peers reach fastest. UCX: from its shared-memory
  // transports (UCX_ALLOC_PRIO order; posix / sysv segments), which a peer on the same node
  // maps, so its puts, gets and atomics on this region are plain loads and stores that need
  // no progress here — on memory from registerMemory UCX's shared-memory transports
  // emulate them with messages this Context must progress. When no shared-memory method
  // works UCX falls back to private memory (still correct, emulated). verbs: anonymous
  // pages. The region owns the memory: deregister() or destroying the region releases it,
  // after which address() must not be used. 0 bytes or an allocation failure: an error
  // naming the size and the reason.
  virtual Result<std::unique_ptr<MemoryRegion>> allocateMemory(size_t length) = 0;

  // Store rendezvous: publishes this Context's address under
  // "transport/<backend>/addr/<rank>" (once; callers namespace with a PrefixStore), reads
  // the peer's and connects. Local: does not wait for the peer beyond the store read.
  virtual Status publishAddress(Store& store) = 0;
  virtual Result<std::unique_ptr<Endpoint>> connect(Store& store, int peer_rank,
                                                    Deadline deadline) = 0;

  // Socket rendezvous ("host:port", "[v6]:port"): listen / connect to a Listener. The
  // connect handshake checks that the listener's rank is peer_rank. An unreachable or
  // refused address is kUnavailable naming it, within the deadline.
  virtual Result<std::unique_ptr<Listener>> listen(const std::string& host_port) = 0;
  virtual Result<std::unique_ptr<Endpoint>> connectAddress(const std::string& host_port,
                                                           int peer_rank, Deadline deadline) = 0;

  // Drives the engine once; returns how many events it processed.
  virtual unsigned progress() = 0;
  // Spins, then sleeps on the event fd, until the backend reports activity or the
  // deadline passes (OK either way; kTimeout only if the deadline had already expired).
  // For callers that run their own completion loops.
  virtual Status waitForEvent(Deadline deadline) = 0;

 protected:
  Context() = default;
};

// Opens a backend by name ("ucx"; "verbs" later). kNotSupported naming the backends built
// into this binary when `backend` is not one of them.
Result<std::unique_ptr<Context>> openContext(std::string_view backend,
                                             const ContextOptions& options = {});
// Backends built into this binary ("ucx", ...).
std::vector<std::string> availableBackends();

}  // namespace weft::transport
