// main() of weft_gpu_tests: GoogleTest, or the CUDA IPC child (gpu_ipc_test.cc).
#include <gtest/gtest.h>

#include <cstring>

#include "tests/gpu/gpu_test_util.h"

namespace weft::gpu {
int runIpcChild(const char* text);

namespace testing {
const char* selfPath() {
  return "/proc/self/exe";
}
}  // namespace testing
}  // namespace weft::gpu

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--weft-gpu-ipc-child") == 0) {
    return weft::gpu::runIpcChild(argv[2]);
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
