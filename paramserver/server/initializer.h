// Per-key row initializers: zeros, uniform(seed, a, b), normal(seed, mean a, stddev b).
//
// Element j of key k gets a value that depends only on (seed, k, j): a hash, not a global
// random stream. So every server, every process and every order of arrival produce the
// same initial row, and a pull of a key without a row can return the value the row would
// have been created with (no row is created by pulls).
//
// Contract: pure; safe from any thread.
#pragma once

#include <cstdint>

#include "paramserver/table_spec.h"

namespace weft::ps {

void initializeRow(const InitializerSpec& spec, uint64_t key, uint32_t dim, float* out);

}  // namespace weft::ps
