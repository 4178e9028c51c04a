// Internal to the client (client.cc, client_one_sided.cc): the Client implementation.
#pragma once

#include <array>
#include <chrono>
#include <unordered_map>
#include <unordered_set>

#include "paramserver/client/client_codec.h"
#include "paramserver/net/client.h"
#include "paramserver/net/membership.h"
#include "paramserver/row_layout.h"

namespace weft::ps::net {

struct ServerConn {
  uint32_t id = 0;
  int rank = -1;
  std::unique_ptr<transport::Endpoint> ep;
  uint32_t max_keys = 0;
  // Large pushes leave their gradients in a staging region for this server to read (see
  // ClientImpl::placeValues): from a Hello that agreed on protocol version 2 until a reply
  // says the server had to fetch them instead of mapping.
  bool values_by_ref = false;
  // When a Locate to this server last succeeded: cached row locations are used only within
  // location_lease_ of it (ClientImpl::locateCached).
  std::chrono::steady_clock::time_point located_at{};
};

// Transport memory holding a large push's gradients until its reply (kFlagValuesByRef).
struct Staging {
  std::unique_ptr<transport::MemoryRegion> region;
  std::string key;  // region->remoteKey().serialize()
};

// The keys (and gradients) of one refused request, with their positions in the caller's batch.
struct ResendBatch {
  std::vector<uint64_t> keys;
  std::vector<float> grads;
  std::vector<uint32_t> at;

  void add(const ResendBatch& from, uint32_t i, uint32_t dim) {
    keys.push_back(from.keys[i]);
    at.push_back(from.at[i]);
    if (!from.grads.empty()) {
      grads.insert(grads.end(), from.grads.begin() + size_t{i} * dim,
                   from.grads.begin() + size_t{i + 1} * dim);
    }
  }
};

struct ResendState;

// One request to one server and its reply.
struct SubRequest {
  PendingRequest pending;
  Bytes message;
  std::array<uint8_t, wire::kHeaderBytes> announce{};
  Bytes reply;  // from the reply pool; may be longer than the reply
  transport::Request send, body_send, recv;
  // Set once the request's outcome is final (a wait that timed out leaves it unset, and the
  // next wait resumes from where that one stopped).
  bool finished = false;
  Status result;
  // While a request refused by a moved shard is being re-sent (see ClientImpl::resend).
  std::unique_ptr<ResendState> resend;
  Staging staging;  // the gradients, when the message refers to them
};

struct Op {
  std::vector<SubRequest> subs;
  float* out = nullptr;
  std::string what;            // for messages; data ops leave it empty and set these:
  const char* name = nullptr;  // "pull"
  uint32_t table_id = 0;

  std::string describe() const { return what.empty() ? strCat(name, " of table ", table_id) : what; }
};

// A refused request being re-sent in rounds, kept across waits that time out: keys a round
// delivered are never sent again, and the round in flight (with its buffers) lives here
// until each of its requests finished.
struct ResendState {
  ResendBatch batch;  // keys not yet served (those of the round in flight included)
  ResendBatch next;   // keys refused again in the current round
  uint32_t clock = 0;
  uint32_t attempt = 0;
  // The next round starts no earlier (growing pauses while the new owner starts serving);
  // a wait that ends before it returns kTimeout and the next wait keeps the schedule.
  std::chrono::steady_clock::time_point not_before{};
  Op round;                                // empty between rounds
  std::vector<std::vector<uint32_t>> local;  // round.subs[i]'s keys: indices into batch
  size_t finished = 0;                     // round.subs finished so far
  Status error;                            // the round's first error other than kUnavailable
};

// True when no request of op (re-sent rounds included) is pending.
bool settled(const Op& op);

class ClientImpl final : public Client {
 public:
  ClientImpl(const ClientOptions& o, std::shared_ptr<Store> store)
      : options_(o), members_(std::move(store), o.ns), codec_(static_cast<uint32_t>(o.rank)) {}
  ~ClientImpl() override;

  Status init(Deadline deadline);
  Status createTable(const TableSpec& spec, Deadline deadline) override;
  void useTable(uint32_t table_id, uint32_t dim) override { dims_[table_id] = dim; }
  Result<Ticket> pull(uint32_t table_id, std::span<const uint64_t> keys, float* out) override;
  Result<Ticket> push(uint32_t table_id, std::span<const uint64_t> keys,
                      std::span<const float> grads) override;
  Result<Ticket> pushPull(uint32_t table_id, std::span<const uint64_t> keys,
                          std::span<const float> grads, float* out) override;
  Status wait(Ticket ticket, Deadline deadline) override;
  bool test(Ticket ticket) override;
  size_t outstanding() const override { return ops_.size(); }
  Status clock(uint32_t table_id, Deadline deadline) override;
  uint32_t currentClock(uint32_t table_id) const override {
    auto it = clocks_.find(table_id);
    return it == clocks_.end() ? 0 : it->second;
  }
  Status checkpoint(const std::string& path, bool restore, Deadline deadline) override;
  Status checkpointJob(const std::string& path, bool restore, uint32_t num_workers,
                       Deadline deadline) override;
  Status pullOneSided(uint32_t table_id, std::span<const uint64_t> keys, float* out,
                      Deadline deadline) override;
  OneSidedStats oneSidedStats() const override { return one_sided_; }
  PathStats pathStats() const override { return paths_; }
  Status reconnect(Deadline deadline) override;
  const ShardMap& shardMap() const override { return *map_; }
  std::string describeServer(uint32_t server_id) const override;

 private:
  struct SlabKey {
    uint32_t server, table, slab;
    bool operator<(const SlabKey& o) const {
      return std::tie(server, table, slab) < std::tie(o.server, o.table, o.slab);
    }
  };

  Status connectServer(ServerConn& s, Deadline deadline);
  ServerConn* server(uint32_t id);
  Result<uint32_t> dimOf(uint32_t table_id, const char* op) const;
  Status checkKeys(uint32_t table_id, std::span<const uint64_t> keys, std::span<const float> grads,
                   uint32_t dim, const char* op) const;
  Result<Ticket> startData(wire::Opcode op, uint32_t table_id, std::span<const uint64_t> keys,
                           std::span<const float> grads, float* out);
  // Posts one request (its reply receive first); reply_bytes: the reply's largest size.
  Result<std::vector<uint32_t>> checkpointAll(const std::string& path,
                                              const wire::CheckpointRequest& base,
                                              const std::string& what, Deadline deadline);
  Status post(SubRequest& sub, size_t reply_bytes);
  Ticket enqueue(Op op);
  Status finishSub(const Op& op, SubRequest& sub, Deadline deadline);
  // A data request refused as routed with a stale shard map (kUnavailable: nothing was
  // applied): re-reads the map, connects to new servers and sends its keys again, with
  // growing pauses, until they are served or the deadline passes.
  // Resumable: returns kTimeout with its state kept in sub.resend.
  Status resend(const Op& op, SubRequest& sub, Deadline deadline);
  // finishSub, then resend when the server refused the request as routed (data requests).
  Status finishOrResend(const Op& op, SubRequest& sub, Deadline deadline);
  Status refreshMap(Deadline deadline);
  // checkpointJob's parts (client_job_checkpoint.cc).
  size_t unansweredRequests();
  Status checkpointCut(const std::string& path, bool restore, Deadline deadline);
  Status keepClocks(Status outcome, const std::string& path, bool restore);
  // Encodes `batch` with the current map and posts one request per owner into `again`;
  // local[i]: the batch indices of again.subs[i]'s keys.
  Status postBatch(const PendingRequest& p, uint32_t clock, const ResendBatch& batch, Op& again,
                   std::vector<std::vector<uint32_t>>& local, Deadline deadline);
  // False at the deadline.
  bool driveBodySend(SubRequest& sub, Deadline deadline);
  // True while any outstanding request (or its body) is still being sent.
  bool sendsInFlight() const;
  // Drives progress without sleeping until sub's reply came or no send is in flight;
  // false at the deadline.
  bool awaitReply(SubRequest& sub, Deadline deadline);
  // sub.recv.wait(deadline) in short slices (see client.cc).
  Status waitReply(SubRequest& sub, Deadline deadline);
  // A control request to every server (or one); returns the reply bytes per server.
  Result<std::vector<Bytes>> rpcAll(std::vector<SubRequest> subs, const std::string& what,
                                    Deadline deadline);
  Result<wire::ReplyView> view(const SubRequest& sub, const Bytes& reply) const;
  Status hello(ServerConn& s, Deadline deadline);

  // One-sided (client_one_sided.cc).
  Status locate(uint32_t table_id, uint32_t dim, const ServerBatch& batch,
                std::vector<RowLocation>& out, Deadline deadline);
  struct LocationCache;
  Status locateCached(uint32_t table_id, uint32_t dim, const ServerBatch& batch,
                      LocationCache& cached, std::vector<RowLocation>& where,
                      std::vector<uint8_t>& from_cache, Deadline deadline);
  // A slab's key and, once asked, where the transport maps it here (null: not mapped).
  struct SlabAccess {
    transport::RemoteKey key;
    const uint8_t* mapped = nullptr;
    bool probed = false;
  };
  Result<SlabAccess*> slabKey(uint32_t server, uint32_t table, uint32_t slab, Deadline deadline);
  void forgetSlabKeys(uint32_t server_id);
  void forgetAllSlabKeys();  // a restore replaced the servers' slabs
  Status readWindow(ServerConn& s, uint32_t table_id, const std::vector<RowLocation>& where,
                    const size_t* todo, size_t n, size_t row_bytes,
                    std::vector<SlabAccess*>& by_slab, std::vector<transport::Request>& gets,
                    std::vector<const uint8_t*>& mapped, Deadline deadline);
  Status readRows(uint32_t table_id, uint32_t dim, const ServerBatch& batch,
                  const std::vector<RowLocation>& where, float* out,
                  std::vector<uint32_t>& fallback, Deadline deadline);

  const ClientOptions options_;
  Membership members_;
  uint64_t job_checkpoints_ = 0;  // checkpointJob calls so far (the collective's sequence)
  // Table clocks at each job checkpoint this client wrote, by path (client_job_checkpoint.cc).
  std::unordered_map<std::string, std::unordered_map<uint32_t, uint32_t>> job_clocks_;
  ClientCodec codec_;
  size_t eager_bytes_ = 0;
  std::unique_ptr<transport::Context> ctx_;
  std::optional<ShardMap> map_;
  std::vector<ServerConn> servers_;
  std::unordered_map<uint32_t, uint32_t> dims_;
  std::unordered_map<uint32_t, uint32_t> clocks_;
  std::unordered_map<Ticket, Op> ops_;
  // Operations dropped by reconnect() while some of their requests (to live servers) were
  // still pending: their buffers stay here until those complete (or the endpoints close).
  std::vector<Op> orphans_;
  Ticket next_ticket_ = 1;
  std::map<SlabKey, SlabAccess> slab_keys_;
  // Row locations for pullOneSided, per table, of the ASP tables this client created (no
  // clock bound holds their reads, which Locate would enforce): a cached row is read without
  // a Locate. A read of it that fails validation (evicted, reused, moved) drops the entry;
  // a new shard map or a server's forgotten slab keys drop many. Direct-mapped, with
  // WEFT_PS_LOCATION_CACHE slots (rounded up to a power of two) per table: a key's location
  // replaces the one in its slot (a lookup is one memory access, no allocation).
  struct LocationCache {
    struct Slot {
      uint64_t key = 0;
      uint64_t offset = 0;
      uint32_t slab_id = 0;
      uint32_t server = kEmpty;
    };
    static constexpr uint32_t kEmpty = UINT32_MAX;
    std::vector<Slot> slots;  // allocated at the first insert
    size_t slotOf(uint64_t key) const;
    const Slot* find(uint64_t key, uint32_t server) const;
    void insert(uint64_t key, uint32_t server, const RowLocation& where, size_t capacity);
    void erase(uint64_t key);
    void eraseServer(uint32_t server);
  };
  std::unordered_map<uint32_t, LocationCache> locations_;
  std::unordered_set<uint32_t> asp_tables_;
  size_t location_cache_rows_ = 0;
  std::chrono::milliseconds location_lease_{100};  // WEFT_PS_LOCATION_LEASE_MS
  std::vector<uint8_t> get_copies_;  // row copies of one-sided reads (readRows)
  // Reusable reply buffers (a fresh multi-MiB vector per request costs a zero-fill and page
  // faults, more than the transfer).
  std::vector<Bytes> reply_pool_;
  // Buffers of finished data requests, reused by the next ones (no allocation per request
  // on the steady-state path): encode target, request messages, positions, sub vectors.
  std::vector<Outgoing> outgoing_;
  std::vector<Bytes> message_pool_;
  std::vector<std::vector<uint32_t>> positions_pool_;
  std::vector<std::vector<SubRequest>> subs_pool_;
  void recycle(Op& op);
  void refillOutgoing();
  // ValuesPlacement::place: gradients of outgoing_[i] into a staging region (null: inline).
  uint8_t* placeValues(size_t i, uint32_t server_id, size_t bytes, std::string_view* key,
                       uint64_t* offset);
  // Updates paths_ and the server's values_by_ref from the reply to a by-reference push.
  void noteValuesReply(const SubRequest& sub, std::span<const uint8_t> reply);
  // Gradient staging: a region per large push in flight, reused (staging_[i] is outgoing_[i]'s
  // until startData moves it into the request).
  ValuesPlacement placement_;
  std::vector<Staging> staged_;
  std::vector<Staging> staging_pool_;
  size_t staging_pooled_bytes_ = 0;  // the regions' lengths in staging_pool_
  bool staging_ok_ = true;  // false once the transport could not allocate memory
  OneSidedStats one_sided_;
  PathStats paths_;
};

}  // namespace weft::ps::net
