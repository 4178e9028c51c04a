// Context::allocateMemory for backends that register any host memory alike (internal to
// transport/): anonymous pages registered through the Context, owned by the region.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "common/result.h"
#include "transport/api/context.h"
#include "transport/api/memory.h"

namespace weft::transport::detail {

// Context::allocateMemory's argument check: kInvalidArgument for 0 bytes, naming `who`.
Status checkAllocationLength(size_t length, const std::string& who);

// Maps `length` bytes (rounded up to whole pages) of zero-filled anonymous memory and
// registers them with ctx.registerMemory. The region's deregister() deregisters, then
// unmaps (a failed deregistration leaves the pages mapped: the device may still reach
// them). `who` names the caller in errors ("allocateMemory on ucx rank 0").
Result<std::unique_ptr<MemoryRegion>> allocateAnonymous(Context& ctx, size_t length,
                                                        const std::string& who);

}  // namespace weft::transport::detail
