// Communicator features over real rank processes (UCX shared memory): big counts,
// outstanding non-blocking operations, split and groups with topology, WEFT_ALGO_<OP>,
// WEFT_CHECK mismatches, deadlines, and a killed rank.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "tests/collectives/coll_cases.h"
#include "tests/collectives/coll_test_util.h"

namespace weft::coll::testing {
namespace {

using weft::testing::containsText;
using weft::testing::RankEnv;
using weft::testing::RankOptions;
using weft::testing::runRanks;

constexpr size_t kBig = (size_t{1} << 20) + 3;

void expectCase(Communicator& comm, RankEnv& env, const Case& c) {
  env.step(c.describe());
  EXPECT_EQ(runCase(comm, c), "") << c.describe();
}

Case makeCase(CollKind kind, std::string_view algo, size_t count, bool inPlace, int root,
              DataType type, uint64_t seed) {
  Case c;
  c.kind = kind;
  c.algorithm = algo;
  c.count = count;
  c.in_place = inPlace;
  c.root = root;
  c.type = type;
  c.seed = seed;
  return c;
}

TEST(CollectivesBig, MillionElementsOnFourRanks) {
  runRanks(
      4,
      [](RankEnv& env) {
        RankComm rc = openWorld(env);
        Communicator& comm = *rc.comm;
        expectCase(comm, env, makeCase(CollKind::kAllreduce, "", kBig, true, 0, DataType::kF32, 1));
        expectCase(comm, env,
                   makeCase(CollKind::kAllreduce, "ring", kBig, false, 0, DataType::kI64, 2));
        expectCase(
            comm, env,
            makeCase(CollKind::kAllreduce, "double_tree", kBig, true, 0, DataType::kBF16, 3));
        expectCase(
            comm, env,
            makeCase(CollKind::kReduceScatter, "rabenseifner", kBig, false, 0, DataType::kI32, 4));
        expectCase(
            comm, env,
            makeCase(CollKind::kBroadcast, "binary_tree", kBig, false, 3, DataType::kF64, 5));
        expectCase(comm, env, makeCase(CollKind::kAllgather, "", kBig, true, 0, DataType::kU8, 6));
        env.barrier("done");
      },
      rankOptions());
}

TEST(CollectivesBig, MillionElementsOnThreeRanksWithTheFold) {
  runRanks(
      3,
      [](RankEnv& env) {
        RankComm rc = openWorld(env);
        Communicator& comm = *rc.comm;
        expectCase(
            comm, env,
            makeCase(CollKind::kAllreduce, "rabenseifner", kBig, false, 0, DataType::kF32, 7));
        expectCase(comm, env, makeCase(CollKind::kReduce, "", kBig, false, 2, DataType::kI32, 8));
        expectCase(comm, env,
                   makeCase(CollKind::kAlltoall, "", kBig / 4, false, 0, DataType::kF32, 9));
        env.barrier("done");
      },
      rankOptions());
}

// Several operations in flight on two communicators; ranks wait for them in different
// orders, which only works when waiting on one keeps the others moving.
TEST(CollectivesNonBlocking, OutstandingOperationsCompleteInAnyWaitOrder) {
  runRanks(
      4,
      [](RankEnv& env) {
        RankComm rc = openWorld(env);
        Communicator& comm = *rc.comm;
        auto half = must(comm.split(comm.rank() % 2, comm.rank()), "split");
        const int r = comm.rank();
        const size_t n = 300000;  // large enough for rendezvous messages
        Buffer a(DataType::kF32, n), b(DataType::kI32, n), c(DataType::kF64, 4 * 1000),
            d(DataType::kI64, n);
        fillInput(a, 0, n, ReduceOp::kSum, 11, r, 0);
        fillInput(b, 0, n, ReduceOp::kSum, 12, 3, 0);
        fillInput(c, static_cast<size_t>(r) * 1000, 1000, ReduceOp::kSum, 13, r, 0);
        fillInput(d, 0, n, ReduceOp::kSum, 14, half->rank(), 0);
        CallOptions o;
        o.chunk_bytes = 65536;
        std::vector<Request> reqs;
        reqs.push_back(
            must(iallreduce(comm, a.data(), a.data(), n, DataType::kF32, ReduceOp::kSum, o), "A"));
        reqs.push_back(must(ibroadcast(comm, b.data(), n, DataType::kI32, 3, o), "B"));
        reqs.push_back(must(iallgather(comm, c.at(static_cast<size_t>(r) * 1000), c.data(), 1000,
                                       DataType::kF64, o),
                            "C"));
        reqs.push_back(
            must(iallreduce(*half, d.data(), d.data(), n, DataType::kI64, ReduceOp::kSum, o), "D"));
        EXPECT_EQ(reqs[0].seq(), 1u);  // split took sequence number 0
        EXPECT_EQ(reqs[2].seq(), 3u);
        EXPECT_EQ(reqs[3].operation(), "allreduce");
        env.step("waiting in a rank-dependent order");
        if (r % 2 == 1) std::reverse(reqs.begin(), reqs.end());
        if (r == 2) {
          while (!reqs[1].test()) {
          }
        }
        for (Request& q : reqs) EXPECT_TRUE(q.wait().isOk()) << q.status();
        EXPECT_EQ(checkReduction(a, 0, n, ReduceOp::kSum, 11, 4, 0), "");
        EXPECT_EQ(checkCopy(b, 0, n, ReduceOp::kSum, 12, 3, 0), "");
        for (int j = 0; j < 4; ++j) {
          EXPECT_EQ(checkCopy(c, static_cast<size_t>(j) * 1000, 1000, ReduceOp::kSum, 13, j, 0),
                    "");
        }
        EXPECT_EQ(checkReduction(d, 0, n, ReduceOp::kSum, 14, 2, 0), "");
        env.barrier("done");
      },
      rankOptions());
}

TEST(CollectivesComm, SplitGroupsAndTopology) {
  RankOptions opts = rankOptions();
  opts.node_ids = {"a", "a", "b", "b", "b"};
  runRanks(
      5,
      [](RankEnv& env) {
        const std::vector<std::string> nodes = {"a", "a", "b", "b", "b"};
        RankComm rc = openWorld(env, nodes);
        Communicator& world = *rc.comm;
        const int r = world.rank();
        env.step("world topology");
        EXPECT_EQ(world.topology().num_nodes, 2);
        EXPECT_EQ(world.topology().node, r < 2 ? 0 : 1);
        EXPECT_EQ(world.topology().local_rank, r < 2 ? r : r - 2);
        EXPECT_EQ(world.topology().local_size, r < 2 ? 2 : 3);

        env.step("split by parity, reversed keys");
        auto half = must(world.split(r % 2, -r), "split");
        ASSERT_NE(half, nullptr);
        const std::vector<int> expected =
            r % 2 == 0 ? std::vector<int>{4, 2, 0} : std::vector<int>{3, 1};
        EXPECT_EQ(half->group().worldRanks(), expected);
        EXPECT_EQ(half->size(), static_cast<int>(expected.size()));
        EXPECT_EQ(half->worldRank(half->rank()), r);
        EXPECT_NE(half->id(), world.id());
        if (r % 2 == 0) {  // members on nodes b, b, a: b is node 0 of this communicator
          EXPECT_EQ(half->topology().num_nodes, 2);
          EXPECT_EQ(half->topology().node, r == 0 ? 1 : 0);
        }
        int64_t mine = r, sum = 0;
        must(allreduce(*half, &mine, &sum, 1, DataType::kI64, ReduceOp::kSum), "allreduce on half");
        EXPECT_EQ(sum, r % 2 == 0 ? 6 : 4);

        env.step("nested split and undefined color");
        auto sub =
            must(half->split(half->rank() == 0 ? Communicator::kUndefinedColor : 0, 0), "split 2");
        EXPECT_EQ(sub == nullptr, half->rank() == 0);
        if (sub) {
          int64_t one = 1, count = 0;
          must(allreduce(*sub, &one, &count, 1, DataType::kI64, ReduceOp::kSum),
               "allreduce on sub");
          EXPECT_EQ(count, half->size() - 1);
        }

        env.step("groups");
        const Group all = world.group();
        const Group tail = must(all.exclude(std::vector<int>{0}), "exclude");
        const Group pick = must(all.include(std::vector<int>{3, 1}), "include");
        EXPECT_EQ(tail.worldRanks(), (std::vector<int>{1, 2, 3, 4}));
        EXPECT_EQ(pick.intersection(tail).worldRanks(), (std::vector<int>{3, 1}));
        EXPECT_EQ(
            pick.unionWith(must(all.include(std::vector<int>{0, 3}), "include 2")).worldRanks(),
            (std::vector<int>{3, 1, 0}));
        auto fromGroup = must(world.createFromGroup(pick), "createFromGroup");
        EXPECT_EQ(fromGroup != nullptr, r == 3 || r == 1);
        if (fromGroup) {
          EXPECT_EQ(fromGroup->rank(), r == 3 ? 0 : 1);
          int64_t v = r, maxv = 0;
          must(allreduce(*fromGroup, &v, &maxv, 1, DataType::kI64, ReduceOp::kMax),
               "allreduce max");
          EXPECT_EQ(maxv, 3);
        }
        EXPECT_EQ(world.createFromGroup(must(Group::fromWorldRanks({7}), "group")).status().code(),
                  StatusCode::kInvalidArgument);

        env.step("the world still works after the splits");
        EXPECT_EQ(
            runCase(world, makeCase(CollKind::kAllreduce, "", 4099, false, 0, DataType::kF64, 3)),
            "");
        env.barrier("done");
      },
      opts);
}

TEST(CollectivesSelection, AlgorithmOverridesFromTheEnvironment) {
  RankOptions opts = rankOptions();
  opts.env.push_back({"WEFT_ALGO_ALLREDUCE", "rabenseifner"});
  opts.env.push_back({"WEFT_ALGO_BROADCAST", "nope"});
  runRanks(
      3,
      [](RankEnv& env) {
        RankComm rc = openWorld(env);
        Communicator& comm = *rc.comm;
        std::vector<float> v(100, 1.0f);
        Request r =
            must(iallreduce(comm, v.data(), v.data(), v.size(), DataType::kF32, ReduceOp::kSum),
                 "iallreduce");
        EXPECT_EQ(r.algorithm(), "rabenseifner");
        EXPECT_TRUE(r.wait().isOk());
        EXPECT_EQ(v[0], 3.0f);
        const uint64_t seq = comm.nextSeq();
        Status st = broadcast(comm, v.data(), v.size(), DataType::kF32, 0);
        EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st;
        EXPECT_TRUE(containsText(st.message(), "WEFT_ALGO_BROADCAST=\"nope\""));
        EXPECT_TRUE(containsText(st.message(), "valid: ring, binary_tree, binomial"));
        EXPECT_EQ(comm.nextSeq(), seq);  // nothing was started
        CallOptions o;
        o.algorithm = "binomial";  // a per-call choice wins over the environment
        EXPECT_TRUE(broadcast(comm, v.data(), v.size(), DataType::kF32, 2, o).isOk());
        env.barrier("done");
      },
      opts);
}

TEST(CollectivesCheck, MismatchedCallsFailOnEveryRankNamingThem) {
  RankOptions opts = rankOptions();
  opts.env.push_back({"WEFT_CHECK", "1"});
  runRanks(
      3,
      [](RankEnv& env) {
        RankComm rc = openWorld(env);
        Communicator& comm = *rc.comm;
        const int r = comm.rank();
        std::vector<float> v(8, 1.0f);
        env.step("count mismatch");
        Status st =
            allreduce(comm, v.data(), v.data(), r == 2 ? 5 : 4, DataType::kF32, ReduceOp::kSum);
        EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st;
        EXPECT_TRUE(containsText(st.message(), "allreduce #0"));
        EXPECT_TRUE(containsText(st.message(), "ranks 0, 1 called allreduce(count 4, f32, sum"));
        EXPECT_TRUE(containsText(st.message(), "rank 2 called allreduce(count 5, f32, sum"));

        env.step("operation mismatch");
        st = r == 0 ? broadcast(comm, v.data(), 4, DataType::kF32, 0)
                    : allreduce(comm, v.data(), v.data(), 4, DataType::kF32, ReduceOp::kSum);
        EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st;
        EXPECT_TRUE(containsText(st.message(), "rank 0 called broadcast(count 4, f32, root 0"));

        env.step("root and type mismatch");
        st = broadcast(comm, v.data(), 4, r == 1 ? DataType::kI32 : DataType::kF32, r == 1 ? 2 : 1);
        EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st;
        EXPECT_TRUE(containsText(st.message(), "rank 1 called broadcast(count 4, i32, root 2"));
        EXPECT_TRUE(containsText(st.message(), "ranks 0, 2 called broadcast(count 4, f32, root 1"));

        // The algorithms outside the plan executor check too (one allgather each).
        for (const char* algo : {"innet", "hierarchical"}) {
          env.step(strCat(algo, " count mismatch"));
          CallOptions o;
          o.algorithm = algo;
          st = allreduce(comm, v.data(), v.data(), r == 1 ? 3 : 4, DataType::kF32,
                         ReduceOp::kSum, o);
          EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st;
          EXPECT_TRUE(containsText(st.message(), strCat("allreduce (algorithm ", algo, ")")))
              << st;
          EXPECT_TRUE(containsText(st.message(), "rank 1 called allreduce(count 3, f32, sum"))
              << st;
        }

        env.step("the communicator is still usable");
        EXPECT_TRUE(comm.health().isOk());
        EXPECT_EQ(runCase(comm, makeCase(CollKind::kAllreduce, "", 7, false, 0, DataType::kF32, 1)),
                  "");
        EXPECT_EQ(comm.nextSeq(), 6u);
        env.barrier("done");
      },
      opts);
}

TEST(CollectivesDeadline, TimeoutNamesTheOperationItsNumberAndThePeers) {
  runRanks(
      3,
      [](RankEnv& env) {
        RankComm rc = openWorld(env);
        Communicator& comm = *rc.comm;
        env.barrier("created");
        if (comm.rank() == 0) {
          env.step("an allreduce the others never join");
          float x = 1;
          CallOptions o;
          o.algorithm = "ring";
          o.deadline = Deadline::afterSeconds(1.5);
          const auto start = std::chrono::steady_clock::now();
          Status st = allreduce(comm, &x, &x, 1, DataType::kF32, ReduceOp::kSum, o);
          const double waited =
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
          EXPECT_EQ(st.code(), StatusCode::kTimeout) << st;
          EXPECT_TRUE(containsText(st.message(), "allreduce #0 on communicator 0"));
          EXPECT_TRUE(containsText(st.message(), "still waiting for rank 2 (receive)"));
          EXPECT_GE(waited, 1.4);
          EXPECT_LT(waited, 30.0);  // bounded by the deadline, not by WEFT_TIMEOUT
          env.step("the communicator is broken now");
          Status after = barrier(comm);
          EXPECT_EQ(after.code(), StatusCode::kTimeout);
          EXPECT_TRUE(containsText(after.message(), "unusable after an earlier failure"));
          EXPECT_EQ(comm.health().code(), StatusCode::kTimeout);
        }
        env.barrier("done");
      },
      rankOptions());
}

// Waits until `n` ranks arrived at `name` (the harness barrier needs every rank, and one
// of them is dead here).
TEST(CollectivesFailure, KilledRankFailsTheOthersNamingIt) {
  RankOptions opts = rankOptions();
  opts.env = rankEnv(30);
  opts.may_fail = {2};
  runRanks(
      4,
      [](RankEnv& env) {
        RankComm rc = openWorld(env);
        Communicator& comm = *rc.comm;
        std::vector<float> v(1000, 1.0f);
        CallOptions o;
        o.algorithm = "ring";
        must(allreduce(comm, v.data(), v.data(), v.size(), DataType::kF32, ReduceOp::kSum, o),
             "first allreduce");
        env.barrier("connected");
        if (comm.rank() == 2) {
          env.step("killing myself");
          ::kill(::getpid(), SIGKILL);
        }
        env.step("allreduce with a dead rank");
        const auto start = std::chrono::steady_clock::now();
        Status st =
            allreduce(comm, v.data(), v.data(), v.size(), DataType::kF32, ReduceOp::kSum, o);
        const double waited =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        EXPECT_EQ(st.code(), StatusCode::kPeerFailure) << st;
        EXPECT_TRUE(containsText(st.message(), "allreduce #1"));
        EXPECT_TRUE(containsText(st.message(), "rank 2 failed"));
        EXPECT_LT(waited, 25.0) << "the failure must be reported well before the 30 s deadline";
        Status after = barrier(comm);
        EXPECT_EQ(after.code(), StatusCode::kPeerFailure) << after;
        waitForCount(env, "survivors", 3);
      },
      opts);
}

}  // namespace
}  // namespace weft::coll::testing
