#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <thread>

#include "common/config.h"
#include "common/logging.h"
#include "paramserver/net/client_impl.h"
#include "paramserver/net/framing.h"
#include "paramserver/util/finite.h"

namespace weft::ps::net {

using wire::Opcode;

Status Client::pullSync(uint32_t table_id, std::span<const uint64_t> keys, float* out,
                        Deadline d) {
  WEFT_ASSIGN_OR_RETURN(const Ticket t, pull(table_id, keys, out));
  return wait(t, d);
}

Status Client::pushSync(uint32_t table_id, std::span<const uint64_t> keys,
                        std::span<const float> grads, Deadline d) {
  WEFT_ASSIGN_OR_RETURN(const Ticket t, push(table_id, keys, grads));
  return wait(t, d);
}

ClientImpl::~ClientImpl() {
  // Close first: pending receives complete (canceled) before their buffers go away.
  for (ServerConn& s : servers_) {
    if (s.ep) (void)s.ep->close(Deadline::afterSeconds(1));
  }
  ops_.clear();
  orphans_.clear();
}

Status ClientImpl::init(Deadline deadline) {
  WEFT_ASSIGN_OR_RETURN(const int64_t eager, config::getInt("WEFT_PS_EAGER_BYTES"));
  eager_bytes_ = options_.eager_bytes ? options_.eager_bytes : static_cast<size_t>(eager);
  transport::ContextOptions co = options_.transport;
  co.rank = options_.rank;
  WEFT_ASSIGN_OR_RETURN(ctx_, transport::openContext(options_.backend, co));
  WEFT_RETURN_IF_ERROR(ctx_->publishAddress(members_.transportStore()));
  WEFT_ASSIGN_OR_RETURN(staging_ok_, config::getBool("WEFT_PS_VALUES_BY_REF"));
  WEFT_ASSIGN_OR_RETURN(const int64_t cache_rows, config::getInt("WEFT_PS_LOCATION_CACHE"));
  location_cache_rows_ = static_cast<size_t>(cache_rows);
  WEFT_ASSIGN_OR_RETURN(const int64_t lease_ms, config::getInt("WEFT_PS_LOCATION_LEASE_MS"));
  location_lease_ = std::chrono::milliseconds(lease_ms);
  // Messages that are no longer eager with their gradients inline, but are without them.
  placement_.above = eager_bytes_;
  placement_.max_front = eager_bytes_;
  placement_.place = [this](size_t i, uint32_t server_id, size_t bytes, std::string_view* key,
                            uint64_t* offset) {
    return placeValues(i, server_id, bytes, key, offset);
  };
  WEFT_ASSIGN_OR_RETURN(ShardMap map, members_.readMap(deadline));
  map_.emplace(std::move(map));
  for (const uint32_t id : map_->servers()) {
    ServerConn s;
    s.id = id;
    servers_.push_back(std::move(s));
  }
  WEFT_RETURN_IF_ERROR(members_.registerClient(options_.rank));
  for (ServerConn& s : servers_) WEFT_RETURN_IF_ERROR(connectServer(s, deadline));
  return Status::ok();
}

Status ClientImpl::connectServer(ServerConn& s, Deadline deadline) {
  s.ep.reset();
  auto rank = members_.serverRank(s.id, deadline);
  if (!rank.isOk()) return rank.status().withContext(strCat("ps client: finding ps server ", s.id));
  s.rank = *rank;
  auto ep = ctx_->connect(members_.transportStore(), s.rank, deadline);
  if (!ep.isOk()) return ep.status().withContext(strCat("ps client: connecting to ", describeServer(s.id)));
  s.ep = std::move(ep).value();
  return hello(s, deadline);
}

std::string ClientImpl::describeServer(uint32_t server_id) const {
  for (const ServerConn& s : servers_) {
    if (s.id == server_id) return strCat("ps server ", s.id, " (rank ", s.rank, ")");
  }
  return strCat("ps server ", server_id);
}

ServerConn* ClientImpl::server(uint32_t id) {
  for (ServerConn& s : servers_) {
    if (s.id == id) return &s;
  }
  return nullptr;
}

Status ClientImpl::hello(ServerConn& s, Deadline deadline) {
  std::vector<SubRequest> subs(1);
  subs[0].pending = PendingRequest{codec_.nextRequestId(), Opcode::kHello, s.id, 0, 0, {}};
  subs[0].message = wire::encodeHello({subs[0].pending.request_id, codec_.srcRank(), 0, 0}, {});
  WEFT_ASSIGN_OR_RETURN(std::vector<Bytes> replies, rpcAll(std::move(subs), "Hello", deadline));
  auto m = wire::decodeMessage(replies[0], {});
  if (!m.isOk()) return m.status();
  const wire::Header h = m->header;
  WEFT_ASSIGN_OR_RETURN(const wire::ReplyView v, wire::checkReply(*m, h.request_id, Opcode::kHello));
  WEFT_ASSIGN_OR_RETURN(const wire::HelloReply r, wire::decodeHelloReply(v));
  s.max_keys = r.max_keys;
  // A server of version 1 would refuse kFlagValuesByRef: it gets values in the messages.
  s.values_by_ref = r.version >= wire::kVersionValuesByRef;
  if (r.eager_bytes != 0 && eager_bytes_ > r.eager_bytes) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "ps client rank ", options_.rank, ": ",
                      describeServer(s.id), " receives requests of at most ", r.eager_bytes,
                      " bytes eagerly, this client sends up to ", eager_bytes_,
                      " bytes that way (WEFT_PS_EAGER_BYTES differs)")
        .withHint("set the same WEFT_PS_EAGER_BYTES on every server and worker");
  }
  if (r.map_version != map_->version() && r.map_version != 0) {  // 0: a server still joining
    WEFT_LOG(kWarn, "ps") << describeServer(s.id) << " serves shard map version " << r.map_version
                          << ", this client routes with " << map_->version();
  }
  return Status::ok();
}

// Pause before the next attempt of a request refused as routed with a stale shard map
// (1, 2, 4 ... 50 ms, PROTOCOL.md §11).
static std::chrono::milliseconds refusedRetryPause(uint32_t attempt) {
  return std::chrono::milliseconds(std::min(50u, 1u << std::min(attempt, 6u)));
}

bool settled(const Op& op) {
  for (const SubRequest& sub : op.subs) {
    if (!sub.send.done() || !sub.body_send.done() || !sub.recv.done()) return false;
    if (sub.resend && !settled(sub.resend->round)) return false;
  }
  return true;
}

Status ClientImpl::reconnect(Deadline deadline) {
  for (ServerConn& s : servers_) {
    if (s.ep && s.ep->health().isOk()) continue;
    // Operations with a request to the dead server are dropped: that one completed with
    // the endpoint's error, but others of the same operation may still be pending on live
    // servers, writing into its buffers, so those stay in orphans_ until they complete.
    for (auto it = ops_.begin(); it != ops_.end();) {
      const bool touches = std::any_of(it->second.subs.begin(), it->second.subs.end(),
                                       [&](const SubRequest& sub) {
                                         return sub.pending.server == s.id;
                                       });
      if (touches) {
        orphans_.push_back(std::move(it->second));
        it = ops_.erase(it);
      } else {
        ++it;
      }
    }
    forgetSlabKeys(s.id);  // a restarted server registered its slabs again
    WEFT_RETURN_IF_ERROR(connectServer(s, deadline));
  }
  ctx_->progress();
  std::erase_if(orphans_, [](const Op& op) { return settled(op); });
  return Status::ok();
}

Result<uint32_t> ClientImpl::dimOf(uint32_t table_id, const char* op) const {
  auto it = dims_.find(table_id);
  if (it != dims_.end()) return it->second;
  return WEFT_ERROR(StatusCode::kInvalidArgument, "ps client rank ", options_.rank, ": ", op,
                    " of table ", table_id, ": this client does not know the table")
      .withHint("call createTable(spec) or useTable(id, dim) first");
}

Status ClientImpl::checkKeys(uint32_t table_id, std::span<const uint64_t> keys,
                             std::span<const float> grads, uint32_t dim, const char* op) const {
  uint32_t max_keys = UINT32_MAX;
  for (const ServerConn& s : servers_) max_keys = std::min(max_keys, s.max_keys);
  if (keys.size() > max_keys) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "ps client rank ", options_.rank, ": ", op,
                      " of table ", table_id, " with ", keys.size(),
                      " keys: the servers accept at most ", max_keys,
                      " keys per request (WEFT_PS_MAX_KEYS)")
        .withHint("split the batch");
  }
  if (grads.data() == nullptr && grads.empty()) return Status::ok();
  if (grads.size() != keys.size() * dim) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "ps client: ", op, " of table ", table_id,
                      ": ", grads.size(), " gradient values for ", keys.size(), " keys of dim ",
                      dim, " (expected ", keys.size() * dim, ")");
  }
  // Branch-free first (vectorizes), the position only when something is wrong.
  const bool bad = anyNonFinite(reinterpret_cast<const uint8_t*>(grads.data()), grads.size());
  for (size_t i = 0; bad && i < grads.size(); ++i) {
    if (!std::isfinite(grads[i])) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, "ps client: ", op, " of table ", table_id,
                        ": gradient of key ", keys[i / dim], " (position ", i / dim,
                        ", element ", i % dim, ") is ", grads[i],
                        "; nothing was sent to any server");
    }
  }
  return Status::ok();
}

Result<Ticket> ClientImpl::startData(Opcode op, uint32_t table_id, std::span<const uint64_t> keys,
                                     std::span<const float> grads, float* out) {
  const char* name = op == Opcode::kPull ? "pull" : op == Opcode::kPush ? "push" : "pushPull";
  WEFT_ASSIGN_OR_RETURN(const uint32_t dim, dimOf(table_id, name));
  WEFT_RETURN_IF_ERROR(checkKeys(table_id, keys, grads, dim, name));
  refillOutgoing();
  // Regions a failed post left behind (never sent) go back to the pool.
  for (Staging& st : staged_) {
    if (!st.region) continue;
    staging_pooled_bytes_ += st.region->length();
    staging_pool_.push_back(std::move(st));
  }
  staged_.clear();
  codec_.encodeInto(op, *map_, table_id, dim, currentClock(table_id), keys, grads, outgoing_,
                    staging_ok_ ? &placement_ : nullptr);
  Op o;
  o.out = out;
  o.name = name;
  o.table_id = table_id;
  if (!subs_pool_.empty()) {
    o.subs = std::move(subs_pool_.back());
    subs_pool_.pop_back();
  }
  o.subs.resize(outgoing_.size());
  for (size_t i = 0; i < outgoing_.size(); ++i) {
    SubRequest& sub = o.subs[i];
    std::swap(sub.pending, outgoing_[i].pending);
    std::swap(sub.message, outgoing_[i].message);
    if (i < staged_.size() && staged_[i].region) {
      sub.staging = std::move(staged_[i]);
      ++paths_.values_by_ref_requests;
      paths_.values_by_ref_bytes += size_t{4} * sub.pending.keyCount() * dim;
    }
    const size_t values = size_t{4} * sub.pending.keyCount() * dim;
    const size_t reply = op == Opcode::kPush ? 0 : wire::kHeaderBytes + wire::kReplyPrefixBytes + values;
    Status st = post(sub, reply);
    if (!st.isOk()) {
      // Receives already posted complete on their own (their buffers live in ops_ until the
      // Client goes); the caller gets no ticket.
      st = st.withContext(o.describe());
      o.subs.resize(sub.recv.valid() ? i + 1 : i);
      if (!o.subs.empty()) enqueue(std::move(o));
      return st;
    }
  }
  return enqueue(std::move(o));
}

// A staging region of at least `bytes` for outgoing_[i]'s gradients (the smallest pooled one
// that fits, else a new one of a power of two, at least 1 MiB), while the server takes
// gradients by reference.
uint8_t* ClientImpl::placeValues(size_t i, uint32_t server_id, size_t bytes, std::string_view* key,
                                 uint64_t* offset) {
  const ServerConn* s = server(server_id);
  if (s == nullptr || !s->values_by_ref) return nullptr;
  auto best = staging_pool_.end();
  for (auto it = staging_pool_.begin(); it != staging_pool_.end(); ++it) {
    const size_t len = it->region->length();
    if (len >= bytes && (best == staging_pool_.end() || len < best->region->length())) best = it;
  }
  Staging st;
  if (best != staging_pool_.end()) {
    staging_pooled_bytes_ -= best->region->length();
    st = std::move(*best);
    staging_pool_.erase(best);
  } else {
    constexpr size_t kMinStagingBytes = size_t{1} << 20;
    auto region = ctx_->allocateMemory(std::bit_ceil(std::max(bytes, kMinStagingBytes)));
    if (!region.isOk()) {
      staging_ok_ = false;
      WEFT_LOG(kInfo, "ps") << "ps client rank " << options_.rank
                            << ": large pushes send their gradients in the message: "
                            << region.status();
      return nullptr;
    }
    st.region = std::move(region).value();
    st.key = st.region->remoteKey().serialize();
    if (st.key.size() > wire::kMaxValuesKeyBytes) {  // a backend with huge keys: inline
      staging_ok_ = false;
      return nullptr;
    }
  }
  if (staged_.size() <= i) staged_.resize(i + 1);
  staged_[i] = std::move(st);
  *key = staged_[i].key;
  *offset = 0;
  return static_cast<uint8_t*>(staged_[i].region->address());
}

void ClientImpl::noteValuesReply(const SubRequest& sub, std::span<const uint8_t> reply) {
  const wire::Header h = wire::peekHeader(reply);
  if (h.opcode != static_cast<uint8_t>(Opcode::kReply)) return;
  if ((h.flags & wire::kFlagValuesMapped) != 0) {
    ++paths_.values_mapped;
    return;
  }
  ++paths_.values_unmapped;
  // Fetched (or, for a pull, sent in the reply): the transport does not map this client's
  // memory at that server, and a get served by this side's progress is no faster than the
  // message path.
  ServerConn* s = server(sub.pending.server);
  if (s != nullptr && s->values_by_ref) {
    s->values_by_ref = false;
    WEFT_LOG(kDebug, "ps") << "ps client rank " << options_.rank << ": " << describeServer(s->id)
                           << " does not map this client's memory; large requests to it carry "
                              "their values again";
  }
}

// Gives outgoing_ entries the buffers of finished requests (encodeInto reuses them).
void ClientImpl::refillOutgoing() {
  outgoing_.resize(std::max(outgoing_.size(), servers_.size()));
  for (Outgoing& o : outgoing_) {
    if (o.message.capacity() == 0 && !message_pool_.empty()) {
      o.message = std::move(message_pool_.back());
      message_pool_.pop_back();
    }
    if (o.pending.positions.capacity() == 0 && !positions_pool_.empty()) {
      o.pending.positions = std::move(positions_pool_.back());
      positions_pool_.pop_back();
    }
  }
}

Result<Ticket> ClientImpl::pull(uint32_t table_id, std::span<const uint64_t> keys, float* out) {
  return startData(Opcode::kPull, table_id, keys, {}, out);
}

Result<Ticket> ClientImpl::push(uint32_t table_id, std::span<const uint64_t> keys,
                                std::span<const float> grads) {
  return startData(Opcode::kPush, table_id, keys, grads, nullptr);
}

Result<Ticket> ClientImpl::pushPull(uint32_t table_id, std::span<const uint64_t> keys,
                                    std::span<const float> grads, float* out) {
  return startData(Opcode::kPushPull, table_id, keys, grads, out);
}

Status ClientImpl::post(SubRequest& sub, size_t reply_bytes) {
  ServerConn* s = server(sub.pending.server);
  const uint64_t id = sub.pending.request_id;
  auto who = [&] { return describeServer(sub.pending.server); };
  const size_t capacity = std::max(reply_bytes, kMaxErrorReplyBytes);
  if (!reply_pool_.empty()) {
    sub.reply = std::move(reply_pool_.back());
    reply_pool_.pop_back();
  }
  if (sub.reply.size() < capacity) sub.reply.resize(capacity);
  auto recv = s->ep->recv(sub.reply.data(), capacity, tagReply(id));
  if (!recv.isOk()) return recv.status().withContext(who());
  sub.recv = std::move(recv).value();
  if (sub.message.size() <= eager_bytes_) {
    auto send = s->ep->send(sub.message.data(), sub.message.size(), kTagRequest);
    if (!send.isOk()) return send.status().withContext(who());
    sub.send = std::move(send).value();
    ++paths_.eager_requests;
    paths_.eager_bytes += sub.message.size();
    return Status::ok();
  }
  std::memcpy(sub.announce.data(), sub.message.data(), wire::kHeaderBytes);
  auto head = s->ep->send(sub.announce.data(), sub.announce.size(), kTagRequest);
  if (!head.isOk()) return head.status().withContext(who());
  sub.send = std::move(head).value();
  auto body = s->ep->send(sub.message.data(), sub.message.size(), tagBody(id));
  if (!body.isOk()) return body.status().withContext(who());
  sub.body_send = std::move(body).value();
  ++paths_.announced_requests;
  paths_.announced_bytes += sub.message.size();
  return Status::ok();
}

Ticket ClientImpl::enqueue(Op op) {
  const Ticket t = next_ticket_++;
  ops_.emplace(t, std::move(op));
  return t;
}

// A rendezvous send advances only while the sender drives progress, and its protocol
// messages do not always wake a sleeper's event fd (a blocking wait would nap up to
// ProgressEngine::kMaxNapMs per step: 4 MiB pushes ran at 0.05 GB/s). So while a request
// body is on its way, drive progress without sleeping, yielding the core between rounds
// (the server may share it: spinning through its time slice costs milliseconds per step).
bool ClientImpl::driveBodySend(SubRequest& sub, Deadline deadline) {
  for (uint32_t round = 1; sub.body_send.valid() && !sub.body_send.test(); ++round) {
    if ((round & 63) == 0 && deadline.expired()) return false;
    std::this_thread::yield();
  }
  return true;
}

bool ClientImpl::sendsInFlight() const {
  for (const auto& entry : ops_) {
    for (const SubRequest& sub : entry.second.subs) {
      if (!sub.send.done() || !sub.body_send.done()) return true;
    }
  }
  return false;
}

// Waits for sub's reply. While a later request is still being sent, keeps driving progress
// without sleeping: a blocking wait would sleep through the time the server applies this
// request, and the later sends (request bodies, and any message above the transport's own
// rendezvous threshold: tens of KiB on shared memory) advance only while this side drives
// progress, so transfers and the server's work would run one after the other.
bool ClientImpl::awaitReply(SubRequest& sub, Deadline deadline) {
  for (uint32_t round = 1; !sub.recv.test() && sendsInFlight(); ++round) {
    if ((round & 63) == 0 && deadline.expired()) return false;
    std::this_thread::yield();
  }
  return true;
}

// The transport's blocking wait sleeps on its event fd for up to ProgressEngine::kMaxNapMs.
// A rendezvous message was once suspected of not waking it (not reproduced since: blocking
// 1 MiB / 8 MiB ping-pongs with no spinning showed no 100 ms nap); waiting in slices of
// kReplyNap bounds what a missed wake-up would cost every request in flight.
Status ClientImpl::waitReply(SubRequest& sub, Deadline deadline) {
  constexpr auto kReplyNap = std::chrono::milliseconds(1);
  for (;;) {
    Status st = sub.recv.wait(deadline.min(Deadline::after(kReplyNap)));
    if (sub.recv.done() || deadline.expired()) return st;
  }
}

Status ClientImpl::finishSub(const Op& op, SubRequest& sub, Deadline deadline) {
  Status st = driveBodySend(sub, deadline) && awaitReply(sub, deadline)
                  ? waitReply(sub, deadline)
                  : WEFT_ERROR(StatusCode::kTimeout, "body send");
  if (st.code() == StatusCode::kTimeout) {
    return WEFT_ERROR(StatusCode::kTimeout, "ps client rank ", options_.rank, ": ",
                      op.describe(), ": no reply from ", describeServer(sub.pending.server),
                      " before the deadline (request ", sub.pending.request_id, ")")
        .withHint("is the server alive and serving? (WEFT_LOG=info on the server)");
  }
  if (!st.isOk()) return st.withContext(strCat(op.describe(), ": ", describeServer(sub.pending.server)));
  for (transport::Request* r : {&sub.send, &sub.body_send}) {
    if (!r->valid()) continue;
    Status s2 = r->wait(deadline);
    if (!s2.isOk()) {
      return s2.withContext(strCat(op.describe(), ": sending to ", describeServer(sub.pending.server)));
    }
  }
  const std::span<const uint8_t> reply(sub.reply.data(), sub.recv.bytes());
  ++paths_.replies;
  paths_.reply_bytes += reply.size();
  if (sub.staging.region) noteValuesReply(sub, reply);
  if (sub.pending.op == Opcode::kPull || sub.pending.op == Opcode::kPush ||
      sub.pending.op == Opcode::kPushPull) {
    const uint8_t* placed =
        sub.staging.region ? static_cast<const uint8_t*>(sub.staging.region->address()) : nullptr;
    Status d = codec_.decodeReply(sub.pending, reply, op.out, {}, placed);
    return d.isOk() ? d : d.withContext(strCat(op.describe(), ": ", describeServer(sub.pending.server)));
  }
  return Status::ok();
}

Status ClientImpl::refreshMap(Deadline deadline) {
  WEFT_ASSIGN_OR_RETURN(ShardMap latest, members_.readMap(deadline));
  if (latest.version() == map_->version()) return Status::ok();
  WEFT_LOG(kInfo, "ps") << "ps client rank " << options_.rank << ": shard map version "
                        << map_->version() << " -> " << latest.version();
  std::optional<ShardMap> before = std::move(map_);
  map_.emplace(std::move(latest));
  locations_.clear();  // rows move with shards
  for (const uint32_t id : map_->servers()) {
    if (server(id) != nullptr) continue;
    ServerConn s;
    s.id = id;
    servers_.push_back(std::move(s));
    Status st = connectServer(servers_.back(), deadline);
    if (!st.isOk()) {  // route with the old map until the new server can be reached
      servers_.pop_back();
      map_ = std::move(before);
      return st;
    }
  }
  return Status::ok();
}

Status ClientImpl::resend(const Op& op, SubRequest& sub, Deadline deadline) {
  const PendingRequest& p = sub.pending;
  if (!sub.resend) {
    WEFT_ASSIGN_OR_RETURN(const wire::Message m, wire::decodeMessage(sub.message, {}));
    WEFT_ASSIGN_OR_RETURN(wire::KeyedRequest r, wire::decodeKeyed(m));
    if (r.valuesByRef() && r.op != Opcode::kPull && sub.staging.region) {
      r.values = FloatSpan(
          static_cast<const uint8_t*>(sub.staging.region->address()) + r.values_ref.offset,
          r.valueFloats());
    }
    auto rs = std::make_unique<ResendState>();
    for (size_t i = 0; i < r.keys.size(); ++i) rs->batch.keys.push_back(r.keys[i]);
    for (size_t i = 0; i < r.values.size(); ++i) rs->batch.grads.push_back(r.values[i]);
    rs->batch.at = p.positions;
    if (p.whole_batch) {
      rs->batch.at.resize(rs->batch.keys.size());
      std::iota(rs->batch.at.begin(), rs->batch.at.end(), 0u);
    }
    rs->clock = r.clock;
    rs->not_before = std::chrono::steady_clock::now() + refusedRetryPause(0);
    sub.resend = std::move(rs);
  }
  ResendState& rs = *sub.resend;
  for (;;) {
    if (rs.round.subs.empty()) {  // between rounds: nothing of this request is in flight
      if (rs.batch.keys.empty()) return Status::ok();
      auto until = rs.not_before;
      if (!deadline.isNever()) until = std::min(until, deadline.when());
      std::this_thread::sleep_until(until);
      if (std::chrono::steady_clock::now() < rs.not_before || deadline.expired()) {
        return WEFT_ERROR(StatusCode::kTimeout, "ps client rank ", options_.rank, ": ",
                          op.describe(), ": the shard map changed and the new owners of ",
                          rs.batch.keys.size(), " keys did not serve them before the deadline")
            .withHint("is the joining server alive? (Membership::waitServed); waiting again "
                      "resumes the re-send");
      }
      WEFT_RETURN_IF_ERROR(refreshMap(deadline));
      rs.round = Op{};
      rs.round.out = op.out;
      rs.round.name = op.name;
      rs.round.table_id = op.table_id;
      rs.finished = 0;
      rs.next = ResendBatch{};
      rs.error = Status::ok();
      ++rs.attempt;
      const Status posted = postBatch(p, rs.clock, rs.batch, rs.round, rs.local, deadline);
      if (!posted.isOk()) {
        // postBatch waited out what it had posted; what is still pending keeps its buffers.
        if (!settled(rs.round)) orphans_.push_back(std::move(rs.round));
        rs.round = Op{};
        return posted;
      }
    }
    // Every request of the round is waited for, also after an error: their buffers live
    // in rs.round until then.
    while (rs.finished < rs.round.subs.size()) {
      SubRequest& again = rs.round.subs[rs.finished];
      const Status st = finishSub(rs.round, again, deadline);
      if (st.code() == StatusCode::kTimeout) return st;  // resumes at this request
      if (st.code() == StatusCode::kUnavailable) {
        for (const uint32_t k : rs.local[rs.finished]) rs.next.add(rs.batch, k, p.dim);
      } else if (!st.isOk() && rs.error.isOk()) {
        rs.error = st;
      }
      ++rs.finished;
    }
    if (!settled(rs.round)) orphans_.push_back(std::move(rs.round));  // a send's completion
    rs.round = Op{};
    rs.not_before = std::chrono::steady_clock::now() + refusedRetryPause(rs.attempt);
    if (!rs.error.isOk()) {
      rs.batch = ResendBatch{};  // final: the caller sees the error, nothing is sent again
      return rs.error;
    }
    rs.batch = std::move(rs.next);
  }
}

Status ClientImpl::postBatch(const PendingRequest& p, uint32_t clock, const ResendBatch& batch,
                             Op& again, std::vector<std::vector<uint32_t>>& local,
                             Deadline deadline) {
  std::vector<Outgoing> out;
  codec_.encodeInto(p.op, *map_, p.table_id, p.dim, clock, batch.keys, batch.grads, out);
  again.subs.resize(out.size());
  local.assign(out.size(), {});
  for (size_t i = 0; i < out.size(); ++i) {
    SubRequest& s = again.subs[i];
    s.pending = std::move(out[i].pending);
    s.message = std::move(out[i].message);
    for (uint32_t j = 0; j < s.pending.keyCount(); ++j) {
      local[i].push_back(s.pending.whole_batch ? j : s.pending.positions[j]);
    }
    s.pending.positions.clear();
    for (const uint32_t k : local[i]) s.pending.positions.push_back(batch.at[k]);
    s.pending.whole_batch = false;
    const size_t values = size_t{4} * s.pending.keyCount() * s.pending.dim;
    const bool pulls = s.pending.op != Opcode::kPush;
    Status st = post(s, pulls ? wire::kHeaderBytes + wire::kReplyPrefixBytes + values : 0);
    if (!st.isOk()) {
      again.subs.resize(s.recv.valid() ? i + 1 : i);  // wait out what was posted
      for (SubRequest& done : again.subs) (void)finishSub(again, done, deadline);
      return st.withContext(again.describe());
    }
  }
  return Status::ok();
}

void ClientImpl::recycle(Op& op) {
  // Keeps up to kMaxPooled buffers (a window of requests in flight reuses them).
  constexpr size_t kMaxPooled = 32;
  for (SubRequest& sub : op.subs) {
    if (reply_pool_.size() < kMaxPooled && !sub.reply.empty()) {
      reply_pool_.push_back(std::move(sub.reply));
    }
    if (message_pool_.size() < kMaxPooled && sub.message.capacity() != 0) {
      message_pool_.push_back(std::move(sub.message));
    }
    if (positions_pool_.size() < kMaxPooled && sub.pending.positions.capacity() != 0) {
      positions_pool_.push_back(std::move(sub.pending.positions));
    }
    // Reused only once the server replied (it is done with the region then); after a
    // failure it may still be reading or writing it: freed (its mapping there keeps the
    // pages alive, and nothing here reads them again). The pool keeps at most 64 regions
    // and 256 MiB: a burst of large requests does not pin its peak for good.
    constexpr size_t kMaxStaging = 64;
    constexpr size_t kMaxStagingBytes = size_t{256} << 20;
    const bool replied = sub.recv.done() && sub.recv.status().isOk();
    if (sub.staging.region && replied && staging_pool_.size() < kMaxStaging &&
        staging_pooled_bytes_ + sub.staging.region->length() <= kMaxStagingBytes) {
      staging_pooled_bytes_ += sub.staging.region->length();
      staging_pool_.push_back(std::move(sub.staging));
    }
  }
  if (subs_pool_.size() < kMaxPooled) {
    op.subs.clear();
    subs_pool_.push_back(std::move(op.subs));
  }
}

Status ClientImpl::finishOrResend(const Op& op, SubRequest& sub, Deadline deadline) {
  if (!sub.resend) {
    Status st = finishSub(op, sub, deadline);
    if (st.code() != StatusCode::kUnavailable || op.name == nullptr) return st;
  }
  return resend(op, sub, deadline);
}

Status ClientImpl::wait(Ticket ticket, Deadline deadline) {
  auto it = ops_.find(ticket);
  if (it == ops_.end()) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "ps client: ticket ", ticket,
                      " is not outstanding (completed already, or never issued)");
  }
  Status first;
  for (SubRequest& sub : it->second.subs) {
    if (!sub.finished) {
      Status st = finishOrResend(it->second, sub, deadline);
      if (st.code() == StatusCode::kTimeout) return st;  // the ticket stays valid
      sub.finished = true;
      sub.result = std::move(st);
    }
    if (first.isOk() && !sub.result.isOk()) first = sub.result;
  }
  recycle(it->second);
  ops_.erase(it);
  return first;
}

bool ClientImpl::test(Ticket ticket) {
  ctx_->progress();
  auto it = ops_.find(ticket);
  if (it == ops_.end()) return true;
  for (const SubRequest& sub : it->second.subs) {
    if (!sub.recv.done()) return false;
  }
  return true;
}

Result<std::vector<Bytes>> ClientImpl::rpcAll(std::vector<SubRequest> subs,
                                              const std::string& what, Deadline deadline) {
  if (!orphans_.empty()) std::erase_if(orphans_, [](const Op& op) { return settled(op); });
  Op o;
  o.what = what;
  o.subs = std::move(subs);
  for (size_t i = 0; i < o.subs.size(); ++i) {
    Status st = post(o.subs[i], 0);
    if (!st.isOk()) {
      o.subs.resize(o.subs[i].recv.valid() ? i + 1 : i);
      for (SubRequest& sub : o.subs) (void)finishSub(o, sub, deadline);
      if (!settled(o)) orphans_.push_back(std::move(o));  // buffers outlive its requests
      return st.withContext(what);
    }
  }
  std::vector<Bytes> replies;
  Status first;
  for (SubRequest& sub : o.subs) {
    Status st = finishSub(o, sub, deadline);
    if (st.isOk()) {
      sub.reply.resize(sub.recv.bytes());
      auto v = view(sub, sub.reply);
      if (!v.isOk()) st = v.status().withContext(strCat(what, ": ", describeServer(sub.pending.server)));
    }
    if (first.isOk() && !st.isOk()) first = st;
  }
  // A request that timed out may still write its reply: its buffers then stay in orphans_.
  const bool done = settled(o);
  for (SubRequest& sub : o.subs) replies.push_back(done ? std::move(sub.reply) : sub.reply);
  if (!done) orphans_.push_back(std::move(o));
  if (!first.isOk()) return first;
  return replies;
}

Result<wire::ReplyView> ClientImpl::view(const SubRequest& sub, const Bytes& reply) const {
  WEFT_ASSIGN_OR_RETURN(const wire::Message m, wire::decodeMessage(reply, {}));
  return wire::checkReply(m, sub.pending.request_id, sub.pending.op);
}

Status ClientImpl::createTable(const TableSpec& spec, Deadline deadline) {
  WEFT_RETURN_IF_ERROR(refreshMap(deadline));
  std::vector<SubRequest> subs(servers_.size());
  for (size_t i = 0; i < servers_.size(); ++i) {
    subs[i].pending = PendingRequest{codec_.nextRequestId(), Opcode::kCreateTable,
                                     servers_[i].id, spec.id, spec.dim, {}};
    subs[i].message = wire::encodeCreateTable(
        {subs[i].pending.request_id, codec_.srcRank(), spec.id, 0}, spec);
  }
  WEFT_RETURN_IF_ERROR(
      rpcAll(std::move(subs), strCat("createTable ", describeTable(spec)), deadline).status());
  dims_[spec.id] = spec.dim;
  if (spec.consistency.model == ConsistencyModel::kAsp) {
    asp_tables_.insert(spec.id);
  } else {
    asp_tables_.erase(spec.id);
  }
  locations_.erase(spec.id);
  return Status::ok();
}

Status ClientImpl::clock(uint32_t table_id, Deadline deadline) {
  const uint32_t c = currentClock(table_id);
  const std::string what =
      strCat("clock ", c, " of table ", table_id, " by worker ", options_.worker);
  // Sent with this client's map version to every server it knows; a server that serves
  // another version refuses it (kUnavailable), and the report goes again, with the map
  // re-read, to every server (reports are idempotent), so a server that joined hears it.
  for (uint32_t attempt = 0;; ++attempt) {
    std::vector<SubRequest> subs(servers_.size());
    for (size_t i = 0; i < servers_.size(); ++i) {
      subs[i].pending = PendingRequest{codec_.nextRequestId(), Opcode::kClock, servers_[i].id,
                                       table_id, 0, {}};
      subs[i].message = wire::encodeClock(
          {subs[i].pending.request_id, codec_.srcRank(), table_id, map_->version()},
          {options_.worker, c});
    }
    const Status st = rpcAll(std::move(subs), what, deadline).status();
    if (st.isOk()) break;
    if (st.code() != StatusCode::kUnavailable) return st;
    std::this_thread::sleep_for(refusedRetryPause(attempt));
    if (deadline.expired()) {
      return WEFT_ERROR(StatusCode::kTimeout, "ps client rank ", options_.rank, ": ", what,
                        ": the shard map changed and not every server took the report before "
                        "the deadline (last: ", st.message(), ")");
    }
    WEFT_RETURN_IF_ERROR(refreshMap(deadline));
  }
  clocks_[table_id] = c + 1;
  return Status::ok();
}

// One Checkpoint request per server (to <path>/server-<id>); the replies' ids, in order.
Result<std::vector<uint32_t>> ClientImpl::checkpointAll(const std::string& path,
                                                        const wire::CheckpointRequest& base,
                                                        const std::string& what,
                                                        Deadline deadline) {
  std::vector<SubRequest> subs(servers_.size());
  std::vector<uint64_t> request_ids;  // subs move into rpcAll; replies are checked against these
  for (size_t i = 0; i < servers_.size(); ++i) {
    subs[i].pending = PendingRequest{codec_.nextRequestId(), Opcode::kCheckpoint, servers_[i].id,
                                     0, 0, {}};
    request_ids.push_back(subs[i].pending.request_id);
    wire::CheckpointRequest r = base;
    r.path = strCat(path, "/server-", servers_[i].id);
    subs[i].message =
        wire::encodeCheckpoint({subs[i].pending.request_id, codec_.srcRank(), 0, 0}, r);
  }
  WEFT_ASSIGN_OR_RETURN(std::vector<Bytes> replies, rpcAll(std::move(subs), what, deadline));
  std::vector<uint32_t> ids;
  for (size_t i = 0; i < replies.size(); ++i) {
    WEFT_ASSIGN_OR_RETURN(const wire::Message m, wire::decodeMessage(replies[i], {}));
    WEFT_ASSIGN_OR_RETURN(const wire::ReplyView v,
                          wire::checkReply(m, request_ids[i], Opcode::kCheckpoint));
    WEFT_ASSIGN_OR_RETURN(const wire::CheckpointReply c, wire::decodeCheckpointReply(v));
    ids.push_back(c.checkpoint_id);
  }
  return ids;
}

// Writing: every server records the same random id of this call in its MANIFEST. Restoring
// is two-phase: every server first reads and checks its checkpoint (Verify) and reports its
// id; only when all succeed with one id does each restore, requiring that id. So a path
// whose last write failed on some server (servers holding different calls' snapshots) is
// refused before any server changes.
Status ClientImpl::checkpoint(const std::string& path, bool restore, Deadline deadline) {
  wire::CheckpointRequest r;
  if (!restore) {
    std::random_device rd;
    do {
      r.checkpoint_id = rd() ^ static_cast<uint32_t>(::getpid()) ^
                        static_cast<uint32_t>(static_cast<uint64_t>(monotonicSeconds() * 1e6));
    } while (r.checkpoint_id == 0);
    Result<std::vector<uint32_t>> written =
        checkpointAll(path, r, strCat("checkpoint ", path), deadline);
    if (!written.isOk() && servers_.size() > 1) {
      return written.status().withHint(
          strCat("the checkpoint at '", path, "' may now hold this call's snapshot on some "
                 "servers and an older one on others: restoring it is refused until a "
                 "checkpoint to it completes on every server"));
    }
    return written.status();
  }
  r.restore = true;
  r.verify = true;
  WEFT_ASSIGN_OR_RETURN(
      const std::vector<uint32_t> ids,
      checkpointAll(path, r, strCat("restore of checkpoint ", path, " (checking)"), deadline));
  for (size_t i = 1; i < ids.size(); ++i) {
    if (ids[i] == ids[0]) continue;
    return WEFT_ERROR(StatusCode::kIoError, "restore of checkpoint ", path, ": ",
                      describeServer(servers_[0].id), " holds the snapshot of checkpoint call 0x",
                      std::hex, ids[0], ", ", describeServer(servers_[i].id), " that of call 0x",
                      ids[i], std::dec, "; nothing was restored")
        .withHint("the last checkpoint to this path did not complete on every server: restore "
                  "an older complete checkpoint, or write this one again");
  }
  r.verify = false;
  r.checkpoint_id = ids.empty() ? 0 : ids[0];
  // The servers replace their tables and slabs: cached slab keys and mappings would read the
  // old rows. (Other clients of these servers must reconnect; PROTOCOL.md §6.)
  forgetAllSlabKeys();
  return checkpointAll(path, r, strCat("restore of checkpoint ", path), deadline).status();
}

Result<std::unique_ptr<Client>> Client::connect(const ClientOptions& options,
                                                std::shared_ptr<Store> store, Deadline deadline) {
  auto client = std::make_unique<ClientImpl>(options, std::move(store));
  WEFT_RETURN_IF_ERROR(client->init(deadline));
  return std::unique_ptr<Client>(std::move(client));
}

}  // namespace weft::ps::net
