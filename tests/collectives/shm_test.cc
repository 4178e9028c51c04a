// The shared-memory path (collectives/shm/): results for several rank counts, sizes (empty,
// tiny, one stage, many stages that reuse every slot), types and ops, in place and not, roots
// other than 0; bit-identical results; the automatic choice on one node and the schedules
// when the ranks span nodes; a rank that never arrives; a rank that dies.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <span>
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

// A small stage size (WEFT_COLL_SHM_CHUNK) so that modest counts cross many stages and reuse
// every slot several times.
constexpr size_t kStage = 4096;
// 0, 1, odd, one stage exactly (f32), the small/large boundary, several stages + a tail.
constexpr size_t kCounts[] = {0, 1, 7, 1024, 2049, 4099, 40000 + 3};

RankOptions shmOptions() {
  RankOptions o = rankOptions();
  o.env.push_back({"WEFT_COLL_SHM_CHUNK", std::to_string(kStage)});
  return o;
}

Case shmCase(CollKind kind, size_t count, bool in_place, int root, DataType type, ReduceOp op,
             uint64_t seed) {
  Case c;
  c.kind = kind;
  c.algorithm = "shm";
  c.count = count;
  c.in_place = in_place;
  c.root = root;
  c.type = type;
  c.op = op;
  c.seed = seed;
  return c;
}

// Runs each case (a step each), expecting correct, bit-identical results.
void runEach(RankEnv& env, Communicator& comm, std::span<const Case> cases) {
  for (const Case& c : cases) {
    env.step(c.describe());
    EXPECT_EQ(runCase(comm, c), "") << c.describe();
  }
}

// Every shared-memory operation over the counts above, in place and not.
void runAllShapes(RankEnv& env, Communicator& comm) {
  const int last = comm.size() - 1;
  uint64_t seed = 1;
  for (size_t count : kCounts) {
    for (bool in_place : {false, true}) {
      const Case cases[] = {
          shmCase(CollKind::kAllreduce, count, in_place, 0, DataType::kF32, ReduceOp::kSum, seed),
          shmCase(CollKind::kAllreduce, count, in_place, 0, DataType::kI32, ReduceOp::kAvg, seed),
          shmCase(CollKind::kAllreduce, count, in_place, 0, DataType::kBF16, ReduceOp::kMax, seed),
          shmCase(CollKind::kReduceScatter, count, in_place, 0, DataType::kF64, ReduceOp::kSum,
                  seed),
          shmCase(CollKind::kAllgather, count, in_place, 0, DataType::kU8, ReduceOp::kSum, seed),
          shmCase(CollKind::kBroadcast, count, in_place, last, DataType::kI64, ReduceOp::kSum,
                  seed),
          shmCase(CollKind::kAlltoall, count, in_place, 0, DataType::kF16, ReduceOp::kSum, seed),
          shmCase(CollKind::kReduce, count, in_place, last, DataType::kF32, ReduceOp::kSum, seed),
          shmCase(CollKind::kReduce, count, in_place, 0, DataType::kU32, ReduceOp::kAvg, seed),
          shmCase(CollKind::kGather, count, in_place, last, DataType::kI32, ReduceOp::kSum, seed),
          shmCase(CollKind::kScatter, count, in_place, last, DataType::kU8, ReduceOp::kSum, seed),
      };
      runEach(env, comm, cases);
      ++seed;
    }
  }
  // v-variants: irregular blocks (empty ones, gaps) of up to 12,000 elements, many stages.
  CallOptions shm;
  shm.algorithm = "shm";
  for (bool in_place : {false, true}) {
    env.step(strCat("v-variants in_place=", in_place));
    EXPECT_EQ(runGatherv(comm, last, in_place, 3, shm, 1000), "");
    EXPECT_EQ(runScatterv(comm, last, in_place, 4, shm, 1000), "");
    EXPECT_EQ(runAllgatherv(comm, in_place, 5, shm, 1000), "");
  }
  env.step("barrier");
  EXPECT_TRUE(barrier(comm).isOk());
}

// Names of the shared-memory segments in /dev/shm that process `pid` created, or "".
std::string segmentsOf(pid_t pid) {
  std::string found;
  const std::string prefix = strCat("weft-coll-", pid, "-");
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0) found += name + " ";
  }
  return found;
}

class ShmRanks : public ::testing::TestWithParam<int> {};

TEST_P(ShmRanks, EveryOperationSizeAndLayoutIsCorrect) {
  runRanks(
      GetParam(),
      [](RankEnv& env) {
        RankComm rc = openWorld(env);
        runAllShapes(env, *rc.comm);
        env.barrier("done");
      },
      shmOptions());
}

// Stages of the default size (WEFT_COLL_SHM_CHUNK unset): a rank's part spans many of the
// blocks in which it reduces its own part straight into its output (kDirectBlockBytes), with a
// partial last block; allreduce and reduce (root), finalizing ops, in place and not.
TEST_P(ShmRanks, DefaultStagesReduceOwnPartsBlockByBlock) {
  runRanks(
      GetParam(),
      [](RankEnv& env) {
        RankComm rc = openWorld(env);
        Communicator& comm = *rc.comm;
        const int last = comm.size() - 1;
        uint64_t seed = 11;
        for (size_t count : {size_t{100003}, size_t{(1u << 18) + 5}}) {
          for (bool in_place : {false, true}) {
            const Case cases[] = {
                shmCase(CollKind::kAllreduce, count, in_place, 0, DataType::kF32, ReduceOp::kSum,
                        seed),
                shmCase(CollKind::kAllreduce, count, in_place, 0, DataType::kI32, ReduceOp::kAvg,
                        seed),
                shmCase(CollKind::kAllreduce, count, in_place, 0, DataType::kF16, ReduceOp::kMax,
                        seed),
                shmCase(CollKind::kReduce, count, in_place, last, DataType::kF64, ReduceOp::kAvg,
                        seed),
            };
            runEach(env, comm, cases);
            ++seed;
          }
        }
        env.barrier("done");
      },
      rankOptions());
}

INSTANTIATE_TEST_SUITE_P(RankCounts, ShmRanks, ::testing::Values(2, 3, 4));

TEST(Shm, ChosenOnOneNodeAndResultsAreBitIdentical) {
  runRanks(
      3,
      [](RankEnv& env) {
        RankComm rc = openWorld(env);
        Communicator& comm = *rc.comm;
        const size_t n = 50001;
        Buffer v(DataType::kF32, n);
        fillInput(v, 0, n, ReduceOp::kSum, 7, comm.rank(), 0);
        Request r = must(iallreduce(comm, v.data(), v.data(), n, DataType::kF32, ReduceOp::kSum),
                         "iallreduce");
        EXPECT_EQ(r.algorithm(), "shm");
        EXPECT_TRUE(r.done());  // the shared-memory path completes inside the call
        EXPECT_TRUE(r.wait().isOk()) << r.status();
        EXPECT_EQ(checkReduction(v, 0, n, ReduceOp::kSum, 7, 3, 0), "");
        EXPECT_TRUE(sameOnAllRanks(comm, v.data(), v.bytes.size()));
        // Many small calls in a row: counters keep growing across calls.
        for (int i = 0; i < 200; ++i) {
          int32_t x = comm.rank() + i;
          ASSERT_TRUE(allreduce(comm, &x, &x, 1, DataType::kI32, ReduceOp::kSum).isOk());
          ASSERT_EQ(x, 3 + 3 * i);
        }
        env.barrier("done");
      },
      shmOptions());
}

TEST(Shm, RanksOnTwoNodesUseTheSchedules) {
  RankOptions o = shmOptions();
  o.node_ids = {"a", "a", "b", "b"};
  runRanks(
      4,
      [](RankEnv& env) {
        RankComm rc = openWorld(env, {"a", "a", "b", "b"});
        Communicator& comm = *rc.comm;
        float x = 1;
        Request r = must(iallreduce(comm, &x, &x, 1, DataType::kF32, ReduceOp::kSum), "iallreduce");
        EXPECT_NE(r.algorithm(), "shm");
        EXPECT_TRUE(r.wait().isOk());
        EXPECT_EQ(x, 4.0f);
        CallOptions forced;
        forced.algorithm = "shm";
        Status st = allreduce(comm, &x, &x, 1, DataType::kF32, ReduceOp::kSum, forced);
        EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st;
        EXPECT_TRUE(containsText(st.message(), "needs every rank on one node"));
        // A split of the ranks of one node does take the shared-memory path.
        auto local = must(comm.split(comm.rank() / 2, comm.rank()), "split");
        EXPECT_EQ(runCase(*local, shmCase(CollKind::kAllreduce, 999, true, 0, DataType::kF32,
                                          ReduceOp::kSum, 3)),
                  "");
        env.barrier("done");
      },
      o);
}

// 2 ranks have a CPU each here (waiters spin, then yield), 3 ranks outnumber the CPUs
// (waiters sleep on futexes): both waits must check the deadline and the peers' liveness.
class ShmFailures : public ::testing::TestWithParam<int> {};

TEST_P(ShmFailures, ARankThatNeverArrivesTimesOutNamingIt) {
  runRanks(
      GetParam(),
      [](RankEnv& env) {
        RankComm rc = openWorld(env);
        Communicator& comm = *rc.comm;
        const int last = comm.size() - 1;
        must(barrier(comm), "first barrier");  // everyone attached
        env.barrier("attached");
        if (comm.rank() != last) {
          CallOptions o;
          o.deadline = Deadline::afterSeconds(1.0);
          float x = 1;
          const auto start = std::chrono::steady_clock::now();
          Status st = allreduce(comm, &x, &x, 1, DataType::kF32, ReduceOp::kSum, o);
          const double waited =
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
          EXPECT_EQ(st.code(), StatusCode::kTimeout) << st;
          EXPECT_TRUE(containsText(st.message(), "allreduce #1"));
          EXPECT_TRUE(containsText(st.message(), "algorithm shm"));
          EXPECT_TRUE(containsText(st.message(), strCat(last, " did not reach"))) << st;
          EXPECT_GE(waited, 0.9);
          EXPECT_LT(waited, 30.0);
          EXPECT_EQ(barrier(comm).code(), StatusCode::kTimeout);  // sticky
          if (comm.rank() == 0) {
            // Rank 0 created the segment: after a failed call its name is gone from
            // /dev/shm even if this process never ran its destructors.
            EXPECT_EQ(segmentsOf(getpid()), "");
          }
        }
        env.barrier("done");
      },
      shmOptions());
}

TEST_P(ShmFailures, KilledRankFailsTheOthersNamingIt) {
  RankOptions opts = shmOptions();
  opts.env = rankEnv(30);
  opts.may_fail = {GetParam() - 1};
  runRanks(
      GetParam(),
      [](RankEnv& env) {
        RankComm rc = openWorld(env);
        Communicator& comm = *rc.comm;
        const int last = comm.size() - 1;
        must(barrier(comm), "first barrier");
        env.barrier("attached");
        if (comm.rank() == last) {
          env.step("killing myself");
          ::kill(::getpid(), SIGKILL);
        }
        env.step("allreduce with a dead rank");
        float x = 1;
        const auto start = std::chrono::steady_clock::now();
        Status st = allreduce(comm, &x, &x, 1, DataType::kF32, ReduceOp::kSum);
        const double waited =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        EXPECT_EQ(st.code(), StatusCode::kPeerFailure) << st;
        EXPECT_TRUE(containsText(st.message(), "allreduce #1"));
        EXPECT_TRUE(containsText(st.message(), strCat("rank ", last, " failed"))) << st;
        EXPECT_LT(waited, 20.0) << "the failure must be reported well before the 30 s deadline";
        EXPECT_EQ(barrier(comm).code(), StatusCode::kPeerFailure);
        // Both survivors are done with the communicator before either leaves.
        must(env.store->add("survivors", 1).status(), "store add");
        while (must(env.store->add("survivors", 0), "store add") < last) {
          ASSERT_FALSE(env.deadline.expired());
          ::usleep(10000);
        }
      },
      opts);
}

INSTANTIATE_TEST_SUITE_P(RankCounts, ShmFailures, ::testing::Values(2, 3));

}  // namespace
}  // namespace weft::coll::testing
