// 64-bit mixing for feature ids: stripe and slot selection, the count-min sketch, the
// consistent-hash ring and the per-key initializers. Each use passes its own seed so that
// their bits are independent (a server's keys, which share ring positions, still spread
// evenly over its stripes).
//
// Contract: pure constexpr functions; results are part of the wire/checkpoint contract
// (ring positions and initial values must agree between processes and versions).
#pragma once

#include <cstdint>

namespace weft::ps {

// The splitmix64 / murmur3 finalizer: a bijection on uint64 with full avalanche.
constexpr uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

constexpr uint64_t kGoldenGamma = 0x9e3779b97f4a7c15ull;

// Hash of (seed, key): different seeds give independent functions.
constexpr uint64_t hashKey(uint64_t key, uint64_t seed) {
  return mix64(key ^ mix64(seed + kGoldenGamma));
}

// Fixed seeds of the hash uses (changing one changes placement or initial values).
inline constexpr uint64_t kIndexSeed = 0x5eed0001;     // stripe + slot in a table
inline constexpr uint64_t kRingSeed = 0x5eed0002;      // consistent-hash ring position
inline constexpr uint64_t kSketchSeed = 0x5eed0003;    // count-min sketch rows
inline constexpr uint64_t kInitSeedSalt = 0x5eed0004;  // initializer streams

}  // namespace weft::ps
