#include "paramserver/util/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#include <nmmintrin.h>
#endif

namespace weft::ps {
namespace {

constexpr uint32_t kPolyReflected = 0x82F63B78u;

using Tables = std::array<std::array<uint32_t, 256>, 8>;

constexpr Tables makeTables() {
  Tables t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ kPolyReflected : c >> 1;
    t[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; ++i) {
    for (size_t s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xffu];
  }
  return t;
}

constexpr Tables kTables = makeTables();

uint32_t portableRaw(const uint8_t* p, size_t n, uint32_t c) {
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    w ^= c;
    c = kTables[7][w & 0xff] ^ kTables[6][(w >> 8) & 0xff] ^ kTables[5][(w >> 16) & 0xff] ^
        kTables[4][(w >> 24) & 0xff] ^ kTables[3][(w >> 32) & 0xff] ^ kTables[2][(w >> 40) & 0xff] ^
        kTables[1][(w >> 48) & 0xff] ^ kTables[0][w >> 56];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) c = (c >> 8) ^ kTables[0][(c ^ *p++) & 0xffu];
  return c;
}

#if defined(__x86_64__)
// The crc32 instruction has a latency of 3 cycles and a throughput of 1 per cycle, so
// buffers of kStripe * 3 bytes or more run as three interleaved streams over consecutive
// kStripe-byte blocks, whose CRCs are then combined (shifting a CRC over kStripe zero bytes
// is a linear map on its 32 bits, tabulated in ShiftTable): about 3x a single stream
// (rows of dim >= 256 are CRC'd on every update).
constexpr size_t kStripe = 256;

// Multiplies a and b modulo the CRC polynomial (reflected bit order).
constexpr uint32_t multModP(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (uint32_t m = 1u << 31; m != 0; m >>= 1) {
    if ((a & m) != 0) product ^= b;
    b = (b & 1u) ? (b >> 1) ^ kPolyReflected : b >> 1;
  }
  return product;
}

// x^bits modulo the polynomial (reflected: bit 31 holds x^0).
constexpr uint32_t xPowMod(uint64_t bits) {
  uint32_t factor = 1u << 31;  // x^0
  uint32_t power = 1u << 30;   // x^1, squared up to x^(2^k)
  for (; bits != 0; bits >>= 1) {
    if ((bits & 1) != 0) factor = multModP(power, factor);
    power = multModP(power, power);
  }
  return factor;
}

// x^(8 * bytes) modulo the polynomial: the factor that appends `bytes` zero bytes.
constexpr uint32_t zerosFactor(size_t bytes) {
  return xPowMod(uint64_t{8} * bytes);
}

// shift(c) == the raw CRC register c advanced over kStripe zero bytes, by bytes of c.
struct ShiftTable {
  std::array<std::array<uint32_t, 256>, 4> t{};
  constexpr ShiftTable() {
    const uint32_t factor = zerosFactor(kStripe);
    for (uint32_t byte = 0; byte < 4; ++byte) {
      for (uint32_t v = 0; v < 256; ++v) t[byte][v] = multModP(v << (8 * byte), factor);
    }
  }
  constexpr uint32_t shift(uint32_t c) const {
    return t[0][c & 0xff] ^ t[1][(c >> 8) & 0xff] ^ t[2][(c >> 16) & 0xff] ^ t[3][c >> 24];
  }
};

constexpr ShiftTable kShift{};

__attribute__((target("sse4.2"))) uint32_t hardwareRaw(const uint8_t* p, size_t n, uint32_t c) {
  uint64_t c64 = c;
  while (n >= 3 * kStripe) {
    uint64_t c1 = 0, c2 = 0;
    for (size_t at = 0; at < kStripe; at += 8) {
      uint64_t w0, w1, w2;
      std::memcpy(&w0, p + at, 8);
      std::memcpy(&w1, p + kStripe + at, 8);
      std::memcpy(&w2, p + 2 * kStripe + at, 8);
      c64 = _mm_crc32_u64(c64, w0);
      c1 = _mm_crc32_u64(c1, w1);
      c2 = _mm_crc32_u64(c2, w2);
    }
    const uint32_t c01 = kShift.shift(static_cast<uint32_t>(c64)) ^ static_cast<uint32_t>(c1);
    c64 = kShift.shift(c01) ^ static_cast<uint32_t>(c2);
    p += 3 * kStripe;
    n -= 3 * kStripe;
  }
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    c64 = _mm_crc32_u64(c64, w);
    p += 8;
    n -= 8;
  }
  auto c32 = static_cast<uint32_t>(c64);
  while (n-- > 0) c32 = _mm_crc32_u8(c32, *p++);
  return c32;
}

bool haveHardware() {
  static const bool have = __builtin_cpu_supports("sse4.2");
  return have;
}

// Long buffers fold with carry-less multiplication (AVX-512 VPCLMULQDQ), 256 bytes per
// step in 16 lanes of 128 bits, the way Intel's "Fast CRC Computation for Generic
// Polynomials Using PCLMULQDQ" folds one lane. The lanes stand for a 2048-bit message
// that is congruent (mod the polynomial) to the bytes folded so far; a lane A = H x^64 + L
// moves 2048 bits on as H * (x^(2048+64) mod P) + L * (x^2048 mod P), each product then
// XORed with the next block's lane. In reflected order a carry-less product comes out
// one bit short (it has degree < 127 in 128 bits), hence the exponents minus one. At the
// end the 256 bytes of lanes go through the crc32 instruction from a zero register (the
// CRC of a message depends only on its polynomial mod P), then the tail. The starting
// register is XORed into the first 4 bytes, as the crc32 instruction does.
// About 2x the three-stream crc32 loop (weft-ps-microbench ps/crc32c on this host: 4104
// bytes 32-35 vs 16-19 GB/s, 64 KiB 39-47 vs 20).
constexpr size_t kFoldBlock = 256;
constexpr size_t kFoldMin = 4 * kFoldBlock;  // below: the crc32 loop (fold set-up costs)

constexpr uint64_t foldConstant(uint64_t bits) {
  return uint64_t{xPowMod(bits)} << 32;  // degree < 32, reflected into 64 bits
}
constexpr uint64_t kFoldHigh = foldConstant(8 * kFoldBlock + 64 - 1);
constexpr uint64_t kFoldLow = foldConstant(8 * kFoldBlock - 1);
static_assert(kFoldHigh == 0xe9a5d8be00000000u && kFoldLow == 0x1426a81500000000u,
              "fold constants (as computed by an independent model of the fold)");

__attribute__((target("avx512f,vpclmulqdq,sse4.2"))) __m512i fold512(__m512i acc, __m512i k,
                                                                     const uint8_t* next) {
  const __m512i hi = _mm512_clmulepi64_epi128(acc, k, 0x00);                 // H * kFoldHigh
  const __m512i lo = _mm512_clmulepi64_epi128(acc, k, 0x11);                 // L * kFoldLow
  return _mm512_ternarylogic_epi64(hi, lo, _mm512_loadu_si512(next), 0x96);  // 3-way XOR
}

__attribute__((target("avx512f,vpclmulqdq,sse4.2"))) uint32_t foldRaw(const uint8_t* p, size_t n,
                                                                      uint32_t c) {
  // Each 128-bit lane multiplies its low half (H) by kFoldHigh and its high half (L) by kFoldLow.
  const __m512i k =
      _mm512_set_epi64(static_cast<int64_t>(kFoldLow), static_cast<int64_t>(kFoldHigh),
                       static_cast<int64_t>(kFoldLow), static_cast<int64_t>(kFoldHigh),
                       static_cast<int64_t>(kFoldLow), static_cast<int64_t>(kFoldHigh),
                       static_cast<int64_t>(kFoldLow), static_cast<int64_t>(kFoldHigh));
  __m512i a0 = _mm512_xor_si512(_mm512_loadu_si512(p),
                                _mm512_zextsi128_si512(_mm_cvtsi32_si128(static_cast<int>(c))));
  __m512i a1 = _mm512_loadu_si512(p + 64);
  __m512i a2 = _mm512_loadu_si512(p + 128);
  __m512i a3 = _mm512_loadu_si512(p + 192);
  p += kFoldBlock;
  n -= kFoldBlock;
  while (n >= kFoldBlock) {
    a0 = fold512(a0, k, p);
    a1 = fold512(a1, k, p + 64);
    a2 = fold512(a2, k, p + 128);
    a3 = fold512(a3, k, p + 192);
    p += kFoldBlock;
    n -= kFoldBlock;
  }
  alignas(64) uint8_t lanes[kFoldBlock];
  _mm512_store_si512(lanes, a0);
  _mm512_store_si512(lanes + 64, a1);
  _mm512_store_si512(lanes + 128, a2);
  _mm512_store_si512(lanes + 192, a3);
  // Clean upper register state before returning to SSE code: GCC 12 put no vzeroupper
  // here, and without it the code after it ran 2.5x slower on this host (microbench
  // ps/handle/push_dense 6.6 -> 2.6 GB/s).
  _mm256_zeroupper();
  return hardwareRaw(p, n, hardwareRaw(lanes, kFoldBlock, 0));
}

bool haveFold() {
  static const bool have = __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("avx512f") &&
                           __builtin_cpu_supports("vpclmulqdq");
  return have;
}
#endif

}  // namespace

uint32_t crc32cPortable(const void* data, size_t bytes, uint32_t crc) {
  return ~portableRaw(static_cast<const uint8_t*>(data), bytes, ~crc);
}

uint32_t crc32c(const void* data, size_t bytes, uint32_t crc) {
#if defined(__x86_64__)
  const auto* p = static_cast<const uint8_t*>(data);
  if (bytes >= kFoldMin && haveFold()) return ~foldRaw(p, bytes, ~crc);
  if (haveHardware()) return ~hardwareRaw(p, bytes, ~crc);
#endif
  return crc32cPortable(data, bytes, crc);
}

}  // namespace weft::ps
