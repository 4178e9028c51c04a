#include "collectives/executor/buffer_pool.h"

#include <new>

namespace weft::coll::detail {
namespace {
// Cache-line alignment: the reduction kernels accept any alignment, but aligned buffers keep
// their vector loads from splitting lines.
constexpr std::align_val_t kAlignment{64};
}  // namespace

void BufferPool::AlignedDelete::operator()(std::byte* p) const {
  ::operator delete(p, kAlignment);
}

std::unique_ptr<std::byte, BufferPool::AlignedDelete> BufferPool::allocate(size_t bytes) {
  return std::unique_ptr<std::byte, AlignedDelete>(
      static_cast<std::byte*>(::operator new(bytes, kAlignment)));
}

BufferPool::Lease BufferPool::acquire(size_t bytes) {
  if (bytes == 0) return {};
  size_t best = entries_.size();
  size_t largestFree = entries_.size();
  for (size_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    if (e.used) continue;
    if (e.size >= bytes && (best == entries_.size() || e.size < entries_[best].size)) best = i;
    if (largestFree == entries_.size() || e.size > entries_[largestFree].size) largestFree = i;
  }
  if (best == entries_.size()) {
    ++allocations_;
    if (largestFree < entries_.size()) {
      best = largestFree;
      entries_[best].data.reset();
    } else {
      entries_.emplace_back();
      best = entries_.size() - 1;
    }
    entries_[best].data = allocate(bytes);
    entries_[best].size = bytes;
  }
  entries_[best].used = true;
  return Lease{entries_[best].data.get(), static_cast<uint32_t>(best)};
}

void BufferPool::release(Lease& lease) {
  if (lease.id != Lease::kNone && lease.id < entries_.size()) entries_[lease.id].used = false;
  lease = Lease{};
}

size_t BufferPool::bytesHeld() const {
  size_t n = 0;
  for (const Entry& e : entries_) n += e.size;
  return n;
}

}  // namespace weft::coll::detail
