// Reading a checkpoint back: manifest, then each table file (see checkpoint.h).
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "paramserver/server/checkpoint.h"
#include "paramserver/server/checkpoint_format.h"
#include "paramserver/server/file_io.h"
#include "paramserver/util/crc32c.h"
#include "paramserver/wire/codec.h"

namespace weft::ps {
namespace {

using namespace ckpt;  // NOLINT: the format constants

struct Manifest {
  CheckpointMeta meta;
  std::vector<TableEntry> tables;
};

Status corrupt(const std::string& where, const std::string& what) {
  return WEFT_ERROR(StatusCode::kIoError, "checkpoint ", where, ": ", what)
      .withHint(
          "the checkpoint is corrupt or was modified after it was written; restore "
          "from another checkpoint");
}

// Splits off the last line ("crc32c <hex>") and checks it against the text above it.
Result<std::string> verifiedBody(const std::string& dir, const std::string& text) {
  const std::string where = strCat("'", dir, "/MANIFEST'");
  if (text.empty() || text.back() != '\n') return corrupt(where, "truncated (no final newline)");
  const size_t last = text.rfind('\n', text.size() - 2);
  const size_t start = last == std::string::npos ? 0 : last + 1;
  unsigned stored = 0;
  char extra = 0;
  if (std::sscanf(text.c_str() + start, "crc32c %8x%c", &stored, &extra) != 2 || extra != '\n') {
    return corrupt(where, "last line is not 'crc32c <hex>' (truncated?)");
  }
  const uint32_t actual = crc32c(text.data(), start);
  if (actual != stored) {
    return corrupt(where, strCat("CRC32C of its contents is 0x", std::hex, actual,
                                 " but it records 0x", stored));
  }
  return text.substr(0, start);
}

Status parseTableLine(std::istringstream& line, const std::string& where, TableEntry& e) {
  std::string crc_hex;
  std::string rest;
  if (!(line >> e.id >> e.file >> e.bytes >> e.rows >> crc_hex) || (line >> rest) ||
      crc_hex.size() != 8 || e.file.find('/') != std::string::npos) {
    return corrupt(where, "malformed table line");
  }
  char* end = nullptr;
  e.crc = static_cast<uint32_t>(std::strtoul(crc_hex.c_str(), &end, 16));
  if (end != crc_hex.c_str() + crc_hex.size()) return corrupt(where, "malformed CRC field");
  return Status::ok();
}

Result<Manifest> parseManifest(const std::string& dir, const std::string& body) {
  const std::string where = strCat("'", dir, "/MANIFEST'");
  std::istringstream in(body);
  std::string title;
  int format = 0;
  size_t count = 0;
  Manifest m;
  std::string key[3];
  if (!(in >> title >> format) || title != kManifestTitle) {
    return corrupt(where, "does not start with 'weft-ps-checkpoint <format>'");
  }
  if (format != 1 && format != kManifestFormat) {
    return WEFT_ERROR(StatusCode::kNotSupported, "checkpoint ", where, ": format ", format,
                      " (this build reads formats 1..", kManifestFormat, ")");
  }
  if (!(in >> key[0] >> m.meta.server_rank >> key[1] >> m.meta.map_version) ||
      key[0] != "server_rank" || key[1] != "map_version") {
    return corrupt(where, "malformed server_rank / map_version lines");
  }
  if (format >= 2) {
    std::string id_key, id_hex;
    char* end = nullptr;
    if (!(in >> id_key >> id_hex) || id_key != "checkpoint_id") {
      return corrupt(where, "malformed checkpoint_id line");
    }
    m.meta.checkpoint_id = static_cast<uint32_t>(std::strtoul(id_hex.c_str(), &end, 16));
    if (end != id_hex.c_str() + id_hex.size()) return corrupt(where, "malformed checkpoint_id");
  }
  if (!(in >> key[2] >> count) || key[2] != "tables") {
    return corrupt(where, "malformed tables line");
  }
  std::string line;
  std::getline(in, line);  // end of the "tables" line
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string word;
    if (!(fields >> word) || word != "table") return corrupt(where, "unexpected line: " + line);
    TableEntry e;
    WEFT_RETURN_IF_ERROR(parseTableLine(fields, where, e));
    m.tables.push_back(std::move(e));
  }
  if (m.tables.size() != count) {
    return corrupt(where, strCat("lists ", m.tables.size(), " tables but declares ", count));
  }
  return m;
}

Status checkFile(const std::string& where, const Bytes& data, const TableEntry& e) {
  if (data.size() != e.bytes) {
    return corrupt(where, strCat("has ", data.size(), " bytes, the manifest records ", e.bytes));
  }
  const uint32_t actual = crc32c(data.data(), data.size());
  if (actual != e.crc) {
    return corrupt(where,
                   strCat("CRC32C is 0x", std::hex, actual, ", the manifest records 0x", e.crc));
  }
  return Status::ok();
}

struct TableHeader {
  TableSpec spec;
  uint32_t clock = 0;
  std::vector<uint32_t> clocks;
  uint32_t record_bytes = 0;
};

Result<TableHeader> parseTableHeader(const std::string& where, ByteReader& in, uint32_t id) {
  uint32_t magic = 0;
  uint16_t format = 0;
  uint32_t file_id = 0;
  uint32_t spec_bytes = 0;
  if (!in.get(magic) || !in.get(format) || !in.skip(2) || !in.get(file_id) || !in.get(spec_bytes) ||
      magic != kTableMagic) {
    return corrupt(where, "bad table file header");
  }
  if (format != kTableFormat) {
    return WEFT_ERROR(StatusCode::kNotSupported, "checkpoint ", where, ": table format ", format,
                      " (this build reads ", kTableFormat, ")");
  }
  if (file_id != id) return corrupt(where, strCat("holds table ", file_id, ", expected ", id));
  TableHeader h;
  auto spec = wire::readTableSpec(in, id);
  if (!spec.isOk()) return corrupt(where, spec.status().message());
  h.spec = std::move(spec).value();
  uint32_t count = 0;
  if (!in.get(h.clock) || !in.get(count) || count > kMaxWorkers + 1) {
    return corrupt(where, "bad clock section");
  }
  h.clocks.resize(count);
  for (uint32_t& c : h.clocks) {
    if (!in.get(c)) return corrupt(where, "truncated clock section");
  }
  if (!in.get(h.record_bytes) || !in.skip(4)) return corrupt(where, "truncated header");
  return h;
}

Result<std::unique_ptr<Table>> loadTable(const std::string& dir, const TableEntry& e,
                                         const TableOptions& options) {
  const std::string where = strCat("'", dir, "/", e.file, "'");
  WEFT_ASSIGN_OR_RETURN(const Bytes data, readWholeFile(dir + "/" + e.file));
  WEFT_RETURN_IF_ERROR(checkFile(where, data, e));
  ByteReader in(data);
  WEFT_ASSIGN_OR_RETURN(const TableHeader h, parseTableHeader(where, in, e.id));
  WEFT_ASSIGN_OR_RETURN(std::unique_ptr<Table> table, Table::create(h.spec, options));
  const uint64_t records = in.remaining() >= kTrailerBytes ? in.remaining() - kTrailerBytes : 0;
  if (h.record_bytes != table->recordBytes() || records != e.rows * h.record_bytes) {
    return corrupt(where, "row section does not match the table's record size and row count");
  }
  const std::span<const uint8_t> rows(data.data() + in.position(), records);
  uint64_t trailer_rows = 0;
  uint32_t trailer_magic = 0;
  if (!in.skip(records) || !in.get(trailer_rows) || !in.get(trailer_magic) ||
      trailer_rows != e.rows || trailer_magic != kTrailerMagic) {
    return corrupt(where, "bad trailer");
  }
  const Status imported = table->importRows(rows);
  if (!imported.isOk()) return corrupt(where, imported.message());
  const Status clocks = table->clocks().restore(h.clocks);
  if (!clocks.isOk()) return corrupt(where, clocks.message());
  table->restoreClock(h.clock);
  return table;
}

}  // namespace

Result<LoadedCheckpoint> readCheckpoint(const std::string& dir, const TableOptions& options) {
  WEFT_ASSIGN_OR_RETURN(const Bytes raw, readWholeFile(dir + "/" + kManifestName));
  const std::string text(raw.begin(), raw.end());
  WEFT_ASSIGN_OR_RETURN(const std::string body, verifiedBody(dir, text));
  WEFT_ASSIGN_OR_RETURN(const Manifest manifest, parseManifest(dir, body));
  LoadedCheckpoint out;
  out.meta = manifest.meta;
  for (const TableEntry& e : manifest.tables) {
    WEFT_ASSIGN_OR_RETURN(std::unique_ptr<Table> table, loadTable(dir, e, options));
    out.summary.rows += e.rows;
    out.summary.bytes += e.bytes;
    out.tables.push_back(std::move(table));
  }
  out.summary.tables = static_cast<uint32_t>(out.tables.size());
  out.summary.checkpoint_id = manifest.meta.checkpoint_id;
  return out;
}

}  // namespace weft::ps
