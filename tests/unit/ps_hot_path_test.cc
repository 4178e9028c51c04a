// The parameter server's fast paths agree with the straightforward ones: bucketed ring
// routing vs a binary search over the ring, in-place request / reply encoding vs the
// allocating encoders, the huge-page row index at sizes past the huge-page threshold, and
// the prefetch pipeline of Table over runs of keys of every length.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <unordered_map>

#include "paramserver/client/client_codec.h"
#include "paramserver/server/row_index.h"
#include "paramserver/sharding/shard_map.h"
#include "paramserver/util/hash.h"
#include "paramserver/util/huge_pages.h"
#include "paramserver/wire/codec.h"
#include "ps_test_util.h"

namespace weft::ps {
namespace {

// The ring as shard_map.cc builds it (virtual node r of server s at hashKey(s << 32 | r)),
// sorted by (position, server).
std::vector<std::pair<uint64_t, uint32_t>> referenceRing(const std::vector<uint32_t>& servers,
                                                         uint32_t vnodes) {
  std::vector<std::pair<uint64_t, uint32_t>> ring;
  for (const uint32_t s : servers) {
    for (uint32_t r = 0; r < vnodes; ++r) {
      ring.emplace_back(hashKey((uint64_t{s} << 32) | r, kRingSeed + 1), s);
    }
  }
  std::sort(ring.begin(), ring.end());
  return ring;
}

uint32_t referenceOwner(const std::vector<std::pair<uint64_t, uint32_t>>& ring, uint64_t pos) {
  auto it = std::lower_bound(ring.begin(), ring.end(), std::make_pair(pos, uint32_t{0}));
  return it == ring.end() ? ring.front().second : it->second;
}

TEST(PsHotPath, BucketedRoutingMatchesTheRing) {
  std::mt19937_64 rng(7);
  for (const auto& [servers, vnodes] :
       std::vector<std::pair<std::vector<uint32_t>, uint32_t>>{
           {{0}, 128}, {{0, 1}, 128}, {{3, 9, 4}, 7}, {{0, 1, 2, 3, 4, 5, 6, 7}, 1024}}) {
    const ShardMap map = std::move(ShardMap::create(1, servers, vnodes)).value();
    const auto ring = referenceRing(servers, vnodes);
    std::vector<uint64_t> probes;
    for (int i = 0; i < 3000; ++i) probes.push_back(rng());
    for (const uint64_t p : map.positions()) {  // each side of every cut point
      probes.insert(probes.end(), {p - 1, p, p + 1});
    }
    for (uint64_t b = 0; b < 4096; b += 97) {  // bucket edges
      probes.insert(probes.end(), {b << 52, (b << 52) - 1});
    }
    for (const uint64_t p : probes) {
      const uint32_t want = referenceOwner(ring, p);
      ASSERT_EQ(map.ownerAt(p), want) << "position " << p;
      ASSERT_EQ(map.servers()[map.slotAt(p)], want);
    }
  }
}

TEST(PsHotPath, EncodeIntoReusesBuffersAndMatchesEncodeKeyed) {
  const ShardMap one = std::move(ShardMap::create(4, {0})).value();
  const ShardMap two = std::move(ShardMap::create(4, {0, 1})).value();
  std::vector<uint64_t> keys;
  for (uint64_t k = 0; k < 300; ++k) keys.push_back(mix64(k) % 1000);
  std::vector<float> grads(keys.size() * 3);
  for (size_t i = 0; i < grads.size(); ++i) grads[i] = static_cast<float>(i) * 0.5f;
  ClientCodec codec(5);
  std::vector<Outgoing> out;
  for (const ShardMap* map : {&one, &two, &one}) {
    for (const wire::Opcode op : {wire::Opcode::kPush, wire::Opcode::kPull}) {
      codec.encodeInto(op, *map, 2, 3, 11, keys, op == wire::Opcode::kPull ? std::span<const float>{} : grads, out);
      ASSERT_EQ(out.size(), map->servers().size());
      size_t total = 0;
      for (const Outgoing& o : out) {
        const PendingRequest& p = o.pending;
        EXPECT_EQ(p.whole_batch, map->servers().size() == 1);
        std::vector<uint64_t> k;
        std::vector<float> v;
        for (uint32_t i = 0; i < p.keyCount(); ++i) {
          const uint32_t at = p.whole_batch ? i : p.positions[i];
          EXPECT_EQ(map->ownerOf(keys[at]), p.server);
          k.push_back(keys[at]);
          v.insert(v.end(), grads.begin() + at * 3, grads.begin() + at * 3 + 3);
        }
        wire::KeyedRequest r;
        r.op = op;
        r.dim = 3;
        r.clock = 11;
        r.keys = KeySpan::of(k);
        if (op == wire::Opcode::kPush) r.values = FloatSpan::of(v);
        EXPECT_EQ(o.message, wire::encodeKeyed({p.request_id, 5, 2, 4}, r));
        total += p.keyCount();
      }
      EXPECT_EQ(total, keys.size());
    }
  }
}

TEST(PsHotPath, ValuesReplyInPlaceMatchesEncodeValuesReply) {
  wire::Header request{};
  request.opcode = static_cast<uint8_t>(wire::Opcode::kPushPull);
  request.request_id = 77;
  request.table_id = 3;
  request.map_version = 2;
  Bytes reused(100000, 0xab);  // bigger and dirty: only the size and header matter
  wire::encodeValuesReplyInPlace(request, 16, 10, reused);
  Bytes fresh = wire::encodeValuesReply(request, 16, 10);
  ASSERT_EQ(reused.size(), fresh.size());
  const size_t prefix = wire::kHeaderBytes + wire::kReplyPrefixBytes;
  EXPECT_TRUE(std::equal(fresh.begin(), fresh.begin() + prefix, reused.begin()));
}

TEST(PsHotPath, HugeArrayAndBigRowIndex) {
  HugeArray<uint64_t> big((size_t{3} << 20) / 8);  // 3 MiB: mapped, 2 MiB aligned
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(big.begin()) % kHugePageBytes, 0u);
  EXPECT_TRUE(std::all_of(big.begin(), big.end(), [](uint64_t v) { return v == 0; }));
  HugeArray<uint64_t> moved = std::move(big);
  EXPECT_FALSE(big.ok());
  EXPECT_EQ(moved.size(), (size_t{3} << 20) / 8);

  RowIndex index;  // grows well past the huge-page threshold (16-byte slots)
  constexpr uint32_t kKeys = 300000;
  for (uint32_t i = 0; i < kKeys; ++i) index.insert(mix64(i), hashKey(mix64(i), kIndexSeed), i);
  EXPECT_GE(index.bytes(), kHugeMinBytes);
  for (uint32_t i = 0; i < kKeys; i += 7) {
    ASSERT_EQ(index.find(mix64(i), hashKey(mix64(i), kIndexSeed)), i);
  }
  EXPECT_EQ(index.find(mix64(kKeys + 1), hashKey(mix64(kKeys + 1), kIndexSeed)), RowIndex::kNone);
}

// Requests of every size from 1 key (runs shorter than the prefetch distance) to a few
// hundred, on tables with 1 and 8 stripes: push then pull gives every row exactly.
TEST(PsHotPath, PipelinedPushPullExactForEveryRunLength) {
  for (const uint32_t stripes : {1u, 8u}) {
    TableSpec spec = testing::makeSpec(1, "pipe", 2);
    spec.optimizer.learning_rate = 1.0f;
    TableOptions options;
    options.stripes = stripes;
    auto table = testing::makeTable(spec, options);
    std::unordered_map<uint64_t, float> model;  // SGD with lr 1 from zeros: -sum of grads
    uint64_t next = 1;
    for (uint32_t n = 1; n <= 300; n += (n < 40 ? 1 : 37)) {
      std::vector<uint64_t> keys;
      std::vector<float> grads;
      for (uint32_t i = 0; i < n; ++i) {
        const uint64_t k = (i % 3 == 0 && next > 10) ? mix64(next / 2) : mix64(next++);
        if (std::find(keys.begin(), keys.end(), k) != keys.end()) continue;
        keys.push_back(k);
        grads.insert(grads.end(), {static_cast<float>(i), 1.0f});
        model[k] -= static_cast<float>(i);
      }
      ASSERT_TRUE(table->push(KeySpan::of(keys), FloatSpan::of(grads)).isOk());
      const std::vector<float> got = testing::pullRows(*table, keys);
      for (size_t i = 0; i < keys.size(); ++i) ASSERT_EQ(got[2 * i], model[keys[i]]) << n;
    }
  }
}

}  // namespace
}  // namespace weft::ps
