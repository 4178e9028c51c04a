// PackedSpan<T>: a read-only view of `count` little-endian T values stored at any byte
// address (a received message, a checkpoint file, or a plain T array).
//
// Wire payloads carry no alignment guarantee, so elements are loaded with memcpy (one
// plain load on x86-64/aarch64) instead of dereferencing a T*. The project supports
// little-endian hosts only (static_assert below), so the wire order is the host order.
//
// Contract: does not own the bytes; they must outlive the view. Safe to read from any
// thread while nobody writes the bytes.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>

namespace weft::ps {

static_assert(std::endian::native == std::endian::little,
              "the parameter server wire format and tables assume a little-endian host");

template <class T>
class PackedSpan {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  PackedSpan() = default;
  PackedSpan(const uint8_t* data, size_t count) : data_(data), count_(count) {}
  // Views a plain array (no copy).
  static PackedSpan of(std::span<const T> values) {
    return PackedSpan(reinterpret_cast<const uint8_t*>(values.data()), values.size());
  }

  size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  size_t sizeBytes() const { return count_ * sizeof(T); }
  const uint8_t* bytes() const { return data_; }

  T operator[](size_t i) const {
    T v;
    std::memcpy(&v, data_ + i * sizeof(T), sizeof(T));
    return v;
  }
  // Copies elements [first, first + count) to out.
  void copyTo(size_t first, size_t count, T* out) const {
    if (count > 0) std::memcpy(out, data_ + first * sizeof(T), count * sizeof(T));
  }
  PackedSpan subspan(size_t first, size_t count) const {
    return PackedSpan(data_ + first * sizeof(T), count);
  }

 private:
  const uint8_t* data_ = nullptr;
  size_t count_ = 0;
};

using KeySpan = PackedSpan<uint64_t>;
using FloatSpan = PackedSpan<float>;

}  // namespace weft::ps
