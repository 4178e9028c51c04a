// Reduction kernels: type and op names, f16/bf16 conversions, every type x op against a serial
// reference, f16/bf16 accuracy against f64, and every SIMD path bit-identical to the scalar one.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "collectives/api/types.h"
#include "collectives/reduce/half.h"
#include "collectives/reduce/reducer.h"

namespace weft::coll {
namespace {

using Bytes = std::vector<std::byte>;

constexpr std::array<size_t, 5> kCounts = {0, 1, 7, 4099, (size_t{1} << 20) + 3};
constexpr std::array<KernelIsa, 3> kAllIsas = {KernelIsa::kScalar, KernelIsa::kAvx2,
                                               KernelIsa::kAvx512};

// Unit roundoff of the half types: results are within u * |exact| (normal range).
constexpr double kF16Roundoff = 0x1p-11;
constexpr double kBf16Roundoff = 0x1p-8;

template <class T>
T load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <class T>
void store(std::byte* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

std::vector<ReduceOp> validOps(DataType t) {
  std::vector<ReduceOp> ops;
  for (ReduceOp op : kAllReduceOps) {
    if (validateReduce(t, op).isOk()) ops.push_back(op);
  }
  return ops;
}

// Makes new Reducers use `isa` for the scope of the object.
class ScopedIsa {
 public:
  explicit ScopedIsa(KernelIsa isa) : old_(kernelIsa()), status_(setKernelIsa(isa)) {}
  ~ScopedIsa() { setKernelIsa(old_).ignore(); }
  ScopedIsa(const ScopedIsa&) = delete;
  ScopedIsa& operator=(const ScopedIsa&) = delete;
  const Status& status() const { return status_; }

 private:
  KernelIsa old_;
  Status status_;
};

void runReduce(DataType t, ReduceOp op, const Bytes& a, const Bytes& b, size_t count, Bytes& out) {
  out.resize(count * sizeOf(t));
  const Status s = reduce(t, op, out.data(), a.data(), b.data(), count);
  EXPECT_TRUE(s.isOk()) << s;
}

Bytes runReduce(DataType t, ReduceOp op, const Bytes& a, const Bytes& b, size_t count) {
  Bytes out;
  runReduce(t, op, a, b, count, out);
  return out;
}

// ---- Test data ---------------------------------------------------------------------------

template <class F>
std::vector<F> floatSpecials() {
  using L = std::numeric_limits<F>;
  return {F(0),
          -F(0),
          L::infinity(),
          -L::infinity(),
          L::quiet_NaN(),
          -L::quiet_NaN(),
          L::signaling_NaN(),
          L::denorm_min(),
          -L::denorm_min(),
          L::min(),
          L::max(),
          L::lowest(),
          F(1),
          F(-1)};
}

// Mostly values in [-4, 4]; every 5th element is random bits (NaN payloads, subnormals, huge
// values), every 97th a special value.
template <class F>
F floatElement(size_t i, std::mt19937_64& rng) {
  using Bits = std::conditional_t<sizeof(F) == 4, uint32_t, uint64_t>;
  static const std::vector<F> specials = floatSpecials<F>();
  if (i % 97 == 0) return specials[rng() % specials.size()];
  if (i % 5 == 0) return std::bit_cast<F>(static_cast<Bits>(rng()));
  return static_cast<F>(std::uniform_real_distribution<double>(-4.0, 4.0)(rng));
}

uint16_t halfElement(DataType t, size_t i, std::mt19937_64& rng) {
  if (i % 5 == 0) return static_cast<uint16_t>(rng());
  const float f = floatElement<float>(i, rng);
  return t == DataType::kF16 ? floatToHalf(f) : floatToBf16(f);
}

Bytes randomElements(DataType t, size_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Bytes out(count * sizeOf(t));
  for (size_t i = 0; i < count; ++i) {
    std::byte* p = out.data() + i * sizeOf(t);
    switch (t) {
      case DataType::kF32: store(p, floatElement<float>(i, rng)); break;
      case DataType::kF64: store(p, floatElement<double>(i, rng)); break;
      case DataType::kF16:
      case DataType::kBF16: store(p, halfElement(t, i, rng)); break;
      default: {
        const uint64_t r = rng();
        std::memcpy(p, &r, sizeOf(t));
      }
    }
  }
  return out;
}

// ---- Serial reference ----------------------------------------------------------------------

template <class T>
T referenceInteger(ReduceOp op, T a, T b) {
  using U = std::make_unsigned_t<T>;
  const auto ua = static_cast<U>(a);
  const auto ub = static_cast<U>(b);
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg: return static_cast<T>(static_cast<U>(ua + ub));
    case ReduceOp::kProd:
      return static_cast<T>(static_cast<U>(static_cast<uint64_t>(ua) * static_cast<uint64_t>(ub)));
    case ReduceOp::kMin: return std::min(a, b);
    case ReduceOp::kMax: return std::max(a, b);
    case ReduceOp::kBand: return static_cast<T>(ua & ub);
    case ReduceOp::kBor: return static_cast<T>(ua | ub);
    case ReduceOp::kBxor: return static_cast<T>(ua ^ ub);
  }
  return 0;
}

// The documented float rules, written independently of the kernels.
template <class F>
F referenceFloat(ReduceOp op, F a, F b) {
  const F nan = std::numeric_limits<F>::quiet_NaN();
  if (op == ReduceOp::kMin || op == ReduceOp::kMax) {
    if (std::isnan(a) || std::isnan(b)) return nan;
    if (a == 0 && b == 0) {
      const bool negative = op == ReduceOp::kMin ? (std::signbit(a) || std::signbit(b))
                                                 : (std::signbit(a) && std::signbit(b));
      return negative ? -F(0) : F(0);
    }
    return op == ReduceOp::kMin ? std::min(a, b) : std::max(a, b);
  }
  const F r = op == ReduceOp::kProd ? a * b : a + b;
  return std::isnan(r) ? nan : r;
}

void referenceElement(DataType t, ReduceOp op, const std::byte* a, const std::byte* b,
                      std::byte* out) {
  switch (t) {
    case DataType::kI8: store(out, referenceInteger(op, load<int8_t>(a), load<int8_t>(b))); break;
    case DataType::kU8: store(out, referenceInteger(op, load<uint8_t>(a), load<uint8_t>(b))); break;
    case DataType::kI32:
      store(out, referenceInteger(op, load<int32_t>(a), load<int32_t>(b)));
      break;
    case DataType::kU32:
      store(out, referenceInteger(op, load<uint32_t>(a), load<uint32_t>(b)));
      break;
    case DataType::kI64:
      store(out, referenceInteger(op, load<int64_t>(a), load<int64_t>(b)));
      break;
    case DataType::kU64:
      store(out, referenceInteger(op, load<uint64_t>(a), load<uint64_t>(b)));
      break;
    case DataType::kF32: store(out, referenceFloat(op, load<float>(a), load<float>(b))); break;
    case DataType::kF64: store(out, referenceFloat(op, load<double>(a), load<double>(b))); break;
    case DataType::kF16:
      store(out, floatToHalf(referenceFloat(op, halfToFloat(load<uint16_t>(a)),
                                            halfToFloat(load<uint16_t>(b)))));
      break;
    case DataType::kBF16:
      store(out, floatToBf16(referenceFloat(op, bf16ToFloat(load<uint16_t>(a)),
                                            bf16ToFloat(load<uint16_t>(b)))));
      break;
  }
}

Bytes referenceReduce(DataType t, ReduceOp op, const Bytes& a, const Bytes& b, size_t count) {
  Bytes out(count * sizeOf(t));
  const size_t n = sizeOf(t);
  for (size_t i = 0; i < count; ++i) {
    referenceElement(t, op, a.data() + i * n, b.data() + i * n, out.data() + i * n);
  }
  return out;
}

// Index of the first differing element, or -1.
long firstMismatch(const Bytes& x, const Bytes& y, size_t elementSize) {
  if (x.size() != y.size()) return 0;
  if (x.empty() || std::memcmp(x.data(), y.data(), x.size()) == 0) return -1;
  for (size_t i = 0; i < x.size(); i += elementSize) {
    if (std::memcmp(x.data() + i, y.data() + i, elementSize) != 0) {
      return static_cast<long>(i / elementSize);
    }
  }
  return -1;
}

std::string hexElement(const Bytes& v, size_t index, size_t elementSize) {
  std::string s = "0x";
  for (size_t k = elementSize; k-- > 0;) {
    static constexpr char kHex[] = "0123456789abcdef";
    const auto byte = static_cast<unsigned>(v[index * elementSize + k]);
    s += kHex[byte >> 4];
    s += kHex[byte & 15];
  }
  return s;
}

// ---- Types and names -----------------------------------------------------------------------

TEST(ReduceTypes, SizesNamesAndParsingRoundTrip) {
  constexpr std::array<size_t, kNumDataTypes> kSizes = {1, 1, 4, 4, 8, 8, 2, 2, 4, 8};
  for (DataType t : kAllDataTypes) {
    EXPECT_EQ(sizeOf(t), kSizes[static_cast<size_t>(t)]) << t;
    auto parsed = parseDataType(toString(t));
    ASSERT_TRUE(parsed.isOk()) << parsed.status();
    EXPECT_EQ(*parsed, t);
  }
  for (ReduceOp op : kAllReduceOps) {
    auto parsed = parseReduceOp(toString(op));
    ASSERT_TRUE(parsed.isOk()) << parsed.status();
    EXPECT_EQ(*parsed, op);
  }
  EXPECT_EQ(toString(DataType::kBF16), "bf16");
  EXPECT_EQ(toString(ReduceOp::kBxor), "bxor");
  EXPECT_TRUE(isFloat(DataType::kF16));
  EXPECT_TRUE(isInteger(DataType::kU64));
  EXPECT_FALSE(isInteger(DataType::kF64));
}

TEST(ReduceTypes, ParseRejectsUnknownNamesListingTheAcceptedOnes) {
  auto t = parseDataType("float128");
  ASSERT_FALSE(t.isOk());
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find("'float128'"), std::string::npos) << t.status();
  EXPECT_NE(t.status().message().find("bf16"), std::string::npos) << t.status();
  auto op = parseReduceOp("SUM");  // names are exact, lower case
  ASSERT_FALSE(op.isOk());
  EXPECT_NE(op.status().message().find("bxor"), std::string::npos) << op.status();
}

TEST(ReduceTypes, BitwiseOpsNeedIntegerTypesAndTheErrorNamesBoth) {
  for (DataType t : kAllDataTypes) {
    for (ReduceOp op : kAllReduceOps) {
      const Status s = validateReduce(t, op);
      EXPECT_EQ(s.isOk(), !(isBitwise(op) && isFloat(t))) << t << " " << op;
      if (s.isOk()) continue;
      EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
      EXPECT_NE(s.message().find(std::string(toString(t))), std::string::npos) << s;
      EXPECT_NE(s.message().find(std::string(toString(op))), std::string::npos) << s;
    }
  }
  EXPECT_EQ(validOps(DataType::kF32).size(), 5u);
  EXPECT_EQ(validOps(DataType::kI8).size(), 8u);
}

TEST(ReduceTypes, ValuesOutsideTheEnumsAreRejected) {
  const auto badType = static_cast<DataType>(42);
  const auto badOp = static_cast<ReduceOp>(9);
  EXPECT_EQ(sizeOf(badType), 0u);
  EXPECT_EQ(validateReduce(badType, ReduceOp::kSum).code(), StatusCode::kInvalidArgument);
  const Status s = validateReduce(DataType::kF32, badOp);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("invalid(9)"), std::string::npos) << s;
}

// ---- f16 / bf16 conversions ----------------------------------------------------------------

bool isHalfNan(uint16_t h) {
  return (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0;
}
bool isBf16Nan(uint16_t h) {
  return (h & 0x7F80) == 0x7F80 && (h & 0x7F) != 0;
}

TEST(HalfConversion, F16EveryNonNanValueRoundTrips) {
  for (uint32_t h = 0; h <= 0xFFFF; ++h) {
    const auto half = static_cast<uint16_t>(h);
    const float f = halfToFloat(half);
    if (isHalfNan(half)) {
      EXPECT_TRUE(std::isnan(f)) << h;
      EXPECT_TRUE(std::bit_cast<uint32_t>(f) & 0x00400000u) << "quiet " << h;
      EXPECT_TRUE(isHalfNan(floatToHalf(f))) << h;
      continue;
    }
    ASSERT_EQ(floatToHalf(f), half) << "f16 0x" << std::hex << h << " -> " << f;
  }
}

TEST(HalfConversion, F16RoundingCorners) {
  EXPECT_EQ(floatToHalf(1.0f), 0x3C00);
  EXPECT_EQ(floatToHalf(-2.0f), 0xC000);
  EXPECT_EQ(floatToHalf(-0.0f), 0x8000);
  EXPECT_EQ(floatToHalf(1.0f + 0x1p-11f), 0x3C00);      // tie, to even (down)
  EXPECT_EQ(floatToHalf(1.0f + 3 * 0x1p-11f), 0x3C02);  // tie, to even (up)
  EXPECT_EQ(floatToHalf(1.0f + 0x1p-11f + 0x1p-20f), 0x3C01);
  EXPECT_EQ(floatToHalf(65504.0f), 0x7BFF);   // largest finite
  EXPECT_EQ(floatToHalf(65519.99f), 0x7BFF);  // just below the tie
  EXPECT_EQ(floatToHalf(65520.0f), 0x7C00);   // tie with an odd mantissa: overflows to inf
  EXPECT_EQ(floatToHalf(-1e10f), 0xFC00);
  EXPECT_EQ(floatToHalf(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_EQ(floatToHalf(0x1p-14f), 0x0400);  // smallest normal
  EXPECT_EQ(floatToHalf(0x1p-24f), 0x0001);  // smallest subnormal
  EXPECT_EQ(floatToHalf(0x1p-25f), 0x0000);  // tie, to even (zero)
  EXPECT_EQ(floatToHalf(-0x1p-25f), 0x8000);
  EXPECT_EQ(floatToHalf(0x1p-25f * 1.0000001f), 0x0001);
  EXPECT_EQ(floatToHalf(3 * 0x1p-25f), 0x0002);        // tie between 1 and 2: even
  EXPECT_EQ(floatToHalf(1023.5f * 0x1p-24f), 0x0400);  // tie rounds up into the normals
  EXPECT_EQ(floatToHalf(1e-30f), 0x0000);
  EXPECT_EQ(floatToHalf(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(halfToFloat(0x0001), 0x1p-24f);
  EXPECT_EQ(halfToFloat(0x83FF), -1023 * 0x1p-24f);
  EXPECT_EQ(halfToFloat(0x7C00), std::numeric_limits<float>::infinity());
  // NaN: quiet, sign and top payload bits kept.
  EXPECT_EQ(floatToHalf(std::bit_cast<float>(0x7FC00000u)), 0x7E00);
  EXPECT_EQ(floatToHalf(std::bit_cast<float>(0xFF800001u)), 0xFE00);
  EXPECT_EQ(floatToHalf(std::bit_cast<float>(0x7FA02000u)), 0x7F01);
  EXPECT_EQ(std::bit_cast<uint32_t>(halfToFloat(0x7C01)), 0x7FC02000u);
}

TEST(HalfConversion, Bf16RoundTripAndCorners) {
  for (uint32_t h = 0; h <= 0xFFFF; ++h) {
    const auto b = static_cast<uint16_t>(h);
    if (isBf16Nan(b)) {
      EXPECT_TRUE(std::isnan(bf16ToFloat(b))) << h;
      EXPECT_TRUE(isBf16Nan(floatToBf16(bf16ToFloat(b)))) << h;
      continue;
    }
    ASSERT_EQ(floatToBf16(bf16ToFloat(b)), b) << h;
  }
  auto bits = [](uint32_t x) { return floatToBf16(std::bit_cast<float>(x)); };
  EXPECT_EQ(bits(0x3F808000u), 0x3F80);  // tie, to even (down)
  EXPECT_EQ(bits(0x3F818000u), 0x3F82);  // tie, to even (up)
  EXPECT_EQ(bits(0x3F808001u), 0x3F81);
  EXPECT_EQ(bits(0x7F7FFFFFu), 0x7F80);  // float max overflows to inf
  EXPECT_EQ(bits(0xFF7FFFFFu), 0xFF80);
  EXPECT_EQ(bits(0x00018000u), 0x0002);  // subnormals are kept, not flushed
  EXPECT_EQ(bits(0x00008000u), 0x0000);
  EXPECT_EQ(bits(0x80010000u), 0x8001);
  EXPECT_EQ(bits(0x7F800001u), 0x7FC0);  // signaling NaN made quiet
  EXPECT_EQ(bits(0xFFC12345u), 0xFFC1);
  EXPECT_EQ(bf16ToFloat(0x3F80), 1.0f);
}

#if defined(__x86_64__)
__attribute__((target("f16c"))) uint16_t hardwareToHalf(float f) {
  return static_cast<uint16_t>(_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), 0), 0));
}
__attribute__((target("f16c"))) uint32_t hardwareHalfToFloatBits(uint16_t h) {
  return std::bit_cast<uint32_t>(_mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h))));
}

TEST(HalfConversion, F16MatchesTheF16cInstructions) {
  if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "this CPU has no F16C";
  for (uint32_t h = 0; h <= 0xFFFF; ++h) {
    const auto half = static_cast<uint16_t>(h);
    ASSERT_EQ(std::bit_cast<uint32_t>(halfToFloat(half)), hardwareHalfToFloatBits(half)) << h;
  }
  // Float bit patterns in a stride coprime with 2^32, plus every pattern of the 15 low mantissa
  // bits (where rounding happens) for the exponents around the f16 range.
  for (uint64_t x = 0; x <= 0xFFFFFFFFu; x += 4099) {
    const float f = std::bit_cast<float>(static_cast<uint32_t>(x));
    ASSERT_EQ(floatToHalf(f), hardwareToHalf(f)) << std::hex << x;
  }
  for (uint32_t exp = 100; exp <= 145; ++exp) {
    for (uint32_t low = 0; low < (1u << 15); ++low) {
      const uint32_t x = (exp << 23) | ((low * 0x9E37u) & 0x7F8000u) | low;
      const float f = std::bit_cast<float>(x | (low & 1u) << 31);
      ASSERT_EQ(floatToHalf(f), hardwareToHalf(f)) << std::hex << x;
    }
  }
}
#endif

std::vector<KernelIsa> supportedIsas() {
  std::vector<KernelIsa> out;
  for (KernelIsa isa : kAllIsas) {
    if (ScopedIsa(isa).status().isOk()) out.push_back(isa);
  }
  return out;
}

// One reference per (type, op, count), checked against every instruction set this CPU has.
TEST(ReduceKernels, EveryIsaTypeAndOpMatchesTheSerialReference) {
  const std::vector<KernelIsa> isas = supportedIsas();
  for (DataType t : kAllDataTypes) {
    for (size_t count : kCounts) {
      const Bytes a = randomElements(t, count, 1 + count);
      const Bytes b = randomElements(t, count, 2 + count);
      Bytes got;
      for (ReduceOp op : validOps(t)) {
        const Bytes want = referenceReduce(t, op, a, b, count);
        for (KernelIsa isa : isas) {
          ScopedIsa use(isa);
          runReduce(t, op, a, b, count, got);
          const long bad = firstMismatch(got, want, sizeOf(t));
          ASSERT_EQ(bad, -1) << toString(isa) << " " << t << " " << op << " count " << count
                             << ": element " << bad << " a=" << hexElement(a, bad, sizeOf(t))
                             << " b=" << hexElement(b, bad, sizeOf(t)) << " got "
                             << hexElement(got, bad, sizeOf(t)) << " want "
                             << hexElement(want, bad, sizeOf(t));
        }
      }
    }
  }
}

// ---- Kernels, once per instruction set -----------------------------------------------------

class ReduceKernelTest : public ::testing::TestWithParam<KernelIsa> {
 protected:
  void SetUp() override {
    isa_ = std::make_unique<ScopedIsa>(GetParam());
    if (!isa_->status().isOk()) GTEST_SKIP() << isa_->status();
  }
  std::unique_ptr<ScopedIsa> isa_;
};

// f16/bf16 sums are rounded once from an exact f32 sum: within u * |exact| of the f64 sum
// (plus half the smallest f16 subnormal where the result is subnormal).
TEST_P(ReduceKernelTest, HalfSumsAreWithinOneRoundingOfTheF64Sum) {
  for (DataType t : {DataType::kF16, DataType::kBF16}) {
    const bool f16 = t == DataType::kF16;
    auto toFloat = f16 ? &halfToFloat : &bf16ToFloat;
    const double u = f16 ? kF16Roundoff : kBf16Roundoff;
    const size_t count = 4099;
    const Bytes a = randomElements(t, count, 7);
    const Bytes b = randomElements(t, count, 8);
    const Bytes got = runReduce(t, ReduceOp::kSum, a, b, count);
    for (size_t i = 0; i < count; ++i) {
      const double exact = double{toFloat(load<uint16_t>(a.data() + 2 * i))} +
                           double{toFloat(load<uint16_t>(b.data() + 2 * i))};
      const double result = toFloat(load<uint16_t>(got.data() + 2 * i));
      if (!std::isfinite(exact) || !std::isfinite(result)) continue;  // covered by the reference
      EXPECT_LE(std::abs(result - exact), u * std::abs(exact) + 0x1p-25) << t << " at " << i;
    }
  }
}

// The documented finalize rule, written independently of the kernels.
template <class F>
F dividedBy(F sum, size_t n) {
  const F r = sum / static_cast<F>(n);
  return std::isnan(r) ? std::numeric_limits<F>::quiet_NaN() : r;
}

template <class T>
void divideInteger(std::byte* p, size_t n) {
  using Wide = std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>;
  store(p, static_cast<T>(static_cast<Wide>(load<T>(p)) / static_cast<Wide>(n)));
}

void divideElement(DataType t, std::byte* p, size_t n) {
  switch (t) {
    case DataType::kI8: divideInteger<int8_t>(p, n); break;
    case DataType::kU8: divideInteger<uint8_t>(p, n); break;
    case DataType::kI32: divideInteger<int32_t>(p, n); break;
    case DataType::kU32: divideInteger<uint32_t>(p, n); break;
    case DataType::kI64: divideInteger<int64_t>(p, n); break;
    case DataType::kU64: divideInteger<uint64_t>(p, n); break;
    case DataType::kF32: store(p, dividedBy(load<float>(p), n)); break;
    case DataType::kF64: store(p, dividedBy(load<double>(p), n)); break;
    case DataType::kF16: store(p, floatToHalf(dividedBy(halfToFloat(load<uint16_t>(p)), n))); break;
    case DataType::kBF16:
      store(p, floatToBf16(dividedBy(bf16ToFloat(load<uint16_t>(p)), n)));
      break;
  }
}

// avg = sum of n contributions, then finalize(n).
TEST_P(ReduceKernelTest, AvgIsTheSumDividedAfterFinalize) {
  const size_t count = 4099;
  const size_t n = 3;
  for (DataType t : kAllDataTypes) {
    std::vector<Bytes> in;
    for (size_t r = 0; r < n; ++r) in.push_back(randomElements(t, count, 10 + r));
    Bytes acc = in[0];
    for (size_t r = 1; r < n; ++r) {
      ASSERT_TRUE(reduce(t, ReduceOp::kAvg, acc.data(), in[r].data(), count).isOk());
    }
    ASSERT_TRUE(finalizeReduce(t, ReduceOp::kAvg, acc.data(), count, n).isOk());
    Bytes want = referenceReduce(t, ReduceOp::kSum, in[0], in[1], count);
    want = referenceReduce(t, ReduceOp::kSum, want, in[2], count);
    for (size_t i = 0; i < count; ++i) divideElement(t, want.data() + i * sizeOf(t), 3);
    const long bad = firstMismatch(acc, want, sizeOf(t));
    EXPECT_EQ(bad, -1) << t << " element " << bad;
  }
}

TEST_P(ReduceKernelTest, IntegerAvgTruncatesTowardZero) {
  const std::array<int32_t, 4> a = {7, -7, 2147483647, -8};
  const std::array<int32_t, 4> b = {0, 0, 1, 0};  // the third sum wraps to INT32_MIN
  std::array<int32_t, 4> acc = a;
  ASSERT_TRUE(reduce(DataType::kI32, ReduceOp::kAvg, acc.data(), b.data(), 4).isOk());
  ASSERT_TRUE(finalizeReduce(DataType::kI32, ReduceOp::kAvg, acc.data(), 4, 2).isOk());
  EXPECT_EQ(acc, (std::array<int32_t, 4>{3, -3, -1073741824, -4}));
}

TEST_P(ReduceKernelTest, FloatMinMaxFollowTheNanAndSignedZeroRules) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::array<float, 6> a = {-0.0f, 0.0f, nan, 1.0f, -0.0f, 2.0f};
  const std::array<float, 6> b = {0.0f, -0.0f, 1.0f, nan, -0.0f, 2.0f};
  std::array<float, 6> lo{}, hi{};
  ASSERT_TRUE(reduce(DataType::kF32, ReduceOp::kMin, lo.data(), a.data(), b.data(), 6).isOk());
  ASSERT_TRUE(reduce(DataType::kF32, ReduceOp::kMax, hi.data(), a.data(), b.data(), 6).isOk());
  const std::array<uint32_t, 6> wantLo = {0x80000000u, 0x80000000u, 0x7FC00000u,
                                          0x7FC00000u, 0x80000000u, 0x40000000u};
  const std::array<uint32_t, 6> wantHi = {0x00000000u, 0x00000000u, 0x7FC00000u,
                                          0x7FC00000u, 0x80000000u, 0x40000000u};
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(std::bit_cast<uint32_t>(lo[i]), wantLo[i]) << "min at " << i;
    EXPECT_EQ(std::bit_cast<uint32_t>(hi[i]), wantHi[i]) << "max at " << i;
  }
}

// Every offset from a vector boundary, in place on either side, and out of place: same bits.
TEST_P(ReduceKernelTest, UnalignedAndInPlaceBuffersGiveTheSameBits) {
  const size_t count = 4099;
  for (DataType t : kAllDataTypes) {
    const size_t n = sizeOf(t);
    const Bytes a = randomElements(t, count, 21);
    const Bytes b = randomElements(t, count, 22);
    for (ReduceOp op : validOps(t)) {
      const Bytes want = referenceReduce(t, op, a, b, count);
      for (size_t offset : {size_t{1}, size_t{3}, n + 5, size_t{63}}) {
        Bytes x(offset + a.size()), y(offset + 7 + b.size());
        std::memcpy(x.data() + offset, a.data(), a.size());
        std::memcpy(y.data() + offset + 7, b.data(), b.size());
        ASSERT_TRUE(reduce(t, op, x.data() + offset, y.data() + offset + 7, count).isOk());
        EXPECT_EQ(std::memcmp(x.data() + offset, want.data(), want.size()), 0)
            << t << " " << op << " offset " << offset;
      }
      Bytes inB = b;  // out aliases the second operand
      ASSERT_TRUE(reduce(t, op, inB.data(), a.data(), inB.data(), count).isOk());
      EXPECT_EQ(firstMismatch(inB, want, n), -1) << t << " " << op << " in place on b";
    }
  }
}

std::string isaName(const ::testing::TestParamInfo<KernelIsa>& info) {
  return std::string(toString(info.param));
}

INSTANTIATE_TEST_SUITE_P(AllIsas, ReduceKernelTest, ::testing::ValuesIn(kAllIsas), isaName);

// ---- SIMD against scalar, bit for bit ------------------------------------------------------

Bytes everyHalfPattern(size_t repeat) {
  Bytes out(size_t{65536} * repeat * 2);
  for (size_t i = 0; i < 65536 * repeat; ++i) {
    store(out.data() + 2 * i, static_cast<uint16_t>(i * (2 * (i >> 16) + 1)));
  }
  return out;
}

class SimdMatchesScalarTest : public ::testing::TestWithParam<KernelIsa> {};

TEST_P(SimdMatchesScalarTest, EveryTypeAndOpOnAdversarialData) {
  if (!ScopedIsa(GetParam()).status().isOk()) GTEST_SKIP() << toString(GetParam()) << " missing";
  for (DataType t : kAllDataTypes) {
    const bool half = t == DataType::kF16 || t == DataType::kBF16;
    const size_t count = half ? 65536 * 3 : 100003;
    const Bytes a = half ? everyHalfPattern(3) : randomElements(t, count, 31);
    const Bytes b = randomElements(t, count, 32);
    for (ReduceOp op : validOps(t)) {
      Bytes scalar, simd;
      {
        ScopedIsa use(KernelIsa::kScalar);
        scalar = runReduce(t, op, a, b, count);
      }
      {
        ScopedIsa use(GetParam());
        simd = runReduce(t, op, a, b, count);
      }
      const long bad = firstMismatch(simd, scalar, sizeOf(t));
      EXPECT_EQ(bad, -1) << t << " " << op << " element " << bad;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Simd, SimdMatchesScalarTest,
                         ::testing::Values(KernelIsa::kAvx2, KernelIsa::kAvx512), isaName);

// ---- Reducer API ---------------------------------------------------------------------------

TEST(Reducer, CreateValidatesTypeAndOp) {
  auto bad = Reducer::create(DataType::kBF16, ReduceOp::kBxor);
  ASSERT_FALSE(bad.isOk());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("bxor"), std::string::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("bf16"), std::string::npos) << bad.status();

  auto ok = Reducer::create(DataType::kU8, ReduceOp::kAvg);
  ASSERT_TRUE(ok.isOk()) << ok.status();
  EXPECT_EQ(ok->elementSize(), 1u);
  EXPECT_TRUE(ok->needsFinalize());
  EXPECT_FALSE(Reducer::create(DataType::kU8, ReduceOp::kSum)->needsFinalize());
}

TEST(Reducer, InPlaceTwoSourceAndFinalizeForms) {
  auto r = Reducer::create(DataType::kF64, ReduceOp::kAvg);
  ASSERT_TRUE(r.isOk());
  std::array<double, 3> a = {1, 2, 3}, b = {3, 4, 5}, out{};
  r->reduce(out.data(), a.data(), b.data(), 3);
  EXPECT_EQ(out, (std::array<double, 3>{4, 6, 8}));
  r->reduce(a.data(), b.data(), 3);
  EXPECT_EQ(a, out);
  r->finalize(a.data(), 3, 2);
  EXPECT_EQ(a, (std::array<double, 3>{2, 3, 4}));
}

TEST(Reducer, FreeFunctionsRejectNullBuffersAndZeroContributions) {
  EXPECT_TRUE(reduce(DataType::kF32, ReduceOp::kSum, nullptr, nullptr, 0).isOk());
  float x = 1;
  EXPECT_EQ(reduce(DataType::kF32, ReduceOp::kSum, &x, nullptr, 1).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(reduce(DataType::kF32, ReduceOp::kSum, nullptr, &x, &x, 1).code(),
            StatusCode::kInvalidArgument);
  const Status s = finalizeReduce(DataType::kF32, ReduceOp::kAvg, &x, 1, 0);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("at least 1"), std::string::npos) << s;
  EXPECT_TRUE(finalizeReduce(DataType::kF32, ReduceOp::kMax, &x, 1, 5).isOk());
  EXPECT_EQ(x, 1.0f);  // only avg is divided
}

TEST(Reducer, KernelIsaSelection) {
  EXPECT_TRUE(setKernelIsa(KernelIsa::kScalar).isOk());
  EXPECT_EQ(kernelIsa(), KernelIsa::kScalar);
  auto scalar = Reducer::create(DataType::kF32, ReduceOp::kSum);
  EXPECT_TRUE(setKernelIsa(bestKernelIsa()).isOk());
  EXPECT_EQ(kernelIsa(), bestKernelIsa());
  ASSERT_TRUE(scalar.isOk());  // keeps its kernels; still correct
  float a = 1, b = 2;
  scalar->reduce(&a, &b, 1);
  EXPECT_EQ(a, 3.0f);
  const Status bad = setKernelIsa(static_cast<KernelIsa>(7));
  EXPECT_EQ(bad.code(), StatusCode::kNotSupported);
#if !defined(__x86_64__)
  EXPECT_EQ(setKernelIsa(KernelIsa::kAvx2).code(), StatusCode::kNotSupported);
#endif
}

}  // namespace
}  // namespace weft::coll
