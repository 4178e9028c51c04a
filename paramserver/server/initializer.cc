#include "paramserver/server/initializer.h"

#include <cmath>
#include <numbers>

#include "paramserver/util/hash.h"

namespace weft::ps {
namespace {

// Uniform in [0, 1) with 24 random bits (every value exactly representable in f32).
float unitFloat(uint64_t bits) {
  return static_cast<float>(bits >> 40) * 0x1p-24f;
}

// Uniform in (0, 1] with 53 bits, for the logarithm of Box-Muller.
double unitOpenZero(uint64_t bits) {
  return (static_cast<double>(bits >> 11) + 1.0) * 0x1p-53;
}

uint64_t elementBits(uint64_t stream, uint32_t j) {
  return mix64(stream + kGoldenGamma * (uint64_t{j} + 1));
}

}  // namespace

void initializeRow(const InitializerSpec& spec, uint64_t key, uint32_t dim, float* out) {
  const uint64_t stream = hashKey(key, spec.seed ^ kInitSeedSalt);
  switch (spec.kind) {
    case InitKind::kZeros:
      for (uint32_t j = 0; j < dim; ++j) out[j] = 0.0f;
      return;
    case InitKind::kUniform:
      for (uint32_t j = 0; j < dim; ++j) {
        out[j] = spec.a + (spec.b - spec.a) * unitFloat(elementBits(stream, j));
      }
      return;
    case InitKind::kNormal:
      for (uint32_t j = 0; j < dim; ++j) {
        const uint64_t bits = elementBits(stream, j);
        const double radius = std::sqrt(-2.0 * std::log(unitOpenZero(bits)));
        const double angle = 2.0 * std::numbers::pi * unitOpenZero(mix64(bits));
        out[j] = spec.a + spec.b * static_cast<float>(radius * std::cos(angle));
      }
      return;
  }
}

}  // namespace weft::ps
