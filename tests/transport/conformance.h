// The transport conformance suite: one set of tests every backend instantiates.
//
//   // tests/transport/<backend>_conformance_test.cc
//   INSTANTIATE_TEST_SUITE_P(Verbs, TransportConformance,
//       ::testing::Values(BackendConfig{"verbs_rxe", "verbs", {{"WEFT_VERBS_DEVICE", "rxe0"}}}),
//       backendConfigName);
//
// Every test runs its ranks as real processes (tests/support/rank_harness.h) with
// BackendConfig::env in their environment, opens a Context of BackendConfig::backend in
// each, and connects through the harness's TcpStore. Tests skip on Capabilities, never on
// backend names.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/rank_harness.h"
#include "transport/api/context.h"

namespace weft::transport::testing {

struct BackendConfig {
  std::string name;     // test-name suffix: "ucx_posix"
  std::string backend;  // openContext() name
  // Environment of every rank (selects the backend's transports: UCX_TLS=posix, ...).
  std::vector<std::pair<std::string, std::string>> env;
  // Seconds within which pending requests must fail after a peer is killed.
  double peer_failure_deadline_s = 20;
};

inline std::string backendConfigName(const ::testing::TestParamInfo<BackendConfig>& info) {
  return info.param.name;
}

class TransportConformance : public ::testing::TestWithParam<BackendConfig> {
 protected:
  // Harness options for this backend: its env, a deadline, and `may_fail` ranks.
  weft::testing::RankOptions rankOptions(double timeout_s = 60) const {
    weft::testing::RankOptions o;
    o.timeout_s = timeout_s;
    o.env = GetParam().env;
    return o;
  }
  // The backend's capabilities under BackendConfig::env, probed in the calling process (for
  // GTEST_SKIP before starting ranks).
  Capabilities probeCapabilities() const;
};

// A rank's Context and its endpoints to every rank (itself included when `self`).
struct Mesh {
  std::unique_ptr<Context> ctx;
  std::vector<std::unique_ptr<Endpoint>> eps;  // indexed by rank; null where not connected
  Endpoint& to(int rank) { return *eps.at(static_cast<size_t>(rank)); }
};

// Opens the backend with rank env.rank and connects to every other rank (and to itself
// when self) through env.store. Fails the test (and throws) on error.
Mesh openMesh(weft::testing::RankEnv& env, const BackendConfig& config, bool self = false,
              ContextOptions options = {});

// A store barrier that keeps driving ctx's progress while it waits: peers' one-sided
// operations may need this rank's progress (UCX emulates RMA / atomics with messages on
// transports without hardware support, e.g. posix shared memory or tcp).
void progressBarrier(weft::testing::RankEnv& env, Context& ctx, const std::string& name);

inline void PrintTo(const BackendConfig& c, std::ostream* os) {
  *os << c.name;
}

// Deterministic byte pattern for (seed, index).
inline unsigned char patternByte(uint64_t seed, size_t i) {
  return static_cast<unsigned char>((i * 131 + seed * 7 + (i >> 11)) & 0xff);
}
void fillPattern(void* buffer, size_t length, uint64_t seed);
// Index of the first byte that differs from the pattern, or length when all match.
size_t checkPattern(const void* buffer, size_t length, uint64_t seed);

// Unwraps a Result in tests: throws (failing the rank) with the Status text on error.
template <typename T>
T must(Result<T> r, const char* what) {
  if (!r.isOk()) throw std::runtime_error(strCat(what, ": ", r.status().toString()));
  return std::move(r).value();
}
void must(const Status& s, const char* what);

}  // namespace weft::transport::testing
