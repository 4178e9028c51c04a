// AVX-512 reduction kernels (64-byte vectors; F, BW, DQ, VL), chosen at run time by reducer.cc.
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

// Everything up to pop_options is compiled for AVX-512; nothing above is.
#if defined(__clang__)
#pragma clang attribute push( \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,f16c")
#endif

#include "collectives/reduce/kernel_ops.h"

namespace weft::coll::detail {
namespace {

// f16 through VCVTPH2PS / VCVTPS2PH on zmm: 16 halves <-> 16 floats, rounding to nearest even
// (imm 0). The all-ones maskz forms are the plain instructions; they avoid the unmasked
// intrinsics' undefined source operand, which GCC 12 flags as maybe-uninitialized.
struct F16Avx512Lane : LoadCombineStore<F16Avx512Lane> {
  using Elem = uint16_t;
  using Value = __m512;
  static constexpr size_t kCount = 16;
  static constexpr __mmask16 kAll = 0xFFFF;
  static Value load(const std::byte* p) {
    return _mm512_maskz_cvtph_ps(kAll, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static void store(std::byte* p, Value v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                        _mm512_maskz_cvtps_ph(kAll, v, _MM_FROUND_TO_NEAREST_INT));
  }
};

struct Avx512Isa {
  template <class T>
  using Plain = VecLane<T, 64>;
  using F16 = F16Avx512Lane;
  using Bf16 = Bf16PairLane<64>;
};

void fillAvx512Table(KernelTable& table) {
  fillKernelTable<Avx512Isa>(table);
}

}  // namespace
}  // namespace weft::coll::detail

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace weft::coll::detail {

void fillAvx512Kernels(KernelTable& table) {
  fillAvx512Table(table);
}

}  // namespace weft::coll::detail

#endif  // __x86_64__
