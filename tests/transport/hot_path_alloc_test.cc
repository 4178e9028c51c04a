// "No allocation on the hot path of a small send after warm-up", checked by counting the
// calling thread's heap allocations (malloc family interposed for this test binary; the
// counters only move while a test enables them on its own thread). Covers our code and
// UCX's (both allocate through malloc / posix_memalign).
#include <gtest/gtest.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "common/store/store.h"
#include "transport/api/context.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define WEFT_COUNT_ALLOCATIONS 0  // the sanitizer owns malloc
#else
#define WEFT_COUNT_ALLOCATIONS 1
#endif

#if WEFT_COUNT_ALLOCATIONS
namespace {
thread_local bool t_counting = false;
thread_local uint64_t t_allocations = 0;
inline void count() {
  if (t_counting) ++t_allocations;
}
}  // namespace

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);

void* malloc(size_t n) {
  count();
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t m) {
  count();
  return __libc_calloc(n, m);
}
void* realloc(void* p, size_t n) {
  count();
  return __libc_realloc(p, n);
}
void* memalign(size_t align, size_t n) {
  count();
  return __libc_memalign(align, n);
}
void* aligned_alloc(size_t align, size_t n) {
  count();
  return __libc_memalign(align, n);
}
int posix_memalign(void** out, size_t align, size_t n) {
  count();
  void* p = __libc_memalign(align, n);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
}  // extern "C"
#endif

namespace weft::transport {
namespace {

#if WEFT_HAVE_UCX
// One round trip of 8-byte messages through a loopback endpoint, waited on.
void roundTrip(Endpoint& ep, uint64_t& out, uint64_t& in) {
  Result<Request> r = ep.recv(&in, sizeof(in), 3);
  Result<Request> s = ep.send(&out, sizeof(out), 3);
  if (!r.isOk() || !s.isOk()) throw std::runtime_error("post failed");
  if (!s->wait(Deadline::never()).isOk() || !r->wait(Deadline::never()).isOk()) {
    throw std::runtime_error("wait failed");
  }
  ++out;
}

TEST(HotPathTest, SmallSendRecvAllocatesNothingAfterWarmUp) {
  if (!WEFT_COUNT_ALLOCATIONS) GTEST_SKIP() << "allocation counting is off under sanitizers";
  auto ctx = openContext("ucx");
  ASSERT_TRUE(ctx.isOk()) << ctx.status();
  auto store = makeHashStore();
  auto ep = (*ctx)->connect(*store, 0, Deadline::afterSeconds(10));
  ASSERT_TRUE(ep.isOk()) << ep.status();
  uint64_t out = 0;
  uint64_t in = 0;
  for (int i = 0; i < 2000; ++i) roundTrip(**ep, out, in);  // warm-up
#if WEFT_COUNT_ALLOCATIONS
  t_allocations = 0;
  t_counting = true;
#endif
  // getppid() marks the measured window for a syscall check by hand:
  //   strace -f -o trace ./weft_transport_tests --gtest_filter='HotPath*'
  // and count the calls between the two getppid lines of this thread.
  ::getppid();
  for (int i = 0; i < 10000; ++i) roundTrip(**ep, out, in);
  ::getppid();
#if WEFT_COUNT_ALLOCATIONS
  t_counting = false;
  EXPECT_EQ(t_allocations, 0u) << "heap allocations in 10000 small send/recv round trips";
  // The counter sees allocations made inside UCX too (ucp_mem_map allocates its handle).
  std::vector<char> mem(4096);
  t_counting = true;
  auto mr = (*ctx)->registerMemory(mem.data(), mem.size());
  t_counting = false;
  ASSERT_TRUE(mr.isOk()) << mr.status();
  EXPECT_GE(t_allocations, 1u);
#endif
  EXPECT_EQ(in, out - 1);
}
#endif

}  // namespace
}  // namespace weft::transport
