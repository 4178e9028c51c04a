#include "paramserver/server/shard.h"

namespace weft::ps {
namespace {

ShardOptions withPool(ShardOptions o, ForkJoinPool* pool) {
  o.table.pool = pool;
  return o;
}

}  // namespace

Shard::Shard(ShardOptions options)
    : pool_(options.threads > 1 ? std::make_unique<ForkJoinPool>(options.threads) : nullptr),
      options_(withPool(options, pool_.get())) {}

Status Shard::createTable(const TableSpec& spec) {
  WEFT_RETURN_IF_ERROR(validateTableSpec(spec));
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto it = tables_.find(spec.id);
  if (it != tables_.end()) {
    if (it->second->spec() == spec) return Status::ok();
    return WEFT_ERROR(StatusCode::kInvalidArgument, "server rank ", options_.server_rank,
                      ": creating ", describeTable(spec), ": table ", spec.id,
                      " already exists with a different spec: ", it->second->describe())
        .withHint("every worker must create a table with the same spec");
  }
  for (const auto& [id, table] : tables_) {
    if (table->spec().name == spec.name) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, "server rank ", options_.server_rank,
                        ": creating ", describeTable(spec), ": the name is taken by ",
                        table->describe());
    }
  }
  if (tables_.size() >= options_.max_tables) {
    return WEFT_ERROR(StatusCode::kNoResource, "server rank ", options_.server_rank, ": creating ",
                      describeTable(spec), ": the server already holds ", tables_.size(),
                      " tables (limit ", options_.max_tables, ")");
  }
  WEFT_ASSIGN_OR_RETURN(std::unique_ptr<Table> table, Table::create(spec, options_.table));
  tables_.emplace(spec.id, std::move(table));
  return Status::ok();
}

Table* Shard::table(uint32_t id) const {
  auto it = tables_.find(id);
  return it == tables_.end() ? nullptr : it->second.get();
}

std::vector<uint32_t> Shard::tableIds() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  return tableIdsLocked();
}

std::vector<uint32_t> Shard::tableIdsLocked() const {
  std::vector<uint32_t> ids;
  for (const auto& entry : tables_) ids.push_back(entry.first);
  return ids;
}

Result<CheckpointSummary> Shard::checkpoint(const std::string& dir,
                                            uint32_t checkpoint_id) const {
  std::unique_lock<std::shared_mutex> lock(mu_);
  std::vector<const Table*> tables;
  for (const auto& entry : tables_) tables.push_back(entry.second.get());
  CheckpointMeta meta{options_.server_rank, mapVersion(), checkpoint_id};
  return writeCheckpoint(dir, tables, meta);
}

Result<CheckpointSummary> Shard::restore(const std::string& dir, uint32_t expect_id,
                                         bool verify_only) {
  WEFT_ASSIGN_OR_RETURN(LoadedCheckpoint loaded, readCheckpoint(dir, options_.table));
  if (expect_id != 0 && loaded.meta.checkpoint_id != expect_id) {
    return WEFT_ERROR(StatusCode::kIoError, "checkpoint '", dir, "' holds checkpoint id 0x",
                      std::hex, loaded.meta.checkpoint_id, ", not the expected 0x", expect_id,
                      std::dec, "; nothing was restored")
        .withHint("another checkpoint call replaced it meanwhile, or the last one did not "
                  "complete on every server");
  }
  std::map<uint32_t, std::unique_ptr<Table>> tables;
  for (auto& table : loaded.tables) {
    const uint32_t id = table->spec().id;
    if (!tables.emplace(id, std::move(table)).second) {
      return WEFT_ERROR(StatusCode::kIoError, "checkpoint '", dir, "': table ", id,
                        " appears twice in the manifest");
    }
  }
  if (verify_only) return loaded.summary;
  std::unique_lock<std::shared_mutex> lock(mu_);
  tables_.swap(tables);
  setMapVersion(loaded.meta.map_version);
  return loaded.summary;
}

}  // namespace weft::ps
