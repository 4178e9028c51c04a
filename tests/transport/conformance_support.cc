// Helpers of the transport conformance suite (see conformance.h).
#include <cstring>
#include <stdexcept>

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
