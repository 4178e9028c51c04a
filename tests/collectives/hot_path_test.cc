// "No per-call allocation after warm-up" for collectives: counts the calling thread's heap
// allocations (malloc family interposed for this test binary; counting is off unless a
// test turns it on for its own thread) while two ranks repeat a mix of collectives. Covers
// the communicator, the executor and UCX's send / receive paths. Growth of UCX's internal
// descriptor pools to a new high-water mark is counted apart (see t_pool_growths). WEFT_UCX_KEEPALIVE is
// raised for this test: the transport's peer-liveness check (once per keepalive interval,
// reading /proc) is periodic work, not per-call work, and allocates.
#include <gtest/gtest.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <malloc.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "tests/collectives/coll_test_util.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define WEFT_COUNT_ALLOCATIONS 0  // the sanitizer owns malloc
#else
#define WEFT_COUNT_ALLOCATIONS 1
#endif

#if WEFT_COUNT_ALLOCATIONS
namespace {
thread_local bool t_counting = false;
thread_local uint64_t t_allocations = 0;
// Growths of UCX's own memory pools (ucs_mpool_grow): UCX keeps a pool of descriptors for
// messages that arrive before their receive is posted and grows it when that backlog
// exceeds its high-water mark, which depends on how the two ranks interleave. That is
// amortized growth inside UCX, not per-call work; counted apart and bounded.
thread_local uint64_t t_pool_growths = 0;
// Where the first counted allocation came from (printed when the test fails).
thread_local void* t_first_stack[32];
thread_local int t_first_depth = 0;
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
inline void count() {
  if (!t_counting) return;
  t_counting = false;  // backtrace() and dladdr() must not count themselves
  void* stack[32];
  int depth = backtrace(stack, 32);
  if (inUcxPoolGrowth(stack, depth)) {
    ++t_pool_growths;
  } else if (t_allocations++ == 0) {
    std::memcpy(t_first_stack, stack, sizeof(stack));
    t_first_depth = depth;
  }
  t_counting = true;
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

namespace weft::coll::testing {
namespace {

using weft::testing::RankEnv;

void mix(Communicator& comm, std::vector<float>& small, std::vector<float>& medium,
         std::vector<double>& bcast) {
  CallOptions chunked;
  chunked.chunk_bytes = 4096;  // 16 chunks per 64 KiB message, every one eager
  must(allreduce(comm, small.data(), small.data(), small.size(), DataType::kF32, ReduceOp::kSum),
       "small allreduce");
  must(allreduce(comm, medium.data(), medium.data(), medium.size(), DataType::kF32, ReduceOp::kMax,
                 chunked),
       "chunked allreduce");
  must(broadcast(comm, bcast.data(), bcast.size(), DataType::kF64, 1), "broadcast");
  must(barrier(comm), "barrier");
  Request r = must(
      iallreduce(comm, small.data(), small.data(), small.size(), DataType::kF32, ReduceOp::kAvg),
      "iallreduce");
  must(r.wait(), "wait");
}

TEST(CollectivesHotPath, RepeatedCollectivesAllocateNothingAfterWarmUp) {
  if (!WEFT_COUNT_ALLOCATIONS) GTEST_SKIP() << "allocation counting is off under sanitizers";
  weft::testing::runRanks(
      2,
      [](RankEnv& env) {
        RankComm rc = openWorld(env);
        std::vector<float> small(2, 1.0f), medium(16384, 2.0f);
        std::vector<double> bcast(1000, 3.0);
        for (int i = 0; i < 200; ++i) mix(*rc.comm, small, medium, bcast);  // warm-up
        t_first_depth = backtrace(t_first_stack, 32);  // loads the unwinder before counting
        env.step("measuring");
#if WEFT_COUNT_ALLOCATIONS
        t_allocations = 0;
        t_pool_growths = 0;
        t_counting = true;
        for (int i = 0; i < 200; ++i) mix(*rc.comm, small, medium, bcast);
        t_counting = false;
        EXPECT_EQ(t_allocations, 0u) << "heap allocations in 200 rounds of 5 collectives";
        if (t_allocations != 0) {
          ADD_FAILURE() << "the first one was made here:";
          backtrace_symbols_fd(t_first_stack, t_first_depth, STDERR_FILENO);
        }
        // A pool grows by a chunk of descriptors at a time: a few growths in 1,000
        // collectives is a new high-water mark, one per round would be a leak.
        EXPECT_LE(t_pool_growths, 4u) << "UCX pool growths in 200 rounds of 5 collectives";
#endif
        env.barrier("done");
      },
      [] {
        weft::testing::RankOptions o = rankOptions();
        o.env.push_back({"WEFT_UCX_KEEPALIVE", "600"});
        return o;
      }());
}

}  // namespace
}  // namespace weft::coll::testing
