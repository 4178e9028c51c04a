// AVX2 + F16C reduction kernels (32-byte vectors), chosen at run time by reducer.cc.
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "collectives/reduce/half.h"
#include "collectives/reduce/kernel_table.h"

// Everything up to pop_options is compiled for AVX2 + F16C; nothing above is.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,f16c")
#endif

#include "collectives/reduce/kernel_ops.h"

namespace weft::coll::detail {
namespace {

// f16 through F16C: 8 halves <-> 8 floats, rounding to nearest even (imm 0).
struct F16Avx2Lane : LoadCombineStore<F16Avx2Lane> {
  using Elem = uint16_t;
  using Value = __m256;
  static constexpr size_t kCount = 8;
  static Value load(const std::byte* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static void store(std::byte* p, Value v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
};

struct Avx2Isa {
  template <class T>
  using Plain = VecLane<T, 32>;
  using F16 = F16Avx2Lane;
  using Bf16 = Bf16PairLane<32>;
};

void fillAvx2Table(KernelTable& table) {
  fillKernelTable<Avx2Isa>(table);
}

}  // namespace
}  // namespace weft::coll::detail

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace weft::coll::detail {

void fillAvx2Kernels(KernelTable& table) {
  fillAvx2Table(table);
}

}  // namespace weft::coll::detail

#endif  // __x86_64__
