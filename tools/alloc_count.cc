#include "tools/alloc_count.h"

#include <dlfcn.h>
#include <execinfo.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define WEFT_COUNT_ALLOCS 0  // the sanitizer owns malloc
#else
#define WEFT_COUNT_ALLOCS 1
#endif

namespace {
thread_local bool t_counting = false;
thread_local weft::alloc::AllocCount t_count;

bool inUcxPoolGrowth(void* const* stack, int depth) {
  for (int i = 0; i < depth; ++i) {
    Dl_info info;  // dladdr does not allocate
    if (dladdr(stack[i], &info) != 0 && info.dli_sname != nullptr &&
        std::strcmp(info.dli_sname, "ucs_mpool_grow") == 0) {
      return true;
    }
  }
  return false;
}

inline void countOne() {
  if (!t_counting) [[likely]]
    return;
  t_counting = false;  // backtrace() and dladdr() must not count themselves
  void* stack[32];
  const int depth = backtrace(stack, 32);
  ++t_count.total;
  if (inUcxPoolGrowth(stack, depth)) {
    ++t_count.ucx_pool_growths;
  } else if (t_count.first_depth == 0) {
    std::memcpy(t_count.first_stack, stack, sizeof(stack));
    t_count.first_depth = depth;
  }
  t_counting = true;
}
}  // namespace

#if WEFT_COUNT_ALLOCS
// glibc's implementations; every allocation of the process (ours, UCX's, libstdc++'s
// operator new) goes through these wrappers.
extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);

void* malloc(size_t n) {
  countOne();
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t m) {
  countOne();
  return __libc_calloc(n, m);
}
void* realloc(void* p, size_t n) {
  countOne();
  return __libc_realloc(p, n);
}
void* memalign(size_t align, size_t n) {
  countOne();
  return __libc_memalign(align, n);
}
void* aligned_alloc(size_t align, size_t n) {
  countOne();
  return __libc_memalign(align, n);
}
int posix_memalign(void** out, size_t align, size_t n) {
  countOne();
  void* p = __libc_memalign(align, n);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
}  // extern "C"
#endif

namespace weft::alloc {

bool allocCountAvailable() {
  return WEFT_COUNT_ALLOCS != 0;
}

void startAllocCount() {
  void* warm[4];
  (void)backtrace(warm, 4);  // the first call loads libgcc's unwinder (and allocates)
  t_count = AllocCount{};
  t_counting = true;
}

AllocCount stopAllocCount() {
  t_counting = false;
  return t_count;
}

void printFirstAllocation(const AllocCount& count) {
  if (count.first_depth > 0) backtrace_symbols_fd(count.first_stack, count.first_depth, 2);
}

}  // namespace weft::alloc
