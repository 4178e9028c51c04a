// Shard: the tables one server holds, plus what the server knows about the cluster (its
// rank, the shard-map version it serves).
//
// Locking: table lookups and row operations run under readLock() (shared), so any number
// of handler threads work in parallel (the tables' stripes do the fine-grained locking);
// createTable, checkpoint and restore take the lock exclusively, which makes a checkpoint
// a consistent snapshot of every table at one instant.
//
// Contract: thread-safe as described. A Table* from table() is valid while the caller holds
// readLock() (restore() may replace the tables otherwise; nothing else removes them).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "common/result.h"
#include "paramserver/server/checkpoint.h"
#include "paramserver/server/table.h"

namespace weft::ps {

struct ShardOptions {
  TableOptions table;  // table.pool is set by the Shard
  uint32_t server_rank = 0;
  uint32_t max_tables = 1024;  // bounds what CreateTable requests can make a server allocate
  // Threads one request's table work may use (ForkJoinPool, shared by the shard's tables);
  // 1: the handler's thread only.
  uint32_t threads = 1;
};

class Shard {
 public:
  explicit Shard(ShardOptions options = {});

  // Creates a table. The same id with an identical spec is OK (every worker may send it);
  // a different spec for the id, or another table with the same name, is kInvalidArgument;
  // more than max_tables tables is kNoResource.
  Status createTable(const TableSpec& spec);
  // nullptr when absent. Caller holds readLock() (or is the only thread using the shard).
  Table* table(uint32_t id) const;
  std::vector<uint32_t> tableIds() const;
  // The same, for a caller that already holds readLock().
  std::vector<uint32_t> tableIdsLocked() const;

  std::shared_lock<std::shared_mutex> readLock() const {
    return std::shared_lock<std::shared_mutex>(mu_);
  }

  uint32_t serverRank() const { return options_.server_rank; }
  uint32_t mapVersion() const { return map_version_.load(std::memory_order_acquire); }
  void setMapVersion(uint32_t version) { map_version_.store(version, std::memory_order_release); }

  // Writes every table to `dir` (see checkpoint.h) as one consistent snapshot, recording
  // checkpoint_id (the client's id of this checkpoint call; 0: none).
  Result<CheckpointSummary> checkpoint(const std::string& dir, uint32_t checkpoint_id = 0) const;
  // Replaces every table (and the map version) with the checkpoint's; all or nothing.
  // expect_id != 0: the checkpoint must carry that id, else kIoError and nothing changes
  // (the servers of a job hold snapshots of different checkpoint calls). verify_only: read
  // and check everything, change nothing (the first phase of a coordinated restore).
  Result<CheckpointSummary> restore(const std::string& dir, uint32_t expect_id = 0,
                                    bool verify_only = false);

 private:
  const std::unique_ptr<ForkJoinPool> pool_;  // before options_ and tables_, which use it
  const ShardOptions options_;
  mutable std::shared_mutex mu_;
  std::map<uint32_t, std::unique_ptr<Table>> tables_;
  std::atomic<uint32_t> map_version_{0};
};

}  // namespace weft::ps
