#include "paramserver/server/checkpoint.h"

#include <cinttypes>
#include <cstdio>
#include <sstream>

#include "common/logging.h"
#include "paramserver/server/checkpoint_format.h"
#include "paramserver/server/file_io.h"
#include "paramserver/util/crc32c.h"
#include "paramserver/wire/codec.h"

namespace weft::ps {
namespace {

using namespace ckpt;  // NOLINT: the format constants

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%08" PRIx32, v);
  return buf;
}

Bytes tableHeader(const Table& table) {
  Bytes out;
  ByteWriter w(out);
  w.put(kTableMagic);
  w.put(kTableFormat);
  w.putZeros(2);
  w.put(table.spec().id);
  Bytes spec;
  wire::appendTableSpec(table.spec(), spec);
  w.put(static_cast<uint32_t>(spec.size()));
  w.putBytes(spec.data(), spec.size());
  w.put(table.clock());
  const std::vector<uint32_t> clocks = table.clocks().snapshot();
  w.put(static_cast<uint32_t>(clocks.size()));
  for (const uint32_t c : clocks) w.put(c);
  w.put(static_cast<uint32_t>(table.recordBytes()));
  w.putZeros(4);
  return out;
}

// Generation for a new checkpoint: above every generation present in the directory.
Result<uint64_t> nextGeneration(const std::string& dir) {
  WEFT_ASSIGN_OR_RETURN(const std::vector<std::string> names, listDirectory(dir));
  uint64_t highest = 0;
  for (const std::string& name : names) {
    unsigned id = 0;
    unsigned long long gen = 0;
    char tail[8] = {};
    if (std::sscanf(name.c_str(), "table-%u-g%llu.%5s", &id, &gen, tail) == 3) {
      highest = std::max<uint64_t>(highest, gen);
    }
  }
  return highest + 1;
}

Result<TableEntry> writeTableFile(const std::string& dir, const Table& table, uint64_t gen) {
  TableEntry entry;
  entry.id = table.spec().id;
  entry.file = strCat("table-", entry.id, "-g", gen, ".rows");
  WEFT_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::create(dir + "/" + entry.file));
  WEFT_RETURN_IF_ERROR(file.write(tableHeader(table)));
  Status st;
  const size_t record = table.recordBytes();
  table.exportRows(nullptr, [&](std::span<const uint8_t> batch) {
    if (st.isOk()) st = file.write(batch);
    entry.rows += batch.size() / record;
  });
  WEFT_RETURN_IF_ERROR(st);
  Bytes trailer;
  ByteWriter w(trailer);
  w.put(entry.rows);
  w.put(kTrailerMagic);
  w.putZeros(4);
  WEFT_RETURN_IF_ERROR(file.write(trailer));
  entry.bytes = file.size();
  entry.crc = file.crc();
  WEFT_RETURN_IF_ERROR(file.commit());
  return entry;
}

std::string manifestText(const CheckpointMeta& meta, const std::vector<TableEntry>& entries) {
  std::ostringstream os;
  os << kManifestTitle << ' ' << kManifestFormat << '\n'
     << "server_rank " << meta.server_rank << '\n'
     << "map_version " << meta.map_version << '\n'
     << "checkpoint_id " << hex32(meta.checkpoint_id) << '\n'
     << "tables " << entries.size() << '\n';
  for (const TableEntry& e : entries) {
    os << "table " << e.id << ' ' << e.file << ' ' << e.bytes << ' ' << e.rows << ' '
       << hex32(e.crc) << '\n';
  }
  std::string text = os.str();
  text += "crc32c " + hex32(crc32c(text.data(), text.size())) + "\n";
  return text;
}

Status writeManifest(const std::string& dir, const std::string& text) {
  WEFT_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::create(dir + "/" + kManifestName));
  WEFT_RETURN_IF_ERROR(file.write({reinterpret_cast<const uint8_t*>(text.data()), text.size()}));
  WEFT_RETURN_IF_ERROR(file.commit());
  return fsyncDirectory(dir);
}

void removeOtherGenerations(const std::string& dir, const std::vector<TableEntry>& keep) {
  auto names = listDirectory(dir);
  if (!names.isOk()) return;
  for (const std::string& name : *names) {
    if (name.rfind("table-", 0) != 0) continue;
    bool kept = false;
    for (const TableEntry& e : keep) kept |= e.file == name;
    if (!kept) removeFileQuietly(dir + "/" + name);
  }
}

}  // namespace

Result<CheckpointSummary> writeCheckpoint(const std::string& dir,
                                          std::span<const Table* const> tables,
                                          const CheckpointMeta& meta) {
  WEFT_RETURN_IF_ERROR(makeDirectories(dir));
  WEFT_ASSIGN_OR_RETURN(const uint64_t gen, nextGeneration(dir));
  std::vector<TableEntry> entries;
  CheckpointSummary summary;
  for (const Table* table : tables) {
    auto entry = writeTableFile(dir, *table, gen);
    if (!entry.isOk()) return entry.status().withContext(strCat("checkpoint to '", dir, "'"));
    summary.rows += entry->rows;
    summary.bytes += entry->bytes;
    entries.push_back(std::move(entry).value());
  }
  WEFT_RETURN_IF_ERROR(fsyncDirectory(dir));
  const Status st = writeManifest(dir, manifestText(meta, entries));
  if (!st.isOk()) return st.withContext(strCat("checkpoint to '", dir, "'"));
  removeOtherGenerations(dir, entries);
  summary.tables = static_cast<uint32_t>(entries.size());
  summary.checkpoint_id = meta.checkpoint_id;
  WEFT_LOG(kInfo, "ps") << "checkpoint to '" << dir << "': " << summary.tables << " tables, "
                        << summary.rows << " rows, " << summary.bytes << " bytes";
  return summary;
}

}  // namespace weft::ps
