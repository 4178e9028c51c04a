// CUDA reduction kernels; see reduce.h for the contract (bit-identical to the CPU kernels).
#include <cuda_fp16.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "gpu/device_buffer.h"
#include "gpu/memory_type.h"
#include "gpu/reduce.h"

namespace weft::gpu {
namespace {

// Everything below up to the kernels is __host__ __device__: the kernels run it on the GPU,
// and reduceOnHost() runs the very same code on the CPU so that CI (no GPU) checks the
// element logic and the head / vector / tail split against the CPU kernels.
#define WEFT_HD __host__ __device__ __forceinline__

// ---- Bit casts and IEEE operations rounded to nearest even, never contracted ----------------

// memcpy is the portable bit cast; nvcc turns it into a register move.
template <class To, class From>
WEFT_HD To bitCast(From v) {
  static_assert(sizeof(To) == sizeof(From));
  To t;
  memcpy(&t, &v, sizeof t);
  return t;
}
template <class F>
using BitsOf = std::conditional_t<sizeof(F) == 4, uint32_t, uint64_t>;
template <class F>
WEFT_HD BitsOf<F> bitsOf(F v) {
  return bitCast<BitsOf<F>>(v);
}
WEFT_HD float asFloat(uint32_t b) {
  return bitCast<float>(b);
}

#ifdef __CUDA_ARCH__
WEFT_HD float addRn(float a, float b) {
  return __fadd_rn(a, b);
}
WEFT_HD double addRn(double a, double b) {
  return __dadd_rn(a, b);
}
WEFT_HD float mulRn(float a, float b) {
  return __fmul_rn(a, b);
}
WEFT_HD double mulRn(double a, double b) {
  return __dmul_rn(a, b);
}
WEFT_HD float divRn(float a, float b) {
  return __fdiv_rn(a, b);
}
WEFT_HD double divRn(double a, double b) {
  return __ddiv_rn(a, b);
}
#else
template <class F>
WEFT_HD F addRn(F a, F b) {
  return a + b;
}
template <class F>
WEFT_HD F mulRn(F a, F b) {
  return a * b;
}
template <class F>
WEFT_HD F divRn(F a, F b) {
  return a / b;
}
#endif
WEFT_HD float quietNan(float) {
  return asFloat(0x7FC00000u);
}
WEFT_HD double quietNan(double) {
  return bitCast<double>(0x7FF8000000000000ull);
}
template <class F>
WEFT_HD F canonicalNan(F r) {
  return r != r ? quietNan(r) : r;
}

// ---- f16 / bf16 conversions: collectives/reduce/half.h, line for line ------------------------

WEFT_HD float halfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) {  // inf, or NaN made quiet
    const uint32_t quiet = mant != 0 ? 0x00400000u : 0u;
    return asFloat(sign | 0x7F800000u | quiet | (mant << 13));
  }
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in float
    const float magnitude = mulRn(static_cast<float>(mant), 0x1p-24f);
    return sign != 0 ? -magnitude : magnitude;
  }
  return asFloat(sign | ((exp + 112u) << 23) | (mant << 13));
}

WEFT_HD uint16_t floatToHalf(float f) {
  const uint32_t x = bitsOf(f);
  const auto sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7FFFFFFFu;
  if (ax > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u | ((ax >> 13) & 0x3FFu));
  if (ax >= 0x477FF000u) return sign | 0x7C00u;
  if (ax >= 0x38800000u) {
    const uint32_t rounded = ax + 0xFFFu + ((ax >> 13) & 1u);
    return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
  }
  const uint32_t shift = 126u - (ax >> 23);
  if (shift > 24) return sign;
  const uint32_t m = (ax & 0x7FFFFFu) | 0x800000u;
  uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u);
  const uint32_t halfway = 1u << (shift - 1);
  if (rem > halfway || (rem == halfway && (q & 1u) != 0)) ++q;
  return static_cast<uint16_t>(sign | q);
}

WEFT_HD float bf16ToFloat(uint16_t h) {
  return asFloat(static_cast<uint32_t>(h) << 16);
}

WEFT_HD uint16_t floatToBf16(float f) {
  const uint32_t x = bitsOf(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
  return static_cast<uint16_t>((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

// On the device, the hardware conversions (cvt.f32.f16, cvt.rn.f16.f32: exact and
// round-to-nearest-even with subnormals, like half.h) for everything but NaN, whose
// quieting and payload follow half.h's rule in software. The host emulation of the kernel
// (GpuReduceHost) runs the software path for every value.
struct F16Conv {
  WEFT_HD static float toFloat(uint16_t h) {
#ifdef __CUDA_ARCH__
    if ((h & 0x7C00u) != 0x7C00u || (h & 0x3FFu) == 0) return __half2float(__ushort_as_half(h));
#endif
    return halfToFloat(h);
  }
  WEFT_HD static uint16_t fromFloat(float f) {
#ifdef __CUDA_ARCH__
    if (f == f) return __half_as_ushort(__float2half_rn(f));
#endif
    return floatToHalf(f);
  }
};
struct Bf16Conv {
  WEFT_HD static float toFloat(uint16_t h) { return bf16ToFloat(h); }
  WEFT_HD static uint16_t fromFloat(float f) { return floatToBf16(f); }
};

// ---- Operators on one element (the CPU's kernel_ops.h) --------------------------------------

struct Add {
  template <class V>
  WEFT_HD static V apply(V a, V b) {
    return static_cast<V>(a + b);
  }
};
struct Mul {
  template <class V>
  WEFT_HD static V apply(V a, V b) {
    return static_cast<V>(a * b);
  }
};
struct IntMin {
  template <class V>
  WEFT_HD static V apply(V a, V b) {
    return a < b ? a : b;
  }
};
struct IntMax {
  template <class V>
  WEFT_HD static V apply(V a, V b) {
    return a > b ? a : b;
  }
};
struct BitAnd {
  template <class V>
  WEFT_HD static V apply(V a, V b) {
    return static_cast<V>(a & b);
  }
};
struct BitOr {
  template <class V>
  WEFT_HD static V apply(V a, V b) {
    return static_cast<V>(a | b);
  }
};
struct BitXor {
  template <class V>
  WEFT_HD static V apply(V a, V b) {
    return static_cast<V>(a ^ b);
  }
};
struct FloatAdd {
  template <class F>
  WEFT_HD static F apply(F a, F b) {
    return canonicalNan(addRn(a, b));
  }
};
struct FloatMul {
  template <class F>
  WEFT_HD static F apply(F a, F b) {
    return canonicalNan(mulRn(a, b));
  }
};
// NaN if either input is NaN; min(-0, +0) = -0 (the OR of the bits of two equal values).
struct FloatMin {
  template <class F>
  WEFT_HD static F apply(F a, F b) {
    const F lo = a < b ? a : b;
    const F r = a == b ? bitCast<F>(bitsOf(a) | bitsOf(b)) : lo;
    return (a != a || b != b) ? quietNan(a) : r;
  }
};
// NaN if either input is NaN; max(-0, +0) = +0 (the AND of the bits of two equal values).
struct FloatMax {
  template <class F>
  WEFT_HD static F apply(F a, F b) {
    const F hi = a > b ? a : b;
    const F r = a == b ? bitCast<F>(bitsOf(a) & bitsOf(b)) : hi;
    return (a != a || b != b) ? quietNan(a) : r;
  }
};

// ---- Elements: the stored type and how one pair combines ------------------------------------

// Integers: Op on U (sum/prod/bitwise wrap on the unsigned twin) or on S itself (min/max).
template <class S, class U, class Op>
struct IntElem {
  using Storage = S;
  WEFT_HD static S apply(S a, S b) {
    return static_cast<S>(Op::apply(static_cast<U>(a), static_cast<U>(b)));
  }
};
template <class F, class Op>
struct FloatElem {
  using Storage = F;
  WEFT_HD static F apply(F a, F b) { return Op::apply(a, b); }
};
template <class Conv, class Op>
struct HalfElem {
  using Storage = uint16_t;
  WEFT_HD static uint16_t apply(uint16_t a, uint16_t b) {
    return Conv::fromFloat(Op::apply(Conv::toFloat(a), Conv::toFloat(b)));
  }
};

// ---- Kernels: each thread runs a slice (tid, stride); reduceOnHost() runs every slice ------

constexpr unsigned kThreads = 256;
constexpr size_t kMaxBlocks = 16384;
constexpr size_t kVecBytes = 16;

// Elements [head, head + nvec * kPer) move as 16-byte vectors; the rest one at a time.
template <class E>
WEFT_HD void reduceSlice(typename E::Storage* dst, const typename E::Storage* src, size_t count,
                         size_t head, size_t nvec, size_t tid, size_t stride) {
  using T = typename E::Storage;
  constexpr size_t kPer = kVecBytes / sizeof(T);
  union Pack {
    uint4 v;
    T e[kPer];
  };
  auto* d4 = reinterpret_cast<uint4*>(dst + head);
  const auto* s4 = reinterpret_cast<const uint4*>(src + head);
  for (size_t i = tid; i < nvec; i += stride) {
    Pack a;
    Pack b;
    a.v = d4[i];
    b.v = s4[i];
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
    for (size_t k = 0; k < kPer; ++k) a.e[k] = E::apply(a.e[k], b.e[k]);
    d4[i] = a.v;
  }
  const size_t vecEnd = head + nvec * kPer;
  const size_t scalars = head + (count - vecEnd);
  for (size_t i = tid; i < scalars; i += stride) {
    const size_t j = i < head ? i : vecEnd + (i - head);
    dst[j] = E::apply(dst[j], src[j]);
  }
}

template <class E>
__global__ void reduceKernel(typename E::Storage* dst, const typename E::Storage* src, size_t count,
                             size_t head, size_t nvec) {
  reduceSlice<E>(dst, src, count, head, nvec,
                 static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x,
                 static_cast<size_t>(gridDim.x) * blockDim.x);
}

// Average: integers by truncating division in 64 bits, floats by one IEEE division, halves
// in f32 rounded back once.
template <class T, class Wide>
struct IntAvg {
  using Storage = T;
  using Divisor = Wide;
  WEFT_HD static T apply(T v, Wide n) { return static_cast<T>(static_cast<Wide>(v) / n); }
};
template <class F>
struct FloatAvg {
  using Storage = F;
  using Divisor = F;
  WEFT_HD static F apply(F v, F n) { return canonicalNan(divRn(v, n)); }
};
template <class Conv>
struct HalfAvg {
  using Storage = uint16_t;
  using Divisor = float;
  WEFT_HD static uint16_t apply(uint16_t v, float n) {
    return Conv::fromFloat(canonicalNan(divRn(Conv::toFloat(v), n)));
  }
};

template <class A>
WEFT_HD void finalizeSlice(typename A::Storage* p, size_t count, typename A::Divisor n, size_t tid,
                           size_t stride) {
  for (size_t i = tid; i < count; i += stride) p[i] = A::apply(p[i], n);
}

template <class A>
__global__ void finalizeKernel(typename A::Storage* p, size_t count, typename A::Divisor n) {
  finalizeSlice<A>(p, count, n, static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x,
                   static_cast<size_t>(gridDim.x) * blockDim.x);
}

// ---- Host side -------------------------------------------------------------------------------

unsigned blocksFor(size_t work) {
  return static_cast<unsigned>(std::clamp<size_t>((work + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

Status launched(const char* what, size_t count, DataType type, ReduceOp op) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return Status::ok();
  return WEFT_ERROR(StatusCode::kIoError, what, " launch (", count, " elements of type #",
                    static_cast<int>(type), ", op #", static_cast<int>(op),
                    ") failed: ", cudaErrorText(e));
}

struct Args {
  void* dst;
  const void* src;
  size_t count;
  cudaStream_t stream;
  size_t hostThreads;  // > 0: run the slices on the CPU as that many emulated GPU threads
};

template <class E>
void launchReduce(const Args& a) {
  using T = typename E::Storage;
  constexpr size_t kPer = kVecBytes / sizeof(T);
  const auto d = reinterpret_cast<uintptr_t>(a.dst);
  const auto s = reinterpret_cast<uintptr_t>(a.src);
  size_t head = a.count;  // no vector part unless dst and src share their misalignment
  size_t nvec = 0;
  if (d % kVecBytes == s % kVecBytes) {
    head = std::min(a.count, ((kVecBytes - d % kVecBytes) % kVecBytes) / sizeof(T));
    nvec = (a.count - head) / kPer;
  }
  auto* dst = static_cast<T*>(a.dst);
  const auto* src = static_cast<const T*>(a.src);
  if (a.hostThreads > 0) {
    for (size_t t = 0; t < a.hostThreads; ++t) {
      reduceSlice<E>(dst, src, a.count, head, nvec, t, a.hostThreads);
    }
    return;
  }
  const size_t scalars = a.count - nvec * kPer;
  const unsigned blocks = blocksFor(std::max(nvec, scalars));
  reduceKernel<E><<<blocks, kThreads, 0, a.stream>>>(dst, src, a.count, head, nvec);
}

template <class A>
void launchFinalize(const Args& a, size_t n) {
  auto* p = static_cast<typename A::Storage*>(a.dst);
  const auto divisor = static_cast<typename A::Divisor>(n);
  if (a.hostThreads > 0) {
    for (size_t t = 0; t < a.hostThreads; ++t)
      finalizeSlice<A>(p, a.count, divisor, t, a.hostThreads);
    return;
  }
  finalizeKernel<A><<<blocksFor(a.count), kThreads, 0, a.stream>>>(p, a.count, divisor);
}

template <class S, class U>
void dispatchInt(ReduceOp op, const Args& a) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg: return launchReduce<IntElem<S, U, Add>>(a);
    case ReduceOp::kProd: return launchReduce<IntElem<S, U, Mul>>(a);
    case ReduceOp::kMin: return launchReduce<IntElem<S, S, IntMin>>(a);
    case ReduceOp::kMax: return launchReduce<IntElem<S, S, IntMax>>(a);
    case ReduceOp::kBand: return launchReduce<IntElem<S, U, BitAnd>>(a);
    case ReduceOp::kBor: return launchReduce<IntElem<S, U, BitOr>>(a);
    case ReduceOp::kBxor: return launchReduce<IntElem<S, U, BitXor>>(a);
  }
}

template <template <class, class> class Elem, class Arg>
void dispatchFloat(ReduceOp op, const Args& a) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg: return launchReduce<Elem<Arg, FloatAdd>>(a);
    case ReduceOp::kProd: return launchReduce<Elem<Arg, FloatMul>>(a);
    case ReduceOp::kMin: return launchReduce<Elem<Arg, FloatMin>>(a);
    case ReduceOp::kMax: return launchReduce<Elem<Arg, FloatMax>>(a);
    default: return;  // bitwise: rejected by validate()
  }
}

void dispatchReduce(DataType type, ReduceOp op, const Args& a) {
  switch (type) {
    case DataType::kI8: return dispatchInt<int8_t, uint8_t>(op, a);
    case DataType::kU8: return dispatchInt<uint8_t, uint8_t>(op, a);
    case DataType::kI32: return dispatchInt<int32_t, uint32_t>(op, a);
    case DataType::kU32: return dispatchInt<uint32_t, uint32_t>(op, a);
    case DataType::kI64: return dispatchInt<int64_t, uint64_t>(op, a);
    case DataType::kU64: return dispatchInt<uint64_t, uint64_t>(op, a);
    case DataType::kF16: return dispatchFloat<HalfElem, F16Conv>(op, a);
    case DataType::kBF16: return dispatchFloat<HalfElem, Bf16Conv>(op, a);
    case DataType::kF32: return dispatchFloat<FloatElem, float>(op, a);
    case DataType::kF64: return dispatchFloat<FloatElem, double>(op, a);
  }
}

void dispatchFinalize(DataType type, const Args& a, size_t n) {
  switch (type) {
    case DataType::kI8: return launchFinalize<IntAvg<int8_t, int64_t>>(a, n);
    case DataType::kU8: return launchFinalize<IntAvg<uint8_t, uint64_t>>(a, n);
    case DataType::kI32: return launchFinalize<IntAvg<int32_t, int64_t>>(a, n);
    case DataType::kU32: return launchFinalize<IntAvg<uint32_t, uint64_t>>(a, n);
    case DataType::kI64: return launchFinalize<IntAvg<int64_t, int64_t>>(a, n);
    case DataType::kU64: return launchFinalize<IntAvg<uint64_t, uint64_t>>(a, n);
    case DataType::kF16: return launchFinalize<HalfAvg<F16Conv>>(a, n);
    case DataType::kBF16: return launchFinalize<HalfAvg<Bf16Conv>>(a, n);
    case DataType::kF32: return launchFinalize<FloatAvg<float>>(a, n);
    case DataType::kF64: return launchFinalize<FloatAvg<double>>(a, n);
  }
}

constexpr std::array<const char*, coll::kNumDataTypes> kTypeNames = {
    "i8", "u8", "i32", "u32", "i64", "u64", "f16", "bf16", "f32", "f64"};
constexpr std::array<const char*, coll::kNumReduceOps> kOpNames = {"sum", "prod", "min", "max",
                                                                   "avg", "band", "bor", "bxor"};

Status validateTypeOp(const char* fn, DataType type, ReduceOp op) {
  if (!coll::isValid(type) || !coll::isValid(op)) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, fn, ": invalid data type #",
                      static_cast<int>(type), " or reduce op #", static_cast<int>(op));
  }
  if (coll::isBitwise(op) && coll::isFloat(type)) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, fn, ": ", kOpNames[static_cast<size_t>(op)],
                      " applies to integer types only, not ",
                      kTypeNames[static_cast<size_t>(type)]);
  }
  return Status::ok();
}

// The buffer must be device (or managed) memory of the current device, element-aligned.
Status checkPointer(const char* fn, const char* what, const void* p, size_t count, DataType type) {
  const PointerInfo info = pointerInfo(p);
  const size_t elem = coll::sizeOf(type);
  int current = -1;
  cudaGetDevice(&current);
  if (!isDeviceAccessible(info.type)) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, fn, ": ", what, " ", p, " (", count, " x ",
                      kTypeNames[static_cast<size_t>(type)], ") is ", toString(info.type),
                      " memory, not CUDA device or managed memory");
  }
  if (info.type == MemoryType::kCudaDevice && info.device != current) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, fn, ": ", what, " ", p,
                      " lives on CUDA device ", info.device, " but the current device is ", current)
        .withHint("cudaSetDevice() to the buffer's device first");
  }
  if (reinterpret_cast<uintptr_t>(p) % elem != 0) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, fn, ": ", what, " ", p, " is not aligned to ",
                      elem, " bytes (", kTypeNames[static_cast<size_t>(type)], ")");
  }
  return Status::ok();
}

}  // namespace

Status reduce(void* dst, const void* src, size_t count, DataType type, ReduceOp op,
              cudaStream_t stream) {
  WEFT_RETURN_IF_ERROR(validateTypeOp("gpu::reduce", type, op));
  if (count == 0) return Status::ok();
  WEFT_RETURN_IF_ERROR(cudaAvailable());
  WEFT_RETURN_IF_ERROR(checkPointer("gpu::reduce", "dst", dst, count, type));
  WEFT_RETURN_IF_ERROR(checkPointer("gpu::reduce", "src", src, count, type));
  dispatchReduce(type, op, Args{dst, src, count, stream, 0});
  return launched("gpu::reduce", count, type, op);
}

Status finalizeAvg(void* inout, size_t count, DataType type, ReduceOp op, size_t n,
                   cudaStream_t stream) {
  WEFT_RETURN_IF_ERROR(validateTypeOp("gpu::finalizeAvg", type, op));
  if (op != ReduceOp::kAvg || count == 0) return Status::ok();
  if (n == 0) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "gpu::finalizeAvg: n must be >= 1");
  }
  WEFT_RETURN_IF_ERROR(cudaAvailable());
  WEFT_RETURN_IF_ERROR(checkPointer("gpu::finalizeAvg", "buffer", inout, count, type));
  dispatchFinalize(type, Args{inout, nullptr, count, stream, 0}, n);
  return launched("gpu::finalizeAvg", count, type, op);
}

namespace detail {

Status reduceOnHost(void* dst, const void* src, size_t count, DataType type, ReduceOp op,
                    size_t threads) {
  WEFT_RETURN_IF_ERROR(validateTypeOp("gpu::detail::reduceOnHost", type, op));
  if (count == 0) return Status::ok();
  dispatchReduce(type, op, Args{dst, src, count, nullptr, std::max<size_t>(threads, 1)});
  return Status::ok();
}

Status finalizeAvgOnHost(void* inout, size_t count, DataType type, ReduceOp op, size_t n,
                         size_t threads) {
  WEFT_RETURN_IF_ERROR(validateTypeOp("gpu::detail::finalizeAvgOnHost", type, op));
  if (op != ReduceOp::kAvg || count == 0) return Status::ok();
  if (n == 0) return WEFT_ERROR(StatusCode::kInvalidArgument, "finalizeAvgOnHost: n is 0");
  dispatchFinalize(type, Args{inout, nullptr, count, nullptr, std::max<size_t>(threads, 1)}, n);
  return Status::ok();
}

}  // namespace detail
}  // namespace weft::gpu
