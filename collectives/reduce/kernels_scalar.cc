// Scalar reduction kernels: the reference semantics, and the only ones off x86-64.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "collectives/reduce/half.h"
#include "collectives/reduce/kernel_table.h"
// Last: it includes nothing itself (see its header comment).
#include "collectives/reduce/kernel_ops.h"

namespace weft::coll::detail {
namespace {

struct ScalarIsa {
  template <class T>
  using Plain = ScalarLane<T>;
  using F16 = ScalarF16Lane;
  using Bf16 = ScalarBf16Lane;
};

}  // namespace

void fillScalarKernels(KernelTable& table) {
  fillKernelTable<ScalarIsa>(table);
}

}  // namespace weft::coll::detail
