#include "paramserver/sharding/shard_map.h"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <sstream>

namespace weft::ps {
namespace {

constexpr uint64_t kMaxPosition = std::numeric_limits<uint64_t>::max();

uint64_t vnodePosition(uint32_t server, uint32_t replica) {
  return hashKey((uint64_t{server} << 32) | replica, kRingSeed + 1);
}

}  // namespace

Result<ShardMap> ShardMap::create(uint32_t version, std::vector<uint32_t> servers,
                                  uint32_t vnodes) {
  if (servers.empty()) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "shard map version ", version, ": no servers");
  }
  if (vnodes < 1 || vnodes > kMaxVirtualNodes) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "shard map version ", version, ": ", vnodes,
                      " virtual nodes per server (allowed 1..", kMaxVirtualNodes, ")");
  }
  std::sort(servers.begin(), servers.end());
  if (std::adjacent_find(servers.begin(), servers.end()) != servers.end()) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "shard map version ", version,
                      ": a server id appears twice");
  }
  ShardMap map;
  map.version_ = version;
  map.vnodes_ = vnodes;
  map.servers_ = std::move(servers);
  for (uint32_t slot = 0; slot < map.servers_.size(); ++slot) {
    for (uint32_t r = 0; r < vnodes; ++r) {
      map.ring_.push_back(VNode{vnodePosition(map.servers_[slot], r), slot});
    }
  }
  // Slots follow server ids (servers_ is sorted), so ties order by server id as before.
  std::sort(map.ring_.begin(), map.ring_.end(), [](const VNode& a, const VNode& b) {
    return a.position != b.position ? a.position < b.position : a.slot < b.slot;
  });
  map.buildBuckets();
  return map;
}

uint32_t ShardMap::slotSearch(uint64_t position) const {
  auto it = std::lower_bound(ring_.begin(), ring_.end(), position,
                             [](const VNode& v, uint64_t p) { return v.position < p; });
  return it == ring_.end() ? ring_.front().slot : it->slot;
}

void ShardMap::buildBuckets() {
  constexpr uint32_t kShift = 64 - kBucketBits;
  buckets_.assign(size_t{1} << kBucketBits, kMixedBucket);
  for (uint64_t b = 0; b < buckets_.size(); ++b) {
    const uint64_t lo = b << kShift;
    const uint64_t hi = lo | ((uint64_t{1} << kShift) - 1);
    auto it = std::lower_bound(ring_.begin(), ring_.end(), lo,
                               [](const VNode& v, uint64_t p) { return v.position < p; });
    // One owner for all of [lo, hi] unless a virtual node sits in [lo, hi - 1].
    if (it == ring_.end()) {
      buckets_[b] = ring_.front().slot;
    } else if (it->position >= hi) {
      buckets_[b] = it->slot;
    }
  }
}

Result<ShardMap> ShardMap::withServerAdded(uint32_t server) const {
  std::vector<uint32_t> servers = servers_;
  servers.push_back(server);
  return create(version_ + 1, std::move(servers), vnodes_);
}

Result<ShardMap> ShardMap::withServerRemoved(uint32_t server) const {
  std::vector<uint32_t> servers = servers_;
  auto it = std::find(servers.begin(), servers.end(), server);
  if (it == servers.end()) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "shard map version ", version_,
                      ": removing server ", server, ", which is not in the map");
  }
  servers.erase(it);
  return create(version_ + 1, std::move(servers), vnodes_);
}

std::vector<uint64_t> ShardMap::positions() const {
  std::vector<uint64_t> out;
  for (const VNode& v : ring_) out.push_back(v.position);
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

namespace {

// Elementary arcs between consecutive cut points: [0, c0], [c0+1, c1], ..., [cn+1, max].
std::vector<RingRange> elementaryArcs(std::vector<uint64_t> cuts) {
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  std::vector<RingRange> arcs;
  uint64_t next = 0;
  for (const uint64_t c : cuts) {
    arcs.push_back(RingRange{next, c});
    if (c == kMaxPosition) return arcs;
    next = c + 1;
  }
  arcs.push_back(RingRange{next, kMaxPosition});
  return arcs;
}

}  // namespace

std::vector<std::pair<RingRange, uint32_t>> ShardMap::arcs() const {
  std::vector<std::pair<RingRange, uint32_t>> out;
  for (const RingRange& arc : elementaryArcs(positions())) {
    const uint32_t owner = ownerAt(arc.last);
    if (!out.empty() && out.back().second == owner) {
      out.back().first.last = arc.last;
    } else {
      out.emplace_back(arc, owner);
    }
  }
  return out;
}

std::vector<RangeMove> computeMoves(const ShardMap& before, const ShardMap& after) {
  std::vector<uint64_t> cuts = before.positions();
  const std::vector<uint64_t> more = after.positions();
  cuts.insert(cuts.end(), more.begin(), more.end());
  std::vector<RangeMove> moves;
  for (const RingRange& arc : elementaryArcs(std::move(cuts))) {
    const uint32_t from = before.ownerAt(arc.last);
    const uint32_t to = after.ownerAt(arc.last);
    if (from == to) continue;
    if (!moves.empty() && moves.back().from == from && moves.back().to == to &&
        moves.back().range.last + 1 == arc.first) {
      moves.back().range.last = arc.last;
    } else {
      moves.push_back(RangeMove{arc, from, to});
    }
  }
  return moves;
}

std::string ShardMap::serialize() const {
  std::ostringstream os;
  os << "weft-ps-shardmap 1 version " << version_ << " vnodes " << vnodes_ << " servers ";
  for (size_t i = 0; i < servers_.size(); ++i) os << (i ? "," : "") << servers_[i];
  return os.str();
}

Result<ShardMap> ShardMap::deserialize(std::string_view text) {
  std::istringstream in{std::string(text)};
  std::string title, k1, k2, k3, list, extra;
  int format = 0;
  uint32_t version = 0;
  uint32_t vnodes = 0;
  if (!(in >> title >> format >> k1 >> version >> k2 >> vnodes >> k3 >> list) || (in >> extra) ||
      title != "weft-ps-shardmap" || format != 1 || k1 != "version" || k2 != "vnodes" ||
      k3 != "servers") {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "malformed shard map '", text, "'");
  }
  std::vector<uint32_t> servers;
  std::istringstream items(list);
  std::string item;
  while (std::getline(items, item, ',')) {
    if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos ||
        item.size() > 9) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, "malformed shard map '", text,
                        "': bad server id '", item, "'");
    }
    servers.push_back(static_cast<uint32_t>(std::strtoul(item.c_str(), nullptr, 10)));
  }
  return create(version, std::move(servers), vnodes);
}

}  // namespace weft::ps
