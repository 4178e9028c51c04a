#include "tools/perf_alloc_count.h"

#include <cerrno>
#include <cstddef>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define WEFT_PERF_COUNT_ALLOCS 0  // the sanitizer owns malloc
#else
#define WEFT_PERF_COUNT_ALLOCS 1
#endif

namespace {
thread_local bool t_counting = false;
thread_local uint64_t t_allocs = 0;
inline void countOne() {
  if (t_counting) ++t_allocs;
}
}  // namespace

#if WEFT_PERF_COUNT_ALLOCS
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

namespace weft::perf {

bool allocCountAvailable() {
  return WEFT_PERF_COUNT_ALLOCS != 0;
}

void startAllocCount() {
  t_allocs = 0;
  t_counting = true;
}

uint64_t stopAllocCount() {
  t_counting = false;
  return t_allocs;
}

}  // namespace weft::perf
