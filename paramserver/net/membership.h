// Parameter-server membership through the rendezvous Store (PROTOCOL.md §10).
//
// Keys, all below a namespace prefix (default "ps"):
//   <ns>/server/<id>         "<transport rank>" of server `id` (rewritten by a restarted one)
//   <ns>/shardmap            the ShardMap text (ShardMap::serialize), version 1 written once
//                            by the first server that sees all num_servers registered
//   <ns>/clients             counter: clients registered so far
//   <ns>/client/<i>          "<transport rank>" of the i-th client (servers connect to it)
//   <ns>/rkey/<id>/<t>/<s>   serialized RemoteKey of slab s of table t on server id
//   <ns>/tx/...              the transport's own address records (a PrefixStore)
//   <ns>/moved/<v>/<from>    server `from` handed every row it lost in map version v to
//                            their new owners (they acknowledged the ImportRows)
//   <ns>/served/<v>          the server that joined with map version v serves it (all moves
//                            to it are done): the map is fully served
//
// Joining (PROTOCOL.md §11): a new server registers, then replaces the map with
// map.withServerAdded(id) by compare-and-set (version + 1; a concurrent change retries).
//
// Contract: free functions over a thread-safe Store; every wait takes a Deadline.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "common/deadline.h"
#include "common/result.h"
#include "common/store/store.h"
#include "paramserver/sharding/shard_map.h"

namespace weft::ps::net {

class Membership {
 public:
  Membership(std::shared_ptr<Store> store, std::string ns)
      : store_(std::move(store)), ns_(std::move(ns)),
        transport_store_(makePrefixStore(ns_ + "/tx", store_)) {}

  Store& store() const { return *store_; }
  // The store the transport publishes addresses in (namespaced).
  Store& transportStore() const { return *transport_store_; }
  const std::string& ns() const { return ns_; }

  // Server side.
  Status registerServer(uint32_t server_id, int rank) const;
  // Waits for all num_servers servers, then publishes the version-1 map unless one exists.
  Result<ShardMap> publishInitialMap(uint32_t num_servers, Deadline deadline) const;
  // Adds server_id to the current map (compare-and-set); returns {old map, new map}.
  Result<std::pair<ShardMap, ShardMap>> joinMap(uint32_t server_id, Deadline deadline) const;
  Status markMoved(uint32_t version, uint32_t from) const;
  Result<bool> moved(uint32_t version, uint32_t from) const;
  Status markServed(uint32_t version) const;
  Result<int64_t> clientCount() const;
  Result<int> clientRank(int64_t index, Deadline deadline) const;
  Status publishSlabKey(uint32_t server_id, uint32_t table_id, uint32_t slab_id,
                        const std::string& serialized) const;

  // Client side.
  Result<ShardMap> readMap(Deadline deadline) const;
  // Waits until map version `version` is fully served (markServed), or the deadline.
  Status waitServed(uint32_t version, Deadline deadline) const;
  Result<int> serverRank(uint32_t server_id, Deadline deadline) const;
  Status registerClient(int rank) const;
  Result<std::string> slabKey(uint32_t server_id, uint32_t table_id, uint32_t slab_id,
                              Deadline deadline) const;

 private:
  std::string key(const std::string& rest) const { return ns_ + "/" + rest; }
  Result<int> readRank(const std::string& k, Deadline deadline) const;

  std::shared_ptr<Store> store_;
  std::string ns_;
  std::shared_ptr<Store> transport_store_;
};

}  // namespace weft::ps::net
