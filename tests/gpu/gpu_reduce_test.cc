// gpu::reduce against the CPU kernels (collectives/reduce): every type x op, several counts
// and misalignments, random bit patterns (NaN, inf, -0, subnormals included), bit for bit.
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <utility>
#include <vector>

#include "collectives/reduce/reducer.h"
#include "gpu/device_buffer.h"
#include "gpu/reduce.h"
#include "tests/gpu/gpu_test_util.h"

namespace weft::gpu {
namespace {

constexpr size_t kCounts[] = {0, 1, 7, 4099, (size_t{1} << 20) + 3};
// Element offsets of dst and src inside their buffers: aligned, both shifted alike (vector
// path with a head), and shifted differently (scalar path).
constexpr size_t kOffsets[][2] = {{0, 0}, {1, 1}, {3, 1}};

std::vector<uint8_t> randomBytes(size_t n, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t r = rng();
    std::memcpy(v.data() + i, &r, std::min<size_t>(8, n - i));
  }
  return v;
}

std::string firstDifference(const std::vector<uint8_t>& want, const std::vector<uint8_t>& got,
                            size_t elem) {
  for (size_t i = 0; i < want.size(); i += elem) {
    if (std::memcmp(want.data() + i, got.data() + i, elem) != 0) {
      std::ostringstream os;
      os << "first difference at element " << i / elem << ": cpu 0x" << std::hex;
      for (size_t k = elem; k-- > 0;) os << int(want[i + k]);
      os << " gpu 0x";
      for (size_t k = elem; k-- > 0;) os << int(got[i + k]);
      return os.str();
    }
  }
  return "equal";
}

struct Case {
  coll::DataType type;
  coll::ReduceOp op;
  size_t count;
  size_t dstOffset;
  size_t srcOffset;
};

constexpr size_t kContributions = 3;

// The CPU kernels' answer for `dst op src` (then / kContributions for avg); "" or an error.
std::string cpuReference(const Case& c, std::vector<uint8_t>& dst,
                         const std::vector<uint8_t>& src) {
  if (Status st = coll::reduce(c.type, c.op, dst.data(), src.data(), c.count); !st.isOk()) {
    return st.toString();
  }
  Status st = coll::finalizeReduce(c.type, c.op, dst.data(), c.count, kContributions);
  return st.isOk() ? "" : st.toString();
}

std::pair<std::vector<uint8_t>, std::vector<uint8_t>> caseData(const Case& c) {
  const size_t bytes = c.count * coll::sizeOf(c.type);
  const auto seed = static_cast<uint32_t>(c.count * 131 + static_cast<size_t>(c.type) * 7 +
                                          static_cast<size_t>(c.op));
  return {randomBytes(bytes, seed), randomBytes(bytes, seed ^ 0x9e3779b9u)};
}

// Runs one case on the GPU and on the CPU; returns "" when the results are bit-identical.
std::string runCase(const Case& c, DeviceBuffer& dbuf, DeviceBuffer& sbuf) {
  const size_t elem = coll::sizeOf(c.type);
  const size_t bytes = c.count * elem;
  auto [dst, src] = caseData(c);
  char* d = static_cast<char*>(dbuf.data()) + c.dstOffset * elem;
  char* s = static_cast<char*>(sbuf.data()) + c.srcOffset * elem;
  if (Status st = copyHostToDevice(d, dst.data(), bytes); !st.isOk()) return st.toString();
  if (Status st = copyHostToDevice(s, src.data(), bytes); !st.isOk()) return st.toString();
  if (Status st = reduce(d, s, c.count, c.type, c.op); !st.isOk()) return st.toString();
  if (Status st = finalizeAvg(d, c.count, c.type, c.op, kContributions); !st.isOk()) {
    return st.toString();
  }
  if (cudaError_t e = cudaDeviceSynchronize(); e != cudaSuccess) return cudaErrorText(e);
  std::vector<uint8_t> got(bytes);
  if (Status st = copyDeviceToHost(got.data(), d, bytes); !st.isOk()) return st.toString();
  if (std::string err = cpuReference(c, dst, src); !err.empty()) return err;
  return got == dst ? "" : firstDifference(dst, got, elem);
}

// The same with the kernels' code run on the CPU (detail::reduceOnHost): no GPU needed.
std::string runCaseOnHost(const Case& c, size_t threads) {
  const size_t elem = coll::sizeOf(c.type);
  const size_t bytes = c.count * elem;
  auto [dst, src] = caseData(c);
  std::vector<uint64_t> dmem((bytes + 64) / 8 + 1);  // 8-byte aligned, room for offsets
  std::vector<uint64_t> smem((bytes + 64) / 8 + 1);
  auto* d = reinterpret_cast<char*>(dmem.data()) + c.dstOffset * elem;
  auto* s = reinterpret_cast<char*>(smem.data()) + c.srcOffset * elem;
  if (bytes > 0) {
    std::memcpy(d, dst.data(), bytes);
    std::memcpy(s, src.data(), bytes);
  }
  if (Status st = detail::reduceOnHost(d, s, c.count, c.type, c.op, threads); !st.isOk()) {
    return st.toString();
  }
  if (Status st = detail::finalizeAvgOnHost(d, c.count, c.type, c.op, kContributions, threads);
      !st.isOk()) {
    return st.toString();
  }
  std::vector<uint8_t> got(d, d + bytes);
  if (std::string err = cpuReference(c, dst, src); !err.empty()) return err;
  return got == dst ? "" : firstDifference(dst, got, elem);
}

// Calls run(case) for every type x op x count x offsets; fails naming the first 20 misses.
template <class Run>
void forEveryCase(const std::vector<size_t>& counts, Run run) {
  int cases = 0;
  int failures = 0;
  for (coll::DataType type : coll::kAllDataTypes) {
    for (coll::ReduceOp op : coll::kAllReduceOps) {
      if (coll::isBitwise(op) && coll::isFloat(type)) continue;
      for (size_t count : counts) {
        for (const auto& off : kOffsets) {
          const Case c{type, op, count, off[0], off[1]};
          const std::string diff = run(c);
          ++cases;
          if (!diff.empty() && ++failures <= 20) {
            ADD_FAILURE() << coll::toString(type) << " " << coll::toString(op) << " count " << count
                          << " offsets " << off[0] << "/" << off[1] << ": " << diff;
          }
        }
      }
    }
  }
  std::cout << "[ reduce   ] " << cases << " cases, " << failures << " mismatches\n";
  EXPECT_EQ(failures, 0);
}

// Runs without a GPU (CI): the device code's logic against the CPU kernels, with an odd
// number of emulated threads so that slices interleave.
TEST(GpuReduceHost, KernelCodeMatchesTheCpuKernels) {
  forEveryCase({0, 1, 7, 33, 4099}, [](const Case& c) { return runCaseOnHost(c, 5); });
  forEveryCase({100003}, [](const Case& c) { return runCaseOnHost(c, 1024); });
}

TEST(GpuReduce, EveryTypeAndOpMatchesTheCpuBitForBit) {
  WEFT_REQUIRE_GPU();
  constexpr size_t kMaxBytes = ((size_t{1} << 20) + 3 + 4) * 8;
  Result<DeviceBuffer> dbuf = DeviceBuffer::allocate(kMaxBytes);
  Result<DeviceBuffer> sbuf = DeviceBuffer::allocate(kMaxBytes);
  ASSERT_TRUE(dbuf.isOk()) << dbuf.status();
  ASSERT_TRUE(sbuf.isOk()) << sbuf.status();
  forEveryCase({std::begin(kCounts), std::end(kCounts)},
               [&](const Case& c) { return runCase(c, dbuf.value(), sbuf.value()); });
}

TEST(GpuReduce, SpecialFloatValues) {
  WEFT_REQUIRE_GPU();
  // -0/+0, NaN with payloads, inf, f32 subnormals, values that round to f16/bf16 ties.
  const std::vector<uint32_t> a = {0x80000000u, 0x00000000u, 0x7FC00001u, 0xFF800000u,
                                   0x00000001u, 0x3F800000u, 0x477FF000u, 0x33000000u};
  const std::vector<uint32_t> b = {0x00000000u, 0x80000000u, 0x3F800000u, 0x7F800000u,
                                   0x80000001u, 0x7FA00000u, 0x00000000u, 0x00000000u};
  Result<DeviceBuffer> d = DeviceBuffer::allocate(a.size() * 4);
  Result<DeviceBuffer> s = DeviceBuffer::allocate(b.size() * 4);
  ASSERT_TRUE(d.isOk() && s.isOk());
  for (coll::ReduceOp op :
       {coll::ReduceOp::kSum, coll::ReduceOp::kProd, coll::ReduceOp::kMin, coll::ReduceOp::kMax}) {
    std::vector<uint32_t> want = a;
    ASSERT_TRUE(d.value().copyFromHost(a.data(), a.size() * 4).isOk());
    ASSERT_TRUE(s.value().copyFromHost(b.data(), b.size() * 4).isOk());
    ASSERT_TRUE(
        reduce(d.value().data(), s.value().data(), a.size(), coll::DataType::kF32, op).isOk());
    std::vector<uint32_t> got(a.size());
    ASSERT_TRUE(d.value().copyToHost(got.data(), got.size() * 4).isOk());
    ASSERT_TRUE(coll::reduce(coll::DataType::kF32, op, want.data(), b.data(), a.size()).isOk());
    EXPECT_EQ(got, want) << coll::toString(op);
  }
}

TEST(GpuReduce, HostPointersAndMisalignmentAreClearErrors) {
  WEFT_REQUIRE_GPU();
  Result<DeviceBuffer> d = DeviceBuffer::allocate(4096);
  ASSERT_TRUE(d.isOk()) << d.status();
  std::vector<float> host(16);
  Status st = reduce(host.data(), d.value().data(), 16, coll::DataType::kF32, coll::ReduceOp::kSum);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st;
  EXPECT_NE(st.message().find("host memory"), std::string::npos) << st;
  char* odd = static_cast<char*>(d.value().data()) + 2;
  st = reduce(odd, d.value().data(), 4, coll::DataType::kF32, coll::ReduceOp::kSum);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st;
  EXPECT_NE(st.message().find("aligned"), std::string::npos) << st;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
}  // namespace weft::gpu
