// openContext(): the backend registry, and option resolution shared by backends.
#include "transport/api/context.h"

#include <string>
#include <vector>

#include "common/config.h"
#include "transport/core/options.h"
#ifdef WEFT_HAVE_UCX
#include "transport/ucx/ucx_internal.h"
#endif
#ifdef WEFT_HAVE_VERBS
#include "transport/ibverbs/verbs_internal.h"
#endif

namespace weft::transport {

std::vector<std::string> availableBackends() {
  std::vector<std::string> names;
#ifdef WEFT_HAVE_UCX
  names.emplace_back("ucx");
#endif
#ifdef WEFT_HAVE_VERBS
  names.emplace_back("verbs");
#endif
  return names;
}

Result<std::unique_ptr<Context>> openContext(std::string_view backend,
                                             [[maybe_unused]] const ContextOptions& options) {
#ifdef WEFT_HAVE_UCX
  if (backend == "ucx") return ucx::openUcxContext(options);
#endif
#ifdef WEFT_HAVE_VERBS
  if (backend == "verbs") return verbs::openVerbsContext(options);
#endif
  std::string built;
  for (const auto& n : availableBackends()) built += (built.empty() ? "" : ", ") + n;
  if (built.empty()) built = "none";
  return WEFT_ERROR(StatusCode::kNotSupported, "openContext: transport backend \"", backend,
                    "\" is not built into this binary (built: ", built, ")")
      .withHint(
          "configure with -DWEFT_WITH_UCX=ON / -DWEFT_WITH_VERBS=ON after installing "
          "the libraries (scripts/setup-deps.sh)");
}

Result<ResolvedOptions> resolveOptions(const ContextOptions& options, std::string_view backend,
                                       int max_rank) {
  if (options.rank < 0 || options.rank > max_rank) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "openContext(", backend, "): rank ",
                      options.rank, " is outside [0, ", max_rank, "]");
  }
  ResolvedOptions r;
  r.engine.thread_safe = options.thread_safe || options.progress_thread;
  r.engine.progress_thread = options.progress_thread;
  r.engine.spin_us = options.spin_us;
  if (r.engine.spin_us < 0) {
    WEFT_ASSIGN_OR_RETURN(r.engine.spin_us, config::getInt("WEFT_TRANSPORT_SPIN_US"));
  }
  r.max_requests = options.max_requests;
  if (r.max_requests == 0) {
    WEFT_ASSIGN_OR_RETURN(int64_t n, config::getInt("WEFT_TRANSPORT_MAX_REQUESTS"));
    r.max_requests = static_cast<size_t>(n);
  }
  return r;
}

}  // namespace weft::transport
