#include "paramserver/fuzz/fuzz_entry.h"

#include <cstring>
#include <memory>

#include "paramserver/server/request_handler.h"
#include "paramserver/util/crc32c.h"
#include "paramserver/wire/codec.h"

namespace weft::ps::fuzz {
namespace {

using wire::Opcode;

constexpr int kRebuildEvery = 256;  // bounds table growth and keeps fingerprints cheap

wire::WireLimits fuzzLimits() {
  wire::WireLimits l;
  l.max_keys = 256;
  l.max_payload_bytes = 1 << 16;
  l.max_message_chars = 512;
  l.max_path_chars = 64;
  return l;
}

std::vector<TableSpec> fuzzTables() {
  TableSpec sgd;
  sgd.id = 1;
  sgd.name = "lr";
  TableSpec adam;
  adam.id = 2;
  adam.name = "emb";
  adam.dim = 4;
  adam.init = {InitKind::kUniform, 7, -0.5f, 0.5f};
  adam.optimizer.kind = OptimizerKind::kAdam;
  adam.consistency = {ConsistencyModel::kSsp, 1, 2};
  TableSpec ftrl;
  ftrl.id = 3;
  ftrl.name = "ftrl";
  ftrl.dim = 2;
  ftrl.optimizer.kind = OptimizerKind::kFtrl;
  ftrl.admission = {2, 1024, 2};
  ftrl.evict_after_clocks = 1;
  return {sgd, adam, ftrl};
}

struct Fixture {
  std::unique_ptr<Shard> shard;
  std::unique_ptr<RequestHandler> handler;
  int uses = 0;
};

Fixture& fixture() {
  static Fixture f;
  if (f.shard == nullptr || ++f.uses > kRebuildEvery) {
    f.handler.reset();
    ShardOptions options;
    options.table.slab_bytes = 1 << 16;
    options.table.stripes = 4;
    options.max_tables = 8;
    f.shard = std::make_unique<Shard>(options);
    for (const TableSpec& spec : fuzzTables()) f.shard->createTable(spec).ignore();
    f.handler = std::make_unique<RequestHandler>(*f.shard, HandlerOptions{fuzzLimits(), ""});
    f.uses = 0;
  }
  return f;
}

uint32_t fingerprint(Shard& shard) {
  uint32_t crc = 0;
  auto lock = shard.readLock();
  for (const uint32_t id : shard.tableIdsLocked()) {
    const Table* t = shard.table(id);
    const Bytes rows = t->exportRows(nullptr);
    const std::vector<uint32_t> clocks = t->clocks().snapshot();
    const uint32_t clock = t->clock();
    crc = crc32c(&id, 4, crc);
    crc = crc32c(rows.data(), rows.size(), crc);
    crc = crc32c(clocks.data(), clocks.size() * 4, crc);
    crc = crc32c(&clock, 4, crc);
  }
  return crc;
}

Bytes structured(std::span<const uint8_t> data) {
  auto at = [&](size_t i) -> uint8_t { return i < data.size() ? data[i] : 0; };
  const std::span<const uint8_t> payload = data.size() > 5 ? data.subspan(5) : data.subspan(0, 0);
  wire::Header h{};
  h.magic = wire::kMagic;
  h.version = wire::kVersion;
  h.opcode = static_cast<uint8_t>(at(1) % wire::kMaxOpcode + 1);
  h.flags = static_cast<uint8_t>(at(2) & 1);
  h.request_id = at(2);
  h.key_count = at(3) % 17;
  h.table_id = at(4) % 4;
  h.payload_bytes = payload.size();
  Bytes out(wire::kHeaderBytes);
  std::memcpy(out.data(), &h, sizeof(h));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

// Re-encodes a decoded request; empty when the payload does not decode.
Bytes reencode(const wire::Message& m, const wire::WireLimits& limits) {
  const wire::RequestMeta meta{m.header.request_id, m.header.src_rank, m.header.table_id,
                               m.header.map_version};
  switch (m.opcode()) {
    case Opcode::kHello: {
      auto r = wire::decodeHello(m);
      return r.isOk() ? wire::encodeHello(meta, *r) : Bytes{};
    }
    case Opcode::kCreateTable: {
      auto r = wire::decodeCreateTable(m);
      return r.isOk() ? wire::encodeCreateTable(meta, *r) : Bytes{};
    }
    case Opcode::kPush:
    case Opcode::kPull:
    case Opcode::kPushPull:
    case Opcode::kLocate: {
      auto r = wire::decodeKeyed(m);
      if (!r.isOk()) return Bytes{};
      if (!r->valuesByRef()) return wire::encodeKeyed(meta, *r);
      Bytes out;
      const std::string_view key(reinterpret_cast<const char*>(r->values_ref.key.data()),
                                 r->values_ref.key.size());
      uint8_t* keys = wire::encodeKeyedRefInPlace(meta, r->op, r->dim, r->clock,
                                                  static_cast<uint32_t>(r->keys.size()), key,
                                                  r->values_ref.offset, out);
      if (!r->keys.empty()) std::memcpy(keys, r->keys.bytes(), r->keys.sizeBytes());
      return out;
    }
    case Opcode::kClock: {
      auto r = wire::decodeClock(m);
      return r.isOk() ? wire::encodeClock(meta, *r) : Bytes{};
    }
    case Opcode::kHeartbeat: {
      auto r = wire::decodeHeartbeat(m);
      return r.isOk() ? wire::encodeHeartbeat(meta, *r) : Bytes{};
    }
    case Opcode::kCheckpoint: {
      auto r = wire::decodeCheckpoint(m, limits);
      return r.isOk() ? wire::encodeCheckpoint(meta, *r) : Bytes{};
    }
    case Opcode::kImportRows: {
      auto r = wire::decodeImportRows(m);
      return r.isOk() ? wire::encodeImportRows(meta, *r) : Bytes{};
    }
    default: return {};
  }
}

Status checkRoundTrip(std::span<const uint8_t> message, const wire::WireLimits& limits) {
  auto m = wire::decodeMessage(message, limits);
  if (!m.isOk()) return Status::ok();
  Bytes again = reencode(*m, limits);
  if (again.empty()) return Status::ok();
  // The version field is the only one a decoder accepts more than one value of (1..2 on
  // messages that use nothing of version 2, any on Hello).
  std::memcpy(again.data() + 4, message.data() + 4, 2);
  if (again.size() == message.size() &&
      std::memcmp(again.data(), message.data(), again.size()) == 0) {
    return Status::ok();
  }
  return WEFT_ERROR(StatusCode::kInternal, "fuzz: a decoded ", wire::opcodeName(m->header.opcode),
                    " message does not re-encode to the same bytes");
}

Status checkReply(std::span<const uint8_t> request, const Bytes& reply, bool& is_error) {
  auto m = wire::decodeMessage(reply, wire::WireLimits{});
  if (!m.isOk()) {
    return WEFT_ERROR(StatusCode::kInternal, "fuzz: the reply does not decode: ", m.status());
  }
  const wire::Header sent = wire::peekHeader(request);
  if (m->header.request_id != sent.request_id) {
    return WEFT_ERROR(StatusCode::kInternal, "fuzz: the reply answers request ",
                      m->header.request_id, ", not ", sent.request_id);
  }
  is_error = m->opcode() == Opcode::kError;
  if (is_error) {
    auto e = wire::decodeError(*m);
    if (!e.isOk()) return WEFT_ERROR(StatusCode::kInternal, "fuzz: bad Error reply: ", e.status());
    return Status::ok();
  }
  if (m->opcode() != Opcode::kReply) {
    return WEFT_ERROR(StatusCode::kInternal, "fuzz: the reply has opcode ",
                      wire::opcodeName(m->header.opcode));
  }
  return wire::checkReply(*m, sent.request_id, static_cast<Opcode>(sent.opcode)).status();
}

}  // namespace

Status runCodecInput(std::span<const uint8_t> data) {
  if (data.empty()) return Status::ok();
  const Bytes built = (data[0] & 1) ? structured(data) : Bytes(data.begin() + 1, data.end());
  Fixture& f = fixture();
  WEFT_RETURN_IF_ERROR(checkRoundTrip(built, f.handler->limits()));
  const uint32_t before = fingerprint(*f.shard);
  WEFT_ASSIGN_OR_RETURN(const Bytes reply, f.handler->handle(built));
  bool is_error = false;
  WEFT_RETURN_IF_ERROR(checkReply(built, reply, is_error));
  if (is_error && fingerprint(*f.shard) != before) {
    return WEFT_ERROR(StatusCode::kInternal,
                      "fuzz: a request answered with an Error changed "
                      "the tables (half-applied)");
  }
  return Status::ok();
}

std::vector<Bytes> seedCorpus() {
  std::vector<Bytes> out;
  auto add = [&](Bytes message) {
    message.insert(message.begin(), uint8_t{0});
    out.push_back(std::move(message));
  };
  const uint64_t keys[] = {1, 2, 3, 2, 1u << 20};
  const float grads[20] = {0.5f, -1,   2,    0.25f, 1,    1,    1,    1,    -3, 0.1f,
                           0.2f, 0.3f, 0.4f, 0.5f,  0.6f, 0.7f, 0.8f, 0.9f, 1,  1.5f};
  uint64_t id = 1;
  add(wire::encodeHello({id++, 0, 0, 0}, {}));
  for (const TableSpec& spec : fuzzTables()) add(wire::encodeCreateTable({id++, 0, 0, 0}, spec));
  for (const Opcode op : {Opcode::kPush, Opcode::kPull, Opcode::kPushPull, Opcode::kLocate}) {
    for (const auto& [table, dim] : {std::pair{1u, 1u}, {2u, 4u}, {3u, 2u}}) {
      wire::KeyedRequest r;
      r.op = op;
      r.dim = dim;
      r.keys = KeySpan::of(keys);
      if (op == Opcode::kPush || op == Opcode::kPushPull) {
        r.values = FloatSpan::of(std::span<const float>(grads, 5 * dim));
      }
      add(wire::encodeKeyed({id++, 1, table, 0}, r));
    }
  }
  // Values by reference (the handler has no gradients to apply: an Error, tables untouched;
  // a Pull's values go into the reply).
  for (const Opcode op : {Opcode::kPush, Opcode::kPushPull, Opcode::kPull}) {
    Bytes ref;
    uint8_t* at = wire::encodeKeyedRefInPlace({id++, 1, 2, 0}, op, 4, 0, 5, "rkey", 64, ref);
    std::memcpy(at, keys, sizeof(keys));
    add(std::move(ref));
  }
  add(wire::encodeClock({id++, 1, 2, 0}, {1, 0}));
  add(wire::encodeClock({id++, 1, 3, 0}, {0, 4}));
  add(wire::encodeHeartbeat({id++, 1, 0, 0}, 42));
  add(wire::encodeCheckpoint({id++, 1, 0, 0}, {false, "ckpt"}));
  for (const TableSpec& spec : fuzzTables()) {  // rows handed over by another server
    auto t = Table::create(spec);
    if (!t.isOk() || !(*t)->push(KeySpan::of(std::span(keys, 2)),
                                 FloatSpan::of(std::span(grads, 2 * spec.dim))).isOk()) {
      continue;
    }
    const Bytes records = (*t)->exportRows(nullptr);
    const auto rb = static_cast<uint32_t>((*t)->recordBytes());
    add(wire::encodeImportRows({id++, 2, spec.id, 0},
                               {spec, static_cast<uint32_t>(records.size() / rb), rb, records,
                                (*t)->clocks().snapshot()}));
  }
  return out;
}

}  // namespace weft::ps::fuzz
