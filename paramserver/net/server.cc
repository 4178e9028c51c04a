#include "paramserver/net/server.h"

#include <algorithm>
#include <array>
#include <optional>
#include <cstring>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "common/bootstrap.h"
#include "common/config.h"
#include "common/logging.h"
#include "paramserver/net/framing.h"
#include "paramserver/net/membership.h"
#include "paramserver/server/request_handler.h"
#include "paramserver/sharding/shard_map.h"

namespace weft::ps::net {
namespace {

using transport::Endpoint;
using transport::Request;

// How often the loop looks for newly registered clients in the Store (one store round trip).
constexpr auto kClientPollInterval = std::chrono::milliseconds(50);
// Longest sleep of an idle loop before it checks for stop / new clients again.
constexpr auto kIdleWait = std::chrono::milliseconds(20);
// ... and while requests came recently (the last kBusyWaits waits): the transport's event
// fd does not wake the loop for every protocol message of a rendezvous receive, and each
// miss would stall the clients' requests in flight for the whole nap.
constexpr auto kBusyIdleWait = std::chrono::milliseconds(1);
constexpr uint32_t kBusyWaits = 200;

// The length of a received message (the transport reports it also for receives that
// completed while being posted).
size_t receivedBytes(const Request& r) { return r.bytes(); }

struct Conn {
  int rank = -1;
  std::unique_ptr<Endpoint> ep;
  std::vector<Bytes> buffers;
  std::vector<Request> recvs;
  size_t head = 0;  // the next receive to complete (they match in posting order)
  bool dead = false;
  // The client's regions whose gradients were read through a mapping, least recently used
  // first (at most kMappedRegionsPerClient stay mapped).
  std::deque<transport::RemoteKey> mapped;
};

struct BodyRecv {
  Conn* conn = nullptr;
  Bytes buffer;  // from the body pool; may be longer than the message
  // Set for gradients fetched from the client's memory (kFlagValuesByRef): the request
  // message; buffer then receives only the gradients (length bytes) by a get.
  Bytes front;
  size_t length = 0;
  Request request;
  std::chrono::steady_clock::time_point posted{};
  bool counted = true;  // counts against kBodyBytesInFlight (see kStalledBody)
};

// A large request whose body receive waits for room under kBodyBytesInFlight.
// Where a by-reference request (kFlagValuesByRef) keeps its values: the client's memory.
struct ValuesRef {
  transport::RemoteKey key;
  uint64_t offset = 0;
  uint64_t value_bytes = 0;  // 4 * the request's value floats
};

struct WaitingBody {
  Conn* conn = nullptr;
  wire::Header header;
  // Gradients to fetch from the client's memory (kFlagValuesByRef): the request message,
  // and where its values are. Empty: an announced body.
  Bytes front;
  ValuesRef ref;
};

// Reusable buffers for request bodies: a fresh multi-MiB vector per request costs a
// zero-fill and a page fault per 4 KiB, more than the transfer itself.
constexpr size_t kBodyPoolBuffers = 32;
// Request bodies with a receive posted at once, in bytes (at least one body is always
// posted; later announced bodies wait, in order, and their senders with them). Unbounded,
// a window of 16 pushes of 4 MiB spread over 64 MiB of buffers that had left the cache by
// the time their request was handled: weft-ps-bench dense push 4 MiB at window 2 ran
// 3.8-4.3 GB/s against 2.4-2.9 at window 16. The server handles one request at a time, so
// more in flight than it takes to keep the next one coming buys nothing.
constexpr size_t kBodyBytesInFlight = size_t{8} << 20;
// A posted body that has not arrived after this long stops counting against
// kBodyBytesInFlight: a client that does not drive its send (or announced a body it never
// sends) then delays other clients' large requests by at most this much. Its receive stays
// posted and is handled whenever the body comes.
constexpr auto kStalledBody = std::chrono::milliseconds(500);
// Client regions a server keeps mapped per client (Endpoint::mappedAddress pins each: a
// region the client freed stays allocated until its mapping here ends).
constexpr size_t kMappedRegionsPerClient = 64;
// Sent replies kept for reuse (a values reply of a 1,000-key dim-16 pull is 64 KiB).
constexpr size_t kReplyPoolBuffers = 32;
// Busy loop rounds between clock reads (a vDSO call, dearer under virtualization).
constexpr uint32_t kClockEveryRounds = 64;
// WEFT_PS_SERVER_THREADS=0: a request's rows are spread over at most this many threads
// (each core adds its cache-miss buffers; a 1,000-key request has 8 stripes to share).
constexpr uint32_t kAutoThreads = 4;
// Rows per ImportRows message of a hand-over (at 1 KiB per row, 16 MiB).
constexpr size_t kImportChunkRows = 16384;
// How long a hand-over waits for the new owner to acknowledge one ImportRows.
constexpr auto kHandOverTimeout = std::chrono::seconds(30);

struct OutSend {
  Bytes message;
  Request request;
};

struct Parked {
  Conn* conn = nullptr;
  Bytes message;
  uint32_t table_id = 0;
  uint32_t need_min_clock = 0;
  bool values_mapped = false;  // its gradients were read through a mapping (the reply says so)
};

struct Counters {
  std::atomic<uint64_t> requests{0}, errors{0}, large{0}, parked{0}, bytes_in{0}, bytes_out{0},
      clients{0}, slabs{0}, slabs_allocated{0}, handed{0}, imported{0}, values_mapped{0},
      values_fetched{0};
};

class ServerImpl final : public Server {
 public:
  ServerImpl(const ServerOptions& o, std::shared_ptr<Store> store)
      : options_(o), members_(std::move(store), o.ns), shard_(shardOptions(o)),
        handler_(shard_, handlerOptions(o)) {}
  ~ServerImpl() override { stop(Deadline::afterSeconds(5)).ignore(); }

  Status init(Deadline deadline);
  uint32_t id() const override { return options_.server_id; }
  Status health() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return health_;
  }
  ServerStats stats() const override;
  uint32_t mapVersion() const override { return shard_.mapVersion(); }
  std::vector<ServerTableStats> tableStats() const override {
    std::vector<ServerTableStats> out;
    auto lock = shard_.readLock();
    for (const uint32_t id : shard_.tableIdsLocked()) {
      const Table* t = shard_.table(id);
      out.push_back(ServerTableStats{id, t->spec().name, t->dim(), t->stats()});
    }
    return out;
  }
  Status stop(Deadline deadline) override;
  Status waitUntilStopped(Deadline deadline) override;

 private:
  static ShardOptions shardOptions(const ServerOptions& o) {
    ShardOptions s = o.shard;
    s.server_rank = o.server_id;
    s.threads = o.threads;
    if (s.threads == 0) {
      auto configured = config::getInt("WEFT_PS_SERVER_THREADS");  // malformed: init() says
      s.threads = configured.isOk() && *configured > 0 ? static_cast<uint32_t>(*configured)
                                                       : autoThreads();
    }
    return s;
  }
  // The CPUs this process may use, shared with the other ranks of its node (the launcher's
  // local size: weft-run, Open MPI, torchrun, PMI), at most kAutoThreads: a server next to a
  // busy worker on a small node gains nothing from a helper that competes with the worker
  // for its core (measured: 20 % fewer pulls with 2 threads on 2 cores).
  static uint32_t autoThreads() {
    auto boot = detectBootInfo();
    const uint32_t ranks =
        boot.isOk() && boot->local_size > 0 ? static_cast<uint32_t>(boot->local_size) : 1;
    return std::max<uint32_t>(1, ForkJoinPool::autoThreads(ranks * kAutoThreads) / ranks);
  }
  static HandlerOptions handlerOptions(const ServerOptions& o) {
    HandlerOptions h;
    auto limits = wire::WireLimits::fromConfig();  // malformed values: checked in init()
    h.limits = limits.isOk() ? *limits : wire::WireLimits{};
    h.checkpoint_root = o.checkpoint_root;
    h.eager_bytes = static_cast<uint32_t>(eagerBytes(o));
    h.max_version = o.max_version;
    return h;
  }
  // The largest request received eagerly (a malformed WEFT_PS_EAGER_BYTES fails init()).
  static size_t eagerBytes(const ServerOptions& o) {
    const auto eager = config::getInt("WEFT_PS_EAGER_BYTES");
    const size_t bytes = o.eager_bytes ? o.eager_bytes
                                       : static_cast<size_t>(eager.isOk() ? *eager : 0);
    return std::max(bytes, kMaxErrorReplyBytes);
  }
  std::string who() const {
    return strCat("ps server ", options_.server_id, " (rank ", options_.rank, ")");
  }

  void loop();
  bool pollClients();
  Status connectClient(int rank);
  Status postRecv(Conn& c, size_t slot);
  bool serviceConn(Conn& c);
  void onMessage(Conn& c, std::span<const uint8_t> bytes);
  void announce(Conn& c, const wire::Header& h);
  void postBody(Conn& c, const wire::Header& h);
  void postWaitingBodies();
  // A request that is not an announce: the values-by-reference paths, else handle().
  // mapped: as for handle (a parked request whose gradients were read through a mapping).
  void route(Conn& c, std::span<const uint8_t> bytes, bool mapped = false);
  // The reference of a by-reference request. nullopt when the message does not decode (the
  // handler answers it with the decode error); else the reference, or why its key is bad.
  std::optional<Result<ValuesRef>> decodeValuesRef(std::span<const uint8_t> bytes) const;
  void valuesByRef(Conn& c, std::span<const uint8_t> bytes);
  void postFetch(Conn& c, Bytes front, const ValuesRef& ref);
  void pullByRef(Conn& c, std::span<const uint8_t> bytes);
  void noteMapping(Conn& c, const transport::RemoteKey& key);
  // mapped: ref_values lie in the client's memory (the reply says so); placed: a Pull's
  // values go there (the client's memory) instead of into the reply.
  void handle(Conn& c, std::span<const uint8_t> bytes, FloatSpan ref_values = {},
              bool mapped = false, float* placed = nullptr);
  void replyError(Conn& c, const wire::Header& h, const Status& st);
  void sendReply(Conn& c, Bytes reply, uint64_t request_id);
  bool serviceBodies();
  bool releaseStalledBodies();
  bool reapSends();
  void recycleReply(Bytes reply) {
    if (reply_pool_.size() < kReplyPoolBuffers && reply.capacity() >= 4096) {
      reply_pool_.push_back(std::move(reply));
    }
  }
  // A pooled body buffer of at least `length` bytes (a grown one when none is that long).
  Bytes takeBody(size_t length) {
    Bytes out;
    // The most recently returned buffer that fits: the likeliest to be still in cache.
    auto fits = std::find_if(body_pool_.rbegin(), body_pool_.rend(),
                             [&](const Bytes& b) { return b.size() >= length; });
    if (fits == body_pool_.rend() && !body_pool_.empty()) fits = body_pool_.rbegin();
    if (fits != body_pool_.rend()) {
      out = std::move(*fits);
      body_pool_.erase(std::next(fits).base());
    }
    if (out.size() < length) out.resize(length);
    return out;
  }
  void runParked(uint32_t table_id);
  void dropConn(Conn& c, const Status& why);
  void hookTables();
  void unhookTables();
  void registerSlab(uint32_t table_id, const SlabInfo& slab);
  void publishSlab(uint32_t table_id, uint32_t slab_id, const transport::RemoteKey& key);
  // Shard-map changes (joining, handing rows over).
  Status startJoin(Deadline deadline);
  bool pollMap();
  void finishJoin();
  void moveRows(const ShardMap& latest);
  Status handOver(uint32_t dest, const std::vector<RingRange>& ranges);
  Status sendImport(transport::Endpoint& ep, Bytes message, Deadline deadline);

  const ServerOptions options_;
  Membership members_;
  Shard shard_;
  RequestHandler handler_;
  size_t eager_bytes_ = 0;
  size_t recvs_per_client_ = 0;
  bool allocate_slabs_ = false;  // WEFT_PS_SLAB_MEMORY=transport
  std::unique_ptr<transport::Context> ctx_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::deque<BodyRecv> bodies_;
  std::deque<WaitingBody> waiting_bodies_;
  size_t body_bytes_posted_ = 0;  // sum of bodies_[i].length
  std::vector<Bytes> body_pool_;
  std::deque<OutSend> sends_;
  std::vector<Bytes> reply_pool_;  // sent replies, reused for the next values replies
  std::vector<Parked> parked_;
  std::set<uint32_t> hooked_;  // tables whose slabs are registered
  std::vector<std::unique_ptr<transport::MemoryRegion>> regions_;
  int64_t clients_seen_ = 0;
  std::optional<ShardMap> map_;             // the map this server serves (or joins with)
  std::vector<uint32_t> awaiting_;          // joining: servers whose rows have not come yet
  std::map<uint32_t, std::unique_ptr<Endpoint>> peers_;  // new owners rows went to
  uint64_t next_request_id_ = 1;            // this server's own requests (ImportRows)
  std::chrono::steady_clock::time_point next_poll_{};
  Counters counters_;

  std::thread thread_;
  std::atomic<bool> stopping_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool ended_ = false;
  Status health_;
};

Status ServerImpl::init(Deadline deadline) {
  WEFT_RETURN_IF_ERROR(wire::WireLimits::fromConfig().status());
  WEFT_RETURN_IF_ERROR(config::getInt("WEFT_PS_EAGER_BYTES").status());
  if (options_.max_version < wire::kMinVersion || options_.max_version > wire::kMaxVersion) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, who(), ": ServerOptions::max_version ",
                      options_.max_version, " is outside the versions this build speaks (",
                      wire::kMinVersion, "..", wire::kMaxVersion, ")");
  }
  WEFT_ASSIGN_OR_RETURN(const int64_t recvs, config::getInt("WEFT_PS_SERVER_RECVS"));
  WEFT_RETURN_IF_ERROR(config::getInt("WEFT_PS_SERVER_THREADS").status());
  WEFT_ASSIGN_OR_RETURN(const std::string slab_memory, config::getString("WEFT_PS_SLAB_MEMORY"));
  allocate_slabs_ = slab_memory == "transport";
  eager_bytes_ = eagerBytes(options_);  // the size the Hello reply tells clients
  recvs_per_client_ =
      options_.recvs_per_client ? options_.recvs_per_client : static_cast<size_t>(recvs);
  if (!options_.restore_dir.empty()) {
    auto restored = shard_.restore(options_.restore_dir);
    if (!restored.isOk()) return restored.status().withContext(strCat(who(), ": restore"));
    WEFT_LOG(kInfo, "ps") << who() << ": restored " << restored->tables << " tables, "
                          << restored->rows << " rows from " << options_.restore_dir;
  }
  transport::ContextOptions co = options_.transport;
  co.rank = options_.rank;
  auto ctx = transport::openContext(options_.backend, co);
  if (!ctx.isOk()) return ctx.status().withContext(who());
  ctx_ = std::move(ctx).value();
  if (ctx_->capabilities().tag_bits < kPsTagBits) {
    return WEFT_ERROR(StatusCode::kNotSupported, who(), ": the ", options_.backend,
                      " backend gives ", ctx_->capabilities().tag_bits, " tag bits, ps needs ",
                      kPsTagBits);
  }
  WEFT_RETURN_IF_ERROR(ctx_->publishAddress(members_.transportStore()));
  hookTables();
  WEFT_RETURN_IF_ERROR(members_.registerServer(options_.server_id, options_.rank));
  if (options_.join) {
    WEFT_RETURN_IF_ERROR(startJoin(deadline));
  } else {
    WEFT_ASSIGN_OR_RETURN(const ShardMap map,
                          members_.publishInitialMap(options_.num_servers, deadline));
    if (options_.restore_dir.empty()) shard_.setMapVersion(map.version());
    map_.emplace(map);
  }
  thread_ = std::thread([this] { loop(); });
  return Status::ok();
}

ServerStats ServerImpl::stats() const {
  ServerStats s;
  s.requests = counters_.requests.load();
  s.error_replies = counters_.errors.load();
  s.large_requests = counters_.large.load();
  s.values_mapped = counters_.values_mapped.load();
  s.values_fetched = counters_.values_fetched.load();
  s.parked = counters_.parked.load();
  s.bytes_in = counters_.bytes_in.load();
  s.bytes_out = counters_.bytes_out.load();
  s.clients = counters_.clients.load();
  s.slabs_registered = counters_.slabs.load();
  s.slabs_allocated = counters_.slabs_allocated.load();
  s.rows_handed_over = counters_.handed.load();
  s.rows_imported = counters_.imported.load();
  return s;
}

Status ServerImpl::stop(Deadline deadline) {
  stopping_.store(true);
  Status st = waitUntilStopped(deadline);
  if (thread_.joinable()) {
    if (!st.isOk()) return st;
    thread_.join();
  }
  return Status::ok();
}

Status ServerImpl::waitUntilStopped(Deadline deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!thread_.joinable()) return Status::ok();
  const bool ended = cv_.wait_until(lock, deadline.when(), [&] { return ended_; });
  if (!ended) return WEFT_ERROR(StatusCode::kTimeout, who(), ": the loop did not stop in time");
  return Status::ok();
}

void ServerImpl::loop() {
  bool was_idle = true;
  uint32_t idle_waits = kBusyWaits;  // waits since the last activity
  for (uint32_t round = 0; !stopping_.load(std::memory_order_relaxed); ++round) {
    const unsigned events = ctx_->progress();
    bool did = false;
    for (auto& c : conns_) did |= serviceConn(*c);
    did |= serviceBodies();
    did |= reapSends();
    if ((was_idle || round % kClockEveryRounds == 0) &&
        std::chrono::steady_clock::now() >= next_poll_) {
      did |= pollClients();
      did |= pollMap();
      did |= releaseStalledBodies();
    }
    std::erase_if(conns_, [](const std::unique_ptr<Conn>& c) { return c->dead; });
    // Rendezvous transfers (request bodies, large replies) advance only while this loop
    // drives progress and do not always wake the event fd: sleep only when none is pending.
    // While one is pending, yield instead: the peer that must answer may share this core
    // (2-core hosts), and spinning through its time slice costs milliseconds per step.
    const bool transfers = !bodies_.empty() || !sends_.empty();
    was_idle = events == 0 && !did;
    if (!was_idle) idle_waits = 0;
    if (was_idle) {
      if (transfers) {
        std::this_thread::yield();
      } else {
        const bool busy = idle_waits < kBusyWaits;
        idle_waits += busy ? 1 : 0;
        ctx_->waitForEvent(Deadline::after(busy ? kBusyIdleWait : kIdleWait)).ignore();
      }
    }
  }
  for (auto& c : conns_) (void)c->ep->close(Deadline::afterSeconds(1));
  for (auto& [id, ep] : peers_) (void)ep->close(Deadline::afterSeconds(1));
  peers_.clear();
  bodies_.clear();
  waiting_bodies_.clear();
  body_bytes_posted_ = 0;
  sends_.clear();
  parked_.clear();
  conns_.clear();
  unhookTables();
  std::lock_guard<std::mutex> lock(mu_);
  if (health_.isOk()) health_ = WEFT_ERROR(StatusCode::kCanceled, who(), " was stopped");
  ended_ = true;
  cv_.notify_all();
}

bool ServerImpl::pollClients() {
  next_poll_ = std::chrono::steady_clock::now() + kClientPollInterval;
  auto count = members_.clientCount();
  if (!count.isOk()) {
    WEFT_LOG(kWarn, "ps") << who() << ": reading the client count: " << count.status();
    return false;
  }
  bool did = false;
  while (clients_seen_ < *count) {
    auto rank = members_.clientRank(clients_seen_, Deadline::after(std::chrono::milliseconds(200)));
    if (!rank.isOk()) break;  // registered but not published yet: next poll
    ++clients_seen_;
    Status st = connectClient(*rank);
    if (!st.isOk()) {
      WEFT_LOG(kWarn, "ps") << who() << ": client rank " << *rank << ": " << st;
    }
    did = true;
  }
  return did;
}

Status ServerImpl::connectClient(int rank) {
  auto c = std::make_unique<Conn>();
  c->rank = rank;
  auto ep = ctx_->connect(members_.transportStore(), rank, Deadline::afterSeconds(10));
  if (!ep.isOk()) return ep.status();
  c->ep = std::move(ep).value();
  c->buffers.resize(recvs_per_client_);
  c->recvs.resize(recvs_per_client_);
  for (size_t i = 0; i < recvs_per_client_; ++i) {
    c->buffers[i].resize(eager_bytes_);
    WEFT_RETURN_IF_ERROR(postRecv(*c, i));
  }
  WEFT_LOG(kInfo, "ps") << who() << ": serving client rank " << rank;
  conns_.push_back(std::move(c));
  counters_.clients.fetch_add(1);
  return Status::ok();
}

Status ServerImpl::postRecv(Conn& c, size_t slot) {
  auto r = c.ep->recv(c.buffers[slot].data(), c.buffers[slot].size(), kTagRequest);
  if (!r.isOk()) return r.status();
  c.recvs[slot] = std::move(r).value();
  return Status::ok();
}

bool ServerImpl::serviceConn(Conn& c) {
  bool did = false;
  while (!c.dead && c.recvs[c.head].done()) {
    Request& r = c.recvs[c.head];
    Status st = r.status();
    if (!st.isOk()) {
      dropConn(c, st);
      return true;
    }
    const size_t n = receivedBytes(r);
    onMessage(c, std::span<const uint8_t>(c.buffers[c.head].data(), n));
    st = postRecv(c, c.head);
    if (!st.isOk()) {
      dropConn(c, st);
      return true;
    }
    c.head = (c.head + 1) % c.recvs.size();
    did = true;
  }
  return did;
}

void ServerImpl::onMessage(Conn& c, std::span<const uint8_t> bytes) {
  counters_.bytes_in.fetch_add(bytes.size(), std::memory_order_relaxed);
  const wire::Header h = wire::peekHeader(bytes);
  if (bytes.size() == wire::kHeaderBytes && h.payload_bytes > 0) return announce(c, h);
  route(c, bytes);
}

void ServerImpl::route(Conn& c, std::span<const uint8_t> bytes, bool mapped) {
  const wire::Header h = wire::peekHeader(bytes);
  if ((h.flags & wire::kFlagValuesByRef) != 0) {
    if (h.opcode == static_cast<uint8_t>(wire::Opcode::kPull)) return pullByRef(c, bytes);
    if (h.opcode == static_cast<uint8_t>(wire::Opcode::kPush) ||
        h.opcode == static_cast<uint8_t>(wire::Opcode::kPushPull)) {
      return valuesByRef(c, bytes);
    }
  }
  handle(c, bytes, {}, mapped);
}

std::optional<Result<ValuesRef>> ServerImpl::decodeValuesRef(std::span<const uint8_t> bytes) const {
  auto m = wire::decodeMessage(bytes, handler_.limits());
  auto r = m.isOk() ? wire::decodeKeyed(*m) : Result<wire::KeyedRequest>(m.status());
  if (!r.isOk()) return std::nullopt;
  auto key = transport::RemoteKey::deserialize(std::string_view(
      reinterpret_cast<const char*>(r->values_ref.key.data()), r->values_ref.key.size()));
  if (!key.isOk()) return Result<ValuesRef>(key.status());
  return Result<ValuesRef>(
      ValuesRef{std::move(key).value(), r->values_ref.offset, uint64_t{4} * r->valueFloats()});
}

// A Pull that offers the client's memory for its values: written there when the transport
// maps that memory here, else sent in the reply as usual (the client reads the reply's
// flag). A key that does not map is answered the usual way too.
void ServerImpl::pullByRef(Conn& c, std::span<const uint8_t> bytes) {
  auto ref = decodeValuesRef(bytes);
  if (!ref) return handle(c, bytes);  // the handler answers with the decode error
  Result<void*> mapped = ref->isOk()
                             ? c.ep->mappedAddress((*ref)->key, (*ref)->offset, (*ref)->value_bytes)
                             : Result<void*>(ref->status());
  if (mapped.isOk() && *mapped != nullptr) noteMapping(c, (*ref)->key);  // released in turn
  if (!mapped.isOk() || *mapped == nullptr ||
      reinterpret_cast<uintptr_t>(*mapped) % alignof(float) != 0) {
    if (!mapped.isOk()) {
      WEFT_LOG(kDebug, "ps") << who() << ": pull request " << wire::peekHeader(bytes).request_id
                             << ": values in the reply: " << mapped.status();
    }
    return handle(c, bytes);
  }
  handle(c, bytes, {}, /*mapped=*/false, static_cast<float*>(*mapped));
}

// A Push / PushPull whose gradients stayed in the client's memory: read them where they lie
// when the transport maps that memory here (same node, UCX shared memory), else fetch them
// with a get and handle the request when it completes (serviceBodies). Either way the
// client keeps the memory untouched until the reply.
void ServerImpl::valuesByRef(Conn& c, std::span<const uint8_t> bytes) {
  counters_.large.fetch_add(1, std::memory_order_relaxed);
  const wire::Header h = wire::peekHeader(bytes);
  auto ref = decodeValuesRef(bytes);
  if (!ref) return handle(c, bytes);  // the handler answers with the decode error
  auto where = [&] {
    return strCat("ps server: the gradients of ", wire::opcodeName(h.opcode), " request ",
                  h.request_id, " from rank ", h.src_rank);
  };
  if (!ref->isOk()) return replyError(c, h, ref->status().withContext(where()));
  const ValuesRef& r = **ref;
  if (r.value_bytes > handler_.limits().max_payload_bytes) {
    return replyError(c, h,
                      WEFT_ERROR(StatusCode::kInvalidArgument, where(), ": ", r.value_bytes,
                                 " bytes exceed the limit of ", handler_.limits().max_payload_bytes,
                                 " (WEFT_PS_MAX_PAYLOAD_BYTES)"));
  }
  auto mapped = c.ep->mappedAddress(r.key, r.offset, r.value_bytes);
  if (!mapped.isOk()) return replyError(c, h, mapped.status().withContext(where()));
  if (*mapped != nullptr) {
    noteMapping(c, r.key);
    const FloatSpan values(static_cast<const uint8_t*>(*mapped), r.value_bytes / 4);
    // A PushPull's updated rows go where its gradients were (each key's gradient is read
    // before its row is written: Table::pushPull).
    const bool place = h.opcode == static_cast<uint8_t>(wire::Opcode::kPushPull) &&
                       reinterpret_cast<uintptr_t>(*mapped) % alignof(float) == 0;
    return handle(c, bytes, values, /*mapped=*/true,
                  place ? static_cast<float*>(*mapped) : nullptr);
  }
  counters_.values_fetched.fetch_add(1, std::memory_order_relaxed);
  // Fetched in turn with announced bodies, under the same bound on bytes in flight.
  waiting_bodies_.push_back(WaitingBody{&c, h, Bytes(bytes.begin(), bytes.end()), r});
  postWaitingBodies();
}

// Posts the get of a by-reference request's gradients (valuesByRef checked the message).
void ServerImpl::postFetch(Conn& c, Bytes front, const ValuesRef& ref) {
  const wire::Header h = wire::peekHeader(front);
  BodyRecv b;
  b.conn = &c;
  b.length = ref.value_bytes;
  b.buffer = takeBody(std::max<size_t>(ref.value_bytes, 1));
  auto get = c.ep->get(b.buffer.data(), ref.value_bytes, ref.key, ref.offset);
  if (!get.isOk()) {
    if (get.status().code() == StatusCode::kPeerFailure) return dropConn(c, get.status());
    return replyError(
        c, h,
        get.status().withContext(strCat("ps server: fetching the gradients of request ",
                                        h.request_id, " from rank ", h.src_rank)));
  }
  b.front = std::move(front);
  b.request = std::move(get).value();
  b.posted = std::chrono::steady_clock::now();
  body_bytes_posted_ += b.length;
  bodies_.push_back(std::move(b));
}

void ServerImpl::noteMapping(Conn& c, const transport::RemoteKey& key) {
  auto same = std::find_if(c.mapped.begin(), c.mapped.end(), [&](const transport::RemoteKey& k) {
    return k.region_id == key.region_id;
  });
  if (same != c.mapped.end()) {
    if (std::next(same) == c.mapped.end()) return;
    c.mapped.erase(same);
  }
  c.mapped.push_back(key);
  if (c.mapped.size() <= kMappedRegionsPerClient) return;
  Status st = c.ep->releaseMapping(c.mapped.front());
  if (!st.isOk()) {
    WEFT_LOG(kDebug, "ps") << who() << ": releasing a mapping: " << st;
  }
  c.mapped.pop_front();
}

void ServerImpl::replyError(Conn& c, const wire::Header& h, const Status& st) {
  counters_.errors.fetch_add(1, std::memory_order_relaxed);
  WEFT_LOG(kInfo, "ps") << who() << ": rejected request: " << st;
  Bytes reply = wire::encodeError(h, st, handler_.limits());
  wire::stampSource(reply, options_.server_id);
  sendReply(c, std::move(reply), h.request_id);
}

// A large request: its header came alone; receive the whole message by its body tag, at
// once or, past kBodyBytesInFlight, when earlier bodies are done.
void ServerImpl::announce(Conn& c, const wire::Header& h) {
  counters_.large.fetch_add(1, std::memory_order_relaxed);
  waiting_bodies_.push_back(WaitingBody{&c, h, {}, {}});
  postWaitingBodies();
}

// Posts waiting bodies, in order, while they fit kBodyBytesInFlight. Called outside any
// iteration over bodies_ (posting appends to it).
void ServerImpl::postWaitingBodies() {
  while (!waiting_bodies_.empty()) {
    WaitingBody& first = waiting_bodies_.front();
    const size_t length = first.front.empty()
                              ? wire::kHeaderBytes + size_t{first.header.payload_bytes}
                              : first.ref.value_bytes;
    if (body_bytes_posted_ > 0 && body_bytes_posted_ + length > kBodyBytesInFlight) return;
    WaitingBody next = std::move(first);
    waiting_bodies_.pop_front();
    // dropConn removes the entries of a dropped client.
    if (next.front.empty()) {
      postBody(*next.conn, next.header);
    } else {
      postFetch(*next.conn, std::move(next.front), next.ref);
    }
  }
}

void ServerImpl::postBody(Conn& c, const wire::Header& h) {
  auto checked = wire::decodeHeader(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&h), sizeof(h)), handler_.limits());
  BodyRecv b;
  b.conn = &c;
  // A rejected header still has its body on the way: receive it into an empty buffer (the
  // transport reports truncation and drops it) and answer the header with the error.
  if (checked.isOk()) {
    b.length = wire::kHeaderBytes + h.payload_bytes;
    b.buffer = takeBody(b.length);
  }
  auto r = c.ep->recv(b.buffer.data(), b.length, tagBody(h.request_id));
  if (!r.isOk()) return dropConn(c, r.status());
  b.request = std::move(r).value();
  b.posted = std::chrono::steady_clock::now();
  body_bytes_posted_ += b.length;
  if (!checked.isOk()) {
    b.conn = nullptr;  // discard on completion
    counters_.errors.fetch_add(1, std::memory_order_relaxed);
    Bytes reply = wire::encodeError(h, checked.status(), handler_.limits());
    wire::stampSource(reply, options_.server_id);
    sendReply(c, std::move(reply), h.request_id);
  }
  bodies_.push_back(std::move(b));
}

bool ServerImpl::serviceBodies() {
  bool did = false;
  for (auto it = bodies_.begin(); it != bodies_.end();) {
    if (!it->request.done()) {
      ++it;
      continue;
    }
    did = true;
    Conn* c = it->conn;
    if (c != nullptr && !c->dead) {
      Status st = it->request.status();
      if (st.isOk() && !it->front.empty()) {
        handle(*c, it->front, FloatSpan(it->buffer.data(), it->length / 4));
      } else if (st.isOk()) {
        // Not route(): values by reference come in eager messages only (a by-reference
        // Push announced this way is answered with an Error by the handler, a Pull as usual).
        handle(*c, std::span<const uint8_t>(it->buffer.data(), it->length));
      } else if (st.code() == StatusCode::kPeerFailure) {
        dropConn(*c, st);
      } else if (!it->front.empty()) {
        replyError(*c, wire::peekHeader(it->front),
                   st.withContext("ps server: fetching the gradients of a request"));
      } else {
        const wire::Header h = wire::peekHeader(std::span(it->buffer.data(), it->length));
        Bytes reply = wire::encodeError(h, st.withContext("receiving the request body"),
                                        handler_.limits());
        sendReply(*c, std::move(reply), h.request_id);
      }
    }
    if (body_pool_.size() < kBodyPoolBuffers && !it->buffer.empty()) {
      body_pool_.push_back(std::move(it->buffer));
    }
    if (it->counted) body_bytes_posted_ -= it->length;
    it = bodies_.erase(it);
  }
  if (did) postWaitingBodies();
  return did;
}

bool ServerImpl::releaseStalledBodies() {
  if (waiting_bodies_.empty()) return false;
  const auto stalled = std::chrono::steady_clock::now() - kStalledBody;
  bool released = false;
  for (BodyRecv& b : bodies_) {
    if (!b.counted || b.posted > stalled || b.request.done()) continue;
    b.counted = false;
    body_bytes_posted_ -= b.length;
    released = true;
    WEFT_LOG(kDebug, "ps") << who() << ": a request body of " << b.length
                           << " bytes has not arrived for " << kStalledBody.count()
                           << " ms; later bodies are received meanwhile";
  }
  if (released) postWaitingBodies();
  return released;
}

void ServerImpl::handle(Conn& c, std::span<const uint8_t> bytes, FloatSpan ref_values, bool mapped,
                        float* placed) {
  counters_.requests.fetch_add(1, std::memory_order_relaxed);
  const wire::Header h = wire::peekHeader(bytes);
  const bool restore = h.opcode == static_cast<uint8_t>(wire::Opcode::kCheckpoint) &&
                       (h.flags & wire::kFlagRestore) != 0 && (h.flags & wire::kFlagVerify) == 0;
  if (restore) unhookTables();  // the tables (and their memory) are about to be replaced
  Bytes spare;  // only values replies use it (others would drop it)
  const bool values = h.opcode == static_cast<uint8_t>(wire::Opcode::kPull) ||
                      h.opcode == static_cast<uint8_t>(wire::Opcode::kPushPull);
  if (values && placed == nullptr && !reply_pool_.empty()) {
    spare = std::move(reply_pool_.back());
    reply_pool_.pop_back();
  }
  HandleResult result = handler_.handleDetailed(bytes, std::move(spare), ref_values, placed);
  if (result.blocked) {
    counters_.parked.fetch_add(1, std::memory_order_relaxed);
    // A parked request keeps its gradients: copied into it, as if sent inline.
    Bytes message(bytes.begin(), bytes.end());
    if ((h.flags & wire::kFlagValuesByRef) != 0 && !ref_values.empty()) {
      auto m = wire::decodeMessage(bytes, handler_.limits());
      message = wire::inlineValues(h, *wire::decodeKeyed(*m), ref_values);
    }
    parked_.push_back(Parked{&c, std::move(message), result.blocked->table_id,
                             result.blocked->need_min_clock, mapped});
    return;
  }
  const wire::Header rh = wire::peekHeader(result.reply);
  if (rh.opcode == static_cast<uint8_t>(wire::Opcode::kError)) {
    counters_.errors.fetch_add(1, std::memory_order_relaxed);
  } else if (mapped) {
    wire::markValuesMapped(result.reply);
  }
  if (mapped || (placed != nullptr && rh.opcode == static_cast<uint8_t>(wire::Opcode::kReply))) {
    counters_.values_mapped.fetch_add(1, std::memory_order_relaxed);
  }
  sendReply(c, std::move(result.reply), h.request_id);
  if (h.opcode == static_cast<uint8_t>(wire::Opcode::kCreateTable) ||
      h.opcode == static_cast<uint8_t>(wire::Opcode::kImportRows) || restore) {
    hookTables();
  }
  if (h.opcode == static_cast<uint8_t>(wire::Opcode::kImportRows) &&
      rh.opcode == static_cast<uint8_t>(wire::Opcode::kReply)) {
    counters_.imported.fetch_add(h.key_count, std::memory_order_relaxed);
  }
  if (h.opcode == static_cast<uint8_t>(wire::Opcode::kClock)) runParked(h.table_id);
}

void ServerImpl::sendReply(Conn& c, Bytes reply, uint64_t request_id) {
  counters_.bytes_out.fetch_add(reply.size(), std::memory_order_relaxed);
  OutSend s;
  s.message = std::move(reply);
  auto r = c.ep->send(s.message.data(), s.message.size(), tagReply(request_id));
  if (!r.isOk()) return dropConn(c, r.status());
  if (r->done()) {  // completed while posting (small eager sends)
    recycleReply(std::move(s.message));
    return;
  }
  s.request = std::move(r).value();
  sends_.push_back(std::move(s));
}

bool ServerImpl::reapSends() {
  bool did = false;
  while (!sends_.empty() && sends_.front().request.done()) {
    recycleReply(std::move(sends_.front().message));
    sends_.pop_front();
    did = true;
  }
  return did;
}

void ServerImpl::runParked(uint32_t table_id) {
  uint32_t min_clock = 0;
  {
    auto lock = shard_.readLock();
    const Table* t = shard_.table(table_id);
    if (t == nullptr) return;
    min_clock = t->clocks().minClock();
  }
  std::vector<Parked> ready;
  std::erase_if(parked_, [&](Parked& p) {
    if (p.table_id != table_id || p.need_min_clock > min_clock) return false;
    ready.push_back(std::move(p));
    return true;
  });
  for (Parked& p : ready) {
    if (!p.conn->dead) route(*p.conn, p.message, p.values_mapped);
  }
}

void ServerImpl::dropConn(Conn& c, const Status& why) {
  if (c.dead) return;
  WEFT_LOG(kInfo, "ps") << who() << ": dropping client rank " << c.rank << ": " << why;
  c.dead = true;
  (void)c.ep->close(Deadline::afterSeconds(1));
  std::erase_if(parked_, [&](const Parked& p) { return p.conn == &c; });
  std::erase_if(waiting_bodies_, [&](const WaitingBody& w) { return w.conn == &c; });
  for (BodyRecv& b : bodies_) {
    if (b.conn == &c) b.conn = nullptr;
  }
  counters_.clients.fetch_sub(1);
}

void ServerImpl::hookTables() {
  if (!options_.register_rows || ctx_ == nullptr) return;
  auto lock = shard_.readLock();
  for (const uint32_t id : shard_.tableIdsLocked()) {
    if (hooked_.count(id) != 0) continue;
    hooked_.insert(id);
    Table* t = shard_.table(id);
    // Called on this thread from inside the push that maps a new slab: the slab is
    // registered (and its key published) before that push's reply goes out.
    t->setSlabListener([this, id](const SlabInfo& slab) { registerSlab(id, slab); });
    if (allocate_slabs_) {
      // Later slabs in transport memory. The region keeps the transport's state alive, so
      // a table may outlive ctx_ (ServerImpl destroys ctx_ before shard_).
      transport::Context* ctx = ctx_.get();
      t->setSlabSource([ctx](size_t bytes) -> Result<SlabMemory> {
        WEFT_ASSIGN_OR_RETURN(std::unique_ptr<transport::MemoryRegion> mr,
                              ctx->allocateMemory(bytes));
        auto* base = static_cast<uint8_t*>(mr->address());
        return SlabMemory{base, std::shared_ptr<transport::MemoryRegion>(std::move(mr))};
      });
    }
    for (const SlabInfo& slab : t->slabs()) registerSlab(id, slab);
  }
}

void ServerImpl::unhookTables() {
  {
    auto lock = shard_.readLock();
    for (const uint32_t id : hooked_) {
      if (Table* t = shard_.table(id)) {
        t->setSlabListener({});
        t->setSlabSource({});
      }
    }
  }
  hooked_.clear();
  regions_.clear();
}

void ServerImpl::registerSlab(uint32_t table_id, const SlabInfo& slab) {
  if (slab.owner != nullptr) {
    // From the slab source of hookTables, the only one: its owners are the allocated
    // MemoryRegions (already registered).
    const auto* mr = static_cast<const transport::MemoryRegion*>(slab.owner);
    publishSlab(table_id, slab.id, mr->remoteKey());
    counters_.slabs_allocated.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  auto mr = ctx_->registerMemory(slab.base, slab.bytes);
  if (!mr.isOk()) {
    WEFT_LOG(kWarn, "ps") << who() << ": registering slab " << slab.id << " of table " << table_id
                          << " (one-sided reads of it will fall back to RPC): " << mr.status();
    return;
  }
  publishSlab(table_id, slab.id, (*mr)->remoteKey());
  regions_.push_back(std::move(mr).value());
}

void ServerImpl::publishSlab(uint32_t table_id, uint32_t slab_id, const transport::RemoteKey& key) {
  Status st = members_.publishSlabKey(options_.server_id, table_id, slab_id, key.serialize());
  if (!st.isOk()) {
    WEFT_LOG(kWarn, "ps") << who() << ": publishing a slab key: " << st;
  }
  counters_.slabs.fetch_add(1, std::memory_order_relaxed);
}

// Connects to the servers of the current map (they send this server its rows), then adds
// this server to the map. Serves map version 0 (refuses keyed requests) until finishJoin.
Status ServerImpl::startJoin(Deadline deadline) {
  WEFT_ASSIGN_OR_RETURN(const ShardMap current, members_.readMap(deadline));
  std::set<uint32_t> connected;
  auto connectPeer = [&](uint32_t id) -> Status {
    if (!connected.insert(id).second) return Status::ok();
    WEFT_ASSIGN_OR_RETURN(const int rank, members_.serverRank(id, deadline));
    Status st = connectClient(rank);
    return st.isOk() ? st : st.withContext(strCat(who(), ": connecting to ps server ", id));
  };
  for (const uint32_t id : current.servers()) WEFT_RETURN_IF_ERROR(connectPeer(id));
  WEFT_ASSIGN_OR_RETURN(auto maps, members_.joinMap(options_.server_id, deadline));
  std::set<uint32_t> sources;
  for (const RangeMove& m : computeMoves(maps.first, maps.second)) {
    if (m.to == options_.server_id) sources.insert(m.from);
  }
  for (const uint32_t id : sources) WEFT_RETURN_IF_ERROR(connectPeer(id));
  awaiting_.assign(sources.begin(), sources.end());
  map_.emplace(std::move(maps.second));
  shard_.setMapVersion(0);
  WEFT_LOG(kInfo, "ps") << who() << ": joined, map version " << map_->version() << ", waiting for "
                        << awaiting_.size() << " servers to hand rows over";
  if (awaiting_.empty()) finishJoin();
  return Status::ok();
}

void ServerImpl::finishJoin() {
  shard_.setMapVersion(map_->version());
  Status st = members_.markServed(map_->version());
  if (!st.isOk()) {
    WEFT_LOG(kWarn, "ps") << who() << ": marking the map served: " << st;
  }
  WEFT_LOG(kInfo, "ps") << who() << ": serving shard map version " << map_->version();
}

// Joining: has every source handed its rows over? Serving: has the map changed?
bool ServerImpl::pollMap() {
  if (!awaiting_.empty()) {
    std::erase_if(awaiting_, [&](uint32_t from) {
      auto done = members_.moved(map_->version(), from);
      return done.isOk() && *done;
    });
    if (!awaiting_.empty()) return false;
    finishJoin();
    return true;
  }
  if (!map_) return false;
  auto latest = members_.readMap(Deadline::after(std::chrono::milliseconds(200)));
  if (!latest.isOk() || latest->version() <= map_->version()) return false;
  moveRows(*latest);
  return true;
}

// From here on requests routed with the old map are refused (the version check comes
// before anything is applied), so the rows exported below get no further update here.
void ServerImpl::moveRows(const ShardMap& latest) {
  std::map<uint32_t, std::vector<RingRange>> lost;  // new owner -> ranges, in ring order
  for (const RangeMove& m : computeMoves(*map_, latest)) {
    if (m.from == options_.server_id) lost[m.to].push_back(m.range);
  }
  WEFT_LOG(kInfo, "ps") << who() << ": shard map version " << map_->version() << " -> "
                        << latest.version() << ", handing rows to " << lost.size() << " servers";
  shard_.setMapVersion(latest.version());
  map_.emplace(latest);
  bool all = true;
  for (const auto& [dest, ranges] : lost) {
    Status st = handOver(dest, ranges);
    if (!st.isOk()) {
      all = false;
      WEFT_LOG(kError, "ps") << who() << ": handing rows to ps server " << dest
                             << " failed; they stay here, unserved: " << st;
    }
  }
  if (all) {
    Status st = members_.markMoved(latest.version(), options_.server_id);
    if (!st.isOk()) {
      WEFT_LOG(kWarn, "ps") << who() << ": marking the move done: " << st;
    }
  }
}

// Sends every row whose ring position lies in `ranges` to server dest (ImportRows, one
// message per table and kImportChunkRows rows) and erases them once all were acknowledged.
Status ServerImpl::handOver(uint32_t dest, const std::vector<RingRange>& ranges) {
  const Deadline deadline = Deadline::after(kHandOverTimeout);
  auto& ep = peers_[dest];
  if (!ep) {
    WEFT_ASSIGN_OR_RETURN(const int rank, members_.serverRank(dest, deadline));
    WEFT_ASSIGN_OR_RETURN(ep, ctx_->connect(members_.transportStore(), rank, deadline));
  }
  const KeyFilter moved = [&ranges](uint64_t key) {
    const uint64_t pos = ShardMap::ringPosition(key);
    auto it = std::upper_bound(ranges.begin(), ranges.end(), pos,
                               [](uint64_t p, const RingRange& r) { return p < r.first; });
    return it != ranges.begin() && std::prev(it)->contains(pos);
  };
  const size_t chunk = std::min<size_t>(kImportChunkRows, handler_.limits().max_keys);
  size_t rows = 0;
  for (const uint32_t id : shard_.tableIds()) {
    TableSpec spec;
    Bytes records;
    std::vector<uint32_t> clocks;
    size_t rb = 0;
    {
      auto lock = shard_.readLock();
      const Table* t = shard_.table(id);
      spec = t->spec();
      rb = t->recordBytes();
      records = t->exportRows(moved);
      clocks = t->clocks().snapshot();
    }
    const size_t n = records.size() / rb;
    for (size_t begin = 0; begin < n || begin == 0; begin += chunk) {
      const size_t count = std::min(chunk, n - begin);
      wire::ImportRowsRequest r{spec, static_cast<uint32_t>(count), static_cast<uint32_t>(rb),
                                std::span<const uint8_t>(records).subspan(begin * rb, count * rb),
                                clocks};
      const uint64_t rid = next_request_id_++;
      Bytes message = wire::encodeImportRows(
          {rid, options_.server_id, id, map_->version()}, r);
      WEFT_RETURN_IF_ERROR(sendImport(*ep, std::move(message), deadline));
      if (n == 0) break;
    }
    rows += n;
  }
  auto lock = shard_.readLock();
  for (const uint32_t id : shard_.tableIdsLocked()) shard_.table(id)->eraseRows(moved);
  counters_.handed.fetch_add(rows, std::memory_order_relaxed);
  WEFT_LOG(kInfo, "ps") << who() << ": handed " << rows << " rows to ps server " << dest;
  return Status::ok();
}

// One request of this server to a peer, framed like a client's (framing.h); waits for
// the reply and returns its status.
Status ServerImpl::sendImport(transport::Endpoint& ep, Bytes message, Deadline deadline) {
  const wire::Header h = wire::peekHeader(message);
  Bytes reply(kMaxErrorReplyBytes);
  WEFT_ASSIGN_OR_RETURN(Request recv, ep.recv(reply.data(), reply.size(), tagReply(h.request_id)));
  std::array<uint8_t, wire::kHeaderBytes> announce{};
  std::vector<Request> sends;
  if (message.size() <= eager_bytes_) {
    WEFT_ASSIGN_OR_RETURN(Request s, ep.send(message.data(), message.size(), kTagRequest));
    sends.push_back(std::move(s));
  } else {
    std::memcpy(announce.data(), message.data(), announce.size());
    WEFT_ASSIGN_OR_RETURN(Request a, ep.send(announce.data(), announce.size(), kTagRequest));
    sends.push_back(std::move(a));
    WEFT_ASSIGN_OR_RETURN(Request b,
                          ep.send(message.data(), message.size(), tagBody(h.request_id)));
    sends.push_back(std::move(b));
  }
  // Rendezvous sends advance only while this side drives progress: poll, do not sleep.
  for (uint32_t round = 1; !recv.test(); ++round) {
    if ((round & 63) == 0 && deadline.expired()) {
      return WEFT_ERROR(StatusCode::kTimeout, who(), ": no answer to ImportRows request ",
                        h.request_id, " of table ", h.table_id);
    }
    std::this_thread::yield();
  }
  WEFT_RETURN_IF_ERROR(recv.status());
  for (Request& s : sends) WEFT_RETURN_IF_ERROR(s.wait(deadline));
  WEFT_ASSIGN_OR_RETURN(const wire::Message m,
                        wire::decodeMessage(std::span(reply.data(), recv.bytes()), {}));
  return wire::checkReply(m, h.request_id, wire::Opcode::kImportRows).status();
}

}  // namespace

Result<std::unique_ptr<Server>> Server::start(const ServerOptions& options,
                                              std::shared_ptr<Store> store, Deadline deadline) {
  if (!options.join && (options.num_servers == 0 || options.server_id >= options.num_servers)) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "ps server: server id ", options.server_id,
                      " outside [0, num_servers = ", options.num_servers, ")");
  }
  auto server = std::make_unique<ServerImpl>(options, std::move(store));
  WEFT_RETURN_IF_ERROR(server->init(deadline));
  return std::unique_ptr<Server>(std::move(server));
}

}  // namespace weft::ps::net
