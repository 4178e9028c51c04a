// Helpers of the transport conformance suite (see conformance.h).
#include <cstring>
#include <stdexcept>

#include "tests/support/test_env.h"
#include "tests/transport/conformance.h"

namespace weft::transport::testing {

void must(const Status& s, const char* what) {
  if (!s.isOk()) throw std::runtime_error(strCat(what, ": ", s.toString()));
}

Mesh openMesh(weft::testing::RankEnv& env, const BackendConfig& config, bool self,
              ContextOptions options) {
  env.step("opening the context");
  options.rank = env.rank;
  Mesh m;
  m.ctx = must(openContext(config.backend, options), "openContext");
  must(m.ctx->publishAddress(*env.store), "publishAddress");
  m.eps.resize(static_cast<size_t>(env.size));
  env.step("connecting to every rank");
  for (int r = 0; r < env.size; ++r) {
    if (r == env.rank && !self) continue;
    m.eps[static_cast<size_t>(r)] = must(m.ctx->connect(*env.store, r, env.deadline), "connect");
  }
  return m;
}

Capabilities TransportConformance::probeCapabilities() const {
  std::vector<std::unique_ptr<weft::testing::ScopedEnv>> env;
  for (const auto& [k, v] : GetParam().env) {
    env.push_back(std::make_unique<weft::testing::ScopedEnv>(k, v));
  }
  auto ctx = must(openContext(GetParam().backend, {}), "openContext (capability probe)");
  return ctx->capabilities();
}

void progressBarrier(weft::testing::RankEnv& env, Context& ctx, const std::string& name) {
  env.step(strCat("progress barrier '", name, "'"));
  const std::string key = strCat("pbarrier/", name);
  int64_t n = must(env.store->add(key, 1), "store add");
  while (n < env.size) {
    if (env.deadline.expired()) throw std::runtime_error("progress barrier " + name + " timed out");
    ctx.waitForEvent(Deadline::after(std::chrono::milliseconds(2))).ignore();
    n = must(env.store->add(key, 0), "store add");
  }
}

void fillPattern(void* buffer, size_t length, uint64_t seed) {
  auto* p = static_cast<unsigned char*>(buffer);
  for (size_t i = 0; i < length; ++i) p[i] = patternByte(seed, i);
}

size_t checkPattern(const void* buffer, size_t length, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(buffer);
  for (size_t i = 0; i < length; ++i) {
    if (p[i] != patternByte(seed, i)) return i;
  }
  return length;
}

}  // namespace weft::transport::testing
