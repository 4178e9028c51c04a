// Checkpoint / restore of one server's tables to a directory.
//
// Layout of the directory (formats in PROTOCOL.md, "Checkpoints"):
//   MANIFEST                      text: format version, server rank, shard-map version, one
//                                 line per table (id, file, bytes, rows, CRC32C), and a
//                                 last line with the CRC32C of everything above it
//   table-<id>-g<generation>.rows spec, clocks and row records (values + optimizer state)
// Every file is written as <name>.tmp, fsynced and renamed; MANIFEST is renamed last and
// the directory fsynced around it, so a crash leaves either the old checkpoint or the new
// one. Table files carry a generation number: a new checkpoint never overwrites the files
// the current MANIFEST names, and files of older generations are removed after the new
// MANIFEST is in place.
//
// Restore verifies the manifest's own CRC, then each file's size and CRC32C before parsing
// it, and reports the first problem naming the file (kIoError for corruption or I/O,
// kNotSupported for an unknown format version).
//
// Contract: writeCheckpoint requires that nobody changes the tables meanwhile (the Shard
// holds its exclusive lock). Functions are otherwise independent and thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "paramserver/server/table.h"

namespace weft::ps {

struct CheckpointMeta {
  uint32_t server_rank = 0;
  uint32_t map_version = 0;
  // Chosen by the client per checkpoint call, the same on every server: a restore checks
  // that all servers hold the same call's snapshot (0: none recorded, format 1).
  uint32_t checkpoint_id = 0;
};

struct CheckpointSummary {
  uint32_t tables = 0;
  uint64_t rows = 0;
  uint64_t bytes = 0;
  uint32_t checkpoint_id = 0;
};

Result<CheckpointSummary> writeCheckpoint(const std::string& dir,
                                          std::span<const Table* const> tables,
                                          const CheckpointMeta& meta);

struct LoadedCheckpoint {
  CheckpointMeta meta;
  CheckpointSummary summary;
  std::vector<std::unique_ptr<Table>> tables;
};

Result<LoadedCheckpoint> readCheckpoint(const std::string& dir, const TableOptions& options);

}  // namespace weft::ps
