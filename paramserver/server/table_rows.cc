// Table: row records (export / import / erase), eviction, locate and stats.
#include <cmath>
#include <cstring>

#include "paramserver/server/row_access.h"
#include "paramserver/server/table.h"
#include "paramserver/util/hash.h"

namespace weft::ps {
namespace {

constexpr size_t kRecordHeaderBytes = 16;  // key u64, last_clock u32, steps u32

}  // namespace

size_t Table::recordBytes() const {
  return kRecordHeaderBytes + size_t{4} * (spec_.dim + layout_.state_floats);
}

void Table::freeRow(uint8_t* row) const {
  const uint64_t v = beginRowWrite(row);
  row::setU32(row, kRowFlagsOffset, 0);
  endRowWrite(row, layout_, v);
}

size_t Table::removeIf(const std::function<bool(uint64_t, const uint8_t*)>& remove) {
  size_t removed = 0;
  std::vector<uint64_t> victims;
  std::vector<uint32_t> ids;
  for (size_t st = 0; st < (size_t{1} << stripe_bits_); ++st) {
    Stripe& stripe = stripes_[st];
    victims.clear();
    ids.clear();
    {
      std::lock_guard<std::mutex> lock(stripe.mu);
      stripe.index.forEach([&](uint64_t key, uint32_t id) {
        if (remove(key, store_.row(id))) victims.push_back(key);
      });
      for (const uint64_t key : victims) {
        const uint32_t id = stripe.index.erase(key, hashKey(key, kIndexSeed));
        freeRow(store_.row(id));
        ids.push_back(id);
      }
    }
    store_.release(ids.data(), ids.size());
    removed += ids.size();
  }
  return removed;
}

size_t Table::eraseRows(const KeyFilter& select) {
  return removeIf([&](uint64_t key, const uint8_t*) { return !select || select(key); });
}

size_t Table::evictIdle() {
  const uint64_t after = spec_.evict_after_clocks;
  const uint64_t now = clock();
  if (after == 0 || now < after) return 0;
  const size_t n = removeIf([&](uint64_t, const uint8_t* r) {
    return uint64_t{row::getU32(r, kRowClockOffset)} + after <= now;
  });
  evicted_.fetch_add(n, std::memory_order_relaxed);
  return n;
}

size_t Table::advanceClock(uint32_t clock) {
  uint32_t old = clock_.load(std::memory_order_relaxed);
  while (old < clock && !clock_.compare_exchange_weak(old, clock, std::memory_order_relaxed)) {
  }
  return old < clock ? evictIdle() : 0;
}

void Table::exportRows(const KeyFilter& select, const RecordSink& sink) const {
  Bytes batch;
  const size_t values_bytes = size_t{4} * spec_.dim;
  const size_t state_bytes = size_t{4} * layout_.state_floats;
  for (size_t st = 0; st < (size_t{1} << stripe_bits_); ++st) {
    batch.clear();
    {
      std::lock_guard<std::mutex> lock(stripes_[st].mu);
      stripes_[st].index.forEach([&](uint64_t key, uint32_t id) {
        if (select && !select(key)) return;
        const uint8_t* r = store_.row(id);
        ByteWriter w(batch);
        w.put(key);
        w.putBytes(r + kRowClockOffset, 8);  // last_clock, steps
        w.putBytes(row::values(r), values_bytes);
        w.putBytes(row::state(r, layout_), state_bytes);
      });
    }
    if (!batch.empty()) sink(batch);
  }
}

Bytes Table::exportRows(const KeyFilter& select) const {
  Bytes out;
  exportRows(select, [&](std::span<const uint8_t> batch) {
    out.insert(out.end(), batch.begin(), batch.end());
  });
  return out;
}

// Records carry what a table can hold, non-finite values included: finite gradients can
// still drive an optimizer past the float range (a diverging model), and a checkpoint or a
// hand-over must then restore those rows as they were, not refuse the whole shard.
Status Table::validateRecords(std::span<const uint8_t> records) const {
  const size_t rb = recordBytes();
  if (records.size() % rb != 0) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "importing rows into ", describe(), ": ",
                      records.size(), " bytes is not a whole number of ", rb, "-byte records");
  }
  return Status::ok();
}

void Table::importRecord(const uint8_t* record, std::vector<uint32_t>& reserved) {
  uint64_t key;
  std::memcpy(&key, record, 8);
  const uint64_t h = hashKey(key, kIndexSeed);
  Stripe& stripe = stripes_[stripeOf(h)];
  std::lock_guard<std::mutex> lock(stripe.mu);
  uint32_t id = stripe.index.find(key, h);
  const bool fresh = id == RowIndex::kNone;
  if (fresh) {
    id = reserved.back();
    reserved.pop_back();
    stripe.index.insert(key, h, id);
  }
  uint8_t* r = store_.row(id);
  const uint64_t v = beginRowWrite(r);
  if (fresh) initRow(r, key);
  std::memcpy(r + kRowClockOffset, record + 8, 8);
  std::memcpy(row::values(r), record + kRecordHeaderBytes, size_t{4} * spec_.dim);
  std::memcpy(row::state(r, layout_), record + kRecordHeaderBytes + size_t{4} * spec_.dim,
              size_t{4} * layout_.state_floats);
  endRowWrite(r, layout_, v);
}

Status Table::importRows(std::span<const uint8_t> records) {
  WEFT_RETURN_IF_ERROR(validateRecords(records));
  const size_t n = records.size() / recordBytes();
  std::vector<uint32_t> reserved;
  const Status st = store_.reserve(n, reserved);
  if (!st.isOk()) return st.withContext(strCat("importing ", n, " rows into ", describe()));
  for (size_t i = 0; i < n; ++i) importRecord(records.data() + i * recordBytes(), reserved);
  store_.release(reserved.data(), reserved.size());
  return Status::ok();
}

const uint8_t* Table::rowAddress(uint64_t key) const {
  const uint64_t h = hashKey(key, kIndexSeed);
  const Stripe& stripe = stripes_[stripeOf(h)];
  std::lock_guard<std::mutex> lock(stripe.mu);
  const uint32_t id = stripe.index.find(key, h);
  return id == RowIndex::kNone ? nullptr : store_.row(id);
}

size_t Table::rowCount() const {
  size_t rows = 0;
  for (size_t st = 0; st < (size_t{1} << stripe_bits_); ++st) {
    std::lock_guard<std::mutex> lock(stripes_[st].mu);
    rows += stripes_[st].index.size();
  }
  return rows;
}

TableStats Table::stats() const {
  TableStats s;
  for (size_t st = 0; st < (size_t{1} << stripe_bits_); ++st) {
    std::lock_guard<std::mutex> lock(stripes_[st].mu);
    s.rows += stripes_[st].index.size();
    s.index_bytes += stripes_[st].index.bytes();
  }
  s.slabs = store_.slabCount();
  s.slab_bytes = s.slabs * store_.mappedBytes();
  s.sketch_bytes = sketch_ ? sketch_->bytes() : 0;
  s.row_stride = layout_.stride;
  if (s.rows > 0) {
    s.bytes_per_row = static_cast<double>(s.slab_bytes + s.index_bytes + s.sketch_bytes) /
                      static_cast<double>(s.rows);
  }
  s.admission_dropped = dropped_.load(std::memory_order_relaxed);
  s.evicted = evicted_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace weft::ps
