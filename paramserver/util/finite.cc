#include "paramserver/util/finite.h"

#include <cstring>

#include "paramserver/util/clones.h"

namespace weft::ps {

WEFT_PS_HOT_CLONES bool anyNonFinite(const uint8_t* bytes, size_t count) {
  uint32_t acc = 0;
  for (size_t i = 0; i < count; ++i) {
    uint32_t bits;
    std::memcpy(&bits, bytes + 4 * i, 4);
    acc |= (bits & 0x7fffffffu) + 0x00800000u;
  }
  return (acc & 0x80000000u) != 0;
}

}  // namespace weft::ps
