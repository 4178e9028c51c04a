// UCX (UCP) backend internals. Nothing outside transport/ includes this header.
//
// Object graph: UcxContext (the public Context) owns a shared_ptr<UcxState>; every
// UcxEndpoint, UcxListener and UcxMemoryRegion holds another, so the UCP context and
// worker live until the last of them is gone. UcxState is the EventSource of the
// Context's ProgressEngine and owns the RequestPool.
//
// Threads: every UCP call happens with the engine lock held (a no-op unless the Context
// is thread-safe); UCP callbacks run inside ucp_worker_progress, i.e. with the lock held,
// and never take it.
#pragma once

#include <ucp/api/ucp.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <set>
#include <source_location>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/process.h"
#include "common/result.h"
#include "transport/api/context.h"
#include "transport/core/options.h"
#include "transport/core/progress_engine.h"
#include "transport/core/request_pool.h"

namespace weft::transport::ucx {

// UCP tag layout (64 bits):
//   63..62  kind: 0 caller message, 1 putNotify notification, 2 connection control
//   61..40  sender rank (22 bits): a receive matches one peer only
//   39..0   caller tag (40 bits) / control: 39..32 control type, 31..0 nonce
inline constexpr int kTagBits = 40;
inline constexpr int kRankBits = 22;
inline constexpr int kMaxRank = (1 << kRankBits) - 1;
inline constexpr uint64_t kUserTagMask = (uint64_t{1} << kTagBits) - 1;
inline constexpr uint64_t kRankMask = uint64_t{kMaxRank} << kTagBits;
inline constexpr uint64_t kKindMask = uint64_t{3} << 62;
inline constexpr uint64_t kKindUser = uint64_t{0} << 62;
inline constexpr uint64_t kKindNotify = uint64_t{1} << 62;
inline constexpr uint64_t kKindControl = uint64_t{2} << 62;
inline constexpr uint64_t kControlTypeShift = 32;
inline constexpr uint64_t kControlHello = 1;
inline constexpr uint64_t kControlHelloReply = 2;

inline uint64_t rankBits(int rank) {
  return static_cast<uint64_t>(rank) << kTagBits;
}

// "<what>: <ucs text> (ucs status N)" with the StatusCode matching the UCS error.
Status ucxError(ucs_status_t status, std::string_view what,
                std::source_location where = std::source_location::current());
StatusCode ucxCode(ucs_status_t status);
// True for statuses that mean the peer or the connection is gone.
bool isPeerError(ucs_status_t status);

class UcxEndpoint;

// Who a process is, for liveness checks of peers on the same host (ucx_liveness.cc).
struct ProcessIdentity {
  std::string host;  // "<boot id>/<pid namespace>": equal means same host and namespace
  uint32_t pid = 0;
  uint64_t start_time = 0;  // /proc/<pid>/stat field 22: tells a reused pid apart
};
ProcessIdentity selfIdentity();
// Address record flag: this process connects to watched peers on its host without UCX's
// error mode (UcxState::ucxPeerErrors). Both ends must agree: UCX 1.13 refuses endpoints
// whose two sides differ in error mode.
inline constexpr uint32_t kAddressSameHostNoUcxErrors = 1;
// The record published in the Store: identity, flags and the UCP worker address.
struct AddressRecord {
  ProcessIdentity id;
  uint32_t flags = 0;
  std::string worker_address;
};
std::string packAddress(const ProcessIdentity& id, uint32_t flags,
                        const std::string& worker_address);
Result<AddressRecord> unpackAddress(std::string_view record);

// Transport names ("posix", "tcp", ...) as UCX prints them: the context's resources
// (ucp_context_print_info: "#      resource 0  :  md 0  dev 0  flags -- posix/memory") and
// an endpoint's lanes (ucp_ep_print_info: "lane[0]:  3:sysv/memory.0 md[2] ..."), in UCX
// 1.13's formats. Empty when the text has none (another format): callers then assume
// nothing. The parse* functions take the printed text.
std::vector<std::string> parseResourceTransports(const std::string& text);
std::vector<std::string> parseLaneTransports(const std::string& text);
std::vector<std::string> ucxContextTransports(ucp_context_h context);
std::vector<std::string> ucxLaneTransports(ucp_ep_h ep);
// posix, sysv, cma, knem, xpmem or self.
bool isSharedMemoryTransport(const std::string& tl);
std::string joinStrings(const std::vector<std::string>& parts, std::string_view sep);

class UcxState final : public detail::EventSource {
 public:
  UcxState(const ContextOptions& options, const ResolvedOptions& resolved);
  ~UcxState() override;
  UcxState(const UcxState&) = delete;
  UcxState& operator=(const UcxState&) = delete;

  // Reads the UCX configuration, creates the UCP context and worker, the event fd.
  Status init(const ContextOptions& options);

  unsigned pollEvents() override { return pollOnce(); }
  // One progress round, the hot path of Context::progress() (inline, no engine lock: the
  // caller holds it or the Context is single-threaded): ucp_worker_progress, plus the rare
  // duties (peer liveness every 1024 rounds, queued endpoint failures).
  unsigned pollOnce() {
    unsigned n = ucp_worker_progress(worker_);
    if ((++polls_ & 1023) == 0) [[unlikely]]
      n += pollDuties();
    return n;
  }
  bool armEvents() override;
  int eventFd() const override { return efd_; }
  void wakeUp() override;
  void onIdle() override {
    if (!watched_.empty()) checkPeers();
  }

  // Same-host peers whose process liveness is checked (see ucx_liveness.cc).
  void watch(UcxEndpoint* ep);
  void unwatch(UcxEndpoint* ep);
  // Checks the watched peers if the keepalive interval passed since the last check.
  void checkPeers();
  const ProcessIdentity& identity() const { return identity_; }
  // identity + worker address, as published in the Store.
  const std::string& addressRecord() const { return address_record_; }

  // An endpoint's error callback fired: failPending() runs after the progress round (the
  // counter is moved so that the next pollOnce() runs the duties).
  void queueFailed(UcxEndpoint* ep) {
    failed_.push_back(ep);
    polls_ |= 1023;
  }
  // An endpoint goes away: forget queued failure work for it.
  void forget(UcxEndpoint* ep);
  // One endpoint per peer rank: claims `peer` (false if already connected).
  bool claimPeer(int peer) { return peers_.insert(peer).second; }
  void releasePeer(int peer) { peers_.erase(peer); }

  // Dead peers are detected (WEFT_UCX_ERROR_HANDLING).
  bool peerErrors() const { return peer_errors_; }
  // Whether an endpoint asks UCX for peer error handling (UCP_ERR_HANDLING_MODE_PEER).
  // Not when the peer is a process on this host that the backend watches itself and UCX
  // reaches it over shared memory only: there UCX's mode costs a keepalive lane on every
  // progress call and drops cma from rendezvous (UCX 1.13 wants memory invalidation for
  // zero-copy rendezvous in that mode, which cma's MD does not implement), so every large
  // message is copied twice through the shared FIFO, while the process watch already
  // detects the death without false alarms (and UCX's shared-memory keepalive misses some).
  // That holds when UCX_TLS names shared-memory transports only, and when this context's
  // transports are an mm one, a single-copy one and at most tcp and self (UCX then serves a
  // same-host peer over shared memory only; UcxEndpoint::create checks the lanes and falls
  // back to UCX's mode otherwise). Both ends must choose alike, so a same-host peer gets no
  // UCX mode only when its address record says it chose so too (peer_allows). Everything
  // else keeps UCX's mode (tcp needs it: without it a broken connection is fatal to UCX),
  // unless WEFT_UCX_ERROR_HANDLING=0.
  bool ucxPeerErrors(bool watched_on_host, bool peer_allows) const {
    if (watched_on_host) return !(sameHostWithoutUcxErrors() && peer_allows);
    return peer_errors_;
  }
  // This process's side of that choice (published as kAddressSameHostNoUcxErrors).
  bool sameHostWithoutUcxErrors() const { return !peer_errors_ || shm_only_ || host_shm_lanes_; }
  // UCX_TLS names shared-memory transports only.
  bool shmOnly() const { return shm_only_; }
  ucp_context_h ucpContext() const { return context_; }
  ucp_worker_h worker() const { return worker_; }
  int rank() const { return rank_; }
  const Capabilities& caps() const { return caps_; }
  uint64_t nextRegionId() { return next_region_id_++; }
  uint32_t nextNonce();
  detail::ProgressEngine& engine() { return engine_; }
  detail::RequestPool& pool() { return pool_; }
  // "ucx rank R" for messages.
  std::string name() const;

 private:
  unsigned pollDuties();
  Status readConfig(const ContextOptions& options, ucp_config_t* config);
  void fillCapabilities(const ContextOptions& options);

  int rank_;
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  int efd_ = -1;
  std::string worker_address_;
  ProcessIdentity identity_;
  std::string address_record_;
  std::vector<UcxEndpoint*> watched_;
  uint64_t polls_ = 0;
  Deadline::Clock::time_point next_check_{};
  std::chrono::nanoseconds check_interval_{std::chrono::seconds(1)};
  Capabilities caps_;
  std::set<int> peers_;
  std::vector<UcxEndpoint*> failed_;
  std::atomic<uint64_t> next_region_id_{1};
  uint32_t nonce_ = 0;
  bool peer_errors_ = true;
  bool shm_only_ = false;  // UCX_TLS names shared-memory transports only
  // This context's transports are shared memory (posix or sysv, maybe cma...) plus at most
  // tcp and self: a same-host peer gets shared-memory lanes only (see ucxPeerErrors).
  bool host_shm_lanes_ = false;
  detail::ProgressEngine engine_;
  detail::RequestPool pool_;
};

using StatePtr = std::shared_ptr<UcxState>;

// A verified, unpacked remote key cached per endpoint.
struct CachedRkey {
  uint64_t region_id;
  uint64_t checksum;
  uint64_t address;
  uint64_t length;
  ucp_rkey_h rkey;
  uint64_t used;  // last use (UcxEndpoint::rkey_tick_), for least-recently-used eviction
  bool pinned;    // mappedAddress handed out a pointer into it: never evicted
  bool mapping_checked = false;  // mappedAddress found the whole region in one shared mapping
};

// Unpacked remote keys one endpoint keeps, at most (beyond it the least recently used are
// destroyed while no operation of the endpoint is pending; keys mappedAddress answered
// with a pointer stay, since destroying the rkey unmaps the segment): a peer that registers a new
// region every iteration would otherwise grow the list, and UCX's memory behind it, forever.
inline constexpr size_t kMaxCachedRkeys = 64;

class UcxEndpoint final : public Endpoint {
 public:
  // Creates the UCP endpoint from `params` (error handling fields are added here).
  // `same_host`: the peer is a process on this host (the caller watches it, see
  // watchProcess); `peer_allows`: its address record carries kAddressSameHostNoUcxErrors.
  // UcxState::ucxPeerErrors decides UCX's error mode from both.
  static Result<std::unique_ptr<UcxEndpoint>> create(StatePtr state, int peer,
                                                     ucp_ep_params_t params, std::string how,
                                                     bool same_host = false,
                                                     bool peer_allows = false);
  ~UcxEndpoint() override;

  int peerRank() const override { return peer_; }
  std::string describe() const override;
  Status health() const override;

  Result<Request> send(const void* buffer, size_t length, Tag tag) override;
  Result<Request> recv(void* buffer, size_t length, Tag tag, Tag mask) override;
  Result<Request> put(const void* source, size_t length, const RemoteKey& key,
                      uint64_t offset) override;
  Status releaseMapping(const RemoteKey& key) override;
  Result<void*> mappedAddress(const RemoteKey& key, uint64_t offset, size_t length) override;
  Result<Request> get(void* destination, size_t length, const RemoteKey& key,
                      uint64_t offset) override;
  Result<Request> putNotify(const void* source, size_t length, const RemoteKey& key,
                            uint64_t offset, uint64_t immediate) override;
  Result<Request> recvNotify() override;
  Result<Request> fetchAdd(const RemoteKey& key, uint64_t offset, uint64_t addend) override;
  Result<Request> compareSwap(const RemoteKey& key, uint64_t offset, uint64_t expected,
                              uint64_t desired) override;
  Result<Request> flush() override;
  Status close(Deadline deadline) override;

  // Connection control messages (listener handshake). Lock held.
  Result<Request> sendRaw(OpKind op, const void* buffer, size_t length, uint64_t ucp_tag);
  Result<Request> recvRaw(OpKind op, void* buffer, size_t length, uint64_t ucp_tag,
                          uint64_t ucp_mask);

  // UCP callbacks (lock held).
  void onPeerError(ucs_status_t status);
  void failPending();
  void onSendDone(detail::RequestSlot* slot, ucs_status_t status);
  void onRecvDone(detail::RequestSlot* slot, ucs_status_t status, const ucp_tag_recv_info_t* info);
  void onNotifyFlushed(detail::RequestSlot* slot, ucs_status_t status);

  // Same-host liveness (lock held): watch the peer process; true when it is gone.
  void watchProcess(uint32_t pid, uint64_t start_time);
  bool peerGone() const { return peer_pid_ != 0 && processGone(peer_pid_, peer_start_); }
  // The peer process is gone: fail everything pending and drop the UCP endpoint.
  void onPeerDeath();

 private:
  UcxEndpoint(StatePtr state, int peer, std::string how);
  Status usable(OpKind op) const;
  Status argError(OpKind op, std::string_view what) const;
  // The errors of send / recv (cold: kept out of the posting fast path, whose frame would
  // otherwise carry the message formatting).
  [[gnu::cold, gnu::noinline]] Status sendError(const void* buffer, size_t length, Tag tag) const;
  [[gnu::cold, gnu::noinline]] Status recvError(const void* buffer, size_t length, Tag tag,
                                                Tag mask) const;
  // Completion of a slot with a UCX error (cold).
  [[gnu::cold, gnu::noinline]] void failSlot(detail::RequestSlot* slot, ucs_status_t status,
                                             const ucp_tag_recv_info_t* info, bool receive);
  // Validates key + [offset, offset + length) and returns the unpacked rkey (cached). The
  // hot case, the key used last and an access inside it, is answered inline.
  Result<ucp_rkey_h> remoteAccess(OpKind op, const RemoteKey& key, uint64_t offset,
                                  size_t length) {
    if (last_rkey_ < rkeys_.size() && offset <= key.length && length <= key.length - offset &&
        sameKey(rkeys_[last_rkey_], key) && rkeys_[last_rkey_].rkey != nullptr) [[likely]] {
      rkeys_[last_rkey_].used = ++rkey_tick_;
      return rkeys_[last_rkey_].rkey;
    }
    return findRkey(op, key, offset, length);
  }
  static bool sameKey(const CachedRkey& c, const RemoteKey& key) {
    return c.region_id == key.region_id && c.checksum == key.checksum &&
           c.address == key.address && c.length == key.length;
  }
  // remoteAccess's other cases: a cached key found, a new one unpacked, or the refusal.
  Result<ucp_rkey_h> findRkey(OpKind op, const RemoteKey& key, uint64_t offset, size_t length);
  Result<ucp_rkey_h> unpackKey(OpKind op, const RemoteKey& key);
  // Turns the result of a *_nbx call into the slot's fate (completed now or pending).
  void track(detail::RequestSlot* slot, ucs_status_ptr_t ret);
  Status statusFor(const detail::RequestSlot* slot, ucs_status_t status) const;
  Result<Request> postAtomic(OpKind op, ucp_atomic_op_t opcode, const RemoteKey& key,
                             uint64_t offset, uint64_t operand, uint64_t reply_in);
  Result<Request> finishPost(detail::RequestSlot* slot);
  void postNotification(detail::RequestSlot* slot);
  void destroyRkeys(bool keep_pinned);
  Status closeUcpEndpoint(Deadline deadline, bool force);
  // The UCP endpoint in the given error mode (create() decides it and checks the lanes).
  static Result<std::unique_ptr<UcxEndpoint>> createWithMode(StatePtr state, int peer,
                                                             ucp_ep_params_t params,
                                                             std::string how, bool peer_errors);
  void retireUcpEndpoint();
  // Closes the UCP endpoint without waiting (see the definition).
  void closeQuietly();
  // Completes every still-pending request of this endpoint with `why` (RequestPool::abandon).
  void abandonPending(const Status& why);

  StatePtr state_;
  detail::RequestPool& pool_;
  detail::ProgressEngine& engine_;
  ucp_ep_h ep_ = nullptr;
  int peer_;
  std::string how_;  // "store" / "client of host:port" / "accepted from host:port"
  bool closed_ = false;
  bool peer_errors_ = false;    // created with UCP_ERR_HANDLING_MODE_PEER
  bool never_created_ = false;  // ucp_ep_create failed: the destructor has nothing to do
  Status failure_;              // sticky peer failure
  uint64_t send_base_;          // kKindUser | my rank
  uint64_t recv_base_;          // kKindUser | peer rank
  detail::RequestList posted_;  // operations on the UCP endpoint
  detail::RequestList recvs_;   // worker-level receives matching this peer
  std::vector<CachedRkey> rkeys_;
  size_t last_rkey_ = 0;
  bool immediate_puts_ = true;  // the last small put that tried completed while posted
  uint32_t put_count_ = 0;
  uint64_t rkey_tick_ = 0;
  void trimRkeys();
  uint32_t peer_pid_ = 0;  // nonzero: a same-host peer process that is watched
  uint64_t peer_start_ = 0;
};

class UcxMemoryRegion final : public MemoryRegion {
 public:
  static Result<std::unique_ptr<MemoryRegion>> create(StatePtr state, void* address, size_t length,
                                                      MemoryType type);
  // Context::allocateMemory: ucp_mem_map with UCP_MEM_MAP_ALLOCATE.
  static Result<std::unique_ptr<MemoryRegion>> allocate(StatePtr state, size_t length);
  ~UcxMemoryRegion() override;
  Status deregister() override;

 private:
  UcxMemoryRegion(StatePtr state, void* address, size_t length, MemoryType type)
      : MemoryRegion(address, length, type), state_(std::move(state)) {}
  // ucp_rkey_pack into key_.packed; `what` names the step in the error.
  Status packKey(const std::string& what);
  // Fills and seals key_ and marks the region registered.
  void finishKey();
  StatePtr state_;
  ucp_mem_h memh_ = nullptr;
};

class UcxListener final : public Listener {
 public:
  static Result<std::unique_ptr<Listener>> create(StatePtr state, const std::string& host_port);
  ~UcxListener() override;
  std::string address() const override { return address_; }
  Result<std::unique_ptr<Endpoint>> accept(Deadline deadline) override;

  void onConnRequest(ucp_conn_request_h request) { pending_.push_back(request); }

 private:
  explicit UcxListener(StatePtr state) : state_(std::move(state)) {}
  Result<std::unique_ptr<UcxEndpoint>> endpointFor(ucp_conn_request_h request, std::string& what);
  Result<std::unique_ptr<Endpoint>> acceptOne(ucp_conn_request_h request, Deadline deadline);

  StatePtr state_;
  ucp_listener_h listener_ = nullptr;
  std::string address_;
  std::deque<ucp_conn_request_h> pending_;
};

// Client side of the listener handshake.
Result<std::unique_ptr<Endpoint>> connectToListener(const StatePtr& state,
                                                    const std::string& host_port, int peer_rank,
                                                    Deadline deadline);
// Store rendezvous.
Result<std::unique_ptr<Endpoint>> connectThroughStore(const StatePtr& state, Store& store,
                                                      int peer_rank, Deadline deadline);
std::string addressKey(int rank);

// The backend entry point used by openContext().
Result<std::unique_ptr<Context>> openUcxContext(const ContextOptions& options);

}  // namespace weft::transport::ucx
