// Per-row version words: torn copies are detected whatever order their bytes were read in,
// and concurrent lock-free readers never accept a torn row while writers update it.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "paramserver/row_layout.h"
#include "paramserver/server/row_access.h"
#include "ps_test_util.h"

namespace weft::ps {
namespace {

using testing::makeSpec;
using testing::makeTable;
using testing::pushRows;

constexpr uint32_t kDim = 16;

// A row in 8-byte-aligned memory written with the writer protocol.
struct TestRow {
  explicit TestRow(uint32_t dim) : layout(RowLayout::make(dim, 0)), words(layout.stride / 8) {}
  uint8_t* bytes() { return reinterpret_cast<uint8_t*>(words.data()); }
  void write(uint64_t key, float value, bool live = true) {
    const uint64_t v = beginRowWrite(bytes());
    row::setKey(bytes(), key);
    row::setU32(bytes(), kRowFlagsOffset, live ? kRowLive : 0);
    for (uint32_t j = 0; j < layout.dim; ++j) row::values(bytes())[j] = value;
    endRowWrite(bytes(), layout, v);
  }
  std::vector<uint8_t> copy() {
    return std::vector<uint8_t>(bytes(), bytes() + layout.readableBytes());
  }
  RowLayout layout;
  std::vector<uint64_t> words;
};

TEST(PsSeqlock, LayoutOffsets) {
  const RowLayout l = RowLayout::make(3, 2);
  EXPECT_EQ(l.tail_offset, 48u);  // 32 + round8(12)
  EXPECT_EQ(l.state_offset, 56u);
  EXPECT_EQ(l.stride, 80u);  // 56 + 24 -> 80
  EXPECT_EQ(l.readableBytes(), 56u);
  EXPECT_EQ(RowLayout::make(1, 0).stride, 48u);
}

TEST(PsSeqlock, ConsistentCopyIsAccepted) {
  TestRow r(kDim);
  r.write(42, 1.5f);
  const auto c = r.copy();
  float out[kDim];
  ASSERT_EQ(readRowConsistent(c.data(), c.size(), kDim, 42, out), RowRead::kOk);
  for (const float v : out) EXPECT_EQ(v, 1.5f);
  // Any alignment of the copy works.
  std::vector<uint8_t> shifted(c.size() + 3);
  std::memcpy(shifted.data() + 3, c.data(), c.size());
  EXPECT_EQ(readRowConsistent(shifted.data() + 3, c.size(), kDim, 42, out), RowRead::kOk);
  EXPECT_EQ(readRowConsistent(c.data(), c.size() - 1, kDim, 42, out), RowRead::kShort);
  EXPECT_EQ(readRowConsistent(c.data(), c.size(), kDim, 43, out), RowRead::kWrongKey);
  r.write(42, 2.0f, /*live=*/false);
  const auto freed = r.copy();
  EXPECT_EQ(readRowConsistent(freed.data(), freed.size(), kDim, 42, out), RowRead::kNotLive);
}

TEST(PsSeqlock, CopyDuringWriteIsTorn) {
  TestRow r(kDim);
  r.write(7, 1.0f);
  float out[kDim];
  const uint64_t v = beginRowWrite(r.bytes());
  row::values(r.bytes())[0] = 2.0f;
  auto mid = r.copy();  // version odd
  EXPECT_EQ(readRowConsistent(mid.data(), mid.size(), kDim, 7, out), RowRead::kTorn);
  endRowWrite(r.bytes(), r.layout, v);
  auto after = r.copy();
  EXPECT_EQ(readRowConsistent(after.data(), after.size(), kDim, 7, out), RowRead::kOk);
}

// A copy that mixes an old and a new version's bytes in any pattern (as an RDMA read with
// no ordering guarantee could) is rejected.
TEST(PsSeqlock, MixedVersionsAreTornInAnyByteOrder) {
  TestRow r(kDim);
  r.write(7, 1.0f);
  const auto old_copy = r.copy();
  r.write(7, 2.0f);
  const auto new_copy = r.copy();
  float out[kDim];
  int checked = 0;
  const size_t n = old_copy.size();
  for (size_t cut = 1; cut < n; ++cut) {
    for (const bool old_first : {true, false}) {
      std::vector<uint8_t> mix(n);
      for (size_t i = 0; i < n; ++i) {
        mix[i] = (i < cut) == old_first ? old_copy[i] : new_copy[i];
      }
      if (mix == old_copy || mix == new_copy) continue;
      ++checked;
      const RowRead got = readRowConsistent(mix.data(), n, kDim, 7, out);
      // Only bytes that are equal in both versions may be mixed harmlessly.
      if (got == RowRead::kOk) {
        for (const float x : out) ASSERT_TRUE(x == 1.0f || x == 2.0f);
        ASSERT_TRUE(std::all_of(out, out + kDim, [&](float x) { return x == out[0]; }));
      } else {
        EXPECT_EQ(got, RowRead::kTorn) << "cut " << cut;
      }
    }
  }
  EXPECT_GT(checked, 50);
}

// Writers update rows of a Table through push() while readers copy the same rows with no
// lock: every accepted copy is one whole version (all elements equal, as every push adds
// the same amount to each element), and versions seen by one reader never go back.
TEST(PsSeqlock, ConcurrentReadersNeverAcceptTornRows) {
  constexpr uint32_t kWide = 1024;  // long writes: readers often overlap one
  TableSpec spec = makeSpec(1, "t", kWide);
  spec.optimizer.learning_rate = 1.0f;
  auto table = makeTable(spec);
  const std::vector<uint64_t> keys = {1, 2, 3, 4};
  ASSERT_TRUE(pushRows(*table, keys, std::vector<float>(keys.size() * kWide, 0.0f)).isOk());
  std::vector<const uint8_t*> rows;
  for (const uint64_t k : keys) rows.push_back(table->rowAddress(k));
  const RowLayout layout = table->layout();
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> accepted{0}, torn{0};
  std::atomic<int> failures{0};
  auto reader = [&] {
    std::vector<uint8_t> copy(layout.readableBytes());
    std::vector<float> out(kWide);
    std::vector<float> last(keys.size(), 0.0f);
    while (!stop.load()) {
      for (size_t i = 0; i < keys.size(); ++i) {
        const RowRead r = readRowLockFree(rows[i], layout, keys[i], out.data(), copy.data(), 1);
        if (r == RowRead::kTorn) {
          torn.fetch_add(1);
          continue;
        }
        accepted.fetch_add(1);
        const bool whole =
            std::all_of(out.begin(), out.end(), [&](float x) { return x == out[0]; });
        if (r != RowRead::kOk || !whole || out[0] < last[i]) failures.fetch_add(1);
        last[i] = out[0];
      }
    }
  };
  std::vector<std::thread> readers;
  readers.emplace_back(reader);
  const std::vector<float> minus_one(keys.size() * kWide, -1.0f);  // w += 1 per push
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int pushes = 0;
  while (pushes < 50000 && std::chrono::steady_clock::now() < deadline) {
    ASSERT_TRUE(pushRows(*table, keys, minus_one).isOk());
    ++pushes;
    // Keep going until the readers accepted a fair number of copies.
    if (pushes >= 5000 && accepted.load() > 5000) break;
  }
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(accepted.load(), 0u);
  const auto final_values = testing::pullRows(*table, {1});
  EXPECT_EQ(final_values[0], static_cast<float>(pushes));
  std::printf("[ps seqlock] %d pushes, %llu copies accepted, %llu torn copies rejected\n", pushes,
              static_cast<unsigned long long>(accepted.load()),
              static_cast<unsigned long long>(torn.load()));
}

}  // namespace
}  // namespace weft::ps
