// Client::pullOneSided: rows read straight from the servers' registered slabs.
//
// Per server: Locate the keys (one RPC: slab id and offset of each row), then get bytes
// [0, readableBytes()) of every row with the transport (or copy them with loads where the
// transport maps the slab here: Endpoint::mappedAddress), validate each copy with
// readRowConsistent (version even and matching the tail, CRC32C of key, flags and values,
// live, right key), get torn copies again (up to kMaxTornRetries times), and pull by RPC
// the keys that have no row yet or whose row was evicted or moved meanwhile.
#include <bit>
#include <cstring>

#include "common/logging.h"
#include "paramserver/net/client_impl.h"
#include "paramserver/net/framing.h"
#include "paramserver/server/row_store.h"
#include "paramserver/util/hash.h"

namespace weft::ps::net {
namespace {

// Reads of one row that may come back torn before the key goes to RPC: a writer holds a
// row for microseconds, so a few retries almost always see a stable copy.
constexpr int kMaxTornRetries = 64;
// Gets in flight per server at a time (bounds the request pool and the scratch memory).
constexpr size_t kGetWindow = 256;

// Prefetches the cache lines of a mapped row (null: nothing).
inline void prefetchRow(const uint8_t* row, size_t bytes) {
  if (row == nullptr) return;
  for (size_t at = 0; at < bytes; at += 64) __builtin_prefetch(row + at);
  __builtin_prefetch(row + bytes - 1);
}

}  // namespace

Status ClientImpl::locate(uint32_t table_id, uint32_t dim, const ServerBatch& batch,
                          std::vector<RowLocation>& out, Deadline deadline) {
  std::vector<SubRequest> subs(1);
  SubRequest& sub = subs[0];
  sub.pending = PendingRequest{codec_.nextRequestId(), wire::Opcode::kLocate, batch.server,
                               table_id, dim, {}};
  wire::KeyedRequest r;
  r.op = wire::Opcode::kLocate;
  r.dim = dim;
  r.clock = currentClock(table_id);
  r.keys = KeySpan::of(batch.keys);
  sub.message = wire::encodeKeyed(
      {sub.pending.request_id, codec_.srcRank(), table_id, map_->version()}, r);
  ++one_sided_.locates;
  // The reply carries 16 bytes per key.
  const size_t reply = wire::kHeaderBytes + wire::kReplyPrefixBytes + 16 * batch.keys.size();
  Op o;
  o.what = strCat("locate in table ", table_id);
  o.subs = std::move(subs);
  WEFT_RETURN_IF_ERROR(post(o.subs[0], reply));
  const Status st = finishSub(o, o.subs[0], deadline);
  if (!st.isOk()) {
    if (!settled(o)) orphans_.push_back(std::move(o));  // its reply may still land
    return st;
  }
  SubRequest& done = o.subs[0];
  done.reply.resize(done.recv.bytes());
  WEFT_ASSIGN_OR_RETURN(const wire::ReplyView v, view(done, done.reply));
  WEFT_ASSIGN_OR_RETURN(out, wire::decodeLocateReply(v, static_cast<uint32_t>(batch.keys.size())));
  return Status::ok();
}

size_t ClientImpl::LocationCache::slotOf(uint64_t key) const {
  return hashKey(key, 0x10ca7e) & (slots.size() - 1);
}

const ClientImpl::LocationCache::Slot* ClientImpl::LocationCache::find(uint64_t key,
                                                                       uint32_t server) const {
  if (slots.empty()) return nullptr;
  const Slot& x = slots[slotOf(key)];
  return x.server == server && x.key == key ? &x : nullptr;
}

void ClientImpl::LocationCache::insert(uint64_t key, uint32_t server, const RowLocation& where,
                                       size_t capacity) {
  // (WEFT_PS_LOCATION_CACHE is at most 2^24: 384 MiB of slots per table)
  if (slots.empty()) slots.resize(std::bit_ceil(std::min<size_t>(capacity, size_t{1} << 24)));
  slots[slotOf(key)] = Slot{key, where.offset, where.slab_id, server};
}

void ClientImpl::LocationCache::erase(uint64_t key) {
  if (slots.empty()) return;
  Slot& x = slots[slotOf(key)];
  if (x.key == key) x.server = kEmpty;
}

void ClientImpl::LocationCache::eraseServer(uint32_t server) {
  for (Slot& x : slots) {
    if (x.server == server) x.server = kEmpty;
  }
}

// locate() for the keys of `batch` that `cached` does not hold; the others' locations come
// from it (from_cache[i] = 1). Located rows enter the cache.
Status ClientImpl::locateCached(uint32_t table_id, uint32_t dim, const ServerBatch& batch,
                                LocationCache& cached, std::vector<RowLocation>& where,
                                std::vector<uint8_t>& from_cache, Deadline deadline) {
  const size_t n = batch.keys.size();
  where.assign(n, RowLocation{});
  from_cache.assign(n, 0);
  ServerBatch missing;
  missing.server = batch.server;
  std::vector<size_t> missing_at;
  ServerConn* s = server(batch.server);
  const auto now = std::chrono::steady_clock::now();
  // Rows read at cached locations pass validation even when stale: a dead server's (its
  // slabs stay mapped here), the old copy of a restored or moved table. So cached locations
  // of a server are used only within location_lease_ of a successful Locate to it (and
  // while its endpoint is healthy): a dead server is then reported by the next Locate.
  const bool lease =
      s != nullptr && s->ep && now - s->located_at < location_lease_ && s->ep->health().isOk();
  constexpr size_t kAhead = 8;  // slots prefetched ahead of the lookup
  if (lease && !cached.slots.empty()) {
    for (size_t i = 0; i < std::min(n, kAhead); ++i) {
      __builtin_prefetch(&cached.slots[cached.slotOf(batch.keys[i])]);
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if (lease && i + kAhead < n && !cached.slots.empty()) {
      __builtin_prefetch(&cached.slots[cached.slotOf(batch.keys[i + kAhead])]);
    }
    const LocationCache::Slot* hit = lease ? cached.find(batch.keys[i], batch.server) : nullptr;
    if (hit != nullptr) {
      where[i] = RowLocation{hit->slab_id, 1, hit->offset};
      from_cache[i] = 1;
    } else {
      missing.keys.push_back(batch.keys[i]);
      missing_at.push_back(i);
    }
  }
  one_sided_.locations_cached += n - missing.keys.size();
  if (missing.keys.empty()) return Status::ok();
  std::vector<RowLocation> found;
  WEFT_RETURN_IF_ERROR(locate(table_id, dim, missing, found, deadline));
  if (s != nullptr) s->located_at = now;
  for (size_t j = 0; j < missing_at.size(); ++j) {
    where[missing_at[j]] = found[j];
    if (found[j].present != 0) {
      cached.insert(missing.keys[j], batch.server, found[j], location_cache_rows_);
    }
  }
  return Status::ok();
}

Result<ClientImpl::SlabAccess*> ClientImpl::slabKey(uint32_t server, uint32_t table, uint32_t slab,
                                                    Deadline deadline) {
  const SlabKey k{server, table, slab};
  auto it = slab_keys_.find(k);
  if (it != slab_keys_.end()) return &it->second;
  WEFT_ASSIGN_OR_RETURN(const std::string bytes, members_.slabKey(server, table, slab, deadline));
  WEFT_ASSIGN_OR_RETURN(transport::RemoteKey key, transport::RemoteKey::deserialize(bytes));
  return &slab_keys_.emplace(k, SlabAccess{std::move(key)}).first->second;
}

// Reads rows todo[0, n) of one window into get_copies_: rows of slabs the transport maps
// here (UCX shared memory) are copied with plain loads, their cache misses overlapped by
// prefetching (mapped[j]: where row j was copied from); the others are read by gets
// (gets[j]; invalid: refused at once).
Status ClientImpl::readWindow(ServerConn& s, uint32_t table_id,
                              const std::vector<RowLocation>& where, const size_t* todo, size_t n,
                              size_t row_bytes, std::vector<SlabAccess*>& by_slab,
                              std::vector<transport::Request>& gets,
                              std::vector<const uint8_t*>& mapped, Deadline deadline) {
  std::vector<uint8_t>& copies = get_copies_;
  for (size_t j = 0; j < n; ++j) {
    const size_t i = todo[j];
    mapped[j] = nullptr;
    gets[j] = transport::Request();
    const uint32_t slab = where[i].slab_id;
    if (slab >= RowStore::kMaxSlabs) continue;  // no server has it: a corrupt reply
    if (slab >= by_slab.size()) by_slab.resize(size_t{slab} + 1, nullptr);
    if (by_slab[slab] == nullptr) {
      WEFT_ASSIGN_OR_RETURN(by_slab[slab], slabKey(s.id, table_id, slab, deadline));
    }
    SlabAccess* a = by_slab[slab];
    if (!a->probed) {
      a->probed = true;
      auto view = s.ep->mappedAddress(a->key, 0, a->key.length);
      a->mapped = view.isOk() ? static_cast<const uint8_t*>(*view) : nullptr;
    }
    if (a->mapped != nullptr && where[i].offset <= a->key.length &&
        row_bytes <= a->key.length - where[i].offset) {
      mapped[j] = a->mapped + where[i].offset;
      continue;
    }
    auto get = s.ep->get(copies.data() + j * row_bytes, row_bytes, a->key, where[i].offset);
    if (get.isOk()) gets[j] = std::move(get).value();
    ++one_sided_.gets;
  }
  constexpr size_t kAhead = 16;  // rows prefetched ahead of the copy
  for (size_t j = 0; j < std::min(n, kAhead); ++j) prefetchRow(mapped[j], row_bytes);
  for (size_t j = 0; j < n; ++j) {
    if (j + kAhead < n) prefetchRow(mapped[j + kAhead], row_bytes);
    if (mapped[j] == nullptr) continue;
    // The owner may be writing the row meanwhile: the copy is validated as a get's.
    std::memcpy(copies.data() + j * row_bytes, mapped[j], row_bytes);
    ++one_sided_.mapped_reads;
  }
  return Status::ok();
}

Status ClientImpl::readRows(uint32_t table_id, uint32_t dim, const ServerBatch& batch,
                            const std::vector<RowLocation>& where, float* out,
                            std::vector<uint32_t>& fallback, Deadline deadline) {
  ServerConn* s = server(batch.server);
  const size_t row_bytes = RowLayout::make(dim, 0).readableBytes();
  // A member: a get still pending when this returns at its deadline writes into it later.
  std::vector<uint8_t>& copies = get_copies_;
  if (copies.size() < kGetWindow * row_bytes) copies.resize(kGetWindow * row_bytes);
  std::vector<transport::Request> gets(kGetWindow);
  std::vector<const uint8_t*> mapped(kGetWindow);
  // Each slab's entry of slab_keys_ (a std::map: stable), looked up once per call.
  std::vector<SlabAccess*> by_slab;
  std::vector<int> tries(batch.keys.size(), 0);
  std::vector<size_t> todo;
  for (size_t i = 0; i < batch.keys.size(); ++i) {
    if (where[i].present) todo.push_back(i);
    else fallback.push_back(static_cast<uint32_t>(i));
  }
  while (!todo.empty()) {
    std::vector<size_t> again;
    for (size_t begin = 0; begin < todo.size(); begin += kGetWindow) {
      const size_t n = std::min(kGetWindow, todo.size() - begin);
      WEFT_RETURN_IF_ERROR(readWindow(*s, table_id, where, &todo[begin], n, row_bytes, by_slab,
                                      gets, mapped, deadline));
      bool failed = false;
      for (size_t j = 0; j < n; ++j) {
        const size_t i = todo[begin + j];
        // Not posted: the key was refused at once (a stale key, or the endpoint failed).
        Status st = mapped[j] != nullptr ? Status::ok()
                    : gets[j].valid()    ? gets[j].wait(deadline)
                                         : Status(StatusCode::kInvalidArgument, "get not posted");
        if (st.code() == StatusCode::kTimeout) {
          return st.withContext(strCat("one-sided read from ", describeServer(s->id)));
        }
        if (!st.isOk()) {
          // A key the server no longer honours (it restarted: its slabs were registered
          // again) or a failed peer: the row goes by RPC, which reports a dead server.
          failed = true;
          fallback.push_back(static_cast<uint32_t>(i));
          continue;
        }
        float* dst = out + size_t{batch.positions[i]} * dim;
        const RowRead rr =
            readRowConsistent(copies.data() + j * row_bytes, row_bytes, dim, batch.keys[i], dst);
        if (rr == RowRead::kOk) {
          ++one_sided_.rows_one_sided;
        } else if (rr == RowRead::kTorn && ++tries[i] < kMaxTornRetries) {
          ++one_sided_.torn_retries;
          again.push_back(i);
        } else {
          fallback.push_back(static_cast<uint32_t>(i));  // evicted, moved or always busy
        }
      }
      if (failed) {
        ++one_sided_.failed_windows;
        forgetSlabKeys(batch.server);
        std::fill(by_slab.begin(), by_slab.end(), nullptr);  // pointed into the forgotten keys
      }
    }
    todo = std::move(again);
  }
  return Status::ok();
}

void ClientImpl::forgetSlabKeys(uint32_t server_id) {
  for (auto& [table, cache] : locations_) cache.eraseServer(server_id);
  std::erase_if(slab_keys_, [&](const auto& entry) {
    if (entry.first.server != server_id) return false;
    const ServerConn* s = server(server_id);
    if (entry.second.mapped != nullptr && s != nullptr && s->ep) {
      Status st = s->ep->releaseMapping(entry.second.key);  // its pages go with the mapping
      if (!st.isOk()) {
        WEFT_LOG(kDebug, "ps") << "releasing a slab mapping: " << st;
      }
    }
    return true;
  });
}

void ClientImpl::forgetAllSlabKeys() {
  for (const ServerConn& s : servers_) forgetSlabKeys(s.id);
  slab_keys_.clear();
}

Status ClientImpl::pullOneSided(uint32_t table_id, std::span<const uint64_t> keys, float* out,
                                Deadline deadline) {
  WEFT_ASSIGN_OR_RETURN(const uint32_t dim, dimOf(table_id, "pullOneSided"));
  WEFT_RETURN_IF_ERROR(checkKeys(table_id, keys, {}, dim, "pullOneSided"));
  std::vector<uint64_t> rpc_keys;
  std::vector<uint32_t> rpc_positions;
  const bool cache = location_cache_rows_ > 0 && asp_tables_.count(table_id) != 0;
  auto* cached = cache ? &locations_[table_id] : nullptr;
  for (const ServerBatch& batch : partitionKeys(*map_, keys)) {
    std::vector<RowLocation> where;
    std::vector<uint8_t> from_cache;
    if (cached == nullptr) {
      WEFT_RETURN_IF_ERROR(locate(table_id, dim, batch, where, deadline));
    } else {
      WEFT_RETURN_IF_ERROR(
          locateCached(table_id, dim, batch, *cached, where, from_cache, deadline));
    }
    std::vector<uint32_t> fallback;
    WEFT_RETURN_IF_ERROR(readRows(table_id, dim, batch, where, out, fallback, deadline));
    for (const uint32_t i : fallback) {
      rpc_keys.push_back(batch.keys[i]);
      rpc_positions.push_back(batch.positions[i]);
      if (cached != nullptr && from_cache[i] != 0) {  // evicted, reused or moved: Locate next time
        cached->erase(batch.keys[i]);
        ++one_sided_.locations_stale;
      }
    }
  }
  if (rpc_keys.empty()) return Status::ok();
  one_sided_.rows_rpc += rpc_keys.size();
  std::vector<float> rows(rpc_keys.size() * dim);
  WEFT_RETURN_IF_ERROR(pullSync(table_id, rpc_keys, rows.data(), deadline));
  scatterRows(FloatSpan::of(rows), dim, rpc_positions, out);
  return Status::ok();
}

}  // namespace weft::ps::net
