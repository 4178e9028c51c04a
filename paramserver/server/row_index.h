// RowIndex: open-addressing hash index from feature id to row id (linear probing,
// backward-shift deletion, so no tombstones; grows x2 above 3/4 load; keeps the old
// array, still correct but fuller, if the bigger one cannot be allocated).
//
// The caller passes the key's hash (hashKey(key, kIndexSeed)); its low bits pick the home
// slot (a table's stripe uses the high bits). Each 16-byte slot keeps the key, the row id
// and the low 32 hash bits, so lookups and growth never touch row memory.
//
// Contract: not thread-safe; each table stripe owns one and guards it with its mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include "paramserver/util/huge_pages.h"

namespace weft::ps {

class RowIndex {
 public:
  static constexpr uint32_t kNone = 0xffffffffu;
  static constexpr size_t kInitialSlots = 16;

  RowIndex() : slots_(kInitialSlots), mask_(kInitialSlots - 1) {}
  RowIndex(RowIndex&&) noexcept = default;
  RowIndex& operator=(RowIndex&&) noexcept = default;

  uint32_t find(uint64_t key, uint64_t hash) const {
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id == kNone) return kNone;
      if (s.key == key) return s.id;
    }
  }
  // Hints the CPU to load the home slot of `hash` (lookups a few keys later hit cache).
  void prefetch(uint64_t hash) const { __builtin_prefetch(&slots_[hash & mask_]); }
  // The key must be absent.
  void insert(uint64_t key, uint64_t hash, uint32_t id);
  // Removes the key; returns its row id, or kNone when absent.
  uint32_t erase(uint64_t key, uint64_t hash);

  size_t size() const { return size_; }
  size_t capacity() const { return slots_.size(); }
  size_t bytes() const { return slots_.size() * sizeof(Slot); }

  // f(key, row id) for every entry, in slot order. f must not modify the index.
  template <class F>
  void forEach(F&& f) const {
    for (const Slot& s : slots_) {
      if (s.id != kNone) f(s.key, s.id);
    }
  }

 private:
  struct Slot {
    uint64_t key = 0;
    uint32_t id = kNone;
    uint32_t hash_lo = 0;
  };
  static_assert(sizeof(Slot) == 16);

  void place(const Slot& slot);
  void grow();

  // Large indexes live on huge pages (util/huge_pages.h): one TLB miss less per lookup.
  HugeArray<Slot> slots_;
  size_t mask_;
  size_t size_ = 0;
};

}  // namespace weft::ps
