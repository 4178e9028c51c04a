#include "collectives/api/types.h"

#include <string>

namespace weft::coll {
namespace {

constexpr std::array<std::string_view, kNumDataTypes> kDataTypeNames = {
    "i8", "u8", "i32", "u32", "i64", "u64", "f16", "bf16", "f32", "f64"};
constexpr std::array<std::string_view, kNumReduceOps> kReduceOpNames = {
    "sum", "prod", "min", "max", "avg", "band", "bor", "bxor"};

template <size_t N>
std::string joinNames(const std::array<std::string_view, N>& names) {
  std::string out;
  for (std::string_view n : names) {
    // Two appends, not operator+: GCC 12 at -O3 reports a false -Wrestrict on the latter.
    if (!out.empty()) out += ' ';
    out += n;
  }
  return out;
}

}  // namespace

std::string_view toString(DataType t) {
  return isValid(t) ? kDataTypeNames[static_cast<size_t>(t)] : "invalid";
}

std::string_view toString(ReduceOp op) {
  return isValid(op) ? kReduceOpNames[static_cast<size_t>(op)] : "invalid";
}

std::ostream& operator<<(std::ostream& os, DataType t) {
  if (isValid(t)) return os << toString(t);
  return os << "invalid(" << static_cast<int>(t) << ")";
}

std::ostream& operator<<(std::ostream& os, ReduceOp op) {
  if (isValid(op)) return os << toString(op);
  return os << "invalid(" << static_cast<int>(op) << ")";
}

Result<DataType> parseDataType(std::string_view name) {
  for (DataType t : kAllDataTypes) {
    if (toString(t) == name) return t;
  }
  return WEFT_ERROR(StatusCode::kInvalidArgument, "unknown data type '", name,
                    "'; expected one of: ", joinNames(kDataTypeNames));
}

Result<ReduceOp> parseReduceOp(std::string_view name) {
  for (ReduceOp op : kAllReduceOps) {
    if (toString(op) == name) return op;
  }
  return WEFT_ERROR(StatusCode::kInvalidArgument, "unknown reduce op '", name,
                    "'; expected one of: ", joinNames(kReduceOpNames));
}

Status validateReduce(DataType t, ReduceOp op) {
  if (!isValid(t) || !isValid(op)) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "reduce: invalid data type ", t,
                      " or reduce op ", op);
  }
  if (isBitwise(op) && !isInteger(t)) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "reduce: op ", op,
                      " is bitwise and needs an integer type, got ", t)
        .withHint("band/bor/bxor apply to i8 u8 i32 u32 i64 u64");
  }
  return Status::ok();
}

}  // namespace weft::coll
