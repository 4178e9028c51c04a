// BufferPool: reusable byte buffers for collective scratch and receive staging. Internal to
// collectives/.
//
// Contract
//  - acquire(bytes) hands out a buffer of at least `bytes` bytes (64-byte aligned) that stays
//    the caller's until release(id). A free buffer that is big enough is reused (the
//    smallest such); otherwise the largest free buffer is regrown, or a new one is made. So
//    once the pool has seen the working set (warm-up), acquire allocates nothing.
//  - Contents are not initialized or cleared between uses.
//  - Not thread-safe: one communicator (one thread at a time) owns a pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace weft::coll::detail {

class BufferPool {
 public:
  struct Lease {
    std::byte* data = nullptr;
    uint32_t id = kNone;
    static constexpr uint32_t kNone = UINT32_MAX;
  };

  BufferPool() = default;
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // bytes == 0 gives an empty lease (data nullptr, nothing to release).
  Lease acquire(size_t bytes);
  void release(Lease& lease);

  size_t numBuffers() const { return entries_.size(); }
  size_t bytesHeld() const;
  // How many times acquire had to allocate (tests check warm-up behaviour).
  uint64_t allocations() const { return allocations_; }

 private:
  struct AlignedDelete {
    void operator()(std::byte* p) const;
  };
  struct Entry {
    std::unique_ptr<std::byte, AlignedDelete> data;
    size_t size = 0;
    bool used = false;
  };
  static std::unique_ptr<std::byte, AlignedDelete> allocate(size_t bytes);

  std::vector<Entry> entries_;
  uint64_t allocations_ = 0;
};

}  // namespace weft::coll::detail
