// "No per-call allocation after warm-up" for collectives: counts the calling thread's heap
// allocations (malloc family interposed for this test binary; counting is off unless a
// test turns it on for its own thread) while two ranks repeat a mix of collectives. Covers
// the communicator, the executor and UCX's send / receive paths. WEFT_UCX_KEEPALIVE is
// raised for this test: the transport's peer-liveness check (once per keepalive interval,
// reading /proc) is periodic work, not per-call work, and allocates.
#include <gtest/gtest.h>
#include <malloc.h>

#include <cerrno>
#include <cstdlib>
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
        env.step("measuring");
#if WEFT_COUNT_ALLOCATIONS
        t_allocations = 0;
        t_counting = true;
        for (int i = 0; i < 200; ++i) mix(*rc.comm, small, medium, bcast);
        t_counting = false;
        EXPECT_EQ(t_allocations, 0u) << "heap allocations in 200 rounds of 5 collectives";
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
