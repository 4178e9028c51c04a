// IEEE binary16 (f16) and bfloat16 (bf16) conversions to and from float.
//
// Contract: pure, thread-safe, header-only (the reduction kernels inline them). Each function
// gives the same bits as the x86 hardware conversions the SIMD kernels use, so that scalar and
// vector paths agree bit for bit:
//  - float -> f16 rounds to nearest, ties to even (VCVTPS2PH with imm 0): values that round
//    beyond 65504 become inf, tiny values become f16 subnormals or signed zero; a NaN becomes a
//    quiet NaN keeping the sign and the top 10 payload bits.
//  - f16 -> float is exact; a signaling NaN comes back quiet (as VCVTPH2PS does).
//  - float -> bf16 rounds to nearest, ties to even, keeps subnormals (unlike VCVTNEPS2BF16,
//    which flushes them and is therefore not used); a NaN becomes a quiet NaN keeping the top
//    payload bits.
//  - bf16 -> float is exact (the 16 bits become the top half of the float).
#pragma once

#include <bit>
#include <cstdint>

namespace weft::coll {

inline float halfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) {  // inf, or NaN made quiet
    const uint32_t quiet = mant != 0 ? 0x00400000u : 0u;
    return std::bit_cast<float>(sign | 0x7F800000u | quiet | (mant << 13));
  }
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in float
    const float magnitude = static_cast<float>(mant) * 0x1p-24f;
    return sign != 0 ? -magnitude : magnitude;
  }
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));  // rebias 15 -> 127
}

inline uint16_t floatToHalf(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const auto sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7FFFFFFFu;
  if (ax > 0x7F800000u) {  // NaN
    return static_cast<uint16_t>(sign | 0x7E00u | ((ax >> 13) & 0x3FFu));
  }
  if (ax >= 0x477FF000u) return sign | 0x7C00u;  // >= 65520 rounds to inf (ties to even)
  if (ax >= 0x38800000u) {                       // >= 2^-14: a normal f16
    const uint32_t rounded = ax + 0xFFFu + ((ax >> 13) & 1u);
    return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
  }
  // f16 subnormal: round (ax as a real) * 2^24 to an integer, ties to even.
  const uint32_t shift = 126u - (ax >> 23);
  if (shift > 24) return sign;  // below 2^-25 (also float subnormals): rounds to zero
  const uint32_t m = (ax & 0x7FFFFFu) | 0x800000u;
  uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u);
  const uint32_t halfway = 1u << (shift - 1);
  if (rem > halfway || (rem == halfway && (q & 1u) != 0)) ++q;  // may carry into 2^-14: fine
  return static_cast<uint16_t>(sign | q);
}

inline float bf16ToFloat(uint16_t h) {
  return std::bit_cast<float>(static_cast<uint32_t>(h) << 16);
}

inline uint16_t floatToBf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
  return static_cast<uint16_t>((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

}  // namespace weft::coll
