// Feature admission (count-min sketch) and eviction of idle rows; bytes per row.
#include <gtest/gtest.h>

#include <cstdio>

#include "paramserver/server/admission.h"
#include "paramserver/server/initializer.h"
#include "paramserver/util/hash.h"
#include "ps_test_util.h"

namespace weft::ps {
namespace {

using testing::makeSpec;
using testing::makeTable;
using testing::pullRows;
using testing::pushRows;

TEST(PsAdmission, SketchNeverUndercounts) {
  CountMinSketch sketch(256, 4);  // small: many collisions
  std::vector<uint32_t> truth(2000, 0);
  for (uint32_t round = 0; round < 5; ++round) {
    for (uint32_t k = 0; k < truth.size(); k += round + 1) {
      ++truth[k];
      EXPECT_GE(sketch.add(k), truth[k]);
    }
  }
  for (uint32_t k = 0; k < truth.size(); ++k) EXPECT_GE(sketch.estimate(k), truth[k]);
  EXPECT_EQ(sketch.bytes(), 256u * 4 * 4);
}

TEST(PsAdmission, RowIsCreatedOnlyAtTheNthPush) {
  TableSpec spec = makeSpec(1, "t", 2);
  spec.init = {InitKind::kUniform, 9, -1.0f, 1.0f};
  spec.admission = {3, 1 << 16, 4};
  auto table = makeTable(spec);
  float init[2];
  initializeRow(spec.init, 5, 2, init);
  for (int seen = 1; seen <= 2; ++seen) {
    ASSERT_TRUE(pushRows(*table, {5, 5}, {1, 1, 1, 1}).isOk());  // duplicates count once
    EXPECT_EQ(table->rowCount(), 0u) << "after push " << seen;
    const auto v = pullRows(*table, {5});  // pulls do not count and create nothing
    EXPECT_EQ(v[0], init[0]);
    EXPECT_EQ(v[1], init[1]);
  }
  EXPECT_EQ(table->stats().admission_dropped, 2u);
  ASSERT_TRUE(pushRows(*table, {5}, {1, 1}).isOk());
  EXPECT_EQ(table->rowCount(), 1u);
  const auto v = pullRows(*table, {5});
  EXPECT_FLOAT_EQ(v[0], init[0] - 0.01f);  // only the admitting push was applied
  // pushPull of a key not yet admitted returns its initializer values.
  std::vector<float> out(2);
  const std::vector<uint64_t> key = {6};
  const std::vector<float> g = {1, 1};
  ASSERT_TRUE(table->pushPull(KeySpan::of(key), FloatSpan::of(g), out.data()).isOk());
  initializeRow(spec.init, 6, 2, init);
  EXPECT_EQ(out[0], init[0]);
}

TEST(PsEviction, RowsUntouchedForTClocksAreEvicted) {
  TableSpec spec = makeSpec(1, "t", 1);
  spec.evict_after_clocks = 2;
  auto table = makeTable(spec);
  ASSERT_TRUE(pushRows(*table, {1, 2, 3}, {1, 1, 1}).isOk());  // touched at clock 0
  EXPECT_EQ(table->advanceClock(1), 0u);
  ASSERT_TRUE(pushRows(*table, {2}, {1}).isOk());  // touched at clock 1
  pullRows(*table, {3});                           // a pull touches too
  EXPECT_EQ(table->advanceClock(2), 1u);           // key 1: 0 + 2 <= 2
  EXPECT_EQ(table->rowAddress(1), nullptr);
  EXPECT_NE(table->rowAddress(2), nullptr);
  EXPECT_EQ(table->advanceClock(3), 2u);  // keys 2 and 3: 1 + 2 <= 3
  EXPECT_EQ(table->rowCount(), 0u);
  EXPECT_EQ(table->stats().evicted, 3u);
  EXPECT_EQ(pullRows(*table, {2})[0], 0.0f);  // back to the initializer
  EXPECT_EQ(table->advanceClock(3), 0u);      // same clock: nothing to do
}

// Evicted rows are marked not live, so a one-sided reader with a stale location sees it.
TEST(PsEviction, EvictedRowIsNotLiveForOneSidedReaders) {
  TableSpec spec = makeSpec(1, "t", 4);
  spec.evict_after_clocks = 1;
  auto table = makeTable(spec);
  ASSERT_TRUE(pushRows(*table, {9}, {1, 1, 1, 1}).isOk());
  const uint8_t* row = table->rowAddress(9);
  ASSERT_NE(row, nullptr);
  std::vector<uint8_t> copy(table->layout().readableBytes());
  float out[4];
  EXPECT_EQ(readRowLockFree(row, table->layout(), 9, out, copy.data(), 3), RowRead::kOk);
  ASSERT_EQ(table->advanceClock(1), 1u);
  EXPECT_EQ(readRowLockFree(row, table->layout(), 9, out, copy.data(), 3), RowRead::kNotLive);
  // The freed row is reused for another key: the old location now fails with kWrongKey.
  ASSERT_TRUE(pushRows(*table, {10}, {1, 1, 1, 1}).isOk());
  ASSERT_EQ(table->rowAddress(10), row);
  EXPECT_EQ(readRowLockFree(row, table->layout(), 9, out, copy.data(), 3), RowRead::kWrongKey);
}

TEST(PsStats, BytesPerRowReported) {
  for (const uint32_t dim : {1u, 16u, 64u}) {
    for (const OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kAdam}) {
      auto table = makeTable(makeSpec(1, "t", dim, kind));
      std::vector<uint64_t> keys(100000);
      for (size_t i = 0; i < keys.size(); ++i) keys[i] = mix64(i);
      ASSERT_TRUE(pushRows(*table, keys, std::vector<float>(keys.size() * dim, 0.5f)).isOk());
      const TableStats s = table->stats();
      const double state_floats = kind == OptimizerKind::kAdam ? 2.0 * dim : 0.0;
      EXPECT_GE(s.row_stride, 40 + 4 * (dim + state_floats));
      EXPECT_GT(s.bytes_per_row, static_cast<double>(s.row_stride));
      std::printf("[ps bytes/row] dim %3u %-4s stride %4llu B, with index and slack %.1f B\n", dim,
                  std::string(optimizerName(kind)).c_str(),
                  static_cast<unsigned long long>(s.row_stride), s.bytes_per_row);
    }
  }
}

}  // namespace
}  // namespace weft::ps
