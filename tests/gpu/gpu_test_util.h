// Shared by the weft_gpu_tests files: skip unless a CUDA device is usable.
#pragma once

#include <gtest/gtest.h>

#include "common/config.h"
#include "gpu/device_buffer.h"

// Skips the test (naming why) when no CUDA device is usable; fails instead under
// WEFT_TEST_STRICT=1.
#define WEFT_REQUIRE_GPU()                                              \
  do {                                                                  \
    const ::weft::Status _gpu = ::weft::gpu::cudaAvailable();           \
    if (!_gpu.isOk()) {                                                 \
      if (::weft::config::getBool("WEFT_TEST_STRICT").valueOr(false)) { \
        FAIL() << "WEFT_TEST_STRICT=1 and no CUDA device: " << _gpu;    \
      }                                                                 \
      GTEST_SKIP() << "no CUDA device: " << _gpu.message();             \
    }                                                                   \
  } while (0)

namespace weft::gpu::testing {
// Path of the running test binary (the IPC test starts it again as a child).
const char* selfPath();
}  // namespace weft::gpu::testing
