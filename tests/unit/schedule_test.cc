// Collective schedules without a network: every algorithm x kind x size x count x root, run
// in memory by the plan simulator (tests/support/plan_sim.h) and compared with a serial
// reference; golden strings for a few small plans; message-count formulas; the simulator's
// own error reports.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <string>
#include <vector>

#include "collectives/schedule/algorithms.h"
#include "collectives/schedule/plan.h"
#include "tests/support/plan_sim.h"

namespace weft::coll {

// gtest prints the parameter of a failing AlgorithmTest with this.
void PrintTo(const AlgorithmEntry& e, std::ostream* os) {
  *os << e.name << " " << toString(e.kind);
}

namespace {

using testing::SimOptions;
using testing::SimOrder;
using testing::SimResult;

constexpr int kSizes[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 24, 32, 33};
constexpr size_t kCounts[] = {0, 1, 7, 100};

CollSpec specOf(CollKind kind, int rank, int size, size_t count, int root = 0) {
  CollSpec s;
  s.kind = kind;
  s.rank = rank;
  s.size = size;
  s.count = count;
  s.root = root;
  return s;
}

CollSpec forRank(CollSpec s, int rank) {
  s.rank = rank;
  return s;
}

std::vector<Plan> buildAll(PlanBuildFn build, const CollSpec& spec) {
  std::vector<Plan> plans;
  for (int r = 0; r < spec.size; ++r) plans.push_back(build(forRank(spec, r)));
  return plans;
}

// Distinct per (rank, element), so misplaced blocks show.
int64_t intValue(int rank, size_t i) {
  return rank * 1000003LL + static_cast<int64_t>(i) * 31 + 17;
}

// Magnitudes from 2^-20 to 2^20: sums in different orders round differently.
double doubleValue(int rank, size_t i) {
  uint64_t h = static_cast<uint64_t>(rank) * 2654435761u + i * 40503u + 12345u;
  h ^= h >> 13;
  h *= 0x9E3779B97F4A7C15ull;
  const auto mantissa = static_cast<double>(static_cast<int64_t>(h % 2001) - 1000);
  return std::ldexp(mantissa + 0.123456789, static_cast<int>((h >> 20) % 41) - 20);
}

template <typename T>
std::vector<std::vector<T>> makeInputs(const CollSpec& spec, T (*value)(int, size_t)) {
  std::vector<std::vector<T>> in(static_cast<size_t>(spec.size));
  for (int r = 0; r < spec.size; ++r) {
    auto& v = in[static_cast<size_t>(r)];
    v.resize(inputCount(forRank(spec, r)));
    for (size_t i = 0; i < v.size(); ++i) v[i] = value(r, i);
  }
  return in;
}

// What each rank's output must hold; ranks without an output get an empty vector.
std::vector<std::vector<int64_t>> reference(const CollSpec& spec,
                                            const std::vector<std::vector<int64_t>>& in) {
  const size_t n = spec.count;
  const auto p = static_cast<size_t>(spec.size);
  const auto root = static_cast<size_t>(spec.root);
  std::vector<std::vector<int64_t>> out(p);
  std::vector<int64_t> sum(spec.kind == CollKind::kReduceScatter ? n * p : n, 0);
  if (spec.kind == CollKind::kAllreduce || spec.kind == CollKind::kReduce ||
      spec.kind == CollKind::kReduceScatter) {
    for (const auto& v : in) {
      for (size_t i = 0; i < sum.size(); ++i) sum[i] += v[i];
    }
  }
  for (size_t r = 0; r < p; ++r) {
    auto& o = out[r];
    o.resize(outputCount(forRank(spec, static_cast<int>(r))));
    for (size_t i = 0; i < o.size(); ++i) {
      switch (spec.kind) {
        case CollKind::kBarrier: break;
        case CollKind::kAllreduce:
        case CollKind::kReduce: o[i] = sum[i]; break;
        case CollKind::kReduceScatter: o[i] = sum[r * n + i]; break;
        case CollKind::kBroadcast: o[i] = in[root][i]; break;
        case CollKind::kAllgather:
        case CollKind::kGather: o[i] = in[i / n][i % n]; break;
        case CollKind::kScatter: o[i] = in[root][r * n + i]; break;
        case CollKind::kAlltoall: o[i] = in[i / n][r * n + i % n]; break;
      }
    }
  }
  return out;
}

bool isRooted(CollKind kind) {
  return kind == CollKind::kBroadcast || kind == CollKind::kReduce || kind == CollKind::kGather ||
         kind == CollKind::kScatter;
}

bool isReduction(CollKind kind) {
  return kind == CollKind::kAllreduce || kind == CollKind::kReduce ||
         kind == CollKind::kReduceScatter;
}

std::string describe(const AlgorithmEntry& e, const CollSpec& spec, const SimOptions& o) {
  return strCat(e.name, " ", toString(e.kind), " size=", spec.size, " count=", spec.count,
                " root=", spec.root, o.in_place ? " in-place" : "",
                o.order == SimOrder::kStrict ? " strict" : " dependencies");
}

class AlgorithmTest : public ::testing::TestWithParam<AlgorithmEntry> {
 protected:
  void checkOne(const CollSpec& spec, const SimOptions& options);
};

void AlgorithmTest::checkOne(const CollSpec& spec, const SimOptions& options) {
  const AlgorithmEntry& e = GetParam();
  SCOPED_TRACE(describe(e, spec, options));
  const std::vector<Plan> plans = buildAll(e.build, spec);
  const auto inputs = makeInputs<int64_t>(spec, intValue);
  const SimResult<int64_t> res = testing::simulatePlans(spec, plans, inputs, options);
  ASSERT_TRUE(res.ok()) << res.error;
  const auto expected = reference(spec, inputs);
  for (int r = 0; r < spec.size; ++r) {
    const auto ur = static_cast<size_t>(r);
    ASSERT_EQ(res.outputs[ur], expected[ur]) << "rank " << r << "\n" << plans[ur].toString();
    ASSERT_EQ(res.scratch_used[ur], plans[ur].scratch_count) << "rank " << r;
    ASSERT_EQ(plans[ur].algorithm, e.name);
    const bool finalize =
        isReduction(spec.kind) && (spec.kind != CollKind::kReduce || r == spec.root);
    ASSERT_EQ(plans[ur].needs_finalize, finalize) << "rank " << r;
    if (spec.kind == CollKind::kBarrier) {
      ASSERT_TRUE(res.heard_from_all[ur]) << "rank " << r;
    }
  }
}

// Simulated in doubles, where the summation order shows in the bits: every rank must hold
// exactly the same result.
void checkBitIdentical(const AlgorithmEntry& e, const CollSpec& spec) {
  SCOPED_TRACE(describe(e, spec, {}));
  const auto inputs = makeInputs<double>(spec, doubleValue);
  const SimResult<double> res = testing::simulateAlgorithm(e.build, spec, inputs);
  ASSERT_TRUE(res.ok()) << res.error;
  for (int r = 1; r < spec.size; ++r) {
    const auto& a = res.outputs[0];
    const auto& b = res.outputs[static_cast<size_t>(r)];
    ASSERT_EQ(a.size(), b.size());
    ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(double)), 0)
        << "rank " << r << " differs from rank 0";
  }
}

TEST_P(AlgorithmTest, MatchesSerialReference) {
  const AlgorithmEntry& e = GetParam();
  for (int size : kSizes) {
    for (size_t count : kCounts) {
      std::vector<int> roots = {0};
      if (isRooted(e.kind) && size > 1) roots.push_back(size - 1);
      if (isRooted(e.kind) && size > 4) roots.push_back(size / 2 + 1);
      for (int root : roots) {
        for (bool inPlace : {false, true}) {
          for (SimOrder order : {SimOrder::kStrict, SimOrder::kDependencies}) {
            checkOne(specOf(e.kind, 0, size, count, root), SimOptions{inPlace, order});
            if (HasFatalFailure()) return;
          }
        }
      }
    }
  }
}

TEST_P(AlgorithmTest, PlansAreDeterministic) {
  const AlgorithmEntry& e = GetParam();
  for (int size : {5, 8}) {
    const CollSpec spec = specOf(e.kind, 0, size, 13, size - 1);
    for (int r = 0; r < size; ++r) {
      EXPECT_EQ(e.build(forRank(spec, r)).toString(), e.build(forRank(spec, r)).toString());
    }
  }
}

TEST_P(AlgorithmTest, CountZeroMovesNoDataAndOneRankOnlyCopies) {
  const AlgorithmEntry& e = GetParam();
  if (e.kind != CollKind::kBarrier) {
    for (int r = 0; r < 5; ++r) {
      EXPECT_EQ(e.build(specOf(e.kind, r, 5, 0, 2)).numSteps(), 0u) << "rank " << r;
    }
  }
  const Plan one = e.build(specOf(e.kind, 0, 1, 4));
  for (const Round& round : one.rounds) {
    for (const Step& step : round.steps) EXPECT_EQ(step.kind, StepKind::kCopy);
  }
}

TEST(ScheduleBitIdentical, AllreduceResultsAreTheSameBitsOnEveryRank) {
  for (const AlgorithmEntry* e : algorithmsFor(CollKind::kAllreduce)) {
    for (int size : kSizes) {
      for (size_t count : {size_t{7}, size_t{100}, size_t{1000}}) {
        checkBitIdentical(*e, specOf(e->kind, 0, size, count));
        if (HasFatalFailure()) return;
      }
    }
  }
}

std::string entryName(const ::testing::TestParamInfo<AlgorithmEntry>& info) {
  return strCat(info.param.name, "_", toString(info.param.kind));
}

INSTANTIATE_TEST_SUITE_P(Schedules, AlgorithmTest,
                         ::testing::ValuesIn(allAlgorithms().begin(), allAlgorithms().end()),
                         entryName);

}  // namespace
}  // namespace weft::coll

namespace weft::coll {
namespace {

std::string allRanks(PlanBuildFn build, const CollSpec& spec) {
  std::string s;
  for (int r = 0; r < spec.size; ++r) {
    s += strCat("rank ", r, ": ", build(forRank(spec, r)).toString());
  }
  return s;
}

// Golden strings: any schedule change shows up here. Regenerate by printing allRanks().
TEST(ScheduleGolden, RingAllreduceThreeRanksCountSix) {
  EXPECT_EQ(allRanks(buildRingAllreduce, specOf(CollKind::kAllreduce, 0, 3, 6)),
            R"(rank 0: ring scratch=0 finalize
r0 send->1 in[0+2]
r0 recvred<-2 in[4+2]>out[4+2]
r1 send->1 out[4+2]
r1 recvred<-2 in[2+2]>out[2+2]
r2 send->1 out[2+2]
r2 recv<-2 out[0+2]
r3 send->1 out[0+2]
r3 recv<-2 out[4+2]
rank 1: ring scratch=0 finalize
r0 send->2 in[2+2]
r0 recvred<-0 in[0+2]>out[0+2]
r1 send->2 out[0+2]
r1 recvred<-0 in[4+2]>out[4+2]
r2 send->2 out[4+2]
r2 recv<-0 out[2+2]
r3 send->2 out[2+2]
r3 recv<-0 out[0+2]
rank 2: ring scratch=0 finalize
r0 send->0 in[4+2]
r0 recvred<-1 in[2+2]>out[2+2]
r1 send->0 out[2+2]
r1 recvred<-1 in[0+2]>out[0+2]
r2 send->0 out[0+2]
r2 recv<-1 out[4+2]
r3 send->0 out[4+2]
r3 recv<-1 out[2+2]
)");
}

// 5 = 4 + 1: rank 0 folds into rank 1, ranks 1..4 halve and double over 4 blocks of 2.
TEST(ScheduleGolden, RabenseifnerAllreduceFiveRanks) {
  EXPECT_EQ(allRanks(buildRabenseifnerAllreduce, specOf(CollKind::kAllreduce, 0, 5, 8)),
            R"(rank 0: rabenseifner scratch=0 finalize
r0 send->1 in[0+8]
r1 recv<-1 out[0+8]
rank 1: rabenseifner scratch=0 finalize
r0 recvred<-0 in[0+8]>out[0+8]
r1 send->3 out[4+4]
r1 recvred<-3 out[0+4]
r2 send->2 out[2+2]
r2 recvred<-2 out[0+2]
r3 send->2 out[0+2]
r3 recv<-2 out[2+2]
r4 send->3 out[0+4]
r4 recv<-3 out[4+4]
r5 send->0 out[0+8]
rank 2: rabenseifner scratch=0 finalize
r0 send->4 in[4+4]
r0 recvred<-4 in[0+4]>out[0+4]
r1 send->1 out[0+2]
r1 recvred<-1 out[2+2]
r2 send->1 out[2+2]
r2 recv<-1 out[0+2]
r3 send->4 out[0+4]
r3 recv<-4 out[4+4]
rank 3: rabenseifner scratch=0 finalize
r0 send->1 in[0+4]
r0 recvred<-1 in[4+4]>out[4+4]
r1 send->4 out[6+2]
r1 recvred<-4 out[4+2]
r2 send->4 out[4+2]
r2 recv<-4 out[6+2]
r3 send->1 out[4+4]
r3 recv<-1 out[0+4]
rank 4: rabenseifner scratch=0 finalize
r0 send->2 in[0+4]
r0 recvred<-2 in[4+4]>out[4+4]
r1 send->3 out[4+2]
r1 recvred<-3 out[6+2]
r2 send->3 out[6+2]
r2 recv<-3 out[4+2]
r3 send->2 out[4+4]
r3 recv<-2 out[0+4]
)");
}

TEST(ScheduleGolden, DisseminationBarrierFiveRanks) {
  EXPECT_EQ(allRanks(buildDisseminationBarrier, specOf(CollKind::kBarrier, 0, 5, 0)),
            R"(rank 0: dissemination scratch=0
r0 send->1 -
r0 recv<-4 -
r1 send->2 -
r1 recv<-3 -
r2 send->4 -
r2 recv<-1 -
rank 1: dissemination scratch=0
r0 send->2 -
r0 recv<-0 -
r1 send->3 -
r1 recv<-4 -
r2 send->0 -
r2 recv<-2 -
rank 2: dissemination scratch=0
r0 send->3 -
r0 recv<-1 -
r1 send->4 -
r1 recv<-0 -
r2 send->1 -
r2 recv<-3 -
rank 3: dissemination scratch=0
r0 send->4 -
r0 recv<-2 -
r1 send->0 -
r1 recv<-1 -
r2 send->2 -
r2 recv<-4 -
rank 4: dissemination scratch=0
r0 send->0 -
r0 recv<-3 -
r1 send->1 -
r1 recv<-2 -
r2 send->3 -
r2 recv<-0 -
)");
}

// The Bruck alltoall of one rank: the rotation into scratch, packed and direct exchanges, and
// blocks written straight to the output at the step of their highest bit.
TEST(ScheduleGolden, BruckAlltoallRankZeroOfFive) {
  EXPECT_EQ(buildBruckAlltoall(specOf(CollKind::kAlltoall, 0, 5, 2)).toString(),
            R"(bruck scratch=16
r0 copy in[0+2]>out[0+2]
r0 copy in[2+8]>scr[0+8]
r1 copy scr[0+2]>scr[8+2]
r1 copy scr[4+2]>scr[10+2]
r2 send->1 scr[8+4]
r2 recv<-4 scr[12+4]
r3 copy scr[12+2]>out[8+2]
r3 copy scr[14+2]>scr[4+2]
r4 send->2 scr[2+4]
r4 recv<-3 scr[12+4]
r5 copy scr[12+2]>out[6+2]
r5 copy scr[14+2]>out[4+2]
r6 send->4 scr[6+2]
r6 recv<-1 out[2+2]
)");
}

// ---- Message-count formulas ----

struct Counts {
  std::vector<size_t> sends;      // per rank
  std::vector<size_t> msgRounds;  // per rank: rounds with at least one message
  size_t total = 0;
};

Counts countMessages(PlanBuildFn build, const CollSpec& spec) {
  Counts c;
  for (int r = 0; r < spec.size; ++r) {
    const Plan plan = build(forRank(spec, r));
    size_t sends = 0, rounds = 0;
    for (const Round& round : plan.rounds) {
      bool message = false;
      for (const Step& step : round.steps) {
        sends += step.kind == StepKind::kSend;
        message = message || step.kind == StepKind::kSend || step.kind == StepKind::kRecv ||
                  step.kind == StepKind::kRecvReduce;
      }
      rounds += message;
    }
    c.sends.push_back(sends);
    c.msgRounds.push_back(rounds);
    c.total += sends;
  }
  return c;
}

struct KindBuild {
  PlanBuildFn build;
  CollKind kind;
};

int ceilLog2(int p) {
  int k = 0;
  while ((1 << k) < p) ++k;
  return k;
}

TEST(ScheduleFormulas, RingSendsPerRank) {
  for (int p : kSizes) {
    SCOPED_TRACE(strCat("size ", p));
    const auto up = static_cast<size_t>(p);
    for (size_t s :
         countMessages(buildRingAllreduce, specOf(CollKind::kAllreduce, 0, p, 100)).sends) {
      EXPECT_EQ(s, 2 * (up - 1));
    }
    for (size_t s :
         countMessages(buildRingReduceScatter, specOf(CollKind::kReduceScatter, 0, p, 3)).sends) {
      EXPECT_EQ(s, up - 1);
    }
    for (size_t s :
         countMessages(buildRingAllgather, specOf(CollKind::kAllgather, 0, p, 3)).sends) {
      EXPECT_EQ(s, up - 1);
    }
    EXPECT_EQ(countMessages(buildRingBroadcast, specOf(CollKind::kBroadcast, 0, p, 3, p / 2)).total,
              up - 1);
  }
}

TEST(ScheduleFormulas, LogarithmicAlgorithms) {
  for (int p : kSizes) {
    SCOPED_TRACE(strCat("size ", p));
    const auto logp = static_cast<size_t>(ceilLog2(p));
    for (auto [build, kind] : {KindBuild{buildBruckAllgather, CollKind::kAllgather},
                               KindBuild{buildBruckAlltoall, CollKind::kAlltoall},
                               KindBuild{buildDisseminationBarrier, CollKind::kBarrier}}) {
      const Counts c = countMessages(build, specOf(kind, 0, p, 5));
      for (int r = 0; r < p; ++r) {
        EXPECT_EQ(c.sends[static_cast<size_t>(r)], logp) << toString(kind) << " rank " << r;
        EXPECT_EQ(c.msgRounds[static_cast<size_t>(r)], logp) << toString(kind) << " rank " << r;
      }
    }
    // Binomial trees: one message per non-root rank, ceil(log2 p) rounds at the root.
    for (auto [build, kind] : {KindBuild{buildBinomialBroadcast, CollKind::kBroadcast},
                               KindBuild{buildBinomialReduce, CollKind::kReduce}}) {
      const Counts c = countMessages(build, specOf(kind, 0, p, 5, p - 1));
      EXPECT_EQ(c.total, static_cast<size_t>(p - 1)) << toString(kind);
      EXPECT_EQ(c.msgRounds[static_cast<size_t>(p - 1)], logp) << toString(kind);
    }
  }
}

TEST(ScheduleFormulas, HalvingDoublingPowersOfTwoAndFold) {
  for (int p : kSizes) {
    SCOPED_TRACE(strCat("size ", p));
    int pof2 = 1;
    while (pof2 * 2 <= p) pof2 *= 2;
    const auto steps = static_cast<size_t>(ceilLog2(pof2));
    const Counts rab =
        countMessages(buildRabenseifnerAllreduce, specOf(CollKind::kAllreduce, 0, p, 100));
    const Counts rd =
        countMessages(buildRecursiveDoublingAllreduce, specOf(CollKind::kAllreduce, 0, p, 100));
    for (int r = 0; r < p; ++r) {
      const auto ur = static_cast<size_t>(r);
      const bool extra = r < 2 * (p - pof2) && r % 2 == 0;
      const bool host = r < 2 * (p - pof2) && r % 2 == 1;
      EXPECT_EQ(rab.sends[ur], extra ? 1 : 2 * steps + host) << "rank " << r;
      EXPECT_EQ(rd.sends[ur], extra ? 1 : steps + host) << "rank " << r;
    }
  }
}

TEST(ScheduleFormulas, DoubleTreeAndBarriersAndPairwise) {
  for (int p : kSizes) {
    if (p == 1) continue;
    SCOPED_TRACE(strCat("size ", p));
    const auto up = static_cast<size_t>(p);
    // Each tree: p-1 messages up, p-1 down.
    EXPECT_EQ(countMessages(buildDoubleTreeAllreduce, specOf(CollKind::kAllreduce, 0, p, 10)).total,
              4 * (up - 1));
    EXPECT_EQ(countMessages(buildTokenRingBarrier, specOf(CollKind::kBarrier, 0, p, 0)).total,
              2 * up - 1);
    for (size_t s :
         countMessages(buildPairwiseAlltoall, specOf(CollKind::kAlltoall, 0, p, 2)).sends) {
      EXPECT_EQ(s, up - 1);
    }
  }
}

// Every rank is a leaf in at least one of the two trees (NCCL's property for even sizes:
// a rank never forwards in both), checked through the messages each rank sends.
TEST(ScheduleFormulas, DoubleTreeSpreadsTheForwarding) {
  for (int p : {2, 4, 8, 16}) {
    const Counts c =
        countMessages(buildDoubleTreeAllreduce, specOf(CollKind::kAllreduce, 0, p, 10));
    for (int r = 0; r < p; ++r) {
      // A leaf sends once in its tree; an inner node sends up once and down to <= 2 children.
      EXPECT_LE(c.sends[static_cast<size_t>(r)], 4u) << "size " << p << " rank " << r;
    }
  }
}

// ---- Registry ----

TEST(ScheduleRegistry, EveryKindHasAnAlgorithmAndNamesResolve) {
  for (CollKind kind : {CollKind::kBarrier, CollKind::kBroadcast, CollKind::kReduce,
                        CollKind::kAllreduce, CollKind::kReduceScatter, CollKind::kAllgather,
                        CollKind::kGather, CollKind::kScatter, CollKind::kAlltoall}) {
    EXPECT_FALSE(algorithmsFor(kind).empty()) << toString(kind);
    auto parsed = parseCollKind(toString(kind));
    ASSERT_TRUE(parsed.isOk()) << parsed.status();
    EXPECT_EQ(*parsed, kind);
  }
  EXPECT_EQ(algorithmNames(),
            (std::vector<std::string_view>{"ring", "rabenseifner", "recursive_doubling",
                                           "double_tree", "binary_tree", "binomial", "bruck",
                                           "pairwise", "dissemination", "token_ring"}));
  ASSERT_NE(findAlgorithm("ring", CollKind::kAllreduce), nullptr);
  EXPECT_EQ(findAlgorithm("ring", CollKind::kAllreduce)->build, &buildRingAllreduce);
  EXPECT_EQ(findAlgorithm("bruck", CollKind::kAllreduce), nullptr);
  EXPECT_FALSE(parseCollKind("allreduc").isOk());
}

TEST(ScheduleRegistry, BuildPlanValidates) {
  auto plan = buildPlan("rabenseifner", specOf(CollKind::kReduceScatter, 2, 3, 4));
  ASSERT_TRUE(plan.isOk()) << plan.status();
  EXPECT_EQ(plan->algorithm, "rabenseifner");

  auto unknown = buildPlan("bruck", specOf(CollKind::kAllreduce, 0, 4, 4));
  ASSERT_FALSE(unknown.isOk());
  EXPECT_EQ(unknown.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("ring, rabenseifner, recursive_doubling, double_tree"),
            std::string::npos)
      << unknown.status();

  auto badRank = buildPlan("ring", specOf(CollKind::kAllreduce, 4, 4, 4));
  ASSERT_FALSE(badRank.isOk());
  EXPECT_NE(badRank.status().message().find("rank 4 outside [0, 4)"), std::string::npos)
      << badRank.status();
  EXPECT_FALSE(buildPlan("binomial", specOf(CollKind::kGather, 0, 4, 4, -1)).isOk());
  EXPECT_FALSE(buildPlan("ring", specOf(CollKind::kAllreduce, 0, 0, 4)).isOk());
  EXPECT_FALSE(buildPlan("ring", specOf(CollKind::kAllgather, 0, 4, SIZE_MAX / 4)).isOk());
}

// ---- The simulator's own checks ----

Step sendStep(int peer, Slice src) {
  return Step{StepKind::kSend, peer, src, {}};
}
Step recvStep(int peer, Slice dst) {
  return Step{StepKind::kRecv, peer, {}, dst};
}
Slice inS(size_t off, size_t n) {
  return {BufferId::kInput, off, n};
}
Slice outS(size_t off, size_t n) {
  return {BufferId::kOutput, off, n};
}

Plan planOf(std::vector<std::vector<Step>> rounds) {
  Plan p;
  p.algorithm = "handmade";
  for (auto& steps : rounds) p.rounds.push_back(Round{std::move(steps)});
  return p;
}

SimResult<int64_t> simulateAllreduce(const std::vector<Plan>& plans, size_t count,
                                     SimOptions options = {}) {
  const CollSpec spec = specOf(CollKind::kAllreduce, 0, static_cast<int>(plans.size()), count);
  return testing::simulatePlans(spec, plans, makeInputs<int64_t>(spec, intValue), options);
}

TEST(PlanSimulator, ReportsDeadlockWithTheWaitingSteps) {
  // Both ranks wait for the other's message before sending theirs (and the send reads what
  // the receive writes, so even dependency order cannot reorder them).
  const Plan a = planOf({{recvStep(1, outS(0, 2))}, {sendStep(1, outS(0, 2))}});
  const Plan b = planOf({{recvStep(0, outS(0, 2))}, {sendStep(0, outS(0, 2))}});
  const auto res = simulateAllreduce({a, b}, 2);
  EXPECT_NE(res.error.find("deadlock"), std::string::npos) << res.error;
  EXPECT_NE(
      res.error.find("rank 0 round 0 step 0 (recv<-1 out[0+2]): waits for rank 1 to reach round 1"),
      std::string::npos)
      << res.error;
}

TEST(PlanSimulator, DependencyOrderRunsWhatStrictOrderCannot) {
  // The sends read the input, the receives write the output: no dependency between them.
  const Plan a = planOf({{recvStep(1, outS(0, 2))}, {sendStep(1, inS(0, 2))}});
  const Plan b = planOf({{recvStep(0, outS(0, 2))}, {sendStep(0, inS(0, 2))}});
  EXPECT_TRUE(simulateAllreduce({a, b}, 2, {false, SimOrder::kDependencies}).ok());
  const auto strict = simulateAllreduce({a, b}, 2, {false, SimOrder::kStrict});
  EXPECT_NE(strict.error.find("deadlock (strict round order)"), std::string::npos) << strict.error;
  // In place, input and output alias: the send must wait after all.
  const auto inPlace = simulateAllreduce({a, b}, 2, {true, SimOrder::kDependencies});
  EXPECT_NE(inPlace.error.find("deadlock"), std::string::npos) << inPlace.error;
}

TEST(PlanSimulator, ReportsUnmatchedAndMismatchedMessages) {
  const auto unmatched = simulateAllreduce({planOf({{sendStep(1, inS(0, 2))}}), planOf({})}, 2);
  EXPECT_NE(unmatched.error.find("rank 0 sends 1 messages to rank 1 but rank 1 receives 0"),
            std::string::npos)
      << unmatched.error;
  const auto mismatch = simulateAllreduce(
      {planOf({{sendStep(1, inS(0, 2))}}), planOf({{recvStep(0, outS(0, 1))}})}, 2);
  EXPECT_NE(mismatch.error.find(
                "sends 2 elements but rank 1 round 0 step 0 (recv<-0 out[0+1]) expects 1"),
            std::string::npos)
      << mismatch.error;
}

TEST(PlanSimulator, ReportsBadSlicesPeersAndRaces) {
  const auto oob = simulateAllreduce({planOf({{sendStep(1, inS(1, 2))}}), planOf({})}, 2);
  EXPECT_NE(
      oob.error.find("rank 0 round 0 step 0 (send->1 in[1+2]): slice out of bounds: input has 2"),
      std::string::npos)
      << oob.error;
  const auto self = simulateAllreduce({planOf({{sendStep(0, inS(0, 2))}}), planOf({})}, 2);
  EXPECT_NE(self.error.find("invalid peer 0"), std::string::npos) << self.error;
  const auto race = simulateAllreduce({planOf({{sendStep(1, outS(0, 2)), recvStep(1, outS(1, 1))}}),
                                       planOf({{sendStep(0, inS(0, 1)), recvStep(0, outS(0, 2))}})},
                                      2);
  EXPECT_NE(race.error.find("touch the same memory in one round"), std::string::npos) << race.error;
  const Step overlapping{StepKind::kCopy, -1, outS(0, 2), outS(1, 2)};
  const auto partial = simulateAllreduce({planOf({{overlapping}}), planOf({})}, 3);
  EXPECT_NE(partial.error.find("partially overlap"), std::string::npos) << partial.error;
}

TEST(PlanSimulator, UnwrittenOutputKeepsTheSentinelAndBarrierKnowledgeIsTracked) {
  // Rank 0 tells rank 1 it has arrived; nobody tells rank 0.
  const Plan a = planOf({{sendStep(1, inS(0, 0))}});
  const Plan b = planOf({{recvStep(0, inS(0, 0))}});
  const auto res = simulateAllreduce({a, b}, 1);
  ASSERT_TRUE(res.ok()) << res.error;
  EXPECT_EQ(res.outputs[0], std::vector<int64_t>{testing::simSentinel<int64_t>()});
  EXPECT_FALSE(res.heard_from_all[0]);
  EXPECT_TRUE(res.heard_from_all[1]);
  EXPECT_EQ(res.sends, (std::vector<size_t>{1, 0}));
}

// The check behind AllreduceResultsAreBitIdenticalAcrossRanks can fail: an allreduce in
// which every rank sums all inputs itself, starting from its own, gets the right sum in
// integers but different bits per rank in doubles.
TEST(PlanSimulator, DoubleInputsExposeRankDependentSummationOrder) {
  const int p = 4;
  const size_t n = 64;
  std::vector<Plan> plans;
  for (int r = 0; r < p; ++r) {
    std::vector<std::vector<Step>> rounds(1);
    rounds[0].push_back(Step{StepKind::kCopy, -1, inS(0, n), outS(0, n)});
    for (int k = 1; k < p; ++k) {
      const int to = (r + k) % p;
      const int from = (r - k + p) % p;
      rounds[0].push_back(sendStep(to, inS(0, n)));
      rounds[0].push_back(
          recvStep(from, Slice{BufferId::kScratch, (static_cast<size_t>(k) - 1) * n, n}));
    }
    for (int k = 1; k < p; ++k) {
      const Slice parked{BufferId::kScratch, (static_cast<size_t>(k) - 1) * n, n};
      rounds.push_back({Step{StepKind::kReduce, -1, parked, outS(0, n)}});
    }
    Plan plan = planOf(std::move(rounds));
    plan.scratch_count = (p - 1) * n;
    plans.push_back(std::move(plan));
  }
  const CollSpec spec = specOf(CollKind::kAllreduce, 0, p, n);
  const auto ints = testing::simulatePlans(spec, plans, makeInputs<int64_t>(spec, intValue));
  ASSERT_TRUE(ints.ok()) << ints.error;
  EXPECT_EQ(ints.outputs, reference(spec, makeInputs<int64_t>(spec, intValue)));
  const auto doubles = testing::simulatePlans(spec, plans, makeInputs<double>(spec, doubleValue));
  ASSERT_TRUE(doubles.ok()) << doubles.error;
  int differing = 0;
  for (int r = 1; r < p; ++r) {
    differing +=
        std::memcmp(doubles.outputs[0].data(), doubles.outputs[static_cast<size_t>(r)].data(),
                    n * sizeof(double)) != 0;
  }
  EXPECT_GT(differing, 0);
}

}  // namespace
}  // namespace weft::coll
