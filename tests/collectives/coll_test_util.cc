#include "tests/collectives/coll_test_util.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include <unistd.h>

#include "collectives/reduce/half.h"

namespace weft::coll::testing {

std::vector<std::pair<std::string, std::string>> rankEnv(double weft_timeout_s) {
  return {{"UCX_TLS", "posix"}, {"WEFT_TIMEOUT", std::to_string(weft_timeout_s)}};
}

weft::testing::RankOptions rankOptions(double timeout_s) {
  weft::testing::RankOptions o;
  o.timeout_s = timeout_s;
  o.env = rankEnv();
  return o;
}

void must(const Status& s, std::string_view what) {
  if (!s.isOk()) throw std::runtime_error(strCat(what, ": ", s.toString()));
}

RankComm openWorld(weft::testing::RankEnv& env, const std::vector<std::string>& node_ids,
                   transport::ContextOptions o) {
  env.step("opening the UCX context and the world communicator");
  o.rank = env.rank;
  RankComm rc;
  rc.ctx = must(transport::openContext("ucx", o), "openContext");
  WorldInfo w;
  w.rank = env.rank;
  w.size = env.size;
  w.store = env.store;
  for (size_t r = 0; r < node_ids.size(); ++r) {
    int node = 0;
    while (node_ids[static_cast<size_t>(node)] != node_ids[r]) ++node;
    w.node_of_rank.push_back(node);
  }
  rc.comm = must(Communicator::create(w, rc.ctx), "Communicator::create");
  return rc;
}

namespace {

uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

int widthOf(DataType t) {
  return static_cast<int>(sizeOf(t)) * 8;
}
uint64_t maskOf(DataType t) {
  return widthOf(t) == 64 ? ~uint64_t{0} : (uint64_t{1} << widthOf(t)) - 1;
}
bool isSigned(DataType t) {
  return t == DataType::kI8 || t == DataType::kI32 || t == DataType::kI64;
}
int64_t asSigned(DataType t, uint64_t bits) {
  const int w = widthOf(t);
  if (w == 64) return static_cast<int64_t>(bits);
  const uint64_t sign = uint64_t{1} << (w - 1);
  return static_cast<int64_t>((bits ^ sign) - sign);
}

uint64_t floatBits(DataType t, double v) {
  switch (t) {
    case DataType::kF16: return floatToHalf(static_cast<float>(v));
    case DataType::kBF16: return floatToBf16(static_cast<float>(v));
    case DataType::kF32: return std::bit_cast<uint32_t>(static_cast<float>(v));
    default: return std::bit_cast<uint64_t>(v);
  }
}

double floatValue(DataType t, uint64_t bits) {
  switch (t) {
    case DataType::kF16: return halfToFloat(static_cast<uint16_t>(bits));
    case DataType::kBF16: return bf16ToFloat(static_cast<uint16_t>(bits));
    case DataType::kF32: return std::bit_cast<float>(static_cast<uint32_t>(bits));
    default: return std::bit_cast<double>(bits);
  }
}

double unitRoundoff(DataType t) {
  switch (t) {
    case DataType::kF16: return std::ldexp(1.0, -11);
    case DataType::kBF16: return std::ldexp(1.0, -8);
    case DataType::kF32: return std::ldexp(1.0, -24);
    default: return std::ldexp(1.0, -53);
  }
}

uint64_t integerReduce(DataType t, ReduceOp op, uint64_t acc, uint64_t x) {
  const bool s = isSigned(t);
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg: return (acc + x) & maskOf(t);
    case ReduceOp::kProd: return (acc * x) & maskOf(t);
    case ReduceOp::kMin: return (s ? asSigned(t, x) < asSigned(t, acc) : x < acc) ? x : acc;
    case ReduceOp::kMax: return (s ? asSigned(t, x) > asSigned(t, acc) : x > acc) ? x : acc;
    case ReduceOp::kBand: return acc & x;
    case ReduceOp::kBor: return acc | x;
    case ReduceOp::kBxor: return acc ^ x;
  }
  return acc;
}

uint64_t integerReference(DataType t, ReduceOp op, uint64_t seed, int p, size_t i) {
  uint64_t acc = inputBits(t, op, seed, 0, i);
  for (int r = 1; r < p; ++r) acc = integerReduce(t, op, acc, inputBits(t, op, seed, r, i));
  if (op != ReduceOp::kAvg) return acc;
  if (isSigned(t)) return static_cast<uint64_t>(asSigned(t, acc) / p) & maskOf(t);
  return acc / static_cast<uint64_t>(p);
}

std::string floatMismatch(DataType t, ReduceOp op, uint64_t seed, int p, size_t i, double got) {
  double ref = floatValue(t, inputBits(t, op, seed, 0, i));
  double magnitude = std::fabs(ref);
  for (int r = 1; r < p; ++r) {
    const double x = floatValue(t, inputBits(t, op, seed, r, i));
    magnitude += std::fabs(x);
    if (op == ReduceOp::kSum || op == ReduceOp::kAvg) ref += x;
    if (op == ReduceOp::kProd) ref *= x;
    if (op == ReduceOp::kMin) ref = std::min(ref, x);
    if (op == ReduceOp::kMax) ref = std::max(ref, x);
  }
  const double u = unitRoundoff(t);
  double tol = 0;
  if (op == ReduceOp::kSum) tol = 2 * (p + 1) * u * magnitude;
  if (op == ReduceOp::kAvg) {
    ref /= p;
    tol = 2 * (p + 1) * u * magnitude / p + 2 * u * std::fabs(ref);
  }
  if (op == ReduceOp::kProd) tol = 2 * (p + 1) * u * std::fabs(ref);
  if (std::fabs(got - ref) <= tol) return "";
  return strCat("got ", got, ", f64 reference ", ref, " (tolerance ", tol, ")");
}

}  // namespace

double Buffer::get(size_t i) const {
  return isFloat(type) ? floatValue(type, bits(i)) : static_cast<double>(asSigned(type, bits(i)));
}

uint64_t Buffer::bits(size_t i) const {
  uint64_t b = 0;
  std::memcpy(&b, bytes.data() + i * sizeOf(type), sizeOf(type));  // little-endian
  return b;
}

void Buffer::setBits(size_t i, uint64_t b) {
  std::memcpy(bytes.data() + i * sizeOf(type), &b, sizeOf(type));
}

uint64_t inputBits(DataType type, ReduceOp op, uint64_t seed, int rank, size_t i) {
  const uint64_t h = mix(seed * 0x100000001b3ull ^ mix(static_cast<uint64_t>(rank) << 40 ^ i));
  if (!isFloat(type)) return h & maskOf(type);
  double v;
  switch (op) {
    case ReduceOp::kProd: v = 0.5 + static_cast<double>(h % 97) / 64.0; break;
    case ReduceOp::kMin:
    case ReduceOp::kMax: v = (static_cast<double>(h % 20001) - 10000.0) / 100.0; break;
    default: v = (static_cast<double>(h % 513) - 256.0) / 64.0; break;
  }
  return floatBits(type, v);
}

void fillInput(Buffer& buf, size_t offset, size_t count, ReduceOp op, uint64_t seed, int rank,
               size_t first) {
  for (size_t k = 0; k < count; ++k) {
    buf.setBits(offset + k, inputBits(buf.type, op, seed, rank, first + k));
  }
}

std::string checkReduction(const Buffer& got, size_t offset, size_t count, ReduceOp op,
                           uint64_t seed, int p, size_t first) {
  const DataType t = got.type;
  for (size_t k = 0; k < count; ++k) {
    const size_t i = first + k;
    std::string why;
    if (isFloat(t)) {
      why = floatMismatch(t, op, seed, p, i, got.get(offset + k));
    } else {
      const uint64_t want = integerReference(t, op, seed, p, i);
      if (got.bits(offset + k) != want) {
        why = strCat("got bits 0x", std::hex, got.bits(offset + k), ", want 0x", want);
      }
    }
    if (!why.empty()) {
      return strCat(toString(t), " ", toString(op), " element ", i, " (of ", count, "): ", why);
    }
  }
  return "";
}

std::string checkCopy(const Buffer& got, size_t offset, size_t count, ReduceOp op, uint64_t seed,
                      int src, size_t first) {
  for (size_t k = 0; k < count; ++k) {
    const uint64_t want = inputBits(got.type, op, seed, src, first + k);
    if (got.bits(offset + k) != want) {
      return strCat("element ", offset + k, ": got bits 0x", std::hex, got.bits(offset + k),
                    ", want rank ", std::dec, src, "'s element ", first + k, " 0x", std::hex, want);
    }
  }
  return "";
}

bool sameOnAllRanks(Communicator& comm, const void* data, size_t bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  std::vector<uint64_t> all(static_cast<size_t>(comm.size()));
  must(allgather(comm, &h, all.data(), 1, DataType::kU64), "allgather of result hashes");
  for (uint64_t x : all) {
    if (x != h) return false;
  }
  return true;
}

}  // namespace weft::coll::testing

namespace weft::coll::testing {

void waitForCount(weft::testing::RankEnv& env, const std::string& name, int n) {
  must(env.store->add(name, 1).status(), "store add");
  while (must(env.store->add(name, 0), "store add") < n) {
    if (env.deadline.expired()) throw std::runtime_error("waitForCount: deadline passed at " + name);
    ::usleep(10000);
  }
}

}  // namespace weft::coll::testing
