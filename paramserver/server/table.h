// Table: one parameter-server table on one server (its shard of the rows).
//
// Rows (see row_layout.h) live in slabs (row_store.h) and are found through a lock-striped
// open-addressing index: a key's hash picks one of `stripes` stripes (high bits) and a slot
// in that stripe's RowIndex (low bits). A request takes each stripe lock it needs once,
// in stripe order, so concurrent handlers on different stripes never contend.
//
// Semantics (PROTOCOL.md repeats them for clients):
// - push validates before it changes anything: the key/gradient counts and every gradient
//   element (NaN or +-Inf rejects the whole request), and it reserves the rows it may
//   create; an error leaves every row untouched.
// - Duplicate keys in one push are summed first; the optimizer then runs once per distinct
//   key with the summed gradient. pushPull returns the updated row for every position.
// - Admission (spec.admission.min_count = N > 1): a push of a key without a row counts
//   the key in a count-min sketch (once per request) and creates the row only from the
//   N-th such push on; earlier gradients of that key are dropped (counted in stats).
// - A pull (or the pull part of pushPull) of a key without a row returns the initializer's
//   values for that key and creates nothing.
// - Eviction (spec.evict_after_clocks = T > 0): a row not pushed or pulled while the table
//   clock advanced T times (row.last_clock + T <= clock) is removed by advanceClock();
//   it comes back, from its initializer, if admitted again.
//
// Contract: all methods are thread-safe. Table owns its memory; rows never move, so
// addresses from rowAddress()/slabs() stay valid for the table's lifetime (the row at an
// address may change key: readers validate with readRowConsistent).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "common/result.h"
#include "paramserver/row_layout.h"
#include "paramserver/server/admission.h"
#include "paramserver/server/clock_tracker.h"
#include "paramserver/server/row_index.h"
#include "paramserver/server/row_store.h"
#include "paramserver/table_spec.h"
#include "paramserver/util/fork_join.h"
#include "paramserver/wire/byte_io.h"
#include "paramserver/wire/packed_span.h"

namespace weft::ps {

struct TableOptions {
  size_t slab_bytes = size_t{4} << 20;  // 4 MiB: few registrations, little slack per table
  // Power of two. More stripes: less contention between handler threads; fewer: longer
  // runs of keys per stripe for the prefetch pipeline (a 1,000-key request gives each of 8
  // stripes ~125 keys; with 64 stripes, ~16, too few to hide DRAM latency) and index
  // arrays big enough for huge pages. The networked server runs one handler thread.
  uint32_t stripes = 8;
  // Runs a request's stripes on several threads (not owned; shared by a shard's tables;
  // null: the calling thread does everything). Requests of fewer than kParallelKeys
  // distinct keys stay on the calling thread.
  ForkJoinPool* pool = nullptr;
};

struct TableStats {
  uint64_t rows = 0;
  uint64_t slabs = 0;
  uint64_t slab_bytes = 0;  // mapped row memory (includes free rows)
  uint64_t index_bytes = 0;
  uint64_t sketch_bytes = 0;
  uint64_t row_stride = 0;         // bytes of one row in a slab
  double bytes_per_row = 0;        // (slab + index + sketch bytes) / rows; 0 without rows
  uint64_t admission_dropped = 0;  // gradients dropped for keys not yet admitted
  uint64_t evicted = 0;
};

using KeyFilter = std::function<bool(uint64_t key)>;
using RecordSink = std::function<void(std::span<const uint8_t> records)>;

class Table {
 public:
  static Result<std::unique_ptr<Table>> create(const TableSpec& spec,
                                               const TableOptions& options = {});
  Table(const Table&) = delete;
  Table& operator=(const Table&) = delete;
  ~Table();

  const TableSpec& spec() const { return spec_; }
  const RowLayout& layout() const { return layout_; }
  uint32_t dim() const { return spec_.dim; }
  std::string describe() const { return describeTable(spec_); }

  // grads: keys.size() * dim floats, row-major in key order.
  Status push(KeySpan keys, FloatSpan grads);
  // out: keys.size() * dim floats, in key order.
  void pull(KeySpan keys, float* out);
  // out may be the gradients' own memory: every key's gradient is read (and all of them
  // validated) before its row is written to out.
  Status pushPull(KeySpan keys, FloatSpan grads, float* out);
  // Where each key's row lives (present 0: no row).
  void locate(KeySpan keys, RowLocation* out) const;

  ClockTracker& clocks() { return clocks_; }
  const ClockTracker& clocks() const { return clocks_; }
  // The table clock used to stamp touched rows (the tracker's min clock).
  uint32_t clock() const { return clock_.load(std::memory_order_relaxed); }
  // Records a new table clock and evicts idle rows; returns how many were evicted.
  size_t advanceClock(uint32_t clock);
  size_t evictIdle();
  // Sets the table clock without evicting (restore from a checkpoint).
  void restoreClock(uint32_t clock) { clock_.store(clock, std::memory_order_relaxed); }

  // Row records: key u64, last_clock u32, steps u32, values f32[dim], state f32[S*dim].
  size_t recordBytes() const;
  // Calls sink with the records of the selected rows, one batch per stripe, no lock held.
  void exportRows(const KeyFilter& select, const RecordSink& sink) const;
  Bytes exportRows(const KeyFilter& select) const;
  // Inserts or overwrites rows from records; validates all of them first (whole records),
  // so an error changes nothing. Non-finite values and state are kept as they come (a
  // diverged row is restored as it was checkpointed).
  Status importRows(std::span<const uint8_t> records);
  // Removes the selected rows; returns how many.
  size_t eraseRows(const KeyFilter& select);

  size_t rowCount() const;
  TableStats stats() const;
  std::vector<SlabInfo> slabs() const { return store_.slabs(); }
  void setSlabListener(SlabListener listener) { store_.setSlabListener(std::move(listener)); }
  void setSlabSource(SlabSource source) { store_.setSlabSource(std::move(source)); }
  // The current row of `key` (nullptr when absent). See the contract above.
  const uint8_t* rowAddress(uint64_t key) const;

 private:
  struct alignas(64) Stripe {
    mutable std::mutex mu;
    RowIndex index;
  };
  struct Scratch;
  // Smallest request (distinct keys) whose stripes run on the pool.
  static constexpr size_t kParallelKeys = 128;

  Table(const TableSpec& spec, const TableOptions& options);
  static Scratch& scratch();
  uint32_t stripeOf(uint64_t hash) const;
  Status validateGrads(KeySpan keys, FloatSpan grads) const;
  void groupByStripe(const std::vector<uint64_t>& hashes, Scratch& s) const;
  Status update(KeySpan keys, FloatSpan grads, float* out);
  void dedupe(KeySpan keys, FloatSpan grads, Scratch& s) const;
  // Under the stripe lock: the row id of order entry k (s.ids[k]), creating the index entry
  // of an admitted new key when `create`; prefetches the row.
  uint32_t resolveRow(Stripe& stripe, uint32_t k, KeySpan keys, Scratch& s, bool create);
  // Under the stripe lock: resolves the order entries of stripe st and calls apply(k) for
  // each, in order, with index slots and rows prefetched a few entries ahead.
  template <class Apply>
  void forEachResolved(Stripe& stripe, uint32_t st, KeySpan keys, Scratch& s, bool create,
                       Apply&& apply);
  void prefetchRow(uint32_t id) const;
  void applyStripe(uint32_t stripe, KeySpan keys, const float* grads, Scratch& s, float* out);
  // One resolved key (order entry k) of a push: optimizer update under the seqlock.
  // grads: the summed gradient rows, one per distinct key.
  void updateRow(uint32_t k, KeySpan keys, const float* grads, Scratch& s, float* out);
  // Calls f(stripe) for every stripe the request touches, on the pool when it is large.
  template <class F>
  void forEachStripe(const Scratch& s, F&& f);
  void pullStripe(uint32_t stripe, KeySpan keys, Scratch& s, float* out);
  bool admit(uint64_t key);
  void initRow(uint8_t* row, uint64_t key) const;
  void freeRow(uint8_t* row) const;
  // Removes the rows for which remove(key, row) is true; returns how many.
  size_t removeIf(const std::function<bool(uint64_t, const uint8_t*)>& remove);
  Status validateSums(KeySpan keys, const Scratch& s) const;
  Status validateRecords(std::span<const uint8_t> records) const;
  void importRecord(const uint8_t* record, std::vector<uint32_t>& reserved);

  const TableSpec spec_;
  const RowLayout layout_;
  ForkJoinPool* const pool_;
  const uint32_t stripe_bits_;
  std::unique_ptr<Stripe[]> stripes_;
  mutable RowStore store_;
  std::unique_ptr<CountMinSketch> sketch_;  // null without admission
  ClockTracker clocks_;
  std::atomic<uint32_t> clock_{0};
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> evicted_{0};
};

}  // namespace weft::ps
