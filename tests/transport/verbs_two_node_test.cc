// The store host of the two-VM verbs run (scripts/softroce/two-node-rank.sh): the ranks of
// one test run in two VMs, each as a harness rank process (WEFT_HARNESS_CHILD=1 with
// WEFT_RANK / WEFT_WORLD_SIZE / WEFT_STORE_ADDR set by the script), and rank 0's VM hosts
// their store with this disabled test:
//
//   VERBS_TWO_NODE_STORE_PORT=29500 weft_transport_tests --gtest_also_run_disabled_tests
//       --gtest_filter=VerbsTwoNode.DISABLED_HostStore
//
// It serves on 0.0.0.0:<port> until the script kills it (or 15 minutes pass).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "common/store/store.h"

namespace weft::transport::testing {
namespace {

TEST(VerbsTwoNode, DISABLED_HostStore) {
  const char* port = std::getenv("VERBS_TWO_NODE_STORE_PORT");
  ASSERT_NE(port, nullptr) << "set VERBS_TWO_NODE_STORE_PORT";
  auto server = startTcpStoreServer("0.0.0.0", static_cast<uint16_t>(std::atoi(port)));
  ASSERT_TRUE(server.isOk()) << server.status();
  std::cout << "store serving on 0.0.0.0:" << (*server)->port() << std::endl;
  std::this_thread::sleep_for(std::chrono::minutes(15));
}

}  // namespace
}  // namespace weft::transport::testing
