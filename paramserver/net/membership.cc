#include "paramserver/net/membership.h"

#include <charconv>
#include <vector>

namespace weft::ps::net {

Status Membership::registerServer(uint32_t server_id, int rank) const {
  return store_->set(key(strCat("server/", server_id)), strCat(rank));
}

Result<ShardMap> Membership::publishInitialMap(uint32_t num_servers, Deadline deadline) const {
  std::vector<std::string> keys;
  std::vector<uint32_t> ids;
  for (uint32_t s = 0; s < num_servers; ++s) {
    keys.push_back(key(strCat("server/", s)));
    ids.push_back(s);
  }
  Status st = store_->wait(keys, deadline);
  if (!st.isOk()) {
    return st.withContext(strCat("ps: waiting for ", num_servers, " servers to register"))
        .withHint("start every server (weft-ps-server or --servers N ranks) with the same store");
  }
  WEFT_ASSIGN_OR_RETURN(ShardMap map, ShardMap::create(1, ids));
  WEFT_ASSIGN_OR_RETURN(const std::string now,
                        store_->compareSet(key("shardmap"), "", map.serialize()));
  return ShardMap::deserialize(now);
}

Result<std::pair<ShardMap, ShardMap>> Membership::joinMap(uint32_t server_id,
                                                          Deadline deadline) const {
  while (true) {
    WEFT_ASSIGN_OR_RETURN(const std::string text, store_->get(key("shardmap"), deadline));
    WEFT_ASSIGN_OR_RETURN(ShardMap before, ShardMap::deserialize(text));
    auto after = before.withServerAdded(server_id);
    if (!after.isOk()) {
      return after.status()
          .withContext(strCat("ps server ", server_id, ": joining map version ", before.version()))
          .withHint("give the joining server an id that is not in the map yet");
    }
    const std::string desired = after->serialize();
    WEFT_ASSIGN_OR_RETURN(const std::string now,
                          store_->compareSet(key("shardmap"), text, desired));
    if (now == desired) return std::make_pair(std::move(before), std::move(after).value());
    if (deadline.expired()) {
      return WEFT_ERROR(StatusCode::kTimeout, "ps server ", server_id,
                        ": the shard map kept changing while joining");
    }
  }
}

Status Membership::markMoved(uint32_t version, uint32_t from) const {
  return store_->set(key(strCat("moved/", version, "/", from)), "1");
}

Result<bool> Membership::moved(uint32_t version, uint32_t from) const {
  return store_->check(key(strCat("moved/", version, "/", from)));
}

Status Membership::markServed(uint32_t version) const {
  return store_->set(key(strCat("served/", version)), "1");
}

Status Membership::waitServed(uint32_t version, Deadline deadline) const {
  Status st = store_->wait({key(strCat("served/", version))}, deadline);
  if (st.isOk()) return st;
  return st.withContext(strCat("ps: waiting for shard map version ", version, " to be served"))
      .withHint("is the joining server running, and are the old servers alive?");
}

Result<int64_t> Membership::clientCount() const { return store_->add(key("clients"), 0); }

Result<int> Membership::readRank(const std::string& k, Deadline deadline) const {
  WEFT_ASSIGN_OR_RETURN(const std::string text, store_->get(k, deadline));
  int rank = -1;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), rank);
  if (ec != std::errc() || end != text.data() + text.size() || rank < 0) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "ps membership: store key ", k, " holds '",
                      text, "', not a rank");
  }
  return rank;
}

Result<int> Membership::clientRank(int64_t index, Deadline deadline) const {
  return readRank(key(strCat("client/", index)), deadline);
}

Status Membership::publishSlabKey(uint32_t server_id, uint32_t table_id, uint32_t slab_id,
                                  const std::string& serialized) const {
  return store_->set(key(strCat("rkey/", server_id, "/", table_id, "/", slab_id)), serialized);
}

Result<ShardMap> Membership::readMap(Deadline deadline) const {
  auto text = store_->get(key("shardmap"), deadline);
  if (!text.isOk()) {
    return text.status()
        .withContext("ps client: reading the shard map")
        .withHint("are the parameter servers running with the same store and namespace?");
  }
  return ShardMap::deserialize(*text);
}

Result<int> Membership::serverRank(uint32_t server_id, Deadline deadline) const {
  return readRank(key(strCat("server/", server_id)), deadline);
}

Status Membership::registerClient(int rank) const {
  // Claim an index first, then publish the rank under it: servers wait for the rank key.
  WEFT_ASSIGN_OR_RETURN(const int64_t index, store_->add(key("clients/next"), 1));
  WEFT_RETURN_IF_ERROR(store_->set(key(strCat("client/", index - 1)), strCat(rank)));
  return store_->add(key("clients"), 1).status();
}

Result<std::string> Membership::slabKey(uint32_t server_id, uint32_t table_id, uint32_t slab_id,
                                        Deadline deadline) const {
  return store_->get(key(strCat("rkey/", server_id, "/", table_id, "/", slab_id)), deadline);
}

}  // namespace weft::ps::net
