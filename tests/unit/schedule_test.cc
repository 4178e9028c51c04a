// Collective schedules without a network: every algorithm x kind x size x count x root, run
// in memory by the plan simulator (tests/support/plan_sim.h) and compared with a serial
// reference; golden strings for a few small plans; message-count formulas; the simulator's
// own error reports.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "collectives/schedule/algorithms.h"
#include "collectives/schedule/plan.h"
#include "tests/support/plan_sim.h"

namespace weft::coll {
namespace {

using testing::SimOptions;
using testing::SimOrder;
using testing::SimResult;

constexpr int kSizes[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17};
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
int64_t intValue(int rank, size_t i) { return rank * 1000003LL + static_cast<int64_t>(i) * 31 + 17; }

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
  return kind == CollKind::kBroadcast || kind == CollKind::kReduce ||
         kind == CollKind::kGather || kind == CollKind::kScatter;
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
  void checkBitIdentical(const CollSpec& spec);
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
    const bool finalize = isReduction(spec.kind) && (spec.kind != CollKind::kReduce || r == spec.root);
    ASSERT_EQ(plans[ur].needs_finalize, finalize) << "rank " << r;
    if (spec.kind == CollKind::kBarrier) ASSERT_TRUE(res.heard_from_all[ur]) << "rank " << r;
  }
}

// Simulated in doubles, where the summation order shows in the bits: every rank must hold
// exactly the same result.
void AlgorithmTest::checkBitIdentical(const CollSpec& spec) {
  const AlgorithmEntry& e = GetParam();
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

TEST_P(AlgorithmTest, AllreduceResultsAreBitIdenticalAcrossRanks) {
  const AlgorithmEntry& e = GetParam();
  if (e.kind != CollKind::kAllreduce) GTEST_SKIP() << "not an allreduce";
  for (int size : kSizes) {
    for (size_t count : {size_t{7}, size_t{100}, size_t{1000}}) {
      checkBitIdentical(specOf(e.kind, 0, size, count));
      if (HasFatalFailure()) return;
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

std::string entryName(const ::testing::TestParamInfo<AlgorithmEntry>& info) {
  return strCat(info.param.name, "_", toString(info.param.kind));
}

INSTANTIATE_TEST_SUITE_P(Schedules, AlgorithmTest, ::testing::ValuesIn(allAlgorithms().begin(),
                                                                       allAlgorithms().end()),
                         entryName);

}  // namespace
}  // namespace weft::coll
