// anyNonFinite: does a buffer of f32 values (any alignment) hold a NaN or an infinity?
//
// The scan runs on every push (client and server check each gradient), so it is written to
// vectorize: no branch, no float compare, just integer ops on the bits. A float is NaN or
// +-Inf exactly when its exponent bits are all ones; with the sign cleared, adding one to
// the exponent field then carries into bit 31, so OR-ing those sums over the buffer leaves
// bit 31 set iff some element is non-finite. Compiled for AVX-512, AVX2 and SSE2, picked
// by the CPU (util/clones.h).
//
// Contract: pure function, any thread; `bytes` holds `count` little-endian f32 values.
#pragma once

#include <cstddef>
#include <cstdint>

namespace weft::ps {

bool anyNonFinite(const uint8_t* bytes, size_t count);

}  // namespace weft::ps
