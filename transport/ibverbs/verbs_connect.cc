// Store rendezvous of the verbs backend: each side of an RC connection publishes its QP
// record (QPN, PSN, LID, GID, MTU, credits, ...) and reads the other's.
//
// Keys (under the caller's Store, which callers namespace with a PrefixStore):
//   transport/verbs/addr/<rank>               AddressRecord (publishAddress / connect)
//   transport/verbs/qp/<from>/<to>/<seq>      QpRecord of <from>'s QP for connection <seq>
//   transport/verbs/inbox/<to>                counter of connection requests to <to>
//   transport/verbs/inbox/<to>/<i>            "<from>/<seq>": request i (1-based)
//
// connect(store, peer) is a handshake: an RC QP needs the peer's QP number, and that QP
// exists only once the peer has acted. So connect() publishes its record, posts a request
// into the peer's inbox, and waits for the peer's record. While it waits it serves its own
// inbox: for every request from another rank it creates the QP, connects it to the
// requester's record and publishes its own, and keeps the connected Channel until this
// rank calls connect() to that rank (which then returns at once). Any order of connect()
// calls among ranks that all connect therefore completes (a ring: everyone connects to the
// next rank first, then to the previous one). Two ranks connecting to each other at the
// same time use each other's records (same <seq>) and ignore each other's requests.
// <seq> counts the connections of a pair on each side, so a reconnect after close() uses
// fresh keys; nonces in the records tell Contexts of the same rank apart.
//
// Threads: connect() holds the Context's connect mutex (not the engine lock) while it
// talks to the Store; Channel work takes the engine lock.
#include <chrono>
#include <cstdlib>

#include "common/logging.h"
#include "transport/ibverbs/verbs_internal.h"

namespace weft::transport::verbs {
namespace {

// How long one Store wait lasts before the inbox is served again.
constexpr auto kInboxPoll = std::chrono::milliseconds(20);

std::string addrKey(int rank) {
  return strCat("transport/verbs/addr/", rank);
}
std::string qpKey(int from, int to, uint32_t seq) {
  return strCat("transport/verbs/qp/", from, "/", to, "/", seq);
}
std::string inboxKey(int to) {
  return strCat("transport/verbs/inbox/", to);
}

QpRecord recordFor(const Channel& ch, const VerbsState& st, int to, uint32_t seq,
                   uint64_t to_nonce) {
  QpRecord r = ch.localRecord();
  r.from = st.rank();
  r.to = to;
  r.seq = seq;
  r.from_nonce = st.nonce();
  r.to_nonce = to_nonce;
  return r;
}

Result<QpRecord> readRecord(Store& store, int from, int to, uint32_t seq, uint64_t my_nonce,
                            Deadline deadline) {
  const std::string key = qpKey(from, to, seq);
  WEFT_ASSIGN_OR_RETURN(std::string bytes, store.get(key, deadline));
  Result<QpRecord> r = decodeQp(bytes);
  if (!r.isOk()) return r.status().withContext(strCat("key ", key));
  if (r->from != from || r->to != to || r->seq != seq) {
    return WEFT_ERROR(StatusCode::kPeerFailure, "key ", key, " holds the record of ", r->from,
                      " -> ", r->to, " #", r->seq);
  }
  if (r->to_nonce != my_nonce) {
    return WEFT_ERROR(StatusCode::kUnavailable, "key ", key,
                      " was written for another Context of rank ", to,
                      " (a stale record in a reused store)")
        .withHint("use a fresh Store namespace (PrefixStore) per job / communicator");
  }
  return r;
}

// Serves connection requests that other ranks put into this rank's inbox (see top).
void serveInbox(const StatePtr& st, Store& store, int skip, Deadline deadline) {
  const int me = st->rank();
  Result<int64_t> count = store.add(inboxKey(me), 0);
  if (!count.isOk()) return;
  int64_t& next = st->inboxNext();
  while (next <= *count) {
    const std::string key = strCat(inboxKey(me), "/", next);
    Result<bool> has = store.check(key);
    if (!has.isOk() || !*has) return;  // the writer has not finished: next time
    Result<std::string> entry = store.get(key, deadline);
    if (!entry.isOk()) return;
    ++next;
    char* end = nullptr;
    const long from = std::strtol(entry->c_str(), &end, 10);
    const auto seq = static_cast<uint32_t>(std::strtoul(*end == '/' ? end + 1 : end, nullptr, 10));
    const int peer = static_cast<int>(from);
    if (peer == skip || peer == me || seq < st->nextSeq()[peer] ||
        st->accepted().count({peer, seq}) > 0) {
      continue;  // the running connect() handles it, or it is stale / done
    }
    Result<QpRecord> rec = readRecord(store, peer, me, seq, st->nonce(), deadline);
    if (!rec.isOk()) {
      WEFT_LOG(kDebug, "verbs") << st->name() << ": ignoring connection request " << *entry
                                << ": " << rec.status();
      continue;
    }
    const std::string what = strCat(st->name(), ": accepting rank ", peer, " (connection ", seq,
                                    ")");
    std::unique_ptr<Channel> ch;
    {
      detail::EngineLock lock(st->engine());
      auto created = Channel::create(*st, peer);
      Status s = created.isOk() ? created.value()->connect(*rec, what) : created.status();
      if (!s.isOk()) {
        WEFT_LOG(kWarn, "verbs") << what << ": " << s;
        continue;
      }
      ch = std::move(created).value();
    }
    Status s = store.set(qpKey(me, peer, seq), encodeQp(recordFor(*ch, *st, peer, seq,
                                                                  rec->from_nonce)));
    if (!s.isOk()) {
      WEFT_LOG(kWarn, "verbs") << what << ": publishing our record: " << s;
      detail::EngineLock lock(st->engine());
      ch.reset();
      continue;
    }
    detail::EngineLock lock(st->engine());
    st->accepted()[{peer, seq}] = std::move(ch);
  }
}

// Publishes our record + request and waits for the peer's record, serving the inbox.
Result<std::unique_ptr<Channel>> handshake(const StatePtr& st, Store& store, int peer,
                                           uint32_t seq, const AddressRecord& addr,
                                           Deadline deadline, const std::string& what) {
  std::unique_ptr<Channel> ch;
  {
    detail::EngineLock lock(st->engine());
    WEFT_ASSIGN_OR_RETURN(ch, Channel::create(*st, peer));
  }
  auto cleanup = [&] {
    detail::EngineLock lock(st->engine());
    ch.reset();
  };
  const int me = st->rank();
  Status s = store.set(qpKey(me, peer, seq), encodeQp(recordFor(*ch, *st, peer, seq, addr.nonce)));
  Result<int64_t> slot = s.isOk() ? store.add(inboxKey(peer), 1) : Result<int64_t>(s);
  if (slot.isOk()) s = store.set(strCat(inboxKey(peer), "/", *slot), strCat(me, "/", seq));
  if (!slot.isOk() || !s.isOk()) {
    cleanup();
    return (slot.isOk() ? s : slot.status()).withContext(strCat(what, ": publishing our QP"));
  }
  const std::string key = qpKey(peer, me, seq);
  for (;;) {
    s = store.wait({key}, Deadline::after(kInboxPoll).min(deadline));
    if (s.isOk()) break;
    if (s.code() != StatusCode::kTimeout || deadline.expired()) {
      cleanup();
      if (s.code() != StatusCode::kTimeout) return s.withContext(what);
      return WEFT_ERROR(StatusCode::kTimeout, what, ": rank ", peer,
                        " did not publish its QP (key ", key, " in ", store.describe(),
                        ") before the deadline")
          .withHint(strCat("rank ", peer, " must call connect(store, ", me,
                           ") too (or be inside a connect() to another rank) on the same store"));
    }
    serveInbox(st, store, peer, deadline);
  }
  Result<QpRecord> rec = readRecord(store, peer, me, seq, st->nonce(), deadline);
  if (rec.isOk() && rec->from_nonce != addr.nonce) {
    rec = WEFT_ERROR(StatusCode::kUnavailable, "key ", key,
                     " comes from another Context of that rank than its address record");
  }
  if (!rec.isOk()) {
    cleanup();
    return rec.status().withContext(what);
  }
  detail::EngineLock lock(st->engine());
  Status c = ch->connect(*rec, what);
  if (!c.isOk()) {
    ch.reset();
    return c;
  }
  return ch;
}

Result<std::unique_ptr<Channel>> connectSelf(const StatePtr& st, const std::string& what) {
  detail::EngineLock lock(st->engine());
  WEFT_ASSIGN_OR_RETURN(std::unique_ptr<Channel> ch, Channel::create(*st, st->rank()));
  const uint32_t seq = st->nextSeq()[st->rank()];
  Status s = ch->connect(recordFor(*ch, *st, st->rank(), seq, st->nonce()), what);
  if (!s.isOk()) return s;
  return ch;
}

Result<std::unique_ptr<Channel>> channelTo(const StatePtr& st, Store& store, int peer,
                                           Deadline deadline, const std::string& what) {
  WEFT_RETURN_IF_ERROR(publishAddress(*st, store));
  if (peer == st->rank()) return connectSelf(st, what);
  Result<std::string> bytes = store.get(addrKey(peer), deadline);
  if (!bytes.isOk()) {
    return bytes.status().withContext(
        strCat(what, ": reading key ", addrKey(peer), " from ", store.describe()));
  }
  Result<AddressRecord> addr = decodeAddress(*bytes);
  if (!addr.isOk()) return addr.status().withContext(strCat(what, ": key ", addrKey(peer)));
  if (addr->rank != peer) {
    return WEFT_ERROR(StatusCode::kPeerFailure, what, ": key ", addrKey(peer),
                      " holds the address of rank ", addr->rank);
  }
  const uint32_t seq = st->nextSeq()[peer];
  {
    detail::EngineLock lock(st->engine());
    auto it = st->accepted().find({peer, seq});
    if (it != st->accepted().end()) {  // the peer asked first; we answered while waiting
      std::unique_ptr<Channel> ch = std::move(it->second);
      st->accepted().erase(it);
      return ch;
    }
  }
  return handshake(st, store, peer, seq, *addr, deadline, what);
}

}  // namespace

Status publishAddress(VerbsState& st, Store& store) {
  Status s = store.set(addrKey(st.rank()), encodeAddress(st.addressRecord()));
  if (s.isOk()) return s;
  return s.withContext(strCat(st.name(), ": publishing the address in ", store.describe()));
}

Result<std::unique_ptr<Endpoint>> connectThroughStore(const StatePtr& st, Store& store,
                                                      int peer, Deadline deadline) {
  const std::string what = strCat("connect(store) from ", st->name(), " to rank ", peer);
  if (peer < 0 || peer > kMaxRank) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what, ": rank outside [0, ", kMaxRank, "]");
  }
  std::lock_guard<std::mutex> connecting(st->connectMutex());
  {
    detail::EngineLock lock(st->engine());
    if (!st->claimPeer(peer)) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, what,
                        ": this Context already has an endpoint to that rank");
    }
  }
  Result<std::unique_ptr<Channel>> ch = channelTo(st, store, peer, deadline, what);
  detail::EngineLock lock(st->engine());
  if (!ch.isOk()) {
    st->releasePeer(peer);
    return ch.status();
  }
  ++st->nextSeq()[peer];
  return std::unique_ptr<Endpoint>(
      new VerbsEndpoint(st, peer, std::move(ch).value(), peer == st->rank() ? "self" : "store"));
}

}  // namespace weft::transport::verbs
