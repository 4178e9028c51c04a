#include "paramserver/server/optimizer.h"

#include <cmath>

#include "paramserver/util/clones.h"

namespace weft::ps {
namespace {

[[gnu::always_inline]] inline void sgd(const OptimizerSpec& o, uint32_t dim,
                                       const float* __restrict g, float* __restrict w) {
  const float lr = o.learning_rate;
  const float l2 = o.l2;
  for (uint32_t j = 0; j < dim; ++j) w[j] -= lr * (g[j] + l2 * w[j]);
}

[[gnu::always_inline]] inline void adagrad(const OptimizerSpec& o, uint32_t dim,
                                           const float* __restrict g, float* __restrict w,
                                           float* __restrict acc) {
  const float lr = o.learning_rate;
  const float eps = o.epsilon;
  for (uint32_t j = 0; j < dim; ++j) {
    acc[j] += g[j] * g[j];
    w[j] -= lr * g[j] / (std::sqrt(acc[j]) + eps);
  }
}

[[gnu::always_inline]] inline void adam(const OptimizerSpec& o, uint32_t dim, uint32_t step,
                                        const float* __restrict g, float* __restrict w,
                                        float* __restrict m, float* __restrict v) {
  const float b1 = o.beta1;
  const float b2 = o.beta2;
  const auto t = static_cast<double>(step);
  const auto c1 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(b1), t)));
  const auto c2 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(b2), t)));
  const float lr = o.learning_rate;
  const float eps = o.epsilon;
  for (uint32_t j = 0; j < dim; ++j) {
    m[j] = b1 * m[j] + (1.0f - b1) * g[j];
    v[j] = b2 * v[j] + (1.0f - b2) * g[j] * g[j];
    w[j] -= lr * (m[j] * c1) / (std::sqrt(v[j] * c2) + eps);
  }
}

[[gnu::always_inline]] inline void ftrl(const OptimizerSpec& o, uint32_t dim,
                                        const float* __restrict g, float* __restrict w,
                                        float* __restrict z, float* __restrict n) {
  const float alpha = o.learning_rate;
  const float inv_alpha = 1.0f / alpha;
  for (uint32_t j = 0; j < dim; ++j) {
    const float n_new = n[j] + g[j] * g[j];
    const float sigma = (std::sqrt(n_new) - std::sqrt(n[j])) * inv_alpha;
    z[j] += g[j] - sigma * w[j];
    n[j] = n_new;
    const float zj = z[j];
    const float shrunk = zj > 0 ? zj - o.l1 : zj + o.l1;
    const float denom = (o.ftrl_beta + std::sqrt(n_new)) * inv_alpha + o.l2;
    w[j] = std::fabs(zj) <= o.l1 ? 0.0f : -shrunk / denom;
  }
}

}  // namespace

void initOptimizerState(const OptimizerSpec& spec, uint32_t dim, float* state) {
  const uint32_t n = optimizerStateFloats(spec.kind) * dim;
  const float first = spec.kind == OptimizerKind::kAdagrad ? spec.initial_accumulator : 0.0f;
  for (uint32_t j = 0; j < n; ++j) state[j] = first;
}

// Cloned per ISA (util/clones.h), the optimizers inlined into each clone. This file is built
// with -ffp-contract=off (no fused multiply-add) and -fno-math-errno, so every clone rounds
// like scalar float math (PsKernels.OptimizersRoundLikeScalarFloatMath).
WEFT_PS_HOT_CLONES void applyOptimizer(const OptimizerSpec& spec, uint32_t dim, uint32_t step,
                                       const float* grad, float* values, float* state) {
  switch (spec.kind) {
    case OptimizerKind::kSgd: sgd(spec, dim, grad, values); return;
    case OptimizerKind::kAdagrad: adagrad(spec, dim, grad, values, state); return;
    case OptimizerKind::kAdam: adam(spec, dim, step, grad, values, state, state + dim); return;
    case OptimizerKind::kFtrl: ftrl(spec, dim, grad, values, state, state + dim); return;
  }
}

}  // namespace weft::ps
