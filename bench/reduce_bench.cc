// weft-reduce-bench: throughput of the CPU reduction kernels, a op= b, for every instruction
// set this CPU has x type x op, at a cache-resident size (64 KiB per buffer) and at 64 MiB,
// next to memcpy and a plain f32 a[i] += b[i] loop on the same buffers.
//
// The "traffic" counter is bytes moved per second in units of 10^9 (G/s = GB/s):
// a op= b reads a and b and writes a (3 x buffer bytes); memcpy(a, b) reads b and writes a
// (2 x buffer bytes). Rates are per CPU second (Google Benchmark's default): the same as wall
// clock on an idle machine, and less disturbed by other processes on a busy one. Names are
// reduce/<isa>/<type>/<op>/<size>, so for example
//   weft-reduce-bench --benchmark_filter='avx512/(f32|bf16|f16)/sum|memcpy|loop'
// runs the headline rows. b holds +-1 so that repeating a op= b never drifts into subnormals.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>

#include "collectives/api/types.h"
#include "collectives/reduce/half.h"
#include "collectives/reduce/reducer.h"

namespace weft::coll {
namespace {

constexpr size_t kCacheResidentBytes = size_t{64} << 10;
constexpr size_t kLargeBytes = size_t{64} << 20;
constexpr size_t kAlignment = 64;  // one cache line, and one AVX-512 vector

struct AlignedDelete {
  void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t{kAlignment}); }
};
using AlignedBytes = std::unique_ptr<std::byte[], AlignedDelete>;

AlignedBytes allocate(size_t bytes) {
  AlignedBytes p(new (std::align_val_t{kAlignment}) std::byte[bytes]);
  std::memset(p.get(), 0, bytes);  // fault the pages in before timing
  return p;
}

// Two buffers per size, shared by all benchmarks of that size.
struct Operands {
  AlignedBytes a;
  AlignedBytes b;
};

Operands& operands(size_t bytes) {
  static std::map<size_t, Operands> pool;
  auto [it, inserted] = pool.try_emplace(bytes);
  if (inserted) it->second = Operands{allocate(bytes), allocate(bytes)};
  return it->second;
}

template <class T>
void fillAs(std::byte* a, std::byte* b, size_t count, T (*make)(float)) {
  for (size_t i = 0; i < count; ++i) {
    const T x = make(static_cast<float>(i % 17) * 0.25f - 2.0f);
    const T y = make(i % 2 == 0 ? 1.0f : -1.0f);
    std::memcpy(a + i * sizeof(T), &x, sizeof x);
    std::memcpy(b + i * sizeof(T), &y, sizeof y);
  }
}

template <class T>
T convertTo(float f) {
  return static_cast<T>(f);
}

// Typed values in a (in [-2, 2]) and b (+-1), rewritten before every benchmark because the
// previous one may have used the same bytes as another type.
void fillOperands(DataType type, Operands& ops, size_t bytes) {
  std::byte* a = ops.a.get();
  std::byte* b = ops.b.get();
  const size_t n = bytes / sizeOf(type);
  switch (type) {
    case DataType::kI8: fillAs<int8_t>(a, b, n, &convertTo<int8_t>); break;
    case DataType::kU8: fillAs<uint8_t>(a, b, n, &convertTo<uint8_t>); break;
    case DataType::kI32: fillAs<int32_t>(a, b, n, &convertTo<int32_t>); break;
    case DataType::kU32: fillAs<uint32_t>(a, b, n, &convertTo<uint32_t>); break;
    case DataType::kI64: fillAs<int64_t>(a, b, n, &convertTo<int64_t>); break;
    case DataType::kU64: fillAs<uint64_t>(a, b, n, &convertTo<uint64_t>); break;
    case DataType::kF16: fillAs<uint16_t>(a, b, n, &floatToHalf); break;
    case DataType::kBF16: fillAs<uint16_t>(a, b, n, &floatToBf16); break;
    case DataType::kF32: fillAs<float>(a, b, n, &convertTo<float>); break;
    case DataType::kF64: fillAs<double>(a, b, n, &convertTo<double>); break;
  }
}

void setTraffic(benchmark::State& state, double bytesPerIteration) {
  state.counters["traffic"] = benchmark::Counter(
      bytesPerIteration * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void benchReduce(benchmark::State& state, KernelIsa isa, DataType type, ReduceOp op, size_t bytes) {
  Operands& ops = operands(bytes);
  fillOperands(type, ops, bytes);
  const KernelIsa previous = kernelIsa();
  if (!setKernelIsa(isa).isOk()) {
    state.SkipWithError("instruction set not supported");
    return;
  }
  auto reducer = Reducer::create(type, op);
  setKernelIsa(previous).ignore();
  if (!reducer.isOk()) {
    state.SkipWithError(reducer.status().toString().c_str());
    return;
  }
  const size_t count = bytes / sizeOf(type);
  for (auto _ : state) {
    reducer->reduce(ops.a.get(), ops.b.get(), count);
    benchmark::ClobberMemory();
  }
  setTraffic(state, 3.0 * static_cast<double>(bytes));
}

void benchMemcpy(benchmark::State& state, size_t bytes) {
  Operands& ops = operands(bytes);
  for (auto _ : state) {
    std::memcpy(ops.a.get(), ops.b.get(), bytes);
    benchmark::ClobberMemory();
  }
  setTraffic(state, 2.0 * static_cast<double>(bytes));
}

// The obvious loop, vectorized by the compiler for baseline x86-64 (SSE2): the yardstick the f32
// sum kernel should at least match.
__attribute__((optimize("O3"))) void addLoop(float* __restrict a, const float* __restrict b,
                                             size_t count) {
  for (size_t i = 0; i < count; ++i) a[i] += b[i];
}

void benchPlainLoop(benchmark::State& state, size_t bytes) {
  Operands& ops = operands(bytes);
  fillOperands(DataType::kF32, ops, bytes);
  for (auto _ : state) {
    addLoop(reinterpret_cast<float*>(ops.a.get()), reinterpret_cast<const float*>(ops.b.get()),
            bytes / sizeof(float));
    benchmark::ClobberMemory();
  }
  setTraffic(state, 3.0 * static_cast<double>(bytes));
}

bool supported(KernelIsa isa) {
  const KernelIsa previous = kernelIsa();
  const bool ok = setKernelIsa(isa).isOk();
  setKernelIsa(previous).ignore();
  return ok;
}

std::string sizeName(size_t bytes) {
  return bytes >= (size_t{1} << 20) ? std::to_string(bytes >> 20) + "MiB"
                                    : std::to_string(bytes >> 10) + "KiB";
}

void registerAll() {
  for (size_t bytes : {kCacheResidentBytes, kLargeBytes}) {
    const std::string size = sizeName(bytes);
    benchmark::RegisterBenchmark(("memcpy/" + size).c_str(), benchMemcpy, bytes);
    benchmark::RegisterBenchmark(("loop/f32/sum/" + size).c_str(), benchPlainLoop, bytes);
    for (KernelIsa isa : {KernelIsa::kScalar, KernelIsa::kAvx2, KernelIsa::kAvx512}) {
      if (!supported(isa)) continue;
      for (DataType type : kAllDataTypes) {
        for (ReduceOp op : kAllReduceOps) {
          if (!validateReduce(type, op).isOk() || op == ReduceOp::kAvg) continue;  // avg = sum
          const std::string name = "reduce/" + std::string(toString(isa)) + "/" +
                                   std::string(toString(type)) + "/" + std::string(toString(op)) +
                                   "/" + size;
          benchmark::RegisterBenchmark(name.c_str(), benchReduce, isa, type, op, bytes);
        }
      }
    }
  }
}

}  // namespace
}  // namespace weft::coll

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("weft_best_isa",
                              std::string(weft::coll::toString(weft::coll::bestKernelIsa())));
  weft::coll::registerAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
