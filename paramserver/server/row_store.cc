#include "paramserver/server/row_store.h"

#include <algorithm>
#include <bit>
#include <cerrno>

#include "common/logging.h"
#include "paramserver/util/huge_pages.h"

namespace weft::ps {

RowStore::RowStore(size_t stride, size_t slab_bytes)
    : stride_(stride), slabs_(new std::atomic<uint8_t*>[kMaxSlabs]) {
  size_t rows = std::clamp<size_t>(slab_bytes / stride, 1, kMaxRowsPerSlab);
  if (slab_bytes >= kHugePageBytes) {
    // Whole huge pages: as many as the rows fill, at most slab_bytes' worth, at least one.
    const size_t most_rows_fill = std::max<size_t>(1, kMaxRowsPerSlab * stride / kHugePageBytes);
    const size_t pages = std::min(slab_bytes / kHugePageBytes, most_rows_fill);
    rows = std::clamp<size_t>(pages * kHugePageBytes / stride, 1, kMaxRowsPerSlab);
  }
  rows_ = static_cast<uint32_t>(rows);
  shift_ = static_cast<uint32_t>(std::bit_width(rows - 1));
  mask_ = static_cast<uint32_t>((size_t{1} << shift_) - 1);
  slab_bytes_ = rows * stride;
  mapped_bytes_ = slab_bytes >= kHugePageBytes
                      ? (slab_bytes_ + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes
                      : slab_bytes_;
  for (uint32_t i = 0; i < kMaxSlabs; ++i) slabs_[i].store(nullptr, std::memory_order_relaxed);
}

RowStore::~RowStore() {
  for (uint32_t i = 0; i < slab_count_; ++i) {
    if (owners_[i] == nullptr) unmapHuge(slabs_[i].load(), mapped_bytes_);
  }
}

Status RowStore::mapSlabLocked(SlabInfo& info) {
  if (slab_count_ >= kMaxSlabs) {
    return WEFT_ERROR(StatusCode::kNoResource, "row store: all ", kMaxSlabs, " slabs are in use (",
                      uint64_t{kMaxSlabs} * rowsPerSlab(), " rows)")
        .withHint("spread the table over more servers, or enable eviction");
  }
  std::shared_ptr<void> owner;
  void* p = nullptr;
  if (source_) {
    Result<SlabMemory> m = source_(slab_bytes_);
    if (m.isOk() && m->base != nullptr && m->owner != nullptr) {
      p = m->base;
      owner = std::move(m->owner);
    } else if (!source_warned_) {
      source_warned_ = true;
      WEFT_LOG(kWarn, "ps") << "row store: the slab source failed, mapping slabs here (no "
                            << "direct one-sided reads of them): "
                            << (m.isOk() ? Status(StatusCode::kInternal,
                                                  "no memory or no owner returned")
                                         : m.status());
    }
  }
  // Random row accesses: huge pages spare TLB misses.
  if (p == nullptr) p = mapHuge(mapped_bytes_);
  if (p == nullptr) {
    return WEFT_ERROR(StatusCode::kNoResource, "row store: mmap of a ", mapped_bytes_,
                      "-byte slab failed: ", errnoString(errno))
        .withHint("the server is out of memory: add servers or enable admission/eviction");
  }
  const uint32_t id = slab_count_++;
  slabs_[id].store(static_cast<uint8_t*>(p), std::memory_order_release);
  const void* tag = owner.get();
  owners_.push_back(std::move(owner));
  const uint32_t first = id << shift_;
  for (uint32_t i = rowsPerSlab(); i > 0; --i) {
    // 0xffffffff (the last id of a full id space) stays unused: indexes use it as "none".
    if (first + i - 1 != 0xffffffffu) free_.push_back(first + i - 1);
  }
  info = SlabInfo{id, static_cast<uint8_t*>(p), slab_bytes_, tag};
  return Status::ok();
}

Status RowStore::reserve(size_t count, std::vector<uint32_t>& ids) {
  std::vector<SlabInfo> mapped;
  Status status;
  SlabListener listener;
  {
    std::lock_guard<std::mutex> lock(mu_);
    while (free_.size() < count && status.isOk()) {
      SlabInfo info;
      status = mapSlabLocked(info);
      if (status.isOk()) mapped.push_back(info);
    }
    if (status.isOk()) {
      ids.insert(ids.end(), free_.end() - static_cast<ptrdiff_t>(count), free_.end());
      free_.resize(free_.size() - count);
      live_ += count;
    }
    if (!mapped.empty()) listener = listener_;
  }
  if (listener) {
    for (const SlabInfo& info : mapped) listener(info);
  }
  return status;
}

void RowStore::release(const uint32_t* ids, size_t count) {
  if (count == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  free_.insert(free_.end(), ids, ids + count);
  live_ -= count;
}

size_t RowStore::slabCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return slab_count_;
}

size_t RowStore::liveRows() const {
  std::lock_guard<std::mutex> lock(mu_);
  return live_;
}

std::vector<SlabInfo> RowStore::slabs() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<SlabInfo> out;
  for (uint32_t i = 0; i < slab_count_; ++i) {
    out.push_back(
        SlabInfo{i, slabs_[i].load(std::memory_order_relaxed), slab_bytes_, owners_[i].get()});
  }
  return out;
}

void RowStore::setSlabListener(SlabListener listener) {
  std::lock_guard<std::mutex> lock(mu_);
  listener_ = std::move(listener);
}

void RowStore::setSlabSource(SlabSource source) {
  std::lock_guard<std::mutex> lock(mu_);
  source_ = std::move(source);
}

}  // namespace weft::ps
