// The server's per-byte kernels against simple references: the interleaved CRC32C (three
// streams combined, used for every row write), the vectorized non-finite scan (every
// pushed gradient, client and server side) and the optimizers (cloned per ISA: the clone
// this CPU runs must round exactly like scalar float math; this file is built with
// -ffp-contract=off so that the reference is that).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "paramserver/server/optimizer.h"
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

// Scalar float math in optimizer.cc's order (see optimizer.h for the rules).
void referenceUpdate(const OptimizerSpec& o, uint32_t dim, uint32_t step, const float* g,
                     float* w, float* s) {
  for (uint32_t j = 0; j < dim; ++j) {
    switch (o.kind) {
      case OptimizerKind::kSgd: w[j] -= o.learning_rate * (g[j] + o.l2 * w[j]); break;
      case OptimizerKind::kAdagrad:
        s[j] += g[j] * g[j];
        w[j] -= o.learning_rate * g[j] / (std::sqrt(s[j]) + o.epsilon);
        break;
      case OptimizerKind::kAdam: {
        const auto t = static_cast<double>(step);
        const auto c1 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(o.beta1), t)));
        const auto c2 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(o.beta2), t)));
        float* m = s;
        float* v = s + dim;
        m[j] = o.beta1 * m[j] + (1.0f - o.beta1) * g[j];
        v[j] = o.beta2 * v[j] + (1.0f - o.beta2) * g[j] * g[j];
        w[j] -= o.learning_rate * (m[j] * c1) / (std::sqrt(v[j] * c2) + o.epsilon);
        break;
      }
      case OptimizerKind::kFtrl: {
        float* z = s;
        float* n = s + dim;
        const float inv_alpha = 1.0f / o.learning_rate;
        const float n_new = n[j] + g[j] * g[j];
        const float sigma = (std::sqrt(n_new) - std::sqrt(n[j])) * inv_alpha;
        z[j] += g[j] - sigma * w[j];
        n[j] = n_new;
        const float zj = z[j];
        const float shrunk = zj > 0 ? zj - o.l1 : zj + o.l1;
        const float denom = (o.ftrl_beta + std::sqrt(n_new)) * inv_alpha + o.l2;
        w[j] = std::fabs(zj) <= o.l1 ? 0.0f : -shrunk / denom;
        break;
      }
    }
  }
}

TEST(PsKernels, OptimizersRoundLikeScalarFloatMath) {
  std::mt19937 rng(11);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  for (const OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kAdagrad,
                                   OptimizerKind::kAdam, OptimizerKind::kFtrl}) {
    OptimizerSpec o;
    o.kind = kind;
    o.learning_rate = 0.05f;
    o.l1 = 0.01f;
    o.l2 = 0.001f;
    for (const uint32_t dim : {1u, 7u, 16u, 33u, 64u, 1000u}) {
      const size_t state = size_t{optimizerStateFloats(kind)} * dim;
      std::vector<float> w(dim), s(state);
      for (float& x : w) x = 0.1f * gauss(rng);
      initOptimizerState(o, dim, s.data());
      std::vector<float> rw = w, rs = s;
      for (uint32_t step = 1; step <= 3; ++step) {
        std::vector<float> g(dim);
        for (float& x : g) x = gauss(rng);
        applyOptimizer(o, dim, step, g.data(), w.data(), s.data());
        referenceUpdate(o, dim, step, g.data(), rw.data(), rs.data());
        ASSERT_EQ(std::memcmp(w.data(), rw.data(), 4 * w.size()), 0)
            << optimizerName(kind) << " dim " << dim << " step " << step << ": values differ";
        if (s.empty()) continue;  // SGD keeps no state (and memcmp takes no null pointer)
        ASSERT_EQ(std::memcmp(s.data(), rs.data(), 4 * s.size()), 0)
            << optimizerName(kind) << " dim " << dim << " step " << step << ": state differs";
      }
    }
  }
}

}  // namespace
}  // namespace weft::ps
