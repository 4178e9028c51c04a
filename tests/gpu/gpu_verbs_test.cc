// The verbs backend and CUDA memory: registerMemory(..., kCuda) is either a GPUDirect
// registration or a clear kNotSupported naming the range and the reasons, never a crash;
// without an RDMA device, opening the backend is a clear kUnavailable.
#include <cstdlib>
#include <string>
#include <vector>

#include "gpu/device_buffer.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/support/test_env.h"
#include "transport/api/context.h"

namespace weft::gpu {
namespace {

#ifdef WEFT_HAVE_VERBS
using transport::MemoryType;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}
#endif

TEST(GpuVerbs, CudaRegistrationIsGpuDirectOrAClearError) {
#ifndef WEFT_HAVE_VERBS
  GTEST_SKIP() << "the verbs backend is not built into this binary (WEFT_WITH_VERBS)";
#else
  Result<std::unique_ptr<transport::Context> > ctx = transport::openContext("verbs");
  if (!ctx.isOk()) {
    // No RDMA device (CI, most GPU boxes in a container): a clear error, not a crash.
    EXPECT_EQ(ctx.status().code(), StatusCode::kUnavailable) << ctx.status();
    EXPECT_TRUE(contains(ctx.status().message(), "RDMA")) << ctx.status();
    GTEST_SKIP() << "no RDMA device, so no registration to try: " << ctx.status().message();
  }
  DeviceBuffer dev;
  std::vector<char> host(1 << 16);
  void* mem = host.data();
  if (cudaAvailable().isOk()) {
    Result<DeviceBuffer> b = DeviceBuffer::allocate(1 << 16);
    ASSERT_TRUE(b.isOk()) << b.status();
    dev = std::move(b).value();
    mem = dev.data();
  }
  auto mr = ctx.value()->registerMemory(mem, 1 << 16, MemoryType::kCuda);
  if (mr.isOk()) {
    std::cout << "[ verbs    ] GPUDirect registration worked on this host\n";
    EXPECT_TRUE(ctx.value()->capabilities().cuda_memory);
  } else {
    std::cout << "[ verbs    ] " << mr.status() << "\n";
    EXPECT_EQ(mr.status().code(), StatusCode::kNotSupported) << mr.status();
    EXPECT_TRUE(contains(mr.status().message(), "GPUDirect RDMA")) << mr.status();
    EXPECT_TRUE(contains(mr.status().message(), "registerMemory(kCuda)")) << mr.status();
  }
  weft::testing::ScopedEnv off("WEFT_GPUDIRECT", "off");
  auto refused = ctx.value()->registerMemory(mem, 1 << 16, MemoryType::kCuda);
  EXPECT_EQ(refused.status().code(), StatusCode::kNotSupported) << refused.status();
  EXPECT_TRUE(contains(refused.status().message(), "WEFT_GPUDIRECT=off")) << refused.status();
#endif
}

}  // namespace
}  // namespace weft::gpu
