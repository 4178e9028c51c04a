// Internal to collectives/reduce/kernels_*.cc: what each reduction does to one element, written
// once for scalars and for GCC vector types, the lanes that read, combine and write elements,
// and the loop and table filler built from them.
//
// A SIMD kernels file includes this header after `#pragma GCC target(...)`, so every function
// here is compiled for that instruction set, and the results match the scalar path bit for bit
// because each lane performs the very same IEEE / integer operations (see reducer.h).
// Two rules keep instruction sets from leaking into other code:
//  - everything is in an anonymous namespace: each kernels file keeps its own copy;
//  - this header includes nothing. Its includer includes, before the pragma: <cstddef>
//    <cstdint> <cstring> <limits> <type_traits> <utility>, half.h and kernel_table.h.

namespace weft::coll::detail {
namespace {

// ---- Types ---------------------------------------------------------------------------------

// A GCC vector of W bytes of T.
template <class T, size_t W>
struct VecOf {
  typedef T type __attribute__((vector_size(W)));
};
template <class T, size_t W>
using Vec = typename VecOf<T, W>::type;

template <size_t N>
struct UIntOfSize;
template <>
struct UIntOfSize<4> {
  using type = uint32_t;
};
template <>
struct UIntOfSize<8> {
  using type = uint64_t;
};

// V's element type: V itself for a scalar, the lane type for a vector.
template <class V>
auto elementProbe() {
  if constexpr (std::is_arithmetic_v<V>) {
    return V{};
  } else {
    return std::remove_cvref_t<decltype(std::declval<V&>()[0])>{};
  }
}
template <class V>
using ElemOf = decltype(elementProbe<V>());

// Reinterprets a float scalar or vector as unsigned integers of the same shape.
template <class V>
auto toBits(V v) {
  using U = typename UIntOfSize<sizeof(ElemOf<V>)>::type;
  if constexpr (std::is_arithmetic_v<V>) {
    return __builtin_bit_cast(U, v);
  } else {
    return __builtin_bit_cast(Vec<U, sizeof(V)>, v);
  }
}

template <class V, class B>
V fromBits(B bits) {
  return __builtin_bit_cast(V, bits);
}

// ---- Operators (integers) ------------------------------------------------------------------
// Sum and prod are only instantiated with unsigned types: they wrap, also for signed data.

struct Add {
  template <class V>
  static V apply(V a, V b) {
    return a + b;
  }
};
struct Mul {
  template <class V>
  static V apply(V a, V b) {
    return a * b;
  }
};
struct IntMin {
  template <class V>
  static V apply(V a, V b) {
    return a < b ? a : b;
  }
};
struct IntMax {
  template <class V>
  static V apply(V a, V b) {
    return a > b ? a : b;
  }
};
struct BitAnd {
  template <class V>
  static V apply(V a, V b) {
    return a & b;
  }
};
struct BitOr {
  template <class V>
  static V apply(V a, V b) {
    return a | b;
  }
};
struct BitXor {
  template <class V>
  static V apply(V a, V b) {
    return a ^ b;
  }
};

// ---- Operators (floats): every NaN result is the canonical quiet NaN ----------------------

template <class V>
V canonicalNan(V r) {
  return r != r ? std::numeric_limits<ElemOf<V>>::quiet_NaN() : r;
}

struct FloatAdd {
  template <class V>
  static V apply(V a, V b) {
    return canonicalNan(a + b);
  }
};
struct FloatMul {
  template <class V>
  static V apply(V a, V b) {
    return canonicalNan(a * b);
  }
};
// NaN if either input is NaN; min(-0, +0) = -0 (the OR of the bits of two equal values).
struct FloatMin {
  template <class V>
  static V apply(V a, V b) {
    const V lo = a < b ? a : b;
    const V r = a == b ? fromBits<V>(toBits(a) | toBits(b)) : lo;
    return ((a != a) | (b != b)) ? std::numeric_limits<ElemOf<V>>::quiet_NaN() : r;
  }
};
// NaN if either input is NaN; max(-0, +0) = +0 (the AND of the bits of two equal values).
struct FloatMax {
  template <class V>
  static V apply(V a, V b) {
    const V hi = a > b ? a : b;
    const V r = a == b ? fromBits<V>(toBits(a) & toBits(b)) : hi;
    return ((a != a) | (b != b)) ? std::numeric_limits<ElemOf<V>>::quiet_NaN() : r;
  }
};

// ---- Lanes: how one step reads, combines and writes elements ------------------------------
// A lane has Elem (the stored type), kCount (elements per step) and
// apply<Op>(out, a, b) for one step. Any alignment is fine.

// For lanes with load() and store(): load both operands, combine, store.
template <class Lane>
struct LoadCombineStore {
  template <class Op>
  static void apply(std::byte* out, const std::byte* a, const std::byte* b) {
    Lane::store(out, Op::apply(Lane::load(a), Lane::load(b)));
  }
};

template <class T>
struct ScalarLane : LoadCombineStore<ScalarLane<T>> {
  using Elem = T;
  static constexpr size_t kCount = 1;
  static T load(const std::byte* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(std::byte* p, T v) { std::memcpy(p, &v, sizeof v); }
};

// f16 and bf16 are combined in f32.
template <float (*kToFloat)(uint16_t), uint16_t (*kFromFloat)(float)>
struct ScalarHalfLane : LoadCombineStore<ScalarHalfLane<kToFloat, kFromFloat>> {
  using Elem = uint16_t;
  static constexpr size_t kCount = 1;
  static float load(const std::byte* p) { return kToFloat(ScalarLane<uint16_t>::load(p)); }
  static void store(std::byte* p, float v) { ScalarLane<uint16_t>::store(p, kFromFloat(v)); }
};
using ScalarF16Lane = ScalarHalfLane<&halfToFloat, &floatToHalf>;
using ScalarBf16Lane = ScalarHalfLane<&bf16ToFloat, &floatToBf16>;

// W bytes of T per step.
template <class T, size_t W>
struct VecLane : LoadCombineStore<VecLane<T, W>> {
  using Elem = T;
  using Value = Vec<T, W>;
  static constexpr size_t kCount = W / sizeof(T);
  static Value load(const std::byte* p) {
    Value v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(std::byte* p, Value v) { std::memcpy(p, &v, sizeof v); }
};

// bf16, W bytes per step and no shuffles: each 32-bit word holds two elements, the low one
// widening to word << 16 and the high one to word & 0xFFFF0000. Both are combined in f32 and
// rounded with the bit operations of floatToBf16(); the two rounded halves make the word.
template <size_t W>
struct Bf16PairLane {
  using Elem = uint16_t;
  using Words = Vec<uint32_t, W>;
  using Floats = Vec<float, W>;
  static constexpr size_t kCount = W / sizeof(uint16_t);
  static constexpr uint32_t kHigh = 0xFFFF0000u;

  template <class Op>
  static void apply(std::byte* out, const std::byte* a, const std::byte* b) {
    const Words x = VecLane<uint32_t, W>::load(a);
    const Words y = VecLane<uint32_t, W>::load(b);
    const Words lo = roundedHigh(Op::apply(widen(x << 16), widen(y << 16)));
    const Words hi = roundedHigh(Op::apply(widen(x & kHigh), widen(y & kHigh)));
    VecLane<uint32_t, W>::store(out, (lo >> 16) | (hi & kHigh));
  }

  static Floats widen(Words w) { return fromBits<Floats>(w); }
  // The bf16 nearest to v (ties to even; NaN made quiet) in the high 16 bits of each word.
  static Words roundedHigh(Floats v) {
    const Words bits = toBits(v);
    return v != v ? (bits | 0x00400000u) : bits + 0x7FFFu + ((bits >> 16) & 1u);
  }
};

// ---- The loop and the table ----------------------------------------------------------------

// out = a op b: whole steps of Lane, then the rest one element at a time with Tail.
template <class Lane, class Tail, class Op>
void applyKernel(void* out, const void* a, const void* b, size_t count) {
  static_assert(sizeof(typename Lane::Elem) == sizeof(typename Tail::Elem));
  constexpr size_t kElem = sizeof(typename Lane::Elem);
  auto* o = static_cast<std::byte*>(out);
  const auto* x = static_cast<const std::byte*>(a);
  const auto* y = static_cast<const std::byte*>(b);
  size_t i = 0;
  for (; i + Lane::kCount <= count; i += Lane::kCount) {
    const size_t at = i * kElem;
    Lane::template apply<Op>(o + at, x + at, y + at);
  }
  for (; i < count; ++i) {
    const size_t at = i * kElem;
    Tail::template apply<Op>(o + at, x + at, y + at);
  }
}

// S is the element type, U its unsigned twin (wrapping arithmetic and bit operations).
template <class Isa, class S, class U>
void fillIntegerKernels(KernelTable& table, DataType type) {
  using Ordered = typename Isa::template Plain<S>;
  using Wrapping = typename Isa::template Plain<U>;
  using OrderedTail = ScalarLane<S>;
  using WrappingTail = ScalarLane<U>;
  table.set(type, ReduceOp::kSum, &applyKernel<Wrapping, WrappingTail, Add>);
  table.set(type, ReduceOp::kAvg, &applyKernel<Wrapping, WrappingTail, Add>);
  table.set(type, ReduceOp::kProd, &applyKernel<Wrapping, WrappingTail, Mul>);
  table.set(type, ReduceOp::kMin, &applyKernel<Ordered, OrderedTail, IntMin>);
  table.set(type, ReduceOp::kMax, &applyKernel<Ordered, OrderedTail, IntMax>);
  table.set(type, ReduceOp::kBand, &applyKernel<Wrapping, WrappingTail, BitAnd>);
  table.set(type, ReduceOp::kBor, &applyKernel<Wrapping, WrappingTail, BitOr>);
  table.set(type, ReduceOp::kBxor, &applyKernel<Wrapping, WrappingTail, BitXor>);
}

template <class Lane, class Tail>
void fillFloatKernels(KernelTable& table, DataType type) {
  table.set(type, ReduceOp::kSum, &applyKernel<Lane, Tail, FloatAdd>);
  table.set(type, ReduceOp::kAvg, &applyKernel<Lane, Tail, FloatAdd>);
  table.set(type, ReduceOp::kProd, &applyKernel<Lane, Tail, FloatMul>);
  table.set(type, ReduceOp::kMin, &applyKernel<Lane, Tail, FloatMin>);
  table.set(type, ReduceOp::kMax, &applyKernel<Lane, Tail, FloatMax>);
}

// Isa names the lanes of one instruction set: `template <class T> using Plain` for integers,
// f32 and f64, and `F16`, `Bf16` for the half types.
template <class Isa>
void fillKernelTable(KernelTable& table) {
  fillIntegerKernels<Isa, int8_t, uint8_t>(table, DataType::kI8);
  fillIntegerKernels<Isa, uint8_t, uint8_t>(table, DataType::kU8);
  fillIntegerKernels<Isa, int32_t, uint32_t>(table, DataType::kI32);
  fillIntegerKernels<Isa, uint32_t, uint32_t>(table, DataType::kU32);
  fillIntegerKernels<Isa, int64_t, uint64_t>(table, DataType::kI64);
  fillIntegerKernels<Isa, uint64_t, uint64_t>(table, DataType::kU64);
  fillFloatKernels<typename Isa::F16, ScalarF16Lane>(table, DataType::kF16);
  fillFloatKernels<typename Isa::Bf16, ScalarBf16Lane>(table, DataType::kBF16);
  fillFloatKernels<typename Isa::template Plain<float>, ScalarLane<float>>(table, DataType::kF32);
  fillFloatKernels<typename Isa::template Plain<double>, ScalarLane<double>>(table, DataType::kF64);
}

}  // namespace
}  // namespace weft::coll::detail
