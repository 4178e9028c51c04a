// ContextOptions with the WEFT_TRANSPORT_* defaults filled in (internal to transport/).
#pragma once

#include <cstddef>

#include "common/result.h"
#include "transport/api/context.h"
#include "transport/core/progress_engine.h"

namespace weft::transport {

struct ResolvedOptions {
  detail::EngineOptions engine;
  size_t max_requests = 0;
};

// Fills spin_us / max_requests from WEFT_TRANSPORT_SPIN_US / WEFT_TRANSPORT_MAX_REQUESTS
// when unset, and checks rank against [0, max_rank].
Result<ResolvedOptions> resolveOptions(const ContextOptions& options, std::string_view backend,
                                       int max_rank);

}  // namespace weft::transport
