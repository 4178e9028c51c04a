#include "paramserver/row_layout.h"

#include <atomic>
#include <cstring>

#include "paramserver/util/crc32c.h"

namespace weft::ps {
namespace {

constexpr size_t round8(size_t n) {
  return (n + 7) & ~size_t{7};
}

uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

uint32_t rowCrc(const uint8_t* row, uint32_t dim) {
  return crc32c(row + kRowKeyOffset, kRowValuesOffset - kRowKeyOffset + size_t{4} * dim);
}

std::atomic_ref<uint64_t> word(uint8_t* row, size_t offset) {
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(row + offset));
}

}  // namespace

RowLayout RowLayout::make(uint32_t dim, uint32_t state_floats_per_element) {
  RowLayout l;
  l.dim = dim;
  l.state_floats = state_floats_per_element * dim;
  l.tail_offset = kRowValuesOffset + round8(size_t{4} * dim);
  l.state_offset = l.tail_offset + 8;
  l.stride = round8(l.state_offset + size_t{4} * l.state_floats);
  return l;
}

std::string_view rowReadName(RowRead r) {
  switch (r) {
    case RowRead::kOk: return "ok";
    case RowRead::kTorn: return "torn";
    case RowRead::kWrongKey: return "wrong key";
    case RowRead::kNotLive: return "not live";
    case RowRead::kShort: return "short";
  }
  return "unknown";
}

RowRead readRowConsistent(const void* row_bytes, size_t bytes, uint32_t dim, uint64_t expected_key,
                          float* out) {
  const RowLayout layout = RowLayout::make(dim, 0);
  if (bytes < layout.readableBytes()) return RowRead::kShort;
  const auto* row = static_cast<const uint8_t*>(row_bytes);
  const uint64_t version = load64(row + kRowVersionOffset);
  const uint64_t tail = load64(row + layout.tail_offset);
  if ((version & 1) != 0) return RowRead::kTorn;
  if ((tail >> 32) != (version & 0xffffffffu)) return RowRead::kTorn;
  if (static_cast<uint32_t>(tail) != rowCrc(row, dim)) return RowRead::kTorn;
  uint32_t flags;
  std::memcpy(&flags, row + kRowFlagsOffset, 4);
  if ((flags & kRowLive) == 0) return RowRead::kNotLive;
  if (load64(row + kRowKeyOffset) != expected_key) return RowRead::kWrongKey;
  std::memcpy(out, row + kRowValuesOffset, size_t{4} * dim);
  return RowRead::kOk;
}

RowRead readRowLockFree(const uint8_t* row, const RowLayout& layout, uint64_t expected_key,
                        float* out, uint8_t* copy, int max_tries) {
  RowRead r = RowRead::kTorn;
  for (int i = 0; i < max_tries && r == RowRead::kTorn; ++i) {
    std::atomic_thread_fence(std::memory_order_acquire);
    std::memcpy(copy, row, layout.readableBytes());
    std::atomic_thread_fence(std::memory_order_acquire);
    r = readRowConsistent(copy, layout.readableBytes(), layout.dim, expected_key, out);
  }
  return r;
}

uint64_t beginRowWrite(uint8_t* row) {
  auto version = word(row, kRowVersionOffset);
  const uint64_t odd = version.load(std::memory_order_relaxed) | 1;
  version.store(odd, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  return odd;
}

void endRowWrite(uint8_t* row, const RowLayout& layout, uint64_t odd_version) {
  const uint64_t next = odd_version + 1;
  const uint64_t tail = ((next & 0xffffffffu) << 32) | rowCrc(row, layout.dim);
  word(row, layout.tail_offset).store(tail, std::memory_order_release);
  word(row, kRowVersionOffset).store(next, std::memory_order_release);
}

}  // namespace weft::ps
