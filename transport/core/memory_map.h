// What the process has mapped at an address (internal to transport/): the checks behind
// registration errors, so that "not mapped" and "read-only" are told apart from a bare
// EFAULT.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/status.h"

namespace weft::transport::detail {

// OK when every page of [address, address + length) is mapped (mincore: no file read, cheap
// enough for every registerMemory); kInvalidArgument naming the first hole otherwise.
Status checkMapped(const void* address, size_t length);

struct MappingCheck {
  uintptr_t unmapped_at = 0;  // first address of [begin, end) that nothing maps; 0: all mapped
  std::string read_only;      // the first mapping overlapping the range without write
                              // permission, as "start-end perms path"; empty: none
};

// Reads /proc/self/maps (error paths only). A failed read reports nothing found.
MappingCheck checkMapping(uintptr_t begin, uintptr_t end);

}  // namespace weft::transport::detail
