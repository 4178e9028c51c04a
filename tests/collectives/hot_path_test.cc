// "No per-call allocation after warm-up" for collectives: counts the calling thread's heap
// allocations (tools/alloc_count.h; counting is on only around the measured loop) while two
// ranks repeat a mix of collectives. Covers the communicator, the executor, the shared-memory
// path and UCX's send / receive paths. Growth of UCX's descriptor pools to a new high-water
// mark is counted apart (AllocCount::ucx_pool_growths). WEFT_UCX_KEEPALIVE is raised for this
// test: the transport's peer-liveness check (once per keepalive interval, reading /proc) is
// periodic work, not per-call work.
#include <gtest/gtest.h>

#include <vector>

#include "tests/collectives/coll_test_util.h"
#include "tools/alloc_count.h"

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
  if (!alloc::allocCountAvailable()) GTEST_SKIP() << "allocation counting is off under sanitizers";
  weft::testing::runRanks(
      2,
      [](RankEnv& env) {
        RankComm rc = openWorld(env);
        std::vector<float> small(2, 1.0f), medium(16384, 2.0f);
        std::vector<double> bcast(1000, 3.0);
        for (int i = 0; i < 200; ++i) mix(*rc.comm, small, medium, bcast);  // warm-up
        env.step("measuring");
        alloc::startAllocCount();
        for (int i = 0; i < 200; ++i) mix(*rc.comm, small, medium, bcast);
        const alloc::AllocCount n = alloc::stopAllocCount();
        EXPECT_EQ(n.outsideUcxPools(), 0u) << "heap allocations in 200 rounds of 5 collectives";
        if (n.outsideUcxPools() != 0) {
          ADD_FAILURE() << "the first one was made here:";
          alloc::printFirstAllocation(n);
        }
        // A pool grows by a chunk of descriptors at a time: a few growths in 1,000
        // collectives is a new high-water mark, one per round would be a leak.
        EXPECT_LE(n.ucx_pool_growths, 4u) << "UCX pool growths in 200 rounds of 5 collectives";
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
