// The registration cache (see verbs_reg_cache.h).
#include "transport/ibverbs/verbs_reg_cache.h"

#include <algorithm>

#include "common/logging.h"

namespace weft::transport::verbs {

RegistrationCache::RegistrationCache(Registrar* registrar, MemoryEvents* events, Options options)
    : registrar_(registrar), events_(events), options_(std::move(options)) {
  if (events_ != nullptr) seen_ = events_->published();
}

RegistrationCache::~RegistrationCache() {
  size_t in_use = 0;
  for (auto& [start, e] : by_start_) {
    in_use += e->refs > 0;
    registrar_->deregister(e->reg);
  }
  for (auto& e : detached_) {
    ++in_use;
    registrar_->deregister(e->reg);
  }
  if (in_use > 0) {
    WEFT_LOG(kWarn, "verbs") << "registration cache destroyed while " << in_use
                             << " registrations were still used by operations";
  }
}

void RegistrationCache::drainEvents() {
  events_->settle();
  const uint64_t newest = events_->published();
  for (uint64_t seq = seen_ + 1; seq <= newest; ++seq) {
    AddressRange r;
    if (!events_->read(seq, r)) {  // fell behind the ring: trust nothing
      invalidate(0, UINTPTR_MAX);
      break;
    }
    invalidate(r.start, r.end);
  }
  seen_ = newest;
}

RegEntry* RegistrationCache::lookup(uintptr_t start, uintptr_t end, MemoryType type,
                                    LocalAccess access) {
  // Entries that could cover [start, end) begin in [start - max_length_, start].
  auto it = by_start_.upper_bound(start);
  const uintptr_t lowest = start > max_length_ ? start - max_length_ : 0;
  while (it != by_start_.begin()) {
    --it;
    if (it->first < lowest) break;
    RegEntry* e = it->second.get();
    if (e->end >= end && e->type == type && (e->reg.writable || access == LocalAccess::kRead)) {
      return e;
    }
  }
  return nullptr;
}

void RegistrationCache::touch(RegEntry* e) {
  if (!e->in_lru) return;
  (e->lru_prev != nullptr ? e->lru_prev->lru_next : lru_head_) = e->lru_next;
  (e->lru_next != nullptr ? e->lru_next->lru_prev : lru_tail_) = e->lru_prev;
  e->lru_prev = e->lru_next = nullptr;
  e->in_lru = false;
}

void RegistrationCache::lruPushBack(RegEntry* e) {
  e->lru_prev = lru_tail_;
  e->lru_next = nullptr;
  (lru_tail_ != nullptr ? lru_tail_->lru_next : lru_head_) = e;
  lru_tail_ = e;
  e->in_lru = true;
}

Result<RegEntry*> RegistrationCache::acquire(const void* address, size_t length,
                                             MemoryType type, LocalAccess access) {
  const uintptr_t page = options_.page_size;
  const auto addr = reinterpret_cast<uintptr_t>(address);
  const uintptr_t start = addr & ~(page - 1);
  const uintptr_t end = (addr + length + page - 1) & ~(page - 1);
  if (events_ != nullptr) {
    drainEvents();
    if (RegEntry* hit = lookup(start, end, type, access)) {
      ++hits_;
      if (options_.board != nullptr) options_.board->hits.store(hits_, std::memory_order_relaxed);
      touch(hit);
      ++hit->refs;
      return hit;
    }
  }
  ++misses_;
  const bool watchable = events_ != nullptr && events_->watch(start, end).isOk();
  const size_t bytes = end - start;
  if (watchable) makeRoom(bytes);
  auto reg = registrar_->registerRange(reinterpret_cast<void*>(start), bytes, type, access);
  if (!reg.isOk() && reg.status().code() == StatusCode::kNoResource && lru_head_ != nullptr) {
    // The locked-memory limit (or the device's MR table): free what we can and retry.
    makeRoom(SIZE_MAX);
    reg = registrar_->registerRange(reinterpret_cast<void*>(start), bytes, type, access);
  }
  if (!reg.isOk()) {
    publish();
    return reg.status();
  }
  auto entry = std::make_unique<RegEntry>();
  RegEntry* e = entry.get();
  e->start = start;
  e->end = end;
  e->type = type;
  e->reg = *reg;
  e->refs = 1;
  const bool fits = bytes_ + bytes <= options_.max_bytes && by_start_.size() < options_.max_entries;
  if (watchable && fits && e->reg.writable) {
    e->cached = true;
    bytes_ += bytes;
    max_length_ = std::max<size_t>(max_length_, bytes);
    by_start_.emplace(start, std::move(entry));
  } else {
    detached_.push_back(std::move(entry));
  }
  publish();
  return e;
}

Result<RegEntry*> RegistrationCache::acquireUncached(const void* address, size_t length,
                                                     MemoryType type, LocalAccess access) {
  void* start = const_cast<void*>(address);
  auto r = registrar_->registerRange(start, length, type, access);
  if (!r.isOk() && r.status().code() == StatusCode::kNoResource && lru_head_ != nullptr) {
    makeRoom(SIZE_MAX);  // the locked-memory limit or the MR table: free cached entries
    r = registrar_->registerRange(start, length, type, access);
  }
  WEFT_ASSIGN_OR_RETURN(Registration reg, std::move(r));
  auto entry = std::make_unique<RegEntry>();
  RegEntry* e = entry.get();
  e->start = reinterpret_cast<uintptr_t>(address);
  e->end = e->start + length;
  e->type = type;
  e->reg = reg;
  e->refs = 1;
  detached_.push_back(std::move(entry));
  return e;
}

void RegistrationCache::release(RegEntry* e) {
  if (--e->refs > 0) return;
  if (e->cached) {
    lruPushBack(e);
    return;
  }
  destroy(e);
}

void RegistrationCache::makeRoom(size_t bytes) {
  while (lru_head_ != nullptr &&
         (bytes == SIZE_MAX || bytes_ + std::min<uint64_t>(bytes, options_.max_bytes) >
                                   options_.max_bytes ||
          by_start_.size() >= options_.max_entries)) {
    RegEntry* victim = lru_head_;
    ++evictions_;
    drop(victim, false);
  }
}

void RegistrationCache::invalidate(uintptr_t start, uintptr_t end) {
  const uintptr_t lowest = start > max_length_ ? start - max_length_ : 0;
  auto it = by_start_.lower_bound(lowest);
  while (it != by_start_.end() && it->first < end) {
    RegEntry* e = it->second.get();
    ++it;  // drop() erases e's node
    if (e->end > start) {
      ++invalidations_;
      drop(e, true);
    }
  }
  publish();
}

void RegistrationCache::publish() {
  CacheBoardData* b = options_.board;
  if (b == nullptr) return;
  b->hits.store(hits_, std::memory_order_relaxed);
  b->misses.store(misses_, std::memory_order_relaxed);
  b->evictions.store(evictions_, std::memory_order_relaxed);
  b->invalidations.store(invalidations_, std::memory_order_relaxed);
  b->entries.store(by_start_.size(), std::memory_order_relaxed);
  b->bytes.store(bytes_, std::memory_order_relaxed);
}

void RegistrationCache::drop(RegEntry* e, bool invalidated) {
  (void)invalidated;
  touch(e);
  bytes_ -= e->end - e->start;
  auto range = by_start_.equal_range(e->start);
  for (auto it = range.first; it != range.second; ++it) {
    if (it->second.get() != e) continue;
    std::unique_ptr<RegEntry> owned = std::move(it->second);
    by_start_.erase(it);
    owned->cached = false;
    if (owned->refs == 0) {
      registrar_->deregister(owned->reg);
    } else {
      detached_.push_back(std::move(owned));  // deregistered by the last release
    }
    return;
  }
}

void RegistrationCache::destroy(RegEntry* e) {
  registrar_->deregister(e->reg);
  for (size_t i = 0; i < detached_.size(); ++i) {
    if (detached_[i].get() == e) {
      detached_[i] = std::move(detached_.back());
      detached_.pop_back();
      return;
    }
  }
}

RegCacheStats RegistrationCache::stats() const {
  RegCacheStats s;
  s.hits = hits_;
  s.misses = misses_;
  s.evictions = evictions_;
  s.invalidations = invalidations_;
  s.entries = by_start_.size();
  s.bytes = bytes_;
  s.bound_bytes = options_.max_bytes;
  s.monitor = events_ != nullptr ? "userfaultfd" : strCat("off (", options_.off_reason, ")");
  return s;
}

}  // namespace weft::transport::verbs
