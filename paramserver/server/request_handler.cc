#include "paramserver/server/request_handler.h"

#include <algorithm>

#include "common/logging.h"

namespace weft::ps {
namespace {

using wire::Opcode;

std::string tableList(const Shard& shard) {
  std::string out;
  for (const uint32_t id : shard.tableIdsLocked()) out += (out.empty() ? "" : ", ") + strCat(id);
  return out.empty() ? "none" : out;
}

// A checkpoint path: relative, no "." / ".." / empty components.
Status checkRelativePath(const std::string& path) {
  if (path.empty() || path.front() == '/') {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "checkpoint path '", path,
                      "' must be relative to the server's checkpoint root");
  }
  size_t start = 0;
  while (start <= path.size()) {
    const size_t end = std::min(path.find('/', start), path.size());
    const std::string part = path.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") {
      return WEFT_ERROR(StatusCode::kInvalidArgument, "checkpoint path '", path,
                        "' has an empty, '.' or '..' component");
    }
    start = end + 1;
  }
  return Status::ok();
}

}  // namespace

Result<Bytes> RequestHandler::handle(std::span<const uint8_t> request) {
  return handleDetailed(request).reply;
}

HandleResult RequestHandler::handleDetailed(std::span<const uint8_t> request, Bytes spare,
                                            FloatSpan ref_values, float* placed) {
  HandleResult result;
  auto message = wire::decodeMessage(request, options_.limits);
  Result<Bytes> reply =
      message.isOk() ? dispatch(*message, result.blocked, spare, External{ref_values, placed})
                     : message.status();
  if (reply.isOk()) {
    result.reply = std::move(reply).value();
  } else {
    const wire::Header h = wire::peekHeader(request);
    // A pull waiting for slower workers is routine under BSP / SSP: debug level only.
    if (result.blocked) {
      WEFT_LOG(kDebug, "ps") << "server rank " << shard_.serverRank() << ": " << reply.status();
    } else {
      WEFT_LOG(kInfo, "ps") << "server rank " << shard_.serverRank()
                            << ": rejected request: " << reply.status();
    }
    const uint32_t retry = result.blocked ? result.blocked->need_min_clock : 0;
    result.reply = wire::encodeError(h, reply.status(), options_.limits, retry);
  }
  wire::stampSource(result.reply, shard_.serverRank());
  return result;
}

Result<Bytes> RequestHandler::dispatch(const wire::Message& m, std::optional<ClockWait>& blocked,
                                       Bytes& spare, const External& ext) {
  switch (m.opcode()) {
    case Opcode::kHello: return onHello(m);
    case Opcode::kCreateTable: return onCreateTable(m);
    case Opcode::kPush:
    case Opcode::kPull:
    case Opcode::kPushPull:
    case Opcode::kLocate: return onKeyed(m, blocked, spare, ext);
    case Opcode::kClock: return onClock(m);
    case Opcode::kHeartbeat: {
      WEFT_ASSIGN_OR_RETURN(const uint64_t nonce, wire::decodeHeartbeat(m));
      return wire::encodeHeartbeatReply(m.header, nonce);
    }
    case Opcode::kCheckpoint: return onCheckpoint(m);
    case Opcode::kImportRows: return onImportRows(m);
    case Opcode::kReply:
    case Opcode::kError: break;
  }
  return WEFT_ERROR(StatusCode::kInvalidArgument, "ps server: a ", wire::opcodeName(m.opcode()),
                    " message is not a request");
}

Result<Bytes> RequestHandler::onHello(const wire::Message& m) {
  WEFT_ASSIGN_OR_RETURN(const wire::HelloRequest hello, wire::decodeHello(m));
  const uint16_t max_version = std::min(options_.max_version, wire::kMaxVersion);
  const uint16_t version = std::min(hello.max_version, max_version);
  if (version < std::max(hello.min_version, wire::kMinVersion)) {
    return WEFT_ERROR(StatusCode::kNotSupported, "Hello from rank ", m.header.src_rank,
                      ": it speaks versions ", hello.min_version, "..", hello.max_version,
                      ", this server ", wire::kMinVersion, "..", max_version)
        .withHint("run the same Weft release on workers and servers");
  }
  wire::HelloReply reply;
  reply.version = version;
  reply.server_rank = shard_.serverRank();
  reply.map_version = shard_.mapVersion();
  reply.max_keys = options_.limits.max_keys;
  reply.max_payload_bytes = options_.limits.max_payload_bytes;
  reply.eager_bytes = options_.eager_bytes;
  return wire::encodeHelloReply(m.header, reply);
}

Result<Bytes> RequestHandler::onCreateTable(const wire::Message& m) {
  WEFT_ASSIGN_OR_RETURN(const TableSpec spec, wire::decodeCreateTable(m));
  WEFT_RETURN_IF_ERROR(shard_.createTable(spec));
  return wire::encodeEmptyReply(m.header, spec.dim);
}

// Rows handed over by the previous owner (a shard-map change). The rows are validated
// before anything changes: against the table when it exists, else against a scratch table
// of the spec, so a rejected import creates no table and touches no row.
Result<Bytes> RequestHandler::onImportRows(const wire::Message& m) {
  WEFT_ASSIGN_OR_RETURN(const wire::ImportRowsRequest r, wire::decodeImportRows(m));
  const std::string what = strCat("ImportRows request ", m.header.request_id, " from rank ",
                                  m.header.src_rank, " (", r.row_count, " rows of ",
                                  describeTable(r.spec), ")");
  bool exists = false;
  {
    auto lock = shard_.readLock();
    exists = shard_.table(r.spec.id) != nullptr;
  }
  if (!exists) {
    auto scratch = Table::create(r.spec);
    if (!scratch.isOk()) return scratch.status().withContext(what);
    if ((*scratch)->recordBytes() != r.record_bytes) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, what, ": records of ", r.record_bytes,
                        " bytes, the table's are ", (*scratch)->recordBytes());
    }
    Status st = (*scratch)->importRows(r.records);
    if (st.isOk()) st = (*scratch)->clocks().raise(r.clocks, nullptr);
    if (!st.isOk()) return st.withContext(what);
  }
  WEFT_RETURN_IF_ERROR(shard_.createTable(r.spec));  // identical spec: OK
  auto lock = shard_.readLock();
  Table* t = shard_.table(r.spec.id);
  if (t == nullptr || t->recordBytes() != r.record_bytes) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what, ": records of ", r.record_bytes,
                      " bytes, the table's are ", t == nullptr ? 0 : t->recordBytes());
  }
  // The clocks first: a mismatch must leave the rows untouched too.
  uint32_t min_clock = 0;
  Status st = t->clocks().raise(r.clocks, &min_clock);
  if (st.isOk()) st = t->importRows(r.records);
  if (!st.isOk()) return st.withContext(what);
  t->advanceClock(min_clock);
  return wire::encodeEmptyReply(m.header, t->dim());
}

Result<Table*> RequestHandler::findTable(const wire::Header& h) const {
  Table* table = shard_.table(h.table_id);
  if (table != nullptr) return table;
  return WEFT_ERROR(StatusCode::kInvalidArgument, wire::opcodeName(h.opcode), " request ",
                    h.request_id, " from rank ", h.src_rank, ": server rank ", shard_.serverRank(),
                    " has no table ", h.table_id, " (tables: ", tableList(shard_), ")")
      .withHint("create the table (CreateTable) on every server before using it");
}

Status RequestHandler::staleMapError(const wire::Header& h, const std::string& what) const {
  return WEFT_ERROR(StatusCode::kUnavailable, what, ": routed with shard map version ",
                    h.map_version, ", server rank ", shard_.serverRank(), " serves version ",
                    shard_.mapVersion())
      .withHint("the shard map changed: fetch the new map and resend");
}

Status RequestHandler::checkKeyed(const wire::Header& h, const wire::KeyedRequest& r,
                                  const Table& t) const {
  // Only error paths format it (every data request passes here).
  auto what = [&] {
    return strCat(wire::opcodeName(h.opcode), " request ", h.request_id, " from rank ",
                  h.src_rank, " to ", t.describe());
  };
  if (h.map_version != 0 && h.map_version != shard_.mapVersion()) {
    return staleMapError(h, what());
  }
  if (r.dim != t.dim()) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what(), ": dimension mismatch: the request ",
                      "has dim ", r.dim, ", the table has dim ", t.dim());
  }
  const bool pulls = r.op == Opcode::kPull || r.op == Opcode::kPushPull;
  const uint64_t reply_bytes = wire::kReplyPrefixBytes + uint64_t{4} * r.keys.size() * r.dim;
  if (pulls && reply_bytes > options_.limits.max_payload_bytes) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what(), ": the reply would carry ", reply_bytes,
                      " bytes, above the limit of ", options_.limits.max_payload_bytes,
                      " (WEFT_PS_MAX_PAYLOAD_BYTES)")
        .withHint("split the request");
  }
  return Status::ok();
}

Result<Bytes> RequestHandler::applyKeyed(const wire::Header& h, const wire::KeyedRequest& r,
                                         Table& t, Bytes& spare, float* placed) {
  const auto n = static_cast<uint32_t>(r.keys.size());
  switch (r.op) {
    case Opcode::kPush:
      WEFT_RETURN_IF_ERROR(t.push(r.keys, r.values));
      return wire::encodeEmptyReply(h, r.dim);
    case Opcode::kPull: {
      if (placed != nullptr) {  // straight into the sender's memory
        t.pull(r.keys, placed);
        return wire::encodePlacedValuesReply(h, r.dim, n);
      }
      Bytes reply = std::move(spare);
      wire::encodeValuesReplyInPlace(h, r.dim, n, reply);
      t.pull(r.keys, reinterpret_cast<float*>(wire::valuesReplyArea(reply)));
      return reply;
    }
    case Opcode::kPushPull: {
      if (placed != nullptr) {  // the updated rows over the gradients, in the sender's memory
        WEFT_RETURN_IF_ERROR(t.pushPull(r.keys, r.values, placed));
        return wire::encodePlacedValuesReply(h, r.dim, n);
      }
      Bytes reply = std::move(spare);
      wire::encodeValuesReplyInPlace(h, r.dim, n, reply);
      auto* out = reinterpret_cast<float*>(wire::valuesReplyArea(reply));
      WEFT_RETURN_IF_ERROR(t.pushPull(r.keys, r.values, out));
      return reply;
    }
    default: {
      std::vector<RowLocation> locations(n);
      t.locate(r.keys, locations.data());
      return wire::encodeLocateReply(h, r.dim, locations);
    }
  }
}

Result<Bytes> RequestHandler::onKeyed(const wire::Message& m, std::optional<ClockWait>& blocked,
                                      Bytes& spare, const External& ext) {
  WEFT_ASSIGN_OR_RETURN(wire::KeyedRequest r, wire::decodeKeyed(m));
  const FloatSpan ref_values = ext.ref_values;
  if (r.valuesByRef() && r.op != Opcode::kPull) {
    if (ref_values.size() != r.valueFloats()) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, wire::opcodeName(m.header.opcode),
                        " request ", m.header.request_id, " from rank ", m.header.src_rank,
                        ": its ", r.valueFloats(), " gradients are in the sender's memory and ",
                        ref_values.size(), " were fetched from there")
          .withHint("values by reference need a server on a transport (Server)");
    }
    r.values = ref_values;
  }
  auto lock = shard_.readLock();
  WEFT_ASSIGN_OR_RETURN(Table* const table, findTable(m.header));
  WEFT_RETURN_IF_ERROR(checkKeyed(m.header, r, *table));
  // A Locate is the start of a one-sided read: held by the same bound as a pull.
  const bool reads = r.op == Opcode::kPull || r.op == Opcode::kPushPull || r.op == Opcode::kLocate;
  if (reads && !table->clocks().canRead(r.clock)) {
    const ReadWait wait = table->clocks().readWait(r.clock);
    blocked = ClockWait{m.header.table_id, wait.need_min_clock};
    std::string lagging;
    for (const uint32_t w : wait.lagging) lagging += (lagging.empty() ? "" : ", ") + strCat(w);
    return WEFT_ERROR(StatusCode::kNoResource, wire::opcodeName(m.header.opcode), " at clock ",
                      r.clock, " of ", table->describe(),
                      " must wait until every worker finished clock ", wait.need_min_clock - 1,
                      " (behind: workers ", lagging.empty() ? "none now" : lagging,
                      "); nothing was applied, retry");
  }
  return applyKeyed(m.header, r, *table, spare, r.valuesByRef() ? ext.placed : nullptr);
}

Result<Bytes> RequestHandler::onClock(const wire::Message& m) {
  WEFT_ASSIGN_OR_RETURN(const wire::ClockRequest c, wire::decodeClock(m));
  auto lock = shard_.readLock();
  WEFT_ASSIGN_OR_RETURN(Table* const table, findTable(m.header));
  // Sent with the client's map version: a client that does not know a server that joined
  // re-reads the map and reports to it too (its clocks from before the hand-over came with
  // the rows, ImportRows). Reports are idempotent, so a resend to the others is harmless.
  if (m.header.map_version != 0 && m.header.map_version != shard_.mapVersion()) {
    return staleMapError(m.header, strCat("Clock request ", m.header.request_id, " from rank ",
                                          m.header.src_rank, " for ", table->describe()));
  }
  uint32_t min_clock = 0;
  const Status st = table->clocks().finish(c.worker, c.clock, &min_clock);
  if (!st.isOk()) return st.withContext(strCat("Clock for ", table->describe()));
  table->advanceClock(min_clock);
  return wire::encodeClockReply(m.header, min_clock);
}

Result<Bytes> RequestHandler::onCheckpoint(const wire::Message& m) {
  WEFT_ASSIGN_OR_RETURN(const wire::CheckpointRequest c,
                        wire::decodeCheckpoint(m, options_.limits));
  if (options_.checkpoint_root.empty()) {
    return WEFT_ERROR(StatusCode::kNotSupported, "server rank ", shard_.serverRank(),
                      " has no checkpoint directory configured; refusing '", c.path, "'");
  }
  WEFT_RETURN_IF_ERROR(checkRelativePath(c.path));
  const std::string dir = options_.checkpoint_root + "/" + c.path;
  auto summary = c.restore ? shard_.restore(dir, c.checkpoint_id, c.verify)
                           : shard_.checkpoint(dir, c.checkpoint_id);
  if (!summary.isOk()) return summary.status();
  return wire::encodeCheckpointReply(m.header,
                                     {summary->tables, summary->rows, summary->checkpoint_id});
}

}  // namespace weft::ps
