// Consistency bookkeeping: BSP / SSP(s) / ASP clock tracking, and the staleness bound
// enforced end to end through the request handler by simulated workers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "paramserver/server/clock_tracker.h"
#include "paramserver/server/request_handler.h"
#include "ps_test_util.h"

namespace weft::ps {
namespace {

TEST(PsClockTracker, BspWaitsForEveryWorker) {
  ClockTracker t({ConsistencyModel::kBsp, 0, 3});
  EXPECT_TRUE(t.canRead(0));
  EXPECT_FALSE(t.canRead(1));
  uint32_t min = 99;
  ASSERT_TRUE(t.finish(0, 0, &min).isOk());
  ASSERT_TRUE(t.finish(2, 0, &min).isOk());
  EXPECT_EQ(min, 0u);
  const ReadWait w = t.readWait(1);
  EXPECT_FALSE(w.ready);
  EXPECT_EQ(w.need_min_clock, 1u);
  EXPECT_EQ(w.lagging, std::vector<uint32_t>{1});
  ASSERT_TRUE(t.finish(1, 0, &min).isOk());
  EXPECT_EQ(min, 1u);
  EXPECT_TRUE(t.canRead(1));
  EXPECT_FALSE(t.canRead(2));
  // Reports are idempotent and never move a clock back.
  ASSERT_TRUE(t.finish(1, 0, &min).isOk());
  EXPECT_EQ(t.workerClock(1), 1u);
  EXPECT_FALSE(t.finish(3, 0, nullptr).isOk());  // no worker 3
}

TEST(PsClockTracker, SspAllowsStalenessS) {
  ClockTracker t({ConsistencyModel::kSsp, 2, 2});
  ASSERT_TRUE(t.finish(0, 0, nullptr).isOk());
  ASSERT_TRUE(t.finish(0, 1, nullptr).isOk());
  ASSERT_TRUE(t.finish(0, 2, nullptr).isOk());  // worker 0 at clock 3, worker 1 at 0
  EXPECT_TRUE(t.canRead(2));                    // needs min >= 0
  EXPECT_FALSE(t.canRead(3));                   // needs min >= 1
  EXPECT_EQ(t.readWait(3).lagging, std::vector<uint32_t>{1});
  ASSERT_TRUE(t.finish(1, 0, nullptr).isOk());
  EXPECT_TRUE(t.canRead(3));
  EXPECT_FALSE(t.canRead(4));
}

TEST(PsClockTracker, AspNeverWaitsAndSnapshotsRestore) {
  ClockTracker t({ConsistencyModel::kAsp, 0, 0});
  EXPECT_TRUE(t.canRead(1000000));
  uint32_t min = 0;
  ASSERT_TRUE(t.finish(0, 4, &min).isOk());
  EXPECT_EQ(min, 5u);  // without workers: one table clock
  ClockTracker u({ConsistencyModel::kAsp, 0, 0});
  ASSERT_TRUE(u.restore(t.snapshot()).isOk());
  EXPECT_EQ(u.minClock(), 5u);
  EXPECT_FALSE(u.restore({1, 2}).isOk());
}

// W workers run C clocks each, scheduled in a seeded random order. Every clock a worker
// pulls (at its clock c), pushes +1 to one shared key (SGD, lr 1, gradient -1), then reports the
// clock. A pull the server answers must already see every worker's pushes of clocks < c - s, i.e.
// value
// >= W * (c - s); a blocked pull is retried later. No worker may get more than s + 1
// clocks ahead of the slowest, and everyone finishes.
void runStalenessSimulation(ConsistencyModel model, uint32_t s) {
  constexpr uint32_t kWorkers = 3;
  constexpr uint32_t kClocks = 30;
  Shard shard;
  TableSpec spec = testing::makeSpec(1, "w", 1);
  spec.optimizer.learning_rate = 1.0f;
  spec.consistency = {model, s, kWorkers};
  ASSERT_TRUE(shard.createTable(spec).isOk());
  RequestHandler handler(shard, {});
  std::vector<uint32_t> clock(kWorkers, 0);
  std::mt19937 rng(12345 + s);
  const std::vector<uint64_t> key = {42};
  const std::vector<float> minus_one = {-1.0f};
  int blocked = 0;
  uint64_t id = 1;
  for (int turn = 0; turn < 100000; ++turn) {
    const uint32_t w = rng() % kWorkers;
    if (clock[w] == kClocks) {
      if (std::all_of(clock.begin(), clock.end(), [](uint32_t c) { return c == kClocks; })) break;
      continue;
    }
    const uint32_t c = clock[w];
    wire::KeyedRequest pull{wire::Opcode::kPull, 1, c, KeySpan::of(key), {}, {}};
    const HandleResult r = handler.handleDetailed(wire::encodeKeyed({id++, w, 1, 0}, pull));
    auto m = wire::decodeMessage(r.reply, {});
    ASSERT_TRUE(m.isOk());
    if (m->opcode() == wire::Opcode::kError) {
      ASSERT_TRUE(r.blocked.has_value());
      EXPECT_EQ(r.blocked->need_min_clock, c - s);
      EXPECT_EQ(wire::decodeError(*m)->retry_clock, c - s);
      ++blocked;
      continue;
    }
    float value = 0;
    std::memcpy(&value, m->payload.data() + wire::kReplyPrefixBytes, 4);
    const uint32_t must_see = c > s ? kWorkers * (c - s) : 0;
    ASSERT_GE(value, static_cast<float>(must_see)) << "worker " << w << " clock " << c;
    wire::KeyedRequest push{wire::Opcode::kPush,      1, c, KeySpan::of(key),
                            FloatSpan::of(minus_one), {}};
    ASSERT_EQ(
        wire::decodeMessage(handler.handle(wire::encodeKeyed({id++, w, 1, 0}, push)).value(), {})
            ->opcode(),
        wire::Opcode::kReply);
    ASSERT_TRUE(handler.handle(wire::encodeClock({id++, w, 1, 0}, {w, c})).isOk());
    clock[w] = c + 1;
    const auto [lo, hi] = std::minmax_element(clock.begin(), clock.end());
    ASSERT_LE(*hi - *lo, s + 1) << "staleness bound broken";
  }
  for (const uint32_t c : clock) EXPECT_EQ(c, kClocks);
  EXPECT_GT(blocked, 0);  // the seeded schedule does run ahead of the slowest worker
}

TEST(PsConsistency, BspBoundEnforcedThroughHandler) {
  runStalenessSimulation(ConsistencyModel::kBsp, 0);
}

TEST(PsConsistency, SspBoundEnforcedThroughHandler) {
  runStalenessSimulation(ConsistencyModel::kSsp, 2);
}

}  // namespace
}  // namespace weft::ps
