// RowStore: fixed-size rows in large slabs of anonymous memory (or a SlabSource's).
//
// A slab is one mmap'ed region holding rows back to back; a row id splits into (slab,
// index) with a shift and a mask (each slab owns a power-of-two range of ids, of which its
// rows use the first rowsPerSlab()), rows never move, and each slab can be registered with
// the transport once for one-sided reads (SlabListener). Fresh slab memory is zero:
// version 0 (even), flags 0 (not live).
//
// Slabs of 2 MiB or more are whole huge pages (huge_pages.h), holding as many rows as fit:
// a row on a 4 KiB page costs a lookup a TLB miss on top of its cache miss. (Before, a
// slab held a power of two of rows, 3 MiB of 48-byte rows: its last MiB, a third of the
// rows, sat on 4 KiB pages; table lookups of uniform keys over 2^20 rows were 7-35 %
// slower, alternated microbenchmark runs.)
//
// Contract:
// - reserve()/release() are thread-safe (one internal mutex; callers batch ids per request).
// - row(id) is lock-free and valid for any id ever handed out by reserve(): slabs are never
//   unmapped before the RowStore is destroyed. Callers serialise access to a row's bytes.
// - The listener is called after a new slab is mapped, outside the internal lock, on the
//   thread that called reserve().
// - A SlabSource, when set, provides the memory of later slabs instead of mmap (the server:
//   transport memory that readers on the same node map, Context::allocateMemory). Its
//   memory must be zero-filled and come with an owner, which the RowStore keeps until it is
//   destroyed. It is called with the store's mutex held (it must not call back into the
//   store). When it fails the slab is mapped as usual (one warning per store).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "common/result.h"
#include "common/status.h"

namespace weft::ps {

struct SlabInfo {
  uint32_t id = 0;
  uint8_t* base = nullptr;
  size_t bytes = 0;
  const void* owner = nullptr;  // SlabMemory::owner.get() of a slab from a source, else null
};
using SlabListener = std::function<void(const SlabInfo&)>;

struct SlabMemory {
  uint8_t* base = nullptr;      // at least the requested bytes, zero-filled
  std::shared_ptr<void> owner;  // releases the memory when dropped
};
using SlabSource = std::function<Result<SlabMemory>(size_t bytes)>;

class RowStore {
 public:
  // Why 65536: row ids are 32-bit, and 65536 slabs of at most 65536 rows cover them.
  static constexpr uint32_t kMaxSlabs = 1u << 16;
  static constexpr uint32_t kMaxRowsPerSlab = 1u << 16;

  // stride: bytes per row (multiple of 8). slab_bytes: target slab size. From 2 MiB on,
  // a slab maps slab_bytes rounded down to whole 2 MiB pages (at least one), fewer when
  // kMaxRowsPerSlab rows fill fewer pages, and holds as many rows as fit; below, it holds
  // slab_bytes / stride rows. Always at least one row.
  RowStore(size_t stride, size_t slab_bytes);
  ~RowStore();
  RowStore(const RowStore&) = delete;
  RowStore& operator=(const RowStore&) = delete;

  // Appends `count` free row ids to `ids`, mapping slabs as needed. kNoResource when the
  // id space or memory is exhausted (nothing is appended then).
  Status reserve(size_t count, std::vector<uint32_t>& ids);
  // Returns ids to the free pool (rows must no longer be referenced by any index).
  void release(const uint32_t* ids, size_t count);

  uint8_t* row(uint32_t id) const {
    return slabs_[id >> shift_].load(std::memory_order_acquire) + size_t{id & mask_} * stride_;
  }
  // Inverse of row(): where a row lives, for Locate replies.
  uint32_t slabOf(uint32_t id) const { return id >> shift_; }
  uint64_t offsetOf(uint32_t id) const { return uint64_t{id & mask_} * stride_; }

  size_t stride() const { return stride_; }
  uint32_t rowsPerSlab() const { return rows_; }
  // Bytes of a slab's rows (rowsPerSlab() * stride(); what is registered and reported).
  size_t slabBytes() const { return slab_bytes_; }
  // Bytes mapped per slab (slabBytes() rounded up to the slab's pages).
  size_t mappedBytes() const { return mapped_bytes_; }
  size_t slabCount() const;
  size_t liveRows() const;  // reserved and not released
  std::vector<SlabInfo> slabs() const;
  void setSlabListener(SlabListener listener);
  void setSlabSource(SlabSource source);

 private:
  Status mapSlabLocked(SlabInfo& info);

  const size_t stride_;
  uint32_t rows_ = 0;
  uint32_t shift_ = 0;
  uint32_t mask_ = 0;
  size_t slab_bytes_ = 0;
  size_t mapped_bytes_ = 0;
  std::unique_ptr<std::atomic<uint8_t*>[]> slabs_;
  mutable std::mutex mu_;
  uint32_t slab_count_ = 0;
  std::vector<uint32_t> free_;
  size_t live_ = 0;
  SlabListener listener_;
  SlabSource source_;
  std::vector<std::shared_ptr<void>> owners_;  // by slab id; null: mapped here
  bool source_warned_ = false;
};

}  // namespace weft::ps
