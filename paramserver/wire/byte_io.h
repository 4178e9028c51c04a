// Little-endian byte writer/reader used by the codec and the checkpoint files.
//
// Contract: ByteWriter appends to a caller-owned vector. ByteReader never reads past its
// span: every read checks the remaining length first and returns false (leaving the
// output untouched) when the input is too short. Neither is thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "paramserver/wire/packed_span.h"

namespace weft::ps {

using Bytes = std::vector<uint8_t>;

class ByteWriter {
 public:
  explicit ByteWriter(Bytes& out) : out_(out) {}

  template <class T>
  void put(T value) {
    static_assert(std::is_trivially_copyable_v<T>);
    const size_t at = out_.size();
    out_.resize(at + sizeof(T));
    std::memcpy(out_.data() + at, &value, sizeof(T));
  }
  void putBytes(const void* data, size_t bytes) {
    if (bytes == 0) return;
    const size_t at = out_.size();
    out_.resize(at + bytes);
    std::memcpy(out_.data() + at, data, bytes);
  }
  void putZeros(size_t bytes) { out_.resize(out_.size() + bytes, 0); }
  size_t size() const { return out_.size(); }

 private:
  Bytes& out_;
};

class ByteReader {
 public:
  explicit ByteReader(std::span<const uint8_t> in) : in_(in) {}

  size_t remaining() const { return in_.size() - pos_; }
  size_t position() const { return pos_; }

  template <class T>
  bool get(T& out) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (remaining() < sizeof(T)) return false;
    std::memcpy(&out, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool getString(size_t bytes, std::string& out) {
    if (remaining() < bytes) return false;
    out.assign(reinterpret_cast<const char*>(in_.data() + pos_), bytes);
    pos_ += bytes;
    return true;
  }
  template <class T>
  bool getArray(size_t count, PackedSpan<T>& out) {
    if (count > remaining() / sizeof(T)) return false;
    out = PackedSpan<T>(in_.data() + pos_, count);
    pos_ += count * sizeof(T);
    return true;
  }
  bool skip(size_t bytes) {
    if (remaining() < bytes) return false;
    pos_ += bytes;
    return true;
  }
  // Skips reserved bytes, which must be zero (so that they can be given a meaning later).
  bool skipZeros(size_t bytes) {
    if (remaining() < bytes) return false;
    for (size_t i = 0; i < bytes; ++i) {
      if (in_[pos_ + i] != 0) return false;
    }
    pos_ += bytes;
    return true;
  }

 private:
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
};

}  // namespace weft::ps
