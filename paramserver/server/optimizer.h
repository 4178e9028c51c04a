// Server-side update rules, applied to one row with the (summed) gradient of one request.
//
//   SGD       w -= lr * (g + l2 * w)
//   Adagrad   acc += g^2;  w -= lr * g / (sqrt(acc) + eps)            (acc starts at
//             initial_accumulator)
//   Adam      m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  t = row's update count;
//             w -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
//             (t counts this row's updates: the usual "lazy" sparse Adam)
//   FTRL      sigma = (sqrt(n + g^2) - sqrt(n)) / lr;  z += g - sigma w;  n += g^2;
//             w = 0 if |z| <= l1, else -(z - sign(z) l1) / ((ftrl_beta + sqrt(n)) / lr + l2)
//             (McMahan et al., "Ad Click Prediction", KDD 2013; lr is alpha). FTRL
//             recomputes w from z and n, so a non-zero initializer only shows until the
//             row's first update.
//
// State layout per row (after the values, see row_layout.h): Adagrad acc[dim]; Adam
// m[dim] v[dim]; FTRL z[dim] n[dim].
//
// Contract: pure functions over caller-owned arrays, which must not overlap.
#pragma once

#include <cstdint>

#include "paramserver/table_spec.h"

namespace weft::ps {

// Initial optimizer state of a new row.
void initOptimizerState(const OptimizerSpec& spec, uint32_t dim, float* state);

// One update. `step` is the row's update count including this one (>= 1).
void applyOptimizer(const OptimizerSpec& spec, uint32_t dim, uint32_t step, const float* grad,
                    float* values, float* state);

}  // namespace weft::ps
