// Field access to a row in slab memory (layout in paramserver/row_layout.h). Internal to
// the server; callers hold the row's stripe lock.
#pragma once

#include <cstdint>
#include <cstring>

#include "paramserver/row_layout.h"

namespace weft::ps::row {

inline uint32_t getU32(const uint8_t* row, size_t offset) {
  uint32_t v;
  std::memcpy(&v, row + offset, 4);
  return v;
}
inline void setU32(uint8_t* row, size_t offset, uint32_t v) {
  std::memcpy(row + offset, &v, 4);
}
inline uint64_t key(const uint8_t* row) {
  uint64_t v;
  std::memcpy(&v, row + kRowKeyOffset, 8);
  return v;
}
inline void setKey(uint8_t* row, uint64_t key) {
  std::memcpy(row + kRowKeyOffset, &key, 8);
}
inline float* values(uint8_t* row) {
  return reinterpret_cast<float*>(row + kRowValuesOffset);
}
inline const float* values(const uint8_t* row) {
  return reinterpret_cast<const float*>(row + kRowValuesOffset);
}
inline float* state(uint8_t* row, const RowLayout& l) {
  return reinterpret_cast<float*>(row + l.state_offset);
}
inline const float* state(const uint8_t* row, const RowLayout& l) {
  return reinterpret_cast<const float*>(row + l.state_offset);
}

}  // namespace weft::ps::row
