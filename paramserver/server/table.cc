// Table: creation, push / pull / pushPull. Row export, eviction and stats: table_rows.cc.
#include "paramserver/server/table.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "paramserver/server/initializer.h"
#include "paramserver/server/optimizer.h"
#include "paramserver/server/row_access.h"
#include "paramserver/util/finite.h"
#include "paramserver/util/hash.h"

namespace weft::ps {

// Per-thread buffers reused across requests (no allocation on the steady-state hot path).
struct Table::Scratch {
  std::vector<uint64_t> hashes;     // per distinct key (pull: per position)
  std::vector<uint32_t> first;      // per distinct key: its first position
  std::vector<uint32_t> unique_of;  // per position: its distinct key
  std::vector<uint64_t> set_keys;   // dedupe hash set
  std::vector<uint32_t> set_slots;
  std::vector<float> summed;  // per distinct key, when there are duplicates
  bool has_dups = false;
  std::vector<uint32_t> order;   // distinct keys grouped by stripe
  std::vector<uint32_t> starts;  // stripe s owns order[starts[s], starts[s + 1])
  std::vector<uint32_t> cursor;
  std::vector<uint32_t> ids;       // per order entry: its row (RowIndex::kNone: none)
  std::vector<uint8_t> fresh;      // per order entry: the key had no row
  std::vector<uint32_t> reserved;  // per order entry: the row id it gets if created
  std::vector<uint32_t> unused;    // reserved ids to release
  std::vector<float> unique_out;   // pushPull values per distinct key (duplicates)
};

namespace {

constexpr uint32_t kNoSlot = 0xffffffffu;
// Keys of a stripe go through a software pipeline: the index slot of key k + 2 * kAhead is
// prefetched, key k + kAhead is resolved (its slot has arrived by then) and its row
// prefetched, and key k is applied (its row has arrived). So about 2 * kAhead DRAM misses
// overlap at every step instead of two misses in a row per key (big tables live in DRAM),
// with no bubble at chunk boundaries.
constexpr uint32_t kAhead = 12;
constexpr uintptr_t kPrefetchLines = 4;
constexpr uint32_t kExponentMask = 0x7f800000u;  // all ones: NaN or +-Inf

// dim floats; a libc call per 4-byte row costs more than the copy.
inline void copyValues(float* dst, const float* src, uint32_t dim) {
  if (dim == 1) {
    *dst = *src;
  } else {
    std::memcpy(dst, src, size_t{4} * dim);
  }
}

bool nonFinite(uint32_t bits) {
  return (bits & kExponentMask) == kExponentMask;
}

}  // namespace

Table::Scratch& Table::scratch() {
  thread_local Scratch s;
  return s;
}

Result<std::unique_ptr<Table>> Table::create(const TableSpec& spec, const TableOptions& options) {
  WEFT_RETURN_IF_ERROR(validateTableSpec(spec));
  if (!std::has_single_bit(options.stripes) || options.stripes > 4096) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "creating ", describeTable(spec),
                      ": stripes = ", options.stripes, " (allowed: a power of two <= 4096)");
  }
  return std::unique_ptr<Table>(new Table(spec, options));
}

Table::Table(const TableSpec& spec, const TableOptions& options)
    : spec_(spec),
      layout_(RowLayout::make(spec.dim, optimizerStateFloats(spec.optimizer.kind))),
      pool_(options.pool),
      stripe_bits_(static_cast<uint32_t>(std::countr_zero(options.stripes))),
      stripes_(new Stripe[options.stripes]),
      store_(layout_.stride, options.slab_bytes),
      clocks_(spec.consistency) {
  if (spec.admission.min_count > 1) {
    sketch_ =
        std::make_unique<CountMinSketch>(spec.admission.sketch_width, spec.admission.sketch_depth);
  }
}

Table::~Table() = default;

uint32_t Table::stripeOf(uint64_t hash) const {
  return stripe_bits_ == 0 ? 0 : static_cast<uint32_t>(hash >> (64 - stripe_bits_));
}

Status Table::validateGrads(KeySpan keys, FloatSpan grads) const {
  if (keys.size() >= kNoSlot) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "push to ", describe(), ": ", keys.size(),
                      " keys in one request");
  }
  if (grads.size() != keys.size() * spec_.dim) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "push to ", describe(), ": ", grads.size(),
                      " gradient floats for ", keys.size(), " keys of dim ", spec_.dim,
                      " (expected ", keys.size() * spec_.dim, ")");
  }
  if (!anyNonFinite(grads.bytes(), grads.size())) return Status::ok();
  const PackedSpan<uint32_t> bits(grads.bytes(), grads.size());
  size_t i = 0;
  while (!nonFinite(bits[i])) ++i;
  return WEFT_ERROR(StatusCode::kInvalidArgument, "push to ", describe(), ": gradient element ",
                    i % spec_.dim, " of key ", keys[i / spec_.dim], " (position ", i / spec_.dim,
                    ") is ", grads[i], "; the request was rejected and no row changed")
      .withHint("check the model for exploding gradients or a division by zero");
}

// Finite gradients of one key can sum to an infinity (two of 3e38): reject that like an
// infinite gradient, before any row changes.
Status Table::validateSums(KeySpan keys, const Scratch& s) const {
  const auto* bytes = reinterpret_cast<const uint8_t*>(s.summed.data());
  if (!anyNonFinite(bytes, s.summed.size())) return Status::ok();
  size_t i = 0;
  while (std::isfinite(s.summed[i])) ++i;
  const size_t u = i / spec_.dim;
  return WEFT_ERROR(StatusCode::kInvalidArgument, "push to ", describe(), ": gradient element ",
                    i % spec_.dim, " of key ", keys[s.first[u]], " summed over its ",
                    std::count(s.unique_of.begin(), s.unique_of.end(), static_cast<uint32_t>(u)),
                    " positions in the request is ", s.summed[i],
                    "; the request was rejected and no row changed")
      .withHint("duplicate keys in one push are summed: scale the gradients down or send "
                "the key once");
}

void Table::dedupe(KeySpan keys, FloatSpan grads, Scratch& s) const {
  const size_t n = keys.size();
  const size_t cap = std::bit_ceil(std::max<size_t>(2 * n, 16));
  s.set_keys.resize(cap);
  s.set_slots.assign(cap, kNoSlot);
  s.hashes.clear();
  s.first.clear();
  s.unique_of.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const uint64_t key = keys[i];
    const uint64_t h = hashKey(key, kIndexSeed);
    size_t slot = (h >> 32) & (cap - 1);
    while (s.set_slots[slot] != kNoSlot && s.set_keys[slot] != key) slot = (slot + 1) & (cap - 1);
    if (s.set_slots[slot] == kNoSlot) {
      s.set_slots[slot] = static_cast<uint32_t>(s.first.size());
      s.set_keys[slot] = key;
      s.first.push_back(static_cast<uint32_t>(i));
      s.hashes.push_back(h);
    }
    s.unique_of[i] = s.set_slots[slot];
  }
  s.has_dups = s.first.size() != n;
  const uint32_t dim = spec_.dim;
  if (!s.has_dups) {
    // Received messages are float-aligned (values follow 8-byte keys): read them in place.
    if (reinterpret_cast<uintptr_t>(grads.bytes()) % alignof(float) == 0) return;
    s.summed.resize(n * dim);
    grads.copyTo(0, n * dim, s.summed.data());
    return;
  }
  s.summed.assign(s.first.size() * dim, 0.0f);
  for (size_t i = 0; i < n; ++i) {
    float* dst = s.summed.data() + size_t{s.unique_of[i]} * dim;
    for (uint32_t j = 0; j < dim; ++j) dst[j] += grads[i * dim + j];
  }
}

void Table::groupByStripe(const std::vector<uint64_t>& hashes, Scratch& s) const {
  const size_t stripes = size_t{1} << stripe_bits_;
  s.starts.assign(stripes + 1, 0);
  for (const uint64_t h : hashes) ++s.starts[stripeOf(h) + 1];
  for (size_t i = 1; i <= stripes; ++i) s.starts[i] += s.starts[i - 1];
  s.cursor.assign(s.starts.begin(), s.starts.end() - 1);
  s.order.resize(hashes.size());
  s.ids.resize(hashes.size());
  s.fresh.resize(hashes.size());
  for (size_t u = 0; u < hashes.size(); ++u) {
    s.order[s.cursor[stripeOf(hashes[u])]++] = static_cast<uint32_t>(u);
  }
}

bool Table::admit(uint64_t key) {
  return sketch_ == nullptr || sketch_->add(key) >= spec_.admission.min_count;
}

void Table::initRow(uint8_t* row, uint64_t key) const {
  row::setU32(row, kRowClockOffset, clock());
  row::setU32(row, kRowStepsOffset, 0);
  row::setKey(row, key);
  row::setU32(row, kRowFlagsOffset, kRowLive);
  row::setU32(row, kRowFlagsOffset + 4, 0);
  initializeRow(spec_.init, key, spec_.dim, row::values(row));
  initOptimizerState(spec_.optimizer, spec_.dim, row::state(row, layout_));
}

uint32_t Table::resolveRow(Stripe& stripe, uint32_t k, KeySpan keys, Scratch& s, bool create) {
  const uint32_t u = s.order[k];
  const uint64_t key = keys[create ? s.first[u] : u];
  uint32_t id = stripe.index.find(key, s.hashes[u]);
  s.fresh[k] = id == RowIndex::kNone;
  if (create && s.fresh[k]) {
    if (admit(key)) {
      id = s.reserved[k];
      stripe.index.insert(key, s.hashes[u], id);
    } else {
      dropped_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  s.ids[k] = id;
  prefetchRow(id);
  return id;
}

template <class Apply>
void Table::forEachResolved(Stripe& stripe, uint32_t st, KeySpan keys, Scratch& s, bool create,
                            Apply&& apply) {
  const uint32_t begin = s.starts[st];
  const uint32_t end = s.starts[st + 1];
  for (uint32_t k = begin; k < std::min(begin + 2 * kAhead, end); ++k) {
    stripe.index.prefetch(s.hashes[s.order[k]]);
  }
  for (uint32_t k = begin; k < std::min(begin + kAhead, end); ++k) {
    resolveRow(stripe, k, keys, s, create);
  }
  for (uint32_t k = begin; k < end; ++k) {
    if (k + 2 * kAhead < end) stripe.index.prefetch(s.hashes[s.order[k + 2 * kAhead]]);
    if (k + kAhead < end) resolveRow(stripe, k + kAhead, keys, s, create);
    apply(k);
  }
}

void Table::prefetchRow(uint32_t id) const {
  if (id == RowIndex::kNone) return;
  // The cache lines the row touches (rows are 8-byte aligned, so one may straddle lines),
  // at most kPrefetchLines of them: past that, a row is a sequential stream the hardware
  // prefetcher follows, and kAhead rows of 4 KiB prefetched ahead would overflow L1.
  const uint8_t* r = store_.row(id);
  const auto first = reinterpret_cast<uintptr_t>(r) & ~uintptr_t{63};
  const uintptr_t last = std::min(reinterpret_cast<uintptr_t>(r) + layout_.stride - 1,
                                  first + 64 * kPrefetchLines - 1);
  for (uintptr_t at = first; at <= last; at += 64) {
    __builtin_prefetch(reinterpret_cast<const void*>(at), 1);
  }
}

template <class F>
void Table::forEachStripe(const Scratch& s, F&& f) {
  const auto stripes = static_cast<uint32_t>(s.starts.size() - 1);
  if (pool_ != nullptr && pool_->threads() > 1 && s.order.size() >= kParallelKeys) {
    pool_->run(stripes, [&](uint32_t st) {
      if (s.starts[st] != s.starts[st + 1]) f(st);
    });
    return;
  }
  for (uint32_t st = 0; st < stripes; ++st) {
    if (s.starts[st] != s.starts[st + 1]) f(st);
  }
}

void Table::applyStripe(uint32_t st, KeySpan keys, const float* grads, Scratch& s, float* out) {
  Stripe& stripe = stripes_[st];
  std::lock_guard<std::mutex> lock(stripe.mu);
  forEachResolved(stripe, st, keys, s, /*create=*/true,
                  [&](uint32_t k) { updateRow(k, keys, grads, s, out); });
}

void Table::updateRow(uint32_t k, KeySpan keys, const float* grads, Scratch& s, float* out) {
  const uint32_t dim = spec_.dim;
  const uint32_t u = s.order[k];
  const uint64_t key = keys[s.first[u]];
  if (s.ids[k] == RowIndex::kNone) {  // not admitted yet
    if (out != nullptr) initializeRow(spec_.init, key, dim, out + size_t{u} * dim);
    return;
  }
  const float* g = grads + size_t{u} * dim;
  uint8_t* r = store_.row(s.ids[k]);
  const uint64_t v = beginRowWrite(r);
  if (s.fresh[k]) initRow(r, key);
  const uint32_t step = row::getU32(r, kRowStepsOffset) + 1;
  row::setU32(r, kRowStepsOffset, step);
  row::setU32(r, kRowClockOffset, clock());
  applyOptimizer(spec_.optimizer, dim, step, g, row::values(r), row::state(r, layout_));
  endRowWrite(r, layout_, v);
  if (out != nullptr) copyValues(out + size_t{u} * dim, row::values(r), dim);
}

Status Table::update(KeySpan keys, FloatSpan grads, float* out) {
  WEFT_RETURN_IF_ERROR(validateGrads(keys, grads));
  Scratch& s = scratch();
  dedupe(keys, grads, s);
  if (s.has_dups) WEFT_RETURN_IF_ERROR(validateSums(keys, s));
  s.reserved.clear();
  const Status reserved = store_.reserve(s.first.size(), s.reserved);
  if (!reserved.isOk()) return reserved.withContext(strCat("push to ", describe()));
  groupByStripe(s.hashes, s);
  const uint32_t dim = spec_.dim;
  float* unique_out = out;
  if (out != nullptr && s.has_dups) {
    s.unique_out.resize(s.first.size() * dim);
    unique_out = s.unique_out.data();
  }
  // Per distinct key u, its gradient row is at g + u * dim (without duplicates the keys
  // are the distinct keys, in order).
  const float* g = s.summed.data();
  if (!s.has_dups && reinterpret_cast<uintptr_t>(grads.bytes()) % alignof(float) == 0) {
    g = reinterpret_cast<const float*>(grads.bytes());
  }
  forEachStripe(s, [&](uint32_t st) { applyStripe(st, keys, g, s, unique_out); });
  // The reserved ids no new row took (branch-free: most are unused in steady state).
  s.unused.resize(s.order.size());
  size_t unused = 0;
  for (size_t k = 0; k < s.order.size(); ++k) {
    s.unused[unused] = s.reserved[k];
    unused += static_cast<size_t>(!s.fresh[k] | (s.ids[k] == RowIndex::kNone));
  }
  store_.release(s.unused.data(), unused);
  if (out != nullptr && s.has_dups) {
    for (size_t i = 0; i < keys.size(); ++i) {
      std::memcpy(out + i * dim, unique_out + size_t{s.unique_of[i]} * dim, size_t{4} * dim);
    }
  }
  return Status::ok();
}

Status Table::push(KeySpan keys, FloatSpan grads) {
  return update(keys, grads, nullptr);
}

Status Table::pushPull(KeySpan keys, FloatSpan grads, float* out) {
  return update(keys, grads, out);
}

void Table::pullStripe(uint32_t st, KeySpan keys, Scratch& s, float* out) {
  Stripe& stripe = stripes_[st];
  const uint32_t dim = spec_.dim;
  const uint32_t now = clock();
  std::lock_guard<std::mutex> lock(stripe.mu);
  forEachResolved(stripe, st, keys, s, /*create=*/false, [&](uint32_t k) {
    const uint32_t i = s.order[k];
    float* dst = out + size_t{i} * dim;
    if (s.ids[k] == RowIndex::kNone) {
      initializeRow(spec_.init, keys[i], dim, dst);
      return;
    }
    uint8_t* r = store_.row(s.ids[k]);
    copyValues(dst, row::values(r), dim);
    if (row::getU32(r, kRowClockOffset) != now) row::setU32(r, kRowClockOffset, now);
  });
}

// Keys by stripe, one lock per stripe, and the index slots prefetched 2 * kAhead keys ahead
// (as pulls do): a Locate is one index lookup per key and no row access.
void Table::locate(KeySpan keys, RowLocation* out) const {
  Scratch& s = scratch();
  s.hashes.resize(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) s.hashes[i] = hashKey(keys[i], kIndexSeed);
  groupByStripe(s.hashes, s);
  for (uint32_t st = 0; st + 1 < s.starts.size(); ++st) {
    const uint32_t begin = s.starts[st];
    const uint32_t end = s.starts[st + 1];
    if (begin == end) continue;
    const Stripe& stripe = stripes_[st];
    std::lock_guard<std::mutex> lock(stripe.mu);
    for (uint32_t k = begin; k < std::min(begin + 2 * kAhead, end); ++k) {
      stripe.index.prefetch(s.hashes[s.order[k]]);
    }
    for (uint32_t k = begin; k < end; ++k) {
      if (k + 2 * kAhead < end) stripe.index.prefetch(s.hashes[s.order[k + 2 * kAhead]]);
      const uint32_t u = s.order[k];
      const uint32_t id = stripe.index.find(keys[u], s.hashes[u]);
      out[u] = id == RowIndex::kNone ? RowLocation{}
                                     : RowLocation{store_.slabOf(id), 1, store_.offsetOf(id)};
    }
  }
}

void Table::pull(KeySpan keys, float* out) {
  Scratch& s = scratch();
  s.hashes.resize(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) s.hashes[i] = hashKey(keys[i], kIndexSeed);
  groupByStripe(s.hashes, s);
  forEachStripe(s, [&](uint32_t st) { pullStripe(st, keys, s, out); });
}

}  // namespace weft::ps
