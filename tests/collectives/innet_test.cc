// In-network aggregation emulation (collectives/api/innet.h): the tree layout as a golden
// (no network), then allreduce over real rank processes for several (ranks, radix) shapes
// against a serial reference reduced in the same fixed tree order (bit-exact for every
// type), bit-identical across ranks, in place; a killed switch host and a mismatched count.
#include "collectives/api/innet.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "collectives/innet/innet_tree.h"
#include "collectives/reduce/reducer.h"
#include "tests/collectives/coll_test_util.h"

namespace weft::coll::testing {
namespace {

using detail::InNetTree;
using weft::testing::containsText;
using weft::testing::RankEnv;

InNetTree tree(int ranks, int radix) {
  Result<InNetTree> t = InNetTree::build(ranks, radix);
  EXPECT_TRUE(t.isOk()) << t.status();
  return t.isOk() ? *t : InNetTree{};
}

TEST(InNetTree, GoldenLayouts) {
  EXPECT_EQ(tree(1, 4).toString(), "ranks 1 radix 4 levels 1\nL0.0 @r0: r0 -> root\n");
  EXPECT_EQ(tree(4, 4).toString(), "ranks 4 radix 4 levels 1\nL0.0 @r0: r0 r1 r2 r3 -> root\n");
  EXPECT_EQ(tree(5, 2).toString(),
            "ranks 5 radix 2 levels 3\n"
            "L0.0 @r0: r0 r1 -> L1.0\n"
            "L0.1 @r2: r2 r3 -> L1.0\n"
            "L0.2 @r4: r4 -> L1.1\n"
            "L1.0 @r2: L0.0 L0.1 -> L2.0\n"
            "L1.1 @r4: L0.2 -> L2.0\n"
            "L2.0 @r1: L1.0 L1.1 -> root\n");
  EXPECT_EQ(tree(8, 2).toString(),
            "ranks 8 radix 2 levels 3\n"
            "L0.0 @r0: r0 r1 -> L1.0\n"
            "L0.1 @r2: r2 r3 -> L1.0\n"
            "L0.2 @r4: r4 r5 -> L1.1\n"
            "L0.3 @r6: r6 r7 -> L1.1\n"
            "L1.0 @r1: L0.0 L0.1 -> L2.0\n"
            "L1.1 @r3: L0.2 L0.3 -> L2.0\n"
            "L2.0 @r5: L1.0 L1.1 -> root\n");
  EXPECT_EQ(tree(8, 4).toString(),
            "ranks 8 radix 4 levels 2\n"
            "L0.0 @r0: r0 r1 r2 r3 -> L1.0\n"
            "L0.1 @r4: r4 r5 r6 r7 -> L1.0\n"
            "L1.0 @r1: L0.0 L0.1 -> root\n");
}

TEST(InNetTree, ParentsHostsAndLevels) {
  const InNetTree t = tree(17, 4);  // 5 leaves, 2 switches above them, the root
  EXPECT_EQ(t.levels, 3);
  ASSERT_EQ(t.switches.size(), 8u);
  EXPECT_EQ(t.root(), 7);
  EXPECT_EQ(t.leaf_of_rank[16], 4);
  EXPECT_EQ(t.parentOf(16), 4);
  EXPECT_EQ(t.parentOf(t.ranks + 4), 6);
  EXPECT_EQ(t.parentOf(t.ranks + 7), -1);
  EXPECT_EQ(t.nodeName(t.ranks + 6), "switch L1.1 (on rank 8)");  // (6*4 + 1) mod 17
  EXPECT_EQ(t.hostedBy(0), std::vector<int>{0});
  EXPECT_EQ(t.hostedBy(12), (std::vector<int>{3, 7}));  // leaf L0.3 and the root
  // Every switch but the root has a parent one level up; every node has one parent.
  std::vector<int> parents(static_cast<size_t>(t.numNodes()), 0);
  for (const auto& s : t.switches) {
    for (int c : s.children) ++parents[static_cast<size_t>(c)];
    if (s.parent >= 0) {
      EXPECT_EQ(t.switches[static_cast<size_t>(s.parent)].level, s.level + 1);
    }
  }
  for (int n = 0; n < t.numNodes() - 1; ++n) EXPECT_EQ(parents[static_cast<size_t>(n)], 1) << n;
}

TEST(InNetTree, RejectsBadShapes) {
  EXPECT_EQ(InNetTree::build(4, 1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(InNetTree::build(0, 4).status().code(), StatusCode::kInvalidArgument);
}

// The expected result: the inputs reduced up the same tree in the same child order, with
// the same kernels, finalized at the root.
using Fill = std::function<void(Buffer&, int rank)>;

Buffer treeReference(const InNetTree& t, DataType type, ReduceOp op, size_t count,
                     const Fill& fill) {
  std::function<Buffer(int)> node = [&](int n) {
    Buffer out(type, count);
    if (t.isRank(n)) {
      fill(out, n);
      return out;
    }
    const auto& kids = t.switches[static_cast<size_t>(n - t.ranks)].children;
    out = node(kids[0]);
    for (size_t j = 1; j < kids.size(); ++j) {
      const Buffer in = node(kids[j]);
      must(reduce(type, op, out.data(), in.data(), count), "reference reduce");
    }
    return out;
  };
  Buffer root = node(t.ranks + t.root());
  must(finalizeReduce(type, op, root.data(), count, static_cast<size_t>(t.ranks)), "finalize");
  return root;
}

Buffer treeReference(const InNetTree& t, DataType type, ReduceOp op, size_t count, uint64_t seed) {
  return treeReference(t, type, op, count,
                       [&](Buffer& b, int rank) { fillInput(b, 0, count, op, seed, rank, 0); });
}

// f32 values of mixed magnitudes whose sums round: the reduction order shows in the bits.
void fillRough(Buffer& b, int rank) {
  for (size_t i = 0; i < b.count(); ++i) {
    const uint64_t h =
        (i + 1) * 0x9E3779B97F4A7C15ull ^ (static_cast<uint64_t>(rank) + 7) * 0xBF58476D1CE4E5B9ull;
    const float v = static_cast<float>(static_cast<int64_t>(h % 2000001) - 1000000) / 3.0f *
                    static_cast<float>(1u << (h % 7 * 3));
    uint32_t bits = 0;
    std::memcpy(&bits, &v, sizeof(bits));
    b.setBits(i, bits);
  }
}

// Tree order matters for rounded sums: the result must match the tree-order reference bit
// for bit.
void runRoughSum(Communicator& comm, InNetwork& net) {
  const size_t n = 4099;
  Buffer in(DataType::kF32, n), out(DataType::kF32, n);
  fillRough(in, comm.rank());
  must(net.allreduce(in.data(), out.data(), n, DataType::kF32, ReduceOp::kSum), "rough allreduce");
  const Buffer want =
      treeReference(tree(comm.size(), net.radix()), DataType::kF32, ReduceOp::kSum, n, fillRough);
  EXPECT_TRUE(want.bytes == out.bytes) << "rounded f32 sum differs from the tree-order reference";
  EXPECT_TRUE(sameOnAllRanks(comm, out.data(), out.bytes.size()));
}

struct Case {
  DataType type;
  ReduceOp op;
  size_t count;
  bool in_place;
};

void runCase(Communicator& comm, InNetwork& net, const Case& c, uint64_t seed) {
  SCOPED_TRACE(strCat(c.type, " ", c.op, " count ", c.count, c.in_place ? " in place" : ""));
  Buffer in(c.type, c.count), out(c.type, c.count);
  fillInput(in, 0, c.count, c.op, seed, comm.rank(), 0);
  if (c.in_place) {
    must(net.allreduce(in.data(), in.data(), c.count, c.type, c.op), "allreduce");
    out = in;
  } else {
    must(net.allreduce(in.data(), out.data(), c.count, c.type, c.op), "allreduce");
  }
  const Buffer want = treeReference(tree(comm.size(), net.radix()), c.type, c.op, c.count, seed);
  EXPECT_TRUE(want.bytes == out.bytes) << "differs from the tree-order reference";
  EXPECT_EQ(checkReduction(out, 0, c.count, c.op, seed, comm.size(), 0), "");
  EXPECT_TRUE(sameOnAllRanks(comm, out.data(), out.bytes.size()));
}

void runShape(int ranks, int radix, bool big) {
  weft::testing::runRanks(
      ranks,
      [&](RankEnv& env) {
        RankComm rc = openWorld(env);
        // Small chunks and two credits: the cases below span several chunks per credit window.
        InNetOptions o;
        o.radix = radix;
        o.chunk_bytes = 4096;
        o.credits = 2;
        auto net = must(InNetwork::create(*rc.comm, o), "InNetwork::create");
        EXPECT_EQ(net->radix(), radix);
        const Case cases[] = {{DataType::kF32, ReduceOp::kSum, 4099, false},
                              {DataType::kI32, ReduceOp::kMax, 7, true},
                              {DataType::kBF16, ReduceOp::kSum, 1, false},
                              {DataType::kF64, ReduceOp::kAvg, 4099, true},
                              {DataType::kF32, ReduceOp::kSum, 0, false},
                              {DataType::kU8, ReduceOp::kBxor, 4099, false},
                              {DataType::kI64, ReduceOp::kAvg, 7, false}};
        uint64_t seed = 100;
        for (const Case& c : cases) runCase(*rc.comm, *net, c, seed++);
        runRoughSum(*rc.comm, *net);
        if (big) {
          o.chunk_bytes = 65536;
          o.credits = 4;
          auto wide = must(InNetwork::create(*rc.comm, o), "InNetwork::create (64 KiB chunks)");
          runCase(*rc.comm, *wide, {DataType::kF32, ReduceOp::kSum, (1u << 20) + 3, false}, seed);
        }
        env.barrier("done");
      },
      rankOptions());
}

std::unique_ptr<InNetwork> radixTwo(Communicator& comm) {
  InNetOptions o;
  o.radix = 2;
  return must(InNetwork::create(comm, o), "InNetwork::create");
}

struct TreeShape {
  int ranks;
  int radix;
  bool big;  // also (2^20 + 3) f32 with 64 KiB chunks
};

class InNetShapes : public ::testing::TestWithParam<TreeShape> {};

TEST_P(InNetShapes, MatchTheTreeOrderReference) {
  runShape(GetParam().ranks, GetParam().radix, GetParam().big);
}

INSTANTIATE_TEST_SUITE_P(RanksRadix, InNetShapes,
                         ::testing::Values(TreeShape{1, 4, false}, TreeShape{2, 2, false},
                                           TreeShape{3, 2, false}, TreeShape{4, 4, true},
                                           TreeShape{5, 2, true}, TreeShape{8, 2, false},
                                           TreeShape{8, 4, false}),
                         [](const ::testing::TestParamInfo<TreeShape>& p) {
                           return strCat("ranks", p.param.ranks, "_radix", p.param.radix);
                         });

TEST(InNetAllreduce, DefaultsFromEnvironmentAndBadArguments) {
  weft::testing::RankOptions opts = rankOptions();
  opts.env.emplace_back("WEFT_INNET_RADIX", "3");
  opts.env.emplace_back("WEFT_INNET_CHUNK", "128");
  opts.env.emplace_back("WEFT_INNET_CREDITS", "1");
  weft::testing::runRanks(
      4,
      [](RankEnv& env) {
        RankComm rc = openWorld(env);
        auto net = must(InNetwork::create(*rc.comm), "InNetwork::create");
        EXPECT_EQ(net->radix(), 3);
        EXPECT_EQ(net->chunkBytes(), 128u);
        EXPECT_EQ(net->credits(), 1);
        EXPECT_EQ(net->levels(), 2);
        runCase(*rc.comm, *net, {DataType::kF32, ReduceOp::kSum, 1000, true}, 7);
        std::vector<float> v(8, 1.0f);
        EXPECT_EQ(net->allreduce(v.data(), v.data() + 1, 4, DataType::kF32, ReduceOp::kSum).code(),
                  StatusCode::kInvalidArgument);
        EXPECT_EQ(net->allreduce(v.data(), v.data(), 4, DataType::kF32, ReduceOp::kBand).code(),
                  StatusCode::kInvalidArgument);
        InNetOptions bad;
        bad.radix = 1;
        EXPECT_EQ(InNetwork::create(*rc.comm, bad).status().code(), StatusCode::kInvalidArgument);
        // The rejected calls took no sequence number: the next one still matches.
        runCase(*rc.comm, *net, {DataType::kI32, ReduceOp::kSum, 300, false}, 8);
        env.barrier("done");
      },
      opts);
}

// WEFT_ALGO_ALLREDUCE=innet routes the blocking coll::allreduce through a communicator-owned
// InNetwork (made by the first call); iallreduce has no such algorithm.
TEST(InNetAllreduce, SelectedByAlgorithmName) {
  weft::testing::RankOptions opts = rankOptions();
  opts.env.emplace_back("WEFT_ALGO_ALLREDUCE", "innet");
  opts.env.emplace_back("WEFT_INNET_CHUNK", "256");
  weft::testing::runRanks(
      3,
      [](RankEnv& env) {
        RankComm rc = openWorld(env);
        for (uint64_t seed = 1; seed <= 2; ++seed) {
          Buffer in(DataType::kF32, 1000), out(DataType::kF32, 1000);
          fillInput(in, 0, in.count(), ReduceOp::kSum, seed, rc.comm->rank(), 0);
          must(allreduce(*rc.comm, in.data(), out.data(), in.count(), DataType::kF32,
                         ReduceOp::kSum),
               "allreduce (WEFT_ALGO_ALLREDUCE=innet)");
          EXPECT_TRUE(treeReference(tree(3, 4), DataType::kF32, ReduceOp::kSum, 1000, seed).bytes ==
                      out.bytes);
        }
        CallOptions ring;
        ring.algorithm = "ring";
        std::vector<int32_t> v(10, 1);
        must(
            allreduce(*rc.comm, v.data(), v.data(), v.size(), DataType::kI32, ReduceOp::kSum, ring),
            "allreduce, algorithm ring");
        EXPECT_EQ(v[9], 3);
        EXPECT_FALSE(
            iallreduce(*rc.comm, v.data(), v.data(), v.size(), DataType::kI32, ReduceOp::kSum)
                .isOk());
        env.barrier("done");
      },
      opts);
}

// Ranks 0..3, radix 2: L0.0 (r0 r1) on rank 0, L0.1 (r2 r3) on rank 2, the root on rank 1.
// Rank 2 dies: a rank and a switch host at once.
TEST(InNetAllreduce, KilledSwitchHostFailsTheOthersNamingIt) {
  weft::testing::RankOptions opts = rankOptions();
  opts.env = rankEnv(30);
  opts.may_fail = {2};
  weft::testing::runRanks(
      4,
      [](RankEnv& env) {
        RankComm rc = openWorld(env);
        auto net = radixTwo(*rc.comm);
        std::vector<float> v(5000, 1.0f);
        must(net->allreduce(v.data(), v.data(), v.size(), DataType::kF32, ReduceOp::kSum), "first");
        env.barrier("connected");
        if (rc.comm->rank() == 2) {
          env.step("killing myself");
          ::kill(::getpid(), SIGKILL);
        }
        env.step("allreduce with a dead switch host");
        const auto start = std::chrono::steady_clock::now();
        Status st = net->allreduce(v.data(), v.data(), v.size(), DataType::kF32, ReduceOp::kSum);
        const double waited =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::cerr << "rank " << rc.comm->rank() << " got: " << st << "\n";
        EXPECT_EQ(st.code(), StatusCode::kPeerFailure) << st;
        EXPECT_TRUE(containsText(st.message(), "innet allreduce #1"));
        EXPECT_TRUE(containsText(st.message(), "rank 2"));
        EXPECT_TRUE(containsText(st.message(), "switch L"));
        EXPECT_LT(waited, 25.0) << "the failure must be reported well before the 30 s deadline";
        Status after = net->allreduce(v.data(), v.data(), 1, DataType::kF32, ReduceOp::kSum);
        EXPECT_FALSE(after.isOk());
        waitForCount(env, "survivors", 3);
      },
      opts);
}

// Ranks 0..2, radix 2: L0.0 (r0 r1) on rank 0 sees rank 1's chunk header with another count.
TEST(InNetAllreduce, MismatchedCountIsAClearError) {
  weft::testing::runRanks(
      3,
      [](RankEnv& env) {
        RankComm rc = openWorld(env);
        auto net = radixTwo(*rc.comm);
        std::vector<float> v(8, 1.0f);
        const size_t count = rc.comm->rank() == 1 ? 8 : 7;
        env.barrier("ready");  // the 3 s deadline starts together on every rank
        CallOptions call;
        call.deadline = Deadline::afterSeconds(3);
        Status st = net->allreduce(v.data(), v.data(), count, DataType::kF32, ReduceOp::kSum, call);
        EXPECT_FALSE(st.isOk());
        std::cerr << "rank " << rc.comm->rank() << " got: " << st << "\n";
        if (rc.comm->rank() == 0) {
          EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st;
          EXPECT_TRUE(containsText(st.message(), "8 x f32"));
          EXPECT_TRUE(containsText(st.message(), "rank 1 -> switch L0.0 (on rank 0)"));
        }
        waitForCount(env, "finished", 3);
      },
      rankOptions());
}

}  // namespace
}  // namespace weft::coll::testing
