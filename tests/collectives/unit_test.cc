// In-process tests of the collectives runtime's pieces: buffer pool, plan compilation
// (chunks, dependencies, layouts), tuner and explain, groups, WEFT_CHECK signatures, and
// the argument validation of a one-rank communicator.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "collectives/api/collectives.h"
#include "collectives/comm/signature.h"
#include "collectives/executor/buffer_pool.h"
#include "collectives/executor/compiled_plan.h"
#include "collectives/schedule/algorithms.h"
#include "collectives/tuner/tuner.h"
#include "common/config.h"
#include "tests/support/rank_harness.h"

namespace weft::coll {
namespace {

using detail::BufferLayout;
using detail::BufferPool;
using detail::CompiledPlan;
using detail::compilePlan;
using weft::testing::containsText;

TEST(BufferPoolTest, ReusesBuffersAndStopsAllocatingAfterWarmUp) {
  BufferPool pool;
  BufferPool::Lease a = pool.acquire(1000);
  BufferPool::Lease b = pool.acquire(4000);
  ASSERT_NE(a.data, nullptr);
  EXPECT_NE(a.data, b.data);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data) % 64, 0u);
  pool.release(a);
  pool.release(b);
  const uint64_t warm = pool.allocations();
  for (int i = 0; i < 100; ++i) {
    BufferPool::Lease x = pool.acquire(3000);  // the 4000-byte one
    BufferPool::Lease y = pool.acquire(500);   // the 1000-byte one
    pool.release(x);
    pool.release(y);
  }
  EXPECT_EQ(pool.allocations(), warm);
  EXPECT_EQ(pool.numBuffers(), 2u);
  BufferPool::Lease big = pool.acquire(10000);  // regrows a free buffer instead of adding one
  EXPECT_EQ(pool.numBuffers(), 2u);
  pool.release(big);
  BufferPool::Lease empty = pool.acquire(0);
  EXPECT_EQ(empty.data, nullptr);
}

const detail::CompiledStep* findStep(const CompiledPlan& cp, StepKind kind, uint32_t round) {
  for (const auto& s : cp.steps) {
    if (s.kind == kind && s.round == round) return &s;
  }
  return nullptr;
}

bool dependsOn(const CompiledPlan& cp, uint32_t task, uint32_t on) {
  for (uint32_t i = cp.dependents_begin[on]; i < cp.dependents_begin[on + 1]; ++i) {
    if (cp.dependents[i] == task) return true;
  }
  return false;
}

// Ring allreduce, 3 ranks, 12 elements (blocks of 4), chunks of 2: chunk k of the send in
// round 1 forwards what chunk k of the reduction in round 0 produced, so it waits for that
// chunk only (the pipelining), and nothing else of that step.
TEST(CompiledPlanTest, ChunkDependenciesFollowTheData) {
  const Plan plan = buildRingAllreduce(CollSpec{CollKind::kAllreduce, 0, 3, 12, 0});
  BufferLayout layout{12, 12, false, 0};
  auto cp = compilePlan(plan, 0, 3, 2, layout);
  ASSERT_TRUE(cp.isOk()) << cp.status();
  const auto* red = findStep(**cp, StepKind::kRecvReduce, 0);
  const auto* fwd = findStep(**cp, StepKind::kSend, 1);
  ASSERT_TRUE(red && fwd);
  EXPECT_EQ(red->num_chunks, 2u);
  EXPECT_FALSE(red->staged);  // input and output are distinct: receive straight into out
  for (uint32_t c = 0; c < 2; ++c) {
    EXPECT_TRUE(dependsOn(**cp, fwd->first_task + c, red->first_task + c)) << c;
    EXPECT_FALSE(dependsOn(**cp, fwd->first_task + c, red->first_task + (1 - c))) << c;
    EXPECT_EQ((*cp)->num_deps[fwd->first_task + c], 1u);
  }
  EXPECT_EQ((*cp)->peers, (std::vector<int>{1, 2}));
  // Messages are numbered per direction: rank 0 sends 4 messages to rank 1.
  uint32_t sends = 0;
  for (const auto& s : (*cp)->steps) {
    if (s.kind == StepKind::kSend) {
      EXPECT_EQ(s.pair_index, sends++);
    }
  }
  EXPECT_EQ(sends, 4u);
}

TEST(CompiledPlanTest, InPlaceLayoutStagesReductionsAndSkipsSelfCopies) {
  const Plan plan = buildRingAllreduce(CollSpec{CollKind::kAllreduce, 1, 3, 12, 0});
  auto cp = compilePlan(plan, 1, 3, 64, BufferLayout{12, 12, true, 0});
  ASSERT_TRUE(cp.isOk()) << cp.status();
  const auto* red = findStep(**cp, StepKind::kRecvReduce, 0);
  ASSERT_NE(red, nullptr);
  EXPECT_TRUE(red->staged);
  const Plan bcast = buildRingBroadcast(CollSpec{CollKind::kBroadcast, 0, 3, 8, 0});
  auto cb = compilePlan(bcast, 0, 3, 64, BufferLayout{8, 8, true, 0});
  ASSERT_TRUE(cb.isOk()) << cb.status();
  const auto* copy = findStep(**cb, StepKind::kCopy, 0);
  ASSERT_NE(copy, nullptr);
  EXPECT_TRUE(copy->noop);
}

TEST(CompiledPlanTest, BarrierMessagesAreFences) {
  const Plan plan = buildDisseminationBarrier(CollSpec{CollKind::kBarrier, 0, 4, 0, 0});
  auto cp = compilePlan(plan, 0, 4, 64, BufferLayout{});
  ASSERT_TRUE(cp.isOk()) << cp.status();
  for (const auto& s : (*cp)->steps) {
    EXPECT_TRUE(s.fence);
    EXPECT_EQ(s.num_chunks, 1u);
    if (s.round > 0) {
      EXPECT_GE((*cp)->num_deps[s.first_task], 2u);  // every earlier step
    }
  }
}

TEST(CompiledPlanTest, BrokenPlansAreInternalErrors) {
  Plan p;
  p.algorithm = "broken";
  p.rounds.push_back(Round{{Step{StepKind::kRecv, 1, {}, {BufferId::kInput, 0, 4}}}});
  auto writesInput = compilePlan(p, 0, 2, 4, BufferLayout{4, 4, false, 0});
  EXPECT_EQ(writesInput.status().code(), StatusCode::kInternal);
  EXPECT_TRUE(containsText(writesInput.status().message(), "writes the input"));
  p.rounds[0].steps[0] = Step{StepKind::kRecv, 1, {}, {BufferId::kOutput, 2, 4}};
  EXPECT_TRUE(containsText(compilePlan(p, 0, 2, 4, BufferLayout{4, 4, false, 0}).status().message(),
                           "out of bounds"));
  p.rounds[0].steps[0] = Step{StepKind::kSend, 0, {BufferId::kInput, 0, 4}, {}};
  EXPECT_TRUE(containsText(compilePlan(p, 0, 2, 4, BufferLayout{4, 4, false, 0}).status().message(),
                           "invalid peer"));
  p.rounds[0].steps[0] =
      Step{StepKind::kCopy, -1, {BufferId::kInput, 0, 4}, {BufferId::kOutput, 0, 4}};
  auto partial = compilePlan(p, 0, 2, 4, BufferLayout{4, 6, true, 2});
  EXPECT_TRUE(containsText(partial.status().message(), "partially overlap"));
}

TEST(TunerTest, ModelPrefersLatencyForSmallAndBandwidthForLarge) {
  Tuner t;
  const TopologyShape eight{8, 1};
  auto small = t.select(CollKind::kAllreduce, 8, eight, 262144);
  ASSERT_TRUE(small.isOk()) << small.status();
  EXPECT_EQ(small->algorithm->name, "recursive_doubling");
  auto large = t.select(CollKind::kAllreduce, 64 << 20, eight, 262144);
  ASSERT_TRUE(large.isOk());
  EXPECT_TRUE(large->algorithm->name == "ring" || large->algorithm->name == "rabenseifner")
      << large->algorithm->name;
  EXPECT_EQ(t.select(CollKind::kBarrier, 0, eight, 1)->algorithm->name, "dissemination");
  EXPECT_EQ(t.select(CollKind::kAlltoall, 1 << 20, eight, 1 << 18)->algorithm->name, "pairwise");
  // Inter-node links are slower: the same call costs more on two nodes.
  EXPECT_GT(predictSeconds(t.model(), "ring", CollKind::kAllreduce, 1 << 20, {8, 2}, 1 << 18),
            predictSeconds(t.model(), "ring", CollKind::kAllreduce, 1 << 20, {8, 1}, 1 << 18));
  for (const AlgorithmEntry& e : allAlgorithms()) {
    EXPECT_GE(predictSeconds(t.model(), e.name, e.kind, 4096, {5, 1}, 1024), 0) << e.name;
  }
}

TEST(TunerTest, OverridesAndCallOptionsWinAndBadNamesListTheValidOnes) {
  Tuner t;
  t.setOverride(CollKind::kAllreduce, "ring");
  auto s = t.select(CollKind::kAllreduce, 8, {8, 1}, 1024);
  ASSERT_TRUE(s.isOk());
  EXPECT_EQ(s->algorithm->name, "ring");
  EXPECT_EQ(s->reason, Selection::Reason::kOverride);
  EXPECT_EQ(t.select(CollKind::kAllreduce, 8, {8, 1}, 1024, "double_tree")->algorithm->name,
            "double_tree");
  t.setOverride(CollKind::kBroadcast, "bruck");
  auto bad = t.select(CollKind::kBroadcast, 8, {8, 1}, 1024);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(containsText(bad.status().message(), "WEFT_ALGO_BROADCAST=\"bruck\""));
  EXPECT_TRUE(containsText(bad.status().message(), "valid: ring, binary_tree, binomial"));
  config::setOverride("WEFT_ALGO_REDUCE_SCATTER", "rabenseifner");
  auto fromEnv = Tuner::fromEnvironment();
  config::clearOverride("WEFT_ALGO_REDUCE_SCATTER");
  ASSERT_TRUE(fromEnv.isOk()) << fromEnv.status();
  EXPECT_EQ(fromEnv->overrideFor(CollKind::kReduceScatter), "rabenseifner");
  EXPECT_EQ(fromEnv->overrideFor(CollKind::kAllreduce), "");
}

TEST(TunerTest, ExplainListsEveryAlternativeAndTheChoice) {
  Tuner t;
  const std::string text = t.explain(CollKind::kAllreduce, 64 << 20, {4, 1}, 262144);
  for (const AlgorithmEntry* e : algorithmsFor(CollKind::kAllreduce)) {
    EXPECT_TRUE(containsText(text, e->name));
  }
  EXPECT_TRUE(containsText(text, "64 MiB per rank on 4 ranks, 1 node"));
  EXPECT_TRUE(containsText(text, "<- chosen (lowest predicted time)"));
  EXPECT_EQ(std::count(text.begin(), text.end(), '*'), 1);
}

TEST(TunerTest, ByteSizesAndFormatting) {
  EXPECT_EQ(*parseByteSize("64M"), size_t{64} << 20);
  EXPECT_EQ(*parseByteSize("1K"), 1024u);
  EXPECT_EQ(*parseByteSize("8"), 8u);
  EXPECT_EQ(*parseByteSize("2GiB"), size_t{2} << 30);
  EXPECT_EQ(*parseByteSize("4096b"), 4096u);
  for (const char* bad : {"", "M", "12X", "1.5M", "-3"}) {
    EXPECT_EQ(parseByteSize(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(formatBytes(64 << 20), "64 MiB");
  EXPECT_EQ(formatBytes(1536), "1.50 KiB");
  EXPECT_EQ(algoVariable(CollKind::kReduceScatter), "WEFT_ALGO_REDUCE_SCATTER");
}

TEST(GroupTest, SetOperationsAndValidation) {
  auto g = Group::fromWorldRanks({5, 2, 7, 0});
  ASSERT_TRUE(g.isOk());
  EXPECT_EQ(g->indexOf(7), 2);
  EXPECT_EQ(g->indexOf(3), -1);
  EXPECT_EQ(g->include(std::vector<int>{3, 0})->worldRanks(), (std::vector<int>{0, 5}));
  EXPECT_EQ(g->exclude(std::vector<int>{1})->worldRanks(), (std::vector<int>{5, 7, 0}));
  const Group other = *Group::fromWorldRanks({7, 9, 5});
  EXPECT_EQ(g->unionWith(other).worldRanks(), (std::vector<int>{5, 2, 7, 0, 9}));
  EXPECT_EQ(g->intersection(other).worldRanks(), (std::vector<int>{5, 7}));
  EXPECT_EQ(Group::fromWorldRanks({1, 1}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Group::fromWorldRanks({-1}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(g->include(std::vector<int>{4}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(g->exclude(std::vector<int>{-1}).status().code(), StatusCode::kInvalidArgument);
}

TEST(SignatureTest, MismatchesGroupRanksAndNameWorldRanks) {
  detail::Signature a;
  a.op = static_cast<uint8_t>(detail::OpCode::kAllreduce);
  a.type = static_cast<uint8_t>(DataType::kF32);
  a.reduce_op = static_cast<uint8_t>(ReduceOp::kSum);
  a.count = 4;
  std::vector<detail::Signature> sigs(4, a);
  const std::vector<int> world = {0, 5, 6, 7};
  EXPECT_TRUE(detail::compareSignatures("x", sigs, world).isOk());
  sigs[2].count = 5;
  Status st = detail::compareSignatures("allreduce #3", sigs, world);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(containsText(st.message(), "allreduce #3: WEFT_CHECK found mismatched calls"));
  EXPECT_TRUE(
      containsText(st.message(), "ranks 0, 1 (world 5), 3 (world 7) called allreduce(count 4"));
  EXPECT_TRUE(containsText(st.message(), "rank 2 (world 6) called allreduce(count 5"));
}

// One rank in this process: argument validation happens before anything is sent.
class OneRankTest : public ::testing::Test {
 protected:
  void SetUp() override {
    transport::ContextOptions o;
    auto ctx = transport::openContext("ucx", o);
    ASSERT_TRUE(ctx.isOk()) << ctx.status();
    ctx_ = std::move(ctx).value();
    WorldInfo w;
    w.store = makeHashStore();
    auto comm = Communicator::create(w, ctx_);
    ASSERT_TRUE(comm.isOk()) << comm.status();
    comm_ = std::move(comm).value();
  }
  std::shared_ptr<transport::Context> ctx_;
  std::unique_ptr<Communicator> comm_;
};

TEST_F(OneRankTest, EveryOperationRunsOnOneRank) {
  std::vector<int32_t> in = {1, 2, 3}, out(3, 0);
  EXPECT_TRUE(allreduce(*comm_, in.data(), out.data(), 3, DataType::kI32, ReduceOp::kAvg).isOk());
  EXPECT_EQ(out, in);
  EXPECT_TRUE(barrier(*comm_).isOk());
  EXPECT_TRUE(alltoall(*comm_, in.data(), out.data(), 3, DataType::kI32).isOk());
  EXPECT_EQ(comm_->nextSeq(), 3u);
  EXPECT_EQ(comm_->topology().local_size, 1);
  EXPECT_EQ(comm_->group().worldRanks(), std::vector<int>{0});
}

TEST_F(OneRankTest, InvalidCallsAreRejectedWithoutTakingASequenceNumber) {
  std::vector<float> f(8, 1.0f);
  Status st = allreduce(*comm_, f.data(), f.data(), 8, DataType::kF32, ReduceOp::kBxor);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(containsText(st.message(), "allreduce"));
  EXPECT_TRUE(containsText(st.message(), "bxor"));
  EXPECT_EQ(allreduce(*comm_, nullptr, f.data(), 8, DataType::kF32, ReduceOp::kSum).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(broadcast(*comm_, f.data(), 8, DataType::kF32, 1).code(), StatusCode::kInvalidArgument);
  // Overlapping buffers that are not the in-place layout.
  st = allreduce(*comm_, f.data(), f.data() + 1, 4, DataType::kF32, ReduceOp::kSum);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(containsText(st.message(), "overlap"));
  EXPECT_EQ(send(*comm_, f.data(), 1, DataType::kF32, 0, 1).code(), StatusCode::kInvalidArgument);
  const std::vector<size_t> counts = {1, 2};
  EXPECT_EQ(allgatherv(*comm_, f.data(), 1, f.data(), counts, counts, DataType::kF32).code(),
            StatusCode::kInvalidArgument);
  CallOptions o;
  o.algorithm = "nope";
  st = allreduce(*comm_, f.data(), f.data(), 8, DataType::kF32, ReduceOp::kSum, o);
  EXPECT_TRUE(containsText(st.message(), "valid: ring, rabenseifner"));
  const std::vector<size_t> one = {8}, zero = {0};
  st = allgatherv(*comm_, f.data(), 8, f.data(), one, zero, DataType::kF32, o);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(containsText(st.message(), "valid: ring, shm")) << st;
  EXPECT_EQ(comm_->nextSeq(), 0u);
  EXPECT_TRUE(comm_->health().isOk());
}

TEST(CommunicatorCreateTest, ContextRankMustBeTheWorldRank) {
  transport::ContextOptions o;
  o.rank = 1;
  auto ctx = transport::openContext("ucx", o);
  ASSERT_TRUE(ctx.isOk()) << ctx.status();
  WorldInfo w;
  w.rank = 0;
  w.size = 2;
  w.store = makeHashStore();
  auto comm = Communicator::create(w, std::shared_ptr<transport::Context>(std::move(ctx).value()));
  EXPECT_EQ(comm.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(containsText(comm.status().message(), "Context has rank 1"));
}

}  // namespace
}  // namespace weft::coll
