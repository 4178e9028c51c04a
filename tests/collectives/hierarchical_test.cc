// Hierarchical allreduce (collectives/api/hierarchical.h) over real rank processes placed on
// "nodes" with WEFT_NODE_ID: results against the serial reference, bit-identical across
// ranks, in place and not, uneven nodes, and the phase named in errors.
#include "collectives/api/hierarchical.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/collectives/coll_test_util.h"

namespace weft::coll::testing {
namespace {

using weft::testing::RankEnv;

struct Case {
  DataType type;
  ReduceOp op;
  size_t count;
  bool in_place;
};

void runCases(RankEnv& env, const std::vector<std::string>& nodes, int expect_nodes) {
  RankComm rc = openWorld(env, nodes);
  auto h = must(Hierarchy::create(*rc.comm), "Hierarchy::create");
  EXPECT_EQ(h->numNodes(), expect_nodes);
  EXPECT_EQ(h->leaders() != nullptr, rc.comm->topology().local_rank == 0);
  const Case cases[] = {{DataType::kF32, ReduceOp::kSum, 4099, false},
                        {DataType::kF64, ReduceOp::kAvg, 1000, true},
                        {DataType::kI32, ReduceOp::kMax, 7, false},
                        {DataType::kU64, ReduceOp::kBxor, (1u << 20) + 3, true},
                        {DataType::kBF16, ReduceOp::kSum, 513, false},
                        {DataType::kF32, ReduceOp::kProd, 0, false},
                        // Sliced form on even nodes (>= 64 KiB), with and without leftover.
                        {DataType::kF32, ReduceOp::kSum, 50001, false},
                        {DataType::kF64, ReduceOp::kAvg, 40002, true},
                        {DataType::kI64, ReduceOp::kMin, 30000, false}};
  const int p = rc.comm->size();
  uint64_t seed = 17;
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(toString(c.type)) + " " + std::string(toString(c.op)) +
                 " count " + std::to_string(c.count) + (c.in_place ? " in place" : ""));
    Buffer in(c.type, c.count), out(c.type, c.count);
    fillInput(in, 0, c.count, c.op, seed, rc.comm->rank(), 0);
    if (c.in_place) {
      must(h->allreduce(in.data(), in.data(), c.count, c.type, c.op), "allreduce");
      out = in;
    } else {
      must(h->allreduce(in.data(), out.data(), c.count, c.type, c.op), "allreduce");
    }
    EXPECT_EQ(checkReduction(out, 0, c.count, c.op, seed, p, 0), "");
    EXPECT_TRUE(sameOnAllRanks(*rc.comm, out.data(), out.bytes.size()));
    ++seed;
  }
  env.barrier("done");
}

TEST(CollectivesHierarchical, TwoNodesOfTwo) {
  const std::vector<std::string> nodes = {"a", "a", "b", "b"};
  weft::testing::RankOptions o = rankOptions();
  o.node_ids = nodes;
  weft::testing::runRanks(4, [&](RankEnv& env) { runCases(env, nodes, 2); }, o);
}

TEST(CollectivesHierarchical, ThreeInterleavedNodesOfTwo) {
  // Local rank 0 of nodes p, q, r: ranks 0, 1, 2; local rank 1: ranks 3, 4, 5.
  const std::vector<std::string> nodes = {"p", "q", "r", "p", "q", "r"};
  weft::testing::RankOptions o = rankOptions();
  o.node_ids = nodes;
  weft::testing::runRanks(6, [&](RankEnv& env) { runCases(env, nodes, 3); }, o);
}

TEST(CollectivesHierarchical, UnevenInterleavedNodes) {
  // Ranks 0, 2, 4 on one node, 1 and 3 on the other: leaders are ranks 0 and 1.
  const std::vector<std::string> nodes = {"x", "y", "x", "y", "x"};
  weft::testing::RankOptions o = rankOptions();
  o.node_ids = nodes;
  weft::testing::runRanks(5, [&](RankEnv& env) { runCases(env, nodes, 2); }, o);
}

TEST(CollectivesHierarchical, OneNodeAndBadArgumentsNameThePhase) {
  weft::testing::runRanks(
      3,
      [](RankEnv& env) {
        RankComm rc = openWorld(env);
        auto h = must(Hierarchy::create(*rc.comm), "Hierarchy::create");
        EXPECT_EQ(h->numNodes(), 1);
        std::vector<float> v(10, 1.0f);
        must(h->allreduce(v.data(), v.data(), v.size(), DataType::kF32, ReduceOp::kSum), "sum");
        EXPECT_EQ(v[9], 3.0f);
        Status bad = h->allreduce(v.data(), v.data(), v.size(), DataType::kF32, ReduceOp::kBand);
        EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument) << bad;
        Status null_buf = h->allreduce(nullptr, nullptr, 4, DataType::kF32, ReduceOp::kSum);
        EXPECT_EQ(null_buf.code(), StatusCode::kInvalidArgument) << null_buf;
        EXPECT_NE(null_buf.toString().find("hierarchical allreduce"), std::string::npos)
            << null_buf;
        env.barrier("done");
      },
      rankOptions());
}

}  // namespace
}  // namespace weft::coll::testing
