// Device discovery for the verbs tests (see verbs_test_util.h).
#include "tests/transport/verbs_test_util.h"

#include <cstdlib>
#include <mutex>

#ifdef WEFT_HAVE_VERBS
#include "transport/ibverbs/verbs_info.h"
#endif

namespace weft::transport::testing {
namespace {

struct Probe {
  std::string device;
  std::string reason;
};

const Probe& probe() {
  static Probe p;
  static std::once_flag once;
  std::call_once(once, [] {
#ifdef WEFT_HAVE_VERBS
    if (const char* env = std::getenv("WEFT_IB_DEVICE"); env != nullptr && *env != '\0') {
      p.device = env;
      return;
    }
    auto devices = verbs::listDevices();
    if (!devices.isOk()) {
      p.reason = "no usable RDMA device: " + devices.status().message();
      return;
    }
    if (devices->empty()) {
      p.reason = "no RDMA device on this machine (run the verbs tests in the soft-RoCE VM: "
                 "scripts/softroce/run-tests.sh)";
      return;
    }
    for (const auto& d : *devices) {
      for (const auto& port : d.ports) {
        if (port.state == "ACTIVE" || port.state == "PORT_ACTIVE") {
          p.device = d.name + ":" + std::to_string(port.port);
          return;
        }
      }
    }
    p.reason = "no RDMA device with an ACTIVE port (" + devices->front().name + " has none)";
#else
    p.reason = "the verbs backend is not built into this binary (WEFT_WITH_VERBS)";
#endif
  });
  return p;
}

}  // namespace

std::string verbsTestDevice() {
  return probe().device;
}

std::string verbsNoDeviceReason() {
  return probe().reason;
}

}  // namespace weft::transport::testing
