// Every collective, every algorithm (forced per call), counts 0, 1, 7 and 4099, in place and
// not, roots other than 0, one and several chunks per message, on 1, 2, 3, 4, 5, 7 and 8
// ranks (real processes over UCX shared memory); every type x op of allreduce with results
// compared bit for bit across ranks; the v-variants and send / recv.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "collectives/executor/tags.h"
#include "collectives/schedule/algorithms.h"
#include "tests/collectives/coll_cases.h"
#include "tests/collectives/coll_test_util.h"

namespace weft::coll::testing {
namespace {

using weft::testing::RankEnv;
using weft::testing::runRanks;

constexpr CollKind kKinds[] = {CollKind::kBarrier,   CollKind::kBroadcast,     CollKind::kReduce,
                               CollKind::kAllreduce, CollKind::kReduceScatter, CollKind::kAllgather,
                               CollKind::kGather,    CollKind::kScatter,       CollKind::kAlltoall};
constexpr size_t kCounts[] = {0, 1, 7, 4099};
// Data-moving collectives rotate through these (the bits are compared exactly).
constexpr DataType kMoveTypes[] = {DataType::kI32, DataType::kF64, DataType::kU8, DataType::kBF16};

bool isReduction(CollKind k) {
  return k == CollKind::kAllreduce || k == CollKind::kReduce || k == CollKind::kReduceScatter;
}

// Every kind x algorithm (plus automatic) x count x in-place; roots and chunk sizes rotate.
void runKindMatrix(Communicator& comm, RankEnv& env) {
  const int p = comm.size();
  int index = 0;
  for (CollKind kind : kKinds) {
    std::vector<std::string_view> algos{""};
    for (const AlgorithmEntry* e : algorithmsFor(kind)) algos.push_back(e->name);
    for (std::string_view algo : algos) {
      for (size_t count : kCounts) {
        for (bool inPlace : {false, true}) {
          if (kind == CollKind::kBarrier && (count > 0 || inPlace)) continue;
          Case c;
          c.kind = kind;
          c.algorithm = algo;
          c.count = count;
          c.in_place = inPlace;
          c.root = (index * 3 + 1) % p;  // 1 % p first: non-zero roots whenever p > 1
          c.chunk_bytes = index % 2 == 0 ? 0 : 512;
          c.type = isReduction(kind) ? (index % 2 ? DataType::kI64 : DataType::kI32)
                                     : kMoveTypes[index % 4];
          c.seed = static_cast<uint64_t>(index) + 1;
          ++index;
          env.step(c.describe());
          const std::string err = runCase(comm, c);
          EXPECT_EQ(err, "") << c.describe();
        }
      }
    }
  }
}

// Every valid type x op of allreduce; algorithms rotate; results identical on every rank.
void runTypeOpMatrix(Communicator& comm, RankEnv& env) {
  const std::vector<const AlgorithmEntry*> algos = algorithmsFor(CollKind::kAllreduce);
  int index = 0;
  for (DataType type : kAllDataTypes) {
    for (ReduceOp op : kAllReduceOps) {
      if (!validateReduce(type, op).isOk()) continue;
      Case c;
      c.kind = CollKind::kAllreduce;
      c.algorithm = algos[static_cast<size_t>(index) % algos.size()]->name;
      c.count = 37;
      c.in_place = index % 2 == 1;
      c.chunk_bytes = 64;  // several chunks per message
      c.type = type;
      c.op = op;
      c.seed = 1000 + static_cast<uint64_t>(index);
      ++index;
      env.step(c.describe());
      Buffer buf(type, c.count);
      fillInput(buf, 0, c.count, op, c.seed, comm.rank(), 0);
      CallOptions o;
      o.algorithm = c.algorithm;
      o.chunk_bytes = c.chunk_bytes;
      Status st = allreduce(comm, buf.data(), buf.data(), c.count, type, op, o);
      ASSERT_TRUE(st.isOk()) << c.describe() << ": " << st;
      EXPECT_EQ(checkReduction(buf, 0, c.count, op, c.seed, comm.size(), 0), "") << c.describe();
      EXPECT_TRUE(sameOnAllRanks(comm, buf.data(), buf.bytes.size()))
          << c.describe() << ": ranks disagree on the result bits";
    }
  }
}

void runVariantsAndP2p(Communicator& comm, RankEnv& env) {
  const int p = comm.size();
  for (bool inPlace : {false, true}) {
    env.step("v-variants");
    EXPECT_EQ(runGatherv(comm, p - 1, inPlace, 3), "");  // shared memory from 2 ranks on
    EXPECT_EQ(runScatterv(comm, p / 2, inPlace, 4), "");
    EXPECT_EQ(runAllgatherv(comm, inPlace, 5), "");
    CallOptions direct, ring;  // their schedules
    direct.algorithm = "direct";
    ring.algorithm = "ring";
    EXPECT_EQ(runGatherv(comm, p - 1, inPlace, 3, direct), "");
    EXPECT_EQ(runScatterv(comm, p / 2, inPlace, 4, direct), "");
    EXPECT_EQ(runAllgatherv(comm, inPlace, 5, ring), "");
  }
  EXPECT_EQ(runAlltoallv(comm, 6), "");
  if (p > 1) {
    env.step("send / recv");
    EXPECT_EQ(runSendRecv(comm, 4099, 5, 7), "");
    EXPECT_EQ(runSendRecv(comm, 0, 6, 8), "");
    EXPECT_EQ(runSendRecv(comm, 1, detail::kMaxUserTag, 9), "");
  }
}

class CollectivesMatrix : public ::testing::TestWithParam<int> {};

TEST_P(CollectivesMatrix, EveryOperationAlgorithmTypeAndOp) {
  runRanks(
      GetParam(),
      [](RankEnv& env) {
        RankComm rc = openWorld(env);
        Communicator& comm = *rc.comm;
        runKindMatrix(comm, env);
        runTypeOpMatrix(comm, env);
        runVariantsAndP2p(comm, env);
        EXPECT_TRUE(comm.health().isOk()) << comm.health();
        env.barrier("done");
      },
      rankOptions());
}

INSTANTIATE_TEST_SUITE_P(Ranks, CollectivesMatrix, ::testing::Values(1, 2, 3, 4, 5, 7, 8),
                         [](const ::testing::TestParamInfo<int>& param) {
                           return std::to_string(param.param) + "ranks";
                         });

}  // namespace
}  // namespace weft::coll::testing
