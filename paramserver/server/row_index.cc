#include "paramserver/server/row_index.h"

#include <cstdlib>

namespace weft::ps {

void RowIndex::place(const Slot& slot) {
  size_t i = slot.hash_lo & mask_;
  while (slots_[i].id != kNone) i = (i + 1) & mask_;
  slots_[i] = slot;
}

void RowIndex::grow() {
  HugeArray<Slot> old(slots_.size() * 2);
  if (!old.ok()) return;
  old.swap(slots_);
  mask_ = slots_.size() - 1;
  for (const Slot& s : old) {
    if (s.id != kNone) place(s);
  }
}

void RowIndex::insert(uint64_t key, uint64_t hash, uint32_t id) {
  if ((size_ + 1) * 4 > slots_.size() * 3) grow();
  // Without memory to grow, place() still needs one empty slot to end its probe.
  if (size_ + 1 >= slots_.size()) std::abort();
  place(Slot{key, id, static_cast<uint32_t>(hash)});
  ++size_;
}

uint32_t RowIndex::erase(uint64_t key, uint64_t hash) {
  size_t i = hash & mask_;
  while (slots_[i].id != kNone && slots_[i].key != key) i = (i + 1) & mask_;
  const uint32_t id = slots_[i].id;
  if (id == kNone) return kNone;
  // Backward shift: move later members of the probe run into the hole when their home
  // slot does not lie cyclically in (hole, j].
  for (size_t j = (i + 1) & mask_; slots_[j].id != kNone; j = (j + 1) & mask_) {
    const size_t home = slots_[j].hash_lo & mask_;
    const bool in_between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (!in_between) {
      slots_[i] = slots_[j];
      i = j;
    }
  }
  slots_[i] = Slot{};
  --size_;
  return id;
}

}  // namespace weft::ps
