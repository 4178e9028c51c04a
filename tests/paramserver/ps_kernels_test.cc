// The server's per-byte kernels against simple references: the interleaved CRC32C (three
// streams combined, used for every row write) and the vectorized non-finite scan (every
// pushed gradient, client and server side).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "paramserver/util/crc32c.h"
#include "paramserver/util/finite.h"

namespace weft::ps {
namespace {

TEST(PsKernels, Crc32cMatchesPortableAcrossBlockSizesAndAlignments) {
  std::mt19937 rng(7);
  std::vector<uint8_t> data(20000);
  for (uint8_t& b : data) b = static_cast<uint8_t>(rng());
  // Around the three-stream threshold (3 x 256 bytes), the carry-less fold's (4 x 256 bytes,
  // where the CPU has AVX-512 VPCLMULQDQ), whole multiples and row sizes.
  for (size_t n : {0, 1, 7, 8, 767, 768, 769, 1023, 1024, 1025, 1279, 1280, 1535, 1536, 2303,
                   4096, 4104, 4112, 16416, 19990}) {
    for (size_t offset : {0, 1, 3, 8}) {
      const uint8_t* p = data.data() + offset;
      EXPECT_EQ(crc32c(p, n), crc32cPortable(p, n)) << n << " bytes at offset " << offset;
      EXPECT_EQ(crc32c(p, n, 0x12345678u), crc32cPortable(p, n, 0x12345678u)) << n;
    }
  }
  // Extending over a split at any point equals one pass.
  for (size_t split : {0, 100, 768, 2000, 4112}) {
    EXPECT_EQ(crc32c(data.data() + split, 4112 * 2 - split, crc32c(data.data(), split)),
              crc32c(data.data(), 4112 * 2));
  }
}

bool referenceNonFinite(const std::vector<float>& v) {
  for (const float x : v) {
    if (!std::isfinite(x)) return true;
  }
  return false;
}

TEST(PsKernels, AnyNonFiniteFindsEveryNanAndInfinity) {
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(),
                            -std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::signaling_NaN(),
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()};
  const float finite[] = {0.0f, -0.0f, 1.0f, -1.5f, std::numeric_limits<float>::max(),
                          -std::numeric_limits<float>::max(),
                          std::numeric_limits<float>::denorm_min(),
                          std::numeric_limits<float>::min()};
  for (size_t n : {1, 3, 4, 17, 64, 1000}) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = finite[i % std::size(finite)];
    // Unaligned copies too: received messages carry no alignment guarantee.
    std::vector<uint8_t> bytes(4 * n + 1);
    std::memcpy(bytes.data() + 1, v.data(), 4 * n);
    EXPECT_FALSE(anyNonFinite(reinterpret_cast<const uint8_t*>(v.data()), n)) << n;
    EXPECT_FALSE(anyNonFinite(bytes.data() + 1, n)) << n;
    for (size_t at : {size_t{0}, n / 2, n - 1}) {
      for (const float s : specials) {
        std::vector<float> bad = v;
        bad[at] = s;
        std::memcpy(bytes.data() + 1, bad.data(), 4 * n);
        EXPECT_TRUE(referenceNonFinite(bad));
        const auto* raw = reinterpret_cast<const uint8_t*>(bad.data());
        EXPECT_TRUE(anyNonFinite(raw, n)) << n << " " << at;
        EXPECT_TRUE(anyNonFinite(bytes.data() + 1, n)) << n << " " << at;
      }
    }
  }
  EXPECT_FALSE(anyNonFinite(nullptr, 0));
}

}  // namespace
}  // namespace weft::ps
