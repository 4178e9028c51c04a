// Consistent hashing: ownership, balance, serialization, and moving rows when a server is
// added or removed (no row lost, values and optimizer state identical).
#include <gtest/gtest.h>

#include <map>
#include <memory>

#include "paramserver/client/client_codec.h"
#include "paramserver/sharding/shard_map.h"
#include "paramserver/util/hash.h"
#include "ps_test_util.h"

namespace weft::ps {
namespace {

using testing::makeSpec;
using testing::makeTable;
using testing::pullRows;

ShardMap makeMap(uint32_t version, std::vector<uint32_t> servers) {
  auto m = ShardMap::create(version, std::move(servers));
  if (!m.isOk()) throw std::runtime_error(m.status().toString());
  return std::move(m).value();
}

TEST(PsShardMap, ArcsCoverTheRingAndAgreeWithOwnerOf) {
  const ShardMap map = makeMap(1, {0, 1, 2});
  const auto arcs = map.arcs();
  ASSERT_FALSE(arcs.empty());
  EXPECT_EQ(arcs.front().first.first, 0u);
  EXPECT_EQ(arcs.back().first.last, ~uint64_t{0});
  for (size_t i = 1; i < arcs.size(); ++i) {
    EXPECT_EQ(arcs[i].first.first, arcs[i - 1].first.last + 1);
  }
  std::map<uint32_t, int> count;
  for (uint64_t k = 0; k < 30000; ++k) {
    const uint32_t owner = map.ownerOf(k);
    ++count[owner];
    const uint64_t p = ShardMap::ringPosition(k);
    for (const auto& [range, server] : arcs) {
      if (range.contains(p)) {
        ASSERT_EQ(server, owner);
        break;
      }
    }
  }
  // 128 virtual nodes per server keep the load within +-25% of even (deterministic hash).
  for (const auto& [server, n] : count) {
    EXPECT_GT(n, 7500) << "server " << server;
    EXPECT_LT(n, 12500) << "server " << server;
  }
}

TEST(PsShardMap, SerializeRoundTripAndValidation) {
  const ShardMap map = makeMap(4, {7, 3, 11});
  auto back = ShardMap::deserialize(map.serialize());
  ASSERT_TRUE(back.isOk()) << back.status();
  EXPECT_EQ(back->version(), 4u);
  EXPECT_EQ(back->servers(), (std::vector<uint32_t>{3, 7, 11}));
  for (uint64_t k = 0; k < 1000; ++k) EXPECT_EQ(back->ownerOf(k), map.ownerOf(k));
  EXPECT_FALSE(ShardMap::deserialize("weft-ps-shardmap 1 version 1 vnodes 8 servers 1,x").isOk());
  EXPECT_FALSE(ShardMap::deserialize("garbage").isOk());
  EXPECT_FALSE(ShardMap::create(1, {}).isOk());
  EXPECT_FALSE(ShardMap::create(1, {2, 2}).isOk());
  EXPECT_FALSE(map.withServerRemoved(5).isOk());
}

TEST(PsShardMap, MovesListExactlyTheKeysWhoseOwnerChanged) {
  const ShardMap before = makeMap(1, {0, 1});
  auto after = before.withServerAdded(2);
  ASSERT_TRUE(after.isOk());
  EXPECT_EQ(after->version(), 2u);
  const auto moves = computeMoves(before, *after);
  size_t moved = 0;
  constexpr uint64_t kKeys = 30000;
  for (uint64_t k = 0; k < kKeys; ++k) {
    const uint64_t p = ShardMap::ringPosition(k);
    const RangeMove* hit = nullptr;
    for (const RangeMove& m : moves) {
      if (m.range.contains(p)) hit = &m;
    }
    const uint32_t from = before.ownerOf(k);
    const uint32_t to = after->ownerOf(k);
    if (from == to) {
      ASSERT_EQ(hit, nullptr) << "key " << k << " listed but stays";
    } else {
      ASSERT_NE(hit, nullptr) << "key " << k << " moves but is not listed";
      EXPECT_EQ(hit->from, from);
      EXPECT_EQ(hit->to, to);
      EXPECT_EQ(to, 2u);  // adding a server only moves keys to it
      ++moved;
    }
  }
  // About a third of the keys move to the new server.
  EXPECT_GT(moved, kKeys / 5);
  EXPECT_LT(moved, kKeys / 2);
}

// Two servers hold a table; a third joins; the moved rows are exported from their old
// owners, imported at the new one and erased at the source. Every row ends up exactly once,
// at its new owner, with identical values and optimizer state.
TEST(PsShardMap, AddServerMovesRowsWithoutLoss) {
  const TableSpec spec = makeSpec(1, "emb", 4, OptimizerKind::kAdagrad);
  std::map<uint32_t, std::unique_ptr<Table>> servers;
  for (const uint32_t s : {0u, 1u, 2u}) servers[s] = makeTable(spec);
  const ShardMap before = makeMap(1, {0, 1});
  std::vector<uint64_t> keys(6000);
  for (size_t i = 0; i < keys.size(); ++i) keys[i] = mix64(i * 3 + 1);
  for (int step = 0; step < 2; ++step) {
    for (const ServerBatch& b : partitionKeys(before, keys)) {
      std::vector<float> grads(b.keys.size() * 4);
      for (size_t i = 0; i < grads.size(); ++i) grads[i] = 0.001f * static_cast<float>(i % 101);
      ASSERT_TRUE(servers[b.server]->push(KeySpan::of(b.keys), FloatSpan::of(grads)).isOk());
    }
  }
  std::map<uint64_t, std::vector<float>> reference;
  for (const uint64_t k : keys) reference[k] = pullRows(*servers[before.ownerOf(k)], {k});
  const size_t rows_before = servers[0]->rowCount() + servers[1]->rowCount();
  ASSERT_EQ(rows_before, keys.size());

  const ShardMap after = std::move(before.withServerAdded(2)).value();
  const auto moves = computeMoves(before, after);
  for (const RangeMove& m : moves) {
    auto in_range = [&](uint64_t key) { return m.range.contains(ShardMap::ringPosition(key)); };
    const Bytes rows = servers[m.from]->exportRows(in_range);
    ASSERT_TRUE(servers[m.to]->importRows(rows).isOk());
    servers[m.from]->eraseRows(in_range);
  }
  size_t total = 0;
  for (auto& [id, table] : servers) total += table->rowCount();
  EXPECT_EQ(total, keys.size());
  EXPECT_GT(servers[2]->rowCount(), 0u);
  for (const uint64_t k : keys) {
    const uint32_t owner = after.ownerOf(k);
    for (auto& [id, table] : servers) {
      ASSERT_EQ(table->rowAddress(k) != nullptr, id == owner) << "key " << k << " server " << id;
    }
    ASSERT_EQ(pullRows(*servers[owner], {k}), reference[k]) << "key " << k;
  }
  // The accumulators moved too: one more step gives what the old owner would have given.
  const uint64_t moved_key = [&] {
    for (const uint64_t k : keys) {
      if (after.ownerOf(k) == 2) return k;
    }
    return uint64_t{0};
  }();
  auto twin = makeTable(spec);
  ASSERT_TRUE(
      twin->importRows(servers[2]->exportRows([&](uint64_t k) { return k == moved_key; })).isOk());
  const std::vector<float> g = {0.3f, 0.3f, 0.3f, 0.3f};
  const std::vector<uint64_t> one = {moved_key};
  ASSERT_TRUE(servers[2]->push(KeySpan::of(one), FloatSpan::of(g)).isOk());
  ASSERT_TRUE(twin->push(KeySpan::of(one), FloatSpan::of(g)).isOk());
  EXPECT_EQ(pullRows(*servers[2], one), pullRows(*twin, one));
}

TEST(PsShardMap, RemovingAServerMovesOnlyItsKeys) {
  const ShardMap before = makeMap(3, {0, 1, 2});
  const ShardMap after = std::move(before.withServerRemoved(1)).value();
  for (const RangeMove& m : computeMoves(before, after)) EXPECT_EQ(m.from, 1u);
  for (uint64_t k = 0; k < 5000; ++k) {
    if (before.ownerOf(k) != 1) {
      EXPECT_EQ(after.ownerOf(k), before.ownerOf(k));
    }
  }
}

TEST(PsClientCodec, PartitionKeepsPositions) {
  const ShardMap map = makeMap(1, {0, 1, 2});
  const std::vector<uint64_t> keys = {5, 9, 5, 100, 3, 77, 9};
  const auto batches = partitionKeys(map, keys);
  size_t seen = 0;
  for (const ServerBatch& b : batches) {
    ASSERT_EQ(b.keys.size(), b.positions.size());
    for (size_t i = 0; i < b.keys.size(); ++i) {
      EXPECT_EQ(keys[b.positions[i]], b.keys[i]);
      EXPECT_EQ(map.ownerOf(b.keys[i]), b.server);
      if (i > 0) {
        EXPECT_LT(b.positions[i - 1], b.positions[i]);
      }
    }
    seen += b.keys.size();
  }
  EXPECT_EQ(seen, keys.size());
}

}  // namespace
}  // namespace weft::ps
