// Element types and reduction operators of the collectives.
//
// Contract: plain values and pure functions; every function here is thread-safe. Names are the
// short lower-case ones the tools accept and print ("f32", "bf16", "sum", "bxor").
// Bitwise operators (band, bor, bxor) apply to integer types only; validateReduce() says so
// with kInvalidArgument. Avg is a sum followed by a division by the number of contributions
// (see collectives/reduce/reducer.h for the rounding rules).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string_view>

#include "common/result.h"
#include "common/status.h"

namespace weft::coll {

enum class DataType : uint8_t { kI8, kU8, kI32, kU32, kI64, kU64, kF16, kBF16, kF32, kF64 };
enum class ReduceOp : uint8_t { kSum, kProd, kMin, kMax, kAvg, kBand, kBor, kBxor };

inline constexpr size_t kNumDataTypes = 10;
inline constexpr size_t kNumReduceOps = 8;

inline constexpr std::array<DataType, kNumDataTypes> kAllDataTypes = {
    DataType::kI8,  DataType::kU8,  DataType::kI32,  DataType::kU32, DataType::kI64,
    DataType::kU64, DataType::kF16, DataType::kBF16, DataType::kF32, DataType::kF64};
inline constexpr std::array<ReduceOp, kNumReduceOps> kAllReduceOps = {
    ReduceOp::kSum, ReduceOp::kProd, ReduceOp::kMin, ReduceOp::kMax,
    ReduceOp::kAvg, ReduceOp::kBand, ReduceOp::kBor, ReduceOp::kBxor};

// False for values outside the enumerators (e.g. a corrupted wire field).
constexpr bool isValid(DataType t) {
  return static_cast<size_t>(t) < kNumDataTypes;
}
constexpr bool isValid(ReduceOp op) {
  return static_cast<size_t>(op) < kNumReduceOps;
}

// Bytes per element; 0 for an invalid type.
constexpr size_t sizeOf(DataType t) {
  switch (t) {
    case DataType::kI8:
    case DataType::kU8: return 1;
    case DataType::kF16:
    case DataType::kBF16: return 2;
    case DataType::kI32:
    case DataType::kU32:
    case DataType::kF32: return 4;
    case DataType::kI64:
    case DataType::kU64:
    case DataType::kF64: return 8;
  }
  return 0;
}

constexpr bool isFloat(DataType t) {
  return t == DataType::kF16 || t == DataType::kBF16 || t == DataType::kF32 || t == DataType::kF64;
}
constexpr bool isInteger(DataType t) {
  return isValid(t) && !isFloat(t);
}
constexpr bool isBitwise(ReduceOp op) {
  return op == ReduceOp::kBand || op == ReduceOp::kBor || op == ReduceOp::kBxor;
}

// "i8" ... "f64", "sum" ... "bxor"; "invalid(<n>)" for values outside the enumerators.
std::string_view toString(DataType t);
std::string_view toString(ReduceOp op);
std::ostream& operator<<(std::ostream& os, DataType t);
std::ostream& operator<<(std::ostream& os, ReduceOp op);

// Parses the names above (exact, lower case); the error lists the accepted names.
Result<DataType> parseDataType(std::string_view name);
Result<ReduceOp> parseReduceOp(std::string_view name);

// OK when `op` can reduce elements of type `t`; kInvalidArgument naming both otherwise
// (bitwise op on a float type, or a value outside the enumerators).
Status validateReduce(DataType t, ReduceOp op);

}  // namespace weft::coll
