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
  bool known = false;         // /proc/self/maps could be read
  bool hole = false;          // some address of [begin, end) is not mapped ...
  uintptr_t hole_at = 0;      // ... the first one
  std::string inaccessible;   // the first mapping in the range without read permission
  std::string read_only;      // the first readable mapping in the range without write permission
                              // (both as "start-end perms path"; empty: none)
};

// Reads /proc/self/maps (error paths only). A failed read reports nothing found.
MappingCheck checkMapping(uintptr_t begin, uintptr_t end);

}  // namespace weft::transport::detail
