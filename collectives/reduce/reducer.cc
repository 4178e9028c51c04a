#include "collectives/reduce/reducer.h"

#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <type_traits>

#include "collectives/reduce/half.h"
#include "collectives/reduce/kernel_table.h"

namespace weft::coll {
namespace {

constexpr size_t kNumIsas = 3;

// ---- Instruction set selection -------------------------------------------------------------

bool cpuSupports(KernelIsa isa) {
#if defined(__x86_64__)
  __builtin_cpu_init();  // may run before libgcc's own constructor
  switch (isa) {
    case KernelIsa::kScalar: return true;
    case KernelIsa::kAvx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
    case KernelIsa::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("f16c");
  }
  return false;
#else
  return isa == KernelIsa::kScalar;
#endif
}

// Built once; a SIMD table is filled only when the CPU can run it.
std::array<detail::KernelTable, kNumIsas> buildTables() {
  std::array<detail::KernelTable, kNumIsas> tables;
  detail::fillScalarKernels(tables[static_cast<size_t>(KernelIsa::kScalar)]);
#if defined(__x86_64__)
  if (cpuSupports(KernelIsa::kAvx2)) {
    detail::fillAvx2Kernels(tables[static_cast<size_t>(KernelIsa::kAvx2)]);
  }
  if (cpuSupports(KernelIsa::kAvx512)) {
    detail::fillAvx512Kernels(tables[static_cast<size_t>(KernelIsa::kAvx512)]);
  }
#endif
  return tables;
}

const detail::KernelTable& kernelTable(KernelIsa isa) {
  static const std::array<detail::KernelTable, kNumIsas> tables = buildTables();
  return tables[static_cast<size_t>(isa)];
}

std::atomic<KernelIsa>& activeIsa() {
  static std::atomic<KernelIsa> isa{bestKernelIsa()};
  return isa;
}

// ---- Finalize (avg) ------------------------------------------------------------------------

void finalizeNothing(void*, size_t, size_t) {}

// Truncating division of the wrapped sum, in 64 bits so that n always fits.
template <class T>
void finalizeInteger(void* inout, size_t count, size_t n) {
  using Wide = std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>;
  const auto divisor = static_cast<Wide>(n);
  auto* p = static_cast<std::byte*>(inout);
  for (size_t i = 0; i < count; ++i, p += sizeof(T)) {
    T v;
    std::memcpy(&v, p, sizeof v);
    v = static_cast<T>(static_cast<Wide>(v) / divisor);
    std::memcpy(p, &v, sizeof v);
  }
}

template <class T>
T canonicalNan(T v) {
  return std::isnan(v) ? std::numeric_limits<T>::quiet_NaN() : v;
}

// One IEEE division in the type's own precision (n converted to it).
template <class T>
void finalizeFloat(void* inout, size_t count, size_t n) {
  const auto divisor = static_cast<T>(n);
  auto* p = static_cast<std::byte*>(inout);
  for (size_t i = 0; i < count; ++i, p += sizeof(T)) {
    T v;
    std::memcpy(&v, p, sizeof v);
    v = canonicalNan(v / divisor);
    std::memcpy(p, &v, sizeof v);
  }
}

// f16 / bf16: divided in f32, rounded back once.
template <float (*kToFloat)(uint16_t), uint16_t (*kFromFloat)(float)>
void finalizeHalf(void* inout, size_t count, size_t n) {
  const auto divisor = static_cast<float>(n);
  auto* p = static_cast<std::byte*>(inout);
  for (size_t i = 0; i < count; ++i, p += sizeof(uint16_t)) {
    uint16_t h;
    std::memcpy(&h, p, sizeof h);
    h = kFromFloat(canonicalNan(kToFloat(h) / divisor));
    std::memcpy(p, &h, sizeof h);
  }
}

// Indexed by DataType.
constexpr std::array<FinalizeFn, kNumDataTypes> kAvgFinalizers = {
    &finalizeInteger<int8_t>,
    &finalizeInteger<uint8_t>,
    &finalizeInteger<int32_t>,
    &finalizeInteger<uint32_t>,
    &finalizeInteger<int64_t>,
    &finalizeInteger<uint64_t>,
    &finalizeHalf<&halfToFloat, &floatToHalf>,
    &finalizeHalf<&bf16ToFloat, &floatToBf16>,
    &finalizeFloat<float>,
    &finalizeFloat<double>,
};

Status checkBuffer(const char* what, const void* p, size_t count) {
  if (count > 0 && p == nullptr) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what, ": null buffer for ", count, " elements");
  }
  return Status::ok();
}

}  // namespace

// ---- Reducer -------------------------------------------------------------------------------

Result<Reducer> Reducer::create(DataType type, ReduceOp op) {
  WEFT_RETURN_IF_ERROR(validateReduce(type, op));
  const KernelIsa isa = kernelIsa();
  const ReduceFn fn = kernelTable(isa).at(type, op);
  if (fn == nullptr) {
    return WEFT_ERROR(StatusCode::kInternal, "reduce: no ", toString(isa), " kernel for ", type,
                      " ", op);
  }
  const FinalizeFn finalize =
      op == ReduceOp::kAvg ? kAvgFinalizers[static_cast<size_t>(type)] : &finalizeNothing;
  return Reducer(type, op, fn, finalize);
}

Status reduce(DataType type, ReduceOp op, void* inout, const void* in, size_t count) {
  return reduce(type, op, inout, inout, in, count);
}

Status reduce(DataType type, ReduceOp op, void* out, const void* a, const void* b, size_t count) {
  WEFT_ASSIGN_OR_RETURN(const Reducer reducer, Reducer::create(type, op));
  for (const void* p : {static_cast<const void*>(out), a, b}) {
    WEFT_RETURN_IF_ERROR(checkBuffer("reduce", p, count));
  }
  reducer.reduce(out, a, b, count);
  return Status::ok();
}

Status finalizeReduce(DataType type, ReduceOp op, void* inout, size_t count, size_t n) {
  WEFT_ASSIGN_OR_RETURN(const Reducer reducer, Reducer::create(type, op));
  WEFT_RETURN_IF_ERROR(checkBuffer("reduce finalize", inout, count));
  if (n == 0) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "reduce finalize of ", type, " ", op,
                      ": the number of contributions must be at least 1");
  }
  reducer.finalize(inout, count, n);
  return Status::ok();
}

// ---- Instruction sets ----------------------------------------------------------------------

std::string_view toString(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kScalar: return "scalar";
    case KernelIsa::kAvx2: return "avx2";
    case KernelIsa::kAvx512: return "avx512";
  }
  return "invalid";
}

std::ostream& operator<<(std::ostream& os, KernelIsa isa) {
  return os << toString(isa);
}

KernelIsa bestKernelIsa() {
  static const KernelIsa best = cpuSupports(KernelIsa::kAvx512) ? KernelIsa::kAvx512
                                : cpuSupports(KernelIsa::kAvx2) ? KernelIsa::kAvx2
                                                                : KernelIsa::kScalar;
  return best;
}

KernelIsa kernelIsa() {
  return activeIsa().load(std::memory_order_relaxed);
}

Status setKernelIsa(KernelIsa isa) {
  if (static_cast<size_t>(isa) >= kNumIsas || !cpuSupports(isa)) {
    return WEFT_ERROR(
        StatusCode::kNotSupported, "reduce: kernels for ", toString(isa),
        " need CPU features this machine lacks (best here: ", toString(bestKernelIsa()), ")");
  }
  activeIsa().store(isa, std::memory_order_relaxed);
  return Status::ok();
}

}  // namespace weft::coll
