// gpu/: memory-type detection, DeviceBuffer, dma-buf export and the GPUDirect probe.
#include <cuda_runtime_api.h>
#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <vector>

#include "gpu/device_buffer.h"
#include "gpu/gpudirect.h"
#include "gpu/memory_type.h"
#include "gpu/reduce.h"
#include "tests/gpu/gpu_test_util.h"

namespace weft::gpu {
namespace {

TEST(GpuMemoryType, HostPointersAreHost) {
  int onStack = 1;
  std::vector<char> onHeap(1 << 20);
  auto big = std::make_unique<char[]>(64 << 20);
  for (const void* p : {static_cast<const void*>(&onStack), static_cast<const void*>(onHeap.data()),
                        static_cast<const void*>(big.get()), static_cast<const void*>(nullptr)}) {
    const PointerInfo info = pointerInfo(p);
    EXPECT_EQ(info.type, MemoryType::kHost) << p;
    EXPECT_EQ(info.device, -1) << p;
    EXPECT_EQ(memoryTypeOf(p), MemoryType::kHost) << p;
  }
  EXPECT_EQ(toString(MemoryType::kCudaManaged), "cuda-managed");
}

// Without a device every entry point says so cleanly (this runs on CI).
TEST(GpuNoDevice, EveryEntryPointReportsUnavailable) {
  if (cudaAvailable().isOk()) GTEST_SKIP() << "a CUDA device is present: covered by the GPU cases";
  const Status st = cudaAvailable();
  EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st;
  EXPECT_FALSE(st.message().empty());
  EXPECT_EQ(cudaDeviceCount(), 0);

  Result<DeviceBuffer> buf = DeviceBuffer::allocate(4096);
  ASSERT_FALSE(buf.isOk());
  EXPECT_EQ(buf.status().code(), StatusCode::kUnavailable) << buf.status();

  std::vector<float> a(16), b(16);
  const Status r = reduce(a.data(), b.data(), a.size(), DataType::kF32, ReduceOp::kSum);
  EXPECT_FALSE(r.isOk());
  EXPECT_EQ(copyHostToDevice(a.data(), b.data(), 64).code(), StatusCode::kUnavailable);
  EXPECT_FALSE(hostCopySupported());
  EXPECT_EQ(copyToHost(a.data(), b.data(), 64).code(), StatusCode::kUnavailable);
  EXPECT_EQ(copyToDevice(a.data(), b.data(), 64).code(), StatusCode::kUnavailable);

  Result<DmabufExport> e = exportDmabuf(a.data(), 64);
  ASSERT_FALSE(e.isOk());
  EXPECT_NE(e.status().message(), "") << e.status();

  const GpuDirectProbe& p = probeGpuDirect();
  EXPECT_FALSE(p.dmabuf_export);
  EXPECT_NE(p.text().find("dmabuf export: not supported"), std::string::npos) << p.text();
  EXPECT_NE(p.text().find("peer memory:"), std::string::npos) << p.text();
}

TEST(GpuReduceArgs, InvalidPairsAreRejectedWithoutADevice) {
  float x = 0;
  const Status st = reduce(&x, &x, 1, DataType::kF32, ReduceOp::kBxor);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st;
  EXPECT_NE(st.message().find("bxor"), std::string::npos) << st;
  EXPECT_NE(st.message().find("f32"), std::string::npos) << st;
  EXPECT_TRUE(reduce(nullptr, nullptr, 0, DataType::kI8, ReduceOp::kSum).isOk());
  EXPECT_EQ(finalizeAvg(&x, 1, static_cast<DataType>(99), ReduceOp::kAvg, 2).code(),
            StatusCode::kInvalidArgument);
}

TEST(GpuMemoryType, DevicePinnedAndManagedAreDetected) {
  WEFT_REQUIRE_GPU();
  void* dev = nullptr;
  void* pinned = nullptr;
  void* managed = nullptr;
  ASSERT_EQ(cudaMalloc(&dev, 1 << 20), cudaSuccess);
  ASSERT_EQ(cudaMallocHost(&pinned, 1 << 20), cudaSuccess);
  ASSERT_EQ(cudaMallocManaged(&managed, 1 << 20), cudaSuccess);
  int current = -1;
  ASSERT_EQ(cudaGetDevice(&current), cudaSuccess);

  const PointerInfo d = pointerInfo(dev);
  EXPECT_EQ(d.type, MemoryType::kCudaDevice);
  EXPECT_EQ(d.device, current);
  EXPECT_EQ(d.range_start, reinterpret_cast<uintptr_t>(dev));
  EXPECT_GE(d.range_size, size_t{1} << 20);
  EXPECT_EQ(memoryTypeOf(static_cast<char*>(dev) + 12345), MemoryType::kCudaDevice);
  EXPECT_EQ(memoryTypeOf(pinned), MemoryType::kCudaHostPinned);
  EXPECT_EQ(memoryTypeOf(static_cast<char*>(pinned) + 100), MemoryType::kCudaHostPinned);
  EXPECT_EQ(memoryTypeOf(managed), MemoryType::kCudaManaged);

  // Host memory registered with cudaHostRegister is pinned too.
  std::vector<char> host(1 << 16);
  ASSERT_EQ(cudaHostRegister(host.data(), host.size(), cudaHostRegisterDefault), cudaSuccess);
  EXPECT_EQ(memoryTypeOf(host.data()), MemoryType::kCudaHostPinned);
  EXPECT_EQ(cudaHostUnregister(host.data()), cudaSuccess);
  EXPECT_EQ(memoryTypeOf(host.data()), MemoryType::kHost);

  EXPECT_EQ(cudaFree(dev), cudaSuccess);
  EXPECT_EQ(cudaFreeHost(pinned), cudaSuccess);
  EXPECT_EQ(cudaFree(managed), cudaSuccess);
}

// The driver-API copies the verbs backend stages device buffers with (verbs_staging.cc):
// they work without a current context (the owning device's primary context is pushed) and
// refuse host pointers.
TEST(GpuStagingCopies, DriverCopiesRoundTripAndRefuseHostMemory) {
  WEFT_REQUIRE_GPU();
  ASSERT_TRUE(hostCopySupported());
  constexpr size_t kBytes = (3 << 20) + 5;
  Result<DeviceBuffer> d = DeviceBuffer::allocate(kBytes);
  ASSERT_TRUE(d.isOk()) << d.status();
  std::vector<uint8_t> in(kBytes), out(kBytes, 0);
  std::iota(in.begin(), in.end(), uint8_t{3});
  char* dev = static_cast<char*>(d.value().data());
  ASSERT_TRUE(copyToDevice(dev, in.data(), kBytes).isOk());
  ASSERT_TRUE(copyToHost(out.data(), dev, kBytes).isOk());
  EXPECT_EQ(out, in);
  ASSERT_TRUE(copyToHost(out.data(), dev + 1000, 10).isOk());  // inside the allocation
  EXPECT_EQ(std::memcmp(out.data(), in.data() + 1000, 10), 0);
  const Status host = copyToHost(out.data(), in.data(), 16);
  EXPECT_EQ(host.code(), StatusCode::kInvalidArgument) << host;
  EXPECT_NE(host.message().find("not CUDA device memory"), std::string::npos) << host;
  EXPECT_TRUE(copyToDevice(dev, in.data(), 0).isOk());
}

TEST(GpuDeviceBuffer, RoundTripAndErrors) {
  WEFT_REQUIRE_GPU();
  constexpr size_t kBytes = (1 << 20) + 3;
  std::vector<uint8_t> in(kBytes);
  std::iota(in.begin(), in.end(), uint8_t{7});
  Result<DeviceBuffer> a = DeviceBuffer::allocate(kBytes);
  Result<DeviceBuffer> b = DeviceBuffer::allocate(kBytes);
  ASSERT_TRUE(a.isOk()) << a.status();
  ASSERT_TRUE(b.isOk()) << b.status();
  EXPECT_EQ(memoryTypeOf(a.value().data()), MemoryType::kCudaDevice);
  ASSERT_TRUE(a.value().copyFromHost(in.data(), kBytes).isOk());
  ASSERT_TRUE(b.value().fill(0).isOk());
  ASSERT_TRUE(copyDeviceToDevice(b.value().data(), a.value().data(), kBytes).isOk());
  std::vector<uint8_t> out(kBytes, 0xEE);
  ASSERT_TRUE(b.value().copyToHost(out.data(), kBytes).isOk());
  EXPECT_EQ(out, in);

  // Partial copies at an offset, and ranges outside the buffer.
  ASSERT_TRUE(b.value().copyToHost(out.data(), 10, kBytes - 10).isOk());
  EXPECT_EQ(std::memcmp(out.data(), in.data() + kBytes - 10, 10), 0);
  const Status outside = b.value().copyToHost(out.data(), 11, kBytes - 10);
  EXPECT_EQ(outside.code(), StatusCode::kInvalidArgument) << outside;
  EXPECT_NE(outside.message().find("outside"), std::string::npos) << outside;

  // Move-only ownership.
  DeviceBuffer moved = std::move(a).value();
  EXPECT_FALSE(moved.empty());
  DeviceBuffer other;
  other = std::move(moved);
  EXPECT_TRUE(moved.empty());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  EXPECT_EQ(other.size(), kBytes);
  other.release();
  EXPECT_TRUE(other.empty());

  // An impossible allocation is a clear error naming the size.
  Result<DeviceBuffer> huge = DeviceBuffer::allocate(size_t{1} << 50);
  ASSERT_FALSE(huge.isOk());
  EXPECT_EQ(huge.status().code(), StatusCode::kNoResource) << huge.status();
  EXPECT_NE(huge.status().message().find("1125899906842624"), std::string::npos) << huge.status();
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // the failure left no sticky error behind
}

TEST(GpuDirect, DmabufExportGivesAnFdOrAClearReason) {
  WEFT_REQUIRE_GPU();
  const GpuDirectProbe& p = probeGpuDirect();
  std::cout << "[ probe    ] " << p.text() << "\n";
  EXPECT_TRUE(p.driver);
  EXPECT_GE(p.devices, 1);

  Result<DeviceBuffer> buf = DeviceBuffer::allocate(4 << 20);
  ASSERT_TRUE(buf.isOk()) << buf.status();
  char* inside = static_cast<char*>(buf.value().data()) + 100;
  Result<DmabufExport> e = exportDmabuf(inside, 8192);
  if (e.isOk()) {
    std::cout << "[ dmabuf   ] fd " << e.value().fd() << " offset " << e.value().offset()
              << " length " << e.value().length() << "\n";
    struct stat st {};
    EXPECT_EQ(fstat(e.value().fd(), &st), 0);
    EXPECT_EQ(e.value().offset(), 100u);
    EXPECT_GE(e.value().length(), 8192u + 100u);
    EXPECT_TRUE(p.dmabuf_export) << "probe and real export disagree: " << p.text();
  } else {
    std::cout << "[ dmabuf   ] not supported: " << e.status() << "\n";
    EXPECT_EQ(e.status().code(), StatusCode::kNotSupported) << e.status();
    EXPECT_NE(e.status().message().find("cuMemGetHandleForAddressRange"), std::string::npos);
    EXPECT_FALSE(p.dmabuf_export) << p.text();
  }
  std::vector<char> host(64);
  Result<DmabufExport> bad = exportDmabuf(host.data(), host.size());
  ASSERT_FALSE(bad.isOk());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument) << bad.status();
}

}  // namespace
}  // namespace weft::gpu
