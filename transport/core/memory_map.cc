// checkMapped / checkMapping: see memory_map.h.
#include "transport/core/memory_map.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace weft::transport::detail {
namespace {

std::string rangeText(const void* address, size_t length) {
  return strCat("[", address, "+", length, ")");
}

}  // namespace

Status checkMapped(const void* address, size_t length) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  uintptr_t begin = reinterpret_cast<uintptr_t>(address) & ~(page - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(address) + length;
  if (end < reinterpret_cast<uintptr_t>(address)) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "registerMemory: ", rangeText(address, length),
                      " wraps around the address space");
  }
  constexpr size_t kPagesPerCall = 4096;
  unsigned char vec[kPagesPerCall];
  while (begin < end) {
    const size_t pages = std::min<size_t>(kPagesPerCall, (end - begin + page - 1) / page);
    if (::mincore(reinterpret_cast<void*>(begin), pages * page, vec) != 0) {
      const int err = errno;
      if (err == ENOMEM) {
        return WEFT_ERROR(StatusCode::kInvalidArgument,
                          "registerMemory: ", rangeText(address, length),
                          " is not mapped memory of this process (no mapping at ",
                          reinterpret_cast<void*>(begin), " or after it)")
            .withHint("register memory the process allocated and still owns");
      }
      return WEFT_ERROR(StatusCode::kIoError, "registerMemory: mincore on ",
                        rangeText(address, length), ": ", errnoString(err));
    }
    begin += pages * page;
  }
  return Status::ok();
}

MappingCheck checkMapping(uintptr_t begin, uintptr_t end) {
  MappingCheck out;
  std::ifstream maps("/proc/self/maps");
  if (!maps.is_open()) return out;
  out.known = true;
  std::string line;
  uintptr_t covered = begin;  // [begin, covered) is mapped; the lines come sorted by address
  while (covered < end && std::getline(maps, line)) {
    uintptr_t lo = 0;
    uintptr_t hi = 0;
    char perms[8] = {};
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR " %7s", &lo, &hi, perms) != 3) continue;
    if (hi <= covered) continue;
    if (lo > covered) break;  // a hole at `covered`
    std::string& slot = perms[0] != 'r' ? out.inaccessible : out.read_only;
    if ((perms[0] != 'r' || perms[1] != 'w') && slot.empty()) {
      // "lo-hi perms offset dev inode [path]": keep the range, the permissions and the path.
      std::istringstream fields(line);
      std::string range, mode, offset, dev, inode, path;
      fields >> range >> mode >> offset >> dev >> inode;
      std::getline(fields >> std::ws, path);
      slot = strCat(range, " ", mode, path.empty() ? "" : " ", path);
    }
    covered = hi;
  }
  if (covered < end) {
    out.hole = true;
    out.hole_at = covered;
  }
  return out;
}

}  // namespace weft::transport::detail
