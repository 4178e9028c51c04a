// The conformance suite over the native verbs backend, on the first RDMA device with an
// ACTIVE port (soft-RoCE rxe0 in CI: scripts/softroce/run-tests.sh). Without a device the
// suite is not instantiated and VerbsDevice.Present (verbs_test.cc) skips with the reason
// (fails under WEFT_TEST_STRICT=1).
//
// Configurations: the defaults (RDMA READ rendezvous), the RDMA WRITE rendezvous, and a
// starved one (4 eager buffers of 256 bytes, 32 send-queue entries) that drives every
// message through the credit, bounce-buffer and pending-queue limits.
#include <cctype>

#include "tests/transport/conformance.h"
#include "tests/transport/verbs_test_util.h"

namespace weft::transport::testing {

#ifdef WEFT_HAVE_VERBS
namespace {

std::vector<BackendConfig> verbsConfigs() {
  const std::string dev = verbsTestDevice();
  if (dev.empty()) return {};
  std::string id = dev.substr(0, dev.find(':'));
  for (char& c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return {
      BackendConfig{"verbs_" + id, "verbs", {{"WEFT_IB_DEVICE", dev}}},
      BackendConfig{"verbs_" + id + "_write", "verbs",
                    {{"WEFT_IB_DEVICE", dev}, {"WEFT_IB_RNDV", "write"}}},
      BackendConfig{"verbs_" + id + "_starved", "verbs",
                    {{"WEFT_IB_DEVICE", dev},
                     {"WEFT_IB_RECV_BUFFERS", "4"},
                     {"WEFT_IB_EAGER_SIZE", "256"},
                     {"WEFT_IB_SQ_DEPTH", "32"},
                     {"WEFT_IB_MAX_INLINE", "0"}}},
  };
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(Verbs, TransportConformance, ::testing::ValuesIn(verbsConfigs()),
                         backendConfigName);
#endif
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(TransportConformance);

}  // namespace weft::transport::testing
