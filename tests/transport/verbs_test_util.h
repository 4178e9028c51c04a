// Helpers of the verbs tests: which RDMA device to test on, and the skip rule.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "common/config.h"

namespace weft::transport::testing {

// "rxe0:1": WEFT_IB_DEVICE when set, else the first device with an ACTIVE port; "" when
// this machine has none (then verbsNoDeviceReason() says why). Cached.
std::string verbsTestDevice();
std::string verbsNoDeviceReason();

}  // namespace weft::transport::testing

// Skips the test without an RDMA device (fails instead under WEFT_TEST_STRICT=1).
#define WEFT_REQUIRE_VERBS_DEVICE()                                                         \
  do {                                                                                      \
    if (::weft::transport::testing::verbsTestDevice().empty()) {                            \
      if (::weft::config::getBool("WEFT_TEST_STRICT").valueOr(false)) {                     \
        FAIL() << "WEFT_TEST_STRICT=1 and " << ::weft::transport::testing::verbsNoDeviceReason(); \
      }                                                                                     \
      GTEST_SKIP() << ::weft::transport::testing::verbsNoDeviceReason();                    \
    }                                                                                       \
  } while (0)
