// ShardMap: which server owns which key, by consistent hashing with virtual nodes.
//
// Every key has a position on a 64-bit ring (ringPosition: a hash of the key). Each server
// places `vnodes` virtual nodes on the ring; a key belongs to the server of the first
// virtual node at or after its position (wrapping at 2^64). Adding or removing a server
// moves only the keys of the arcs its virtual nodes take over or give up (about 1/N of
// them), which computeMoves() lists as ring ranges.
//
// The map is versioned: every change makes a map with version + 1. Requests carry the
// version they were routed with and servers reject other versions (PROTOCOL.md), so a
// client with a stale map learns it and refetches (from the Store, serialize() form).
//
// Contract: immutable values, safe to share between threads.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "paramserver/util/hash.h"

namespace weft::ps {

// Ring positions [first, last], inclusive (never wraps).
struct RingRange {
  uint64_t first = 0;
  uint64_t last = 0;
  bool contains(uint64_t position) const { return position >= first && position <= last; }
};

struct RangeMove {
  RingRange range;
  uint32_t from = 0;
  uint32_t to = 0;
};

class ShardMap {
 public:
  static constexpr uint32_t kDefaultVirtualNodes = 128;
  static constexpr uint32_t kMaxVirtualNodes = 4096;

  // servers: distinct server ids (at least one).
  static Result<ShardMap> create(uint32_t version, std::vector<uint32_t> servers,
                                 uint32_t vnodes = kDefaultVirtualNodes);

  uint32_t version() const { return version_; }
  const std::vector<uint32_t>& servers() const { return servers_; }
  uint32_t virtualNodes() const { return vnodes_; }

  static uint64_t ringPosition(uint64_t key) { return hashKey(key, kRingSeed); }
  uint32_t ownerAt(uint64_t position) const { return servers_[slotAt(position)]; }
  uint32_t ownerOf(uint64_t key) const { return ownerAt(ringPosition(key)); }
  // The owner's index in servers() (what per-server arrays of a caller are indexed by).
  uint32_t slotAt(uint64_t position) const {
    const uint32_t b = buckets_[position >> (64 - kBucketBits)];
    return b != kMixedBucket ? b : slotSearch(position);
  }
  uint32_t slotOf(uint64_t key) const { return slotAt(ringPosition(key)); }

  // New maps with version + 1.
  Result<ShardMap> withServerAdded(uint32_t server) const;
  Result<ShardMap> withServerRemoved(uint32_t server) const;

  // Ownership arcs in ring order, covering [0, 2^64-1] exactly once.
  std::vector<std::pair<RingRange, uint32_t>> arcs() const;
  // Every cut point of the ring (virtual-node positions), sorted.
  std::vector<uint64_t> positions() const;

  // "weft-ps-shardmap 1 version <v> vnodes <k> servers <a,b,...>"
  std::string serialize() const;
  static Result<ShardMap> deserialize(std::string_view text);

 private:
  struct VNode {
    uint64_t position;
    uint32_t slot;  // the server's index in servers_
  };
  // Routing table: the ring is cut into 2^kBucketBits equal buckets; a bucket without a
  // virtual node inside it has one owner (its slot), the others (a few %) are searched.
  static constexpr uint32_t kBucketBits = 12;
  static constexpr uint32_t kMixedBucket = 0xffffffffu;
  ShardMap() = default;
  uint32_t slotSearch(uint64_t position) const;
  void buildBuckets();

  uint32_t version_ = 0;
  uint32_t vnodes_ = 0;
  std::vector<uint32_t> servers_;
  std::vector<VNode> ring_;  // sorted by (position, slot)
  std::vector<uint32_t> buckets_;
};

// The ring ranges whose owner differs between two maps, merged where adjacent, with the
// old and new owner. Rows whose key position lies in a move's range go from `from` to `to`.
std::vector<RangeMove> computeMoves(const ShardMap& before, const ShardMap& after);

}  // namespace weft::ps
