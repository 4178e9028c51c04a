// weft-gpu-reduce-bench: memory bandwidth of the CUDA reduction kernels (gpu/reduce.h) per
// type x op, next to cudaMemcpy device-to-device on the same buffers. Only meaningful on a
// GPU; without one it prints why and exits 0 (so scripts can run it anywhere).
//
//   weft-gpu-reduce-bench [--bytes N] [--iters N]
//
// GB/s counts the bytes each operation moves: reduce reads dst and src and writes dst
// (3 x bytes); memcpy reads and writes (2 x bytes). Times come from CUDA events.
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

#include "collectives/api/types.h"
#include "gpu/device_buffer.h"
#include "gpu/reduce.h"

namespace {

struct Options {
  size_t bytes = size_t{256} << 20;
  int iters = 20;
};

Options parseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const bool hasValue = i + 1 < argc;
    if (std::strcmp(argv[i], "--bytes") == 0 && hasValue) {
      o.bytes = std::strtoull(argv[++i], nullptr, 10);
    } else if (std::strcmp(argv[i], "--iters") == 0 && hasValue) {
      o.iters = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--bytes N] [--iters N]\n", argv[0]);
      std::exit(2);
    }
  }
  if (o.bytes < 1024 || o.iters < 1) {
    std::fprintf(stderr, "--bytes must be >= 1024 and --iters >= 1\n");
    std::exit(2);
  }
  return o;
}

// Average milliseconds of `op` over `iters` runs after two warm-ups; negative on error.
double timeMs(const std::function<bool()>& op, int iters) {
  for (int i = 0; i < 2; ++i) {
    if (!op()) return -1;
  }
  cudaEvent_t start = nullptr;
  cudaEvent_t stop = nullptr;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  cudaEventRecord(start);
  bool ok = true;
  for (int i = 0; i < iters && ok; ++i) ok = op();
  cudaEventRecord(stop);
  const cudaError_t e = cudaEventSynchronize(stop);
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  if (!ok || e != cudaSuccess) {
    std::fprintf(stderr, "timing failed: %s\n", weft::gpu::cudaErrorText(e).c_str());
    return -1;
  }
  return ms / iters;
}

double gbPerSecond(double bytesMoved, double ms) {
  return ms > 0 ? bytesMoved / (ms * 1e-3) / 1e9 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace weft;
  const Options o = parseOptions(argc, argv);
  if (Status st = gpu::cudaAvailable(); !st.isOk()) {
    std::printf("weft-gpu-reduce-bench: skipped: %s\n", st.toString().c_str());
    return 0;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  Result<gpu::DeviceBuffer> dst = gpu::DeviceBuffer::allocate(o.bytes);
  Result<gpu::DeviceBuffer> src = gpu::DeviceBuffer::allocate(o.bytes);
  if (!dst.isOk() || !src.isOk()) {
    std::printf("allocation failed: %s\n",
                (dst.isOk() ? src.status() : dst.status()).toString().c_str());
    return 1;
  }
  if (!dst.value().fill(0).isOk() || !src.value().fill(0).isOk()) return 1;
  void* d = dst.value().data();
  const void* s = src.value().data();
  std::printf("# device 0: %s, %zu bytes per buffer, %d iterations\n", prop.name, o.bytes, o.iters);
  const double copyMs = timeMs(
      [&] { return cudaMemcpy(d, s, o.bytes, cudaMemcpyDeviceToDevice) == cudaSuccess; }, o.iters);
  const double copyGbs = gbPerSecond(2.0 * o.bytes, copyMs);
  std::printf("%-6s %-6s %12s %10s %10s %12s\n", "type", "op", "time_us", "GB/s", "memcpyGB/s",
              "vs_memcpy");
  int failures = copyMs < 0 ? 1 : 0;
  for (coll::DataType t : coll::kAllDataTypes) {
    for (coll::ReduceOp op : coll::kAllReduceOps) {
      if (coll::isBitwise(op) && coll::isFloat(t)) continue;
      const size_t count = o.bytes / coll::sizeOf(t);
      Status last;
      const double ms = timeMs(
          [&] {
            last = gpu::reduce(d, s, count, t, op);
            return last.isOk();
          },
          o.iters);
      if (ms < 0) {
        std::printf("%-6s %-6s FAILED: %s\n", std::string(coll::toString(t)).c_str(),
                    std::string(coll::toString(op)).c_str(), last.toString().c_str());
        ++failures;
        continue;
      }
      const double gbs = gbPerSecond(3.0 * count * coll::sizeOf(t), ms);
      std::printf("%-6s %-6s %12.1f %10.1f %10.1f %11.2fx\n",
                  std::string(coll::toString(t)).c_str(), std::string(coll::toString(op)).c_str(),
                  ms * 1e3, gbs, copyGbs, copyGbs > 0 ? gbs / copyGbs : 0);
    }
  }
  return failures == 0 ? 0 : 1;
}
