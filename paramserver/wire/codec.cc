#include "paramserver/wire/codec.h"

#include <algorithm>
#include <cstring>

#include "common/config.h"
#include "paramserver/wire/codec_internal.h"

namespace weft::ps::wire {
namespace internal {

std::string describe(const Header& h) {
  return strCat(opcodeName(h.opcode), " request ", h.request_id, " from rank ", h.src_rank);
}

Status malformed(const Header& h, const std::string& what) {
  return WEFT_ERROR(StatusCode::kInvalidArgument, "ps wire: ", describe(h), ": ", what);
}

Header makeHeader(const RequestMeta& meta, Opcode op, uint8_t flags, uint32_t key_count) {
  Header h{};
  h.magic = kMagic;
  h.version = kVersion;
  h.opcode = static_cast<uint8_t>(op);
  h.flags = flags;
  h.request_id = meta.request_id;
  h.src_rank = meta.src_rank;
  h.table_id = meta.table_id;
  h.key_count = key_count;
  h.map_version = meta.map_version;
  return h;
}

Bytes begin(const Header& h, size_t payload_reserve) {
  Bytes out;
  out.reserve(kHeaderBytes + payload_reserve);
  ByteWriter(out).put(h);
  return out;
}

Bytes finish(Bytes out) {
  const uint64_t payload = out.size() - kHeaderBytes;
  std::memcpy(out.data() + offsetof(Header, payload_bytes), &payload, 8);
  return out;
}

Header replyHeader(const Header& request, Opcode op, uint32_t key_count) {
  RequestMeta meta;
  meta.request_id = request.request_id;
  meta.table_id = request.table_id;
  meta.map_version = request.map_version;
  return makeHeader(meta, op, 0, key_count);
}

Bytes beginReply(const Header& request, uint32_t dim, uint32_t key_count, size_t body) {
  Bytes out = begin(replyHeader(request, Opcode::kReply, key_count), kReplyPrefixBytes + body);
  ByteWriter w(out);
  w.put(request.opcode);
  w.putZeros(3);
  w.put(dim);
  return out;
}

Status expectEnd(const Header& h, const ByteReader& in) {
  if (in.remaining() == 0) return Status::ok();
  return malformed(h, strCat(in.remaining(), " unexpected bytes after the payload"));
}

}  // namespace internal

namespace {

using internal::begin;
using internal::describe;
using internal::expectEnd;
using internal::finish;
using internal::makeHeader;
using internal::malformed;

// Flag bits each opcode accepts (index: opcode).
constexpr uint8_t kAllowedFlags[kMaxOpcode + 1] = {
    0,                                      // (none)
    0,                                      // Hello
    0,                                      // CreateTable
    kFlagValuesByRef,                       // Push
    kFlagValuesByRef,                       // Pull
    kFlagValuesByRef,                       // PushPull
    kFlagValuesMapped | kFlagValuesPlaced,  // Reply
    0,                                      // Error
    0,                                      // Clock
    0,                                      // Heartbeat
    kFlagRestore | kFlagVerify,             // Checkpoint
    0,                                      // Locate
    0,                                      // ImportRows
};

// Of those, the bits that protocol version 2 added (see kVersionValuesByRef).
constexpr uint8_t kVersion2Flags[kMaxOpcode + 1] = {
    0,
    0,
    0,
    kFlagValuesByRef,                       // Push
    kFlagValuesByRef,                       // Pull
    kFlagValuesByRef,                       // PushPull
    kFlagValuesMapped | kFlagValuesPlaced,  // Reply
    0,
    0,
    0,
    0,
    0,
    0,
};

bool carriesKeys(Opcode op) {
  return op == Opcode::kPush || op == Opcode::kPull || op == Opcode::kPushPull ||
         op == Opcode::kLocate || op == Opcode::kReply || op == Opcode::kImportRows;
}

Status checkVersionAndFlags(const Header& h) {
  const auto op = static_cast<Opcode>(h.opcode);
  if (op != Opcode::kHello && (h.version < kMinVersion || h.version > kMaxVersion)) {
    return WEFT_ERROR(StatusCode::kNotSupported, "ps wire: ", describe(h), ": protocol version ",
                      h.version, " is not supported (this build speaks ", kMinVersion, "..",
                      kMaxVersion, ")")
        .withHint("client and server come from different Weft releases; negotiate with Hello");
  }
  if ((h.flags & ~kAllowedFlags[h.opcode]) != 0) {
    return malformed(h, strCat("unknown flag bits 0x", std::hex, int{h.flags}));
  }
  if ((h.flags & kVersion2Flags[h.opcode]) != 0 && h.version < kVersionValuesByRef) {
    return malformed(h, strCat("flag bits 0x", std::hex, int{h.flags & kVersion2Flags[h.opcode]},
                               std::dec, " (values by reference) need protocol version ",
                               kVersionValuesByRef, ", the message carries ", h.version));
  }
  return Status::ok();
}

}  // namespace

Result<WireLimits> WireLimits::fromConfig() {
  WireLimits limits;
  WEFT_ASSIGN_OR_RETURN(const int64_t keys, config::getInt("WEFT_PS_MAX_KEYS"));
  WEFT_ASSIGN_OR_RETURN(const int64_t payload, config::getInt("WEFT_PS_MAX_PAYLOAD_BYTES"));
  limits.max_keys = static_cast<uint32_t>(keys);
  limits.max_payload_bytes = static_cast<uint64_t>(payload);
  return limits;
}

Header peekHeader(std::span<const uint8_t> bytes) {
  Header h{};
  if (bytes.size() >= kHeaderBytes) std::memcpy(&h, bytes.data(), kHeaderBytes);
  return h;
}

Result<Header> decodeHeader(std::span<const uint8_t> bytes, const WireLimits& limits) {
  if (bytes.size() < kHeaderBytes) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "ps wire: message of ", bytes.size(),
                      " bytes is shorter than the ", kHeaderBytes, "-byte header");
  }
  const Header h = peekHeader(bytes);
  if (h.magic != kMagic) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "ps wire: bad magic 0x", std::hex, h.magic,
                      " (expected 0x", kMagic, " \"WFPS\")")
        .withHint("the peer is not a Weft parameter-server endpoint, or the stream lost sync");
  }
  if (h.opcode == 0 || h.opcode > kMaxOpcode) return malformed(h, "unknown opcode");
  WEFT_RETURN_IF_ERROR(checkVersionAndFlags(h));
  if (h.payload_bytes > limits.max_payload_bytes) {
    return malformed(h, strCat("payload of ", h.payload_bytes, " bytes exceeds the limit of ",
                               limits.max_payload_bytes, " (WEFT_PS_MAX_PAYLOAD_BYTES)"));
  }
  if (h.key_count != 0 && !carriesKeys(static_cast<Opcode>(h.opcode))) {
    return malformed(h, strCat("key_count ", h.key_count, " on an opcode without keys"));
  }
  if (h.key_count > limits.max_keys) {
    return malformed(h, strCat(h.key_count, " keys exceed the limit of ", limits.max_keys,
                               " per request (WEFT_PS_MAX_KEYS)"));
  }
  return h;
}

Result<Message> decodeMessage(std::span<const uint8_t> bytes, const WireLimits& limits) {
  WEFT_ASSIGN_OR_RETURN(const Header h, decodeHeader(bytes, limits));
  const uint64_t actual = bytes.size() - kHeaderBytes;
  if (actual != h.payload_bytes) {
    return malformed(
        h, strCat("header declares ", h.payload_bytes, " payload bytes but ", actual, " arrived (",
                  actual < h.payload_bytes ? "truncated" : "trailing bytes", ")"));
  }
  return Message{h, bytes.subspan(kHeaderBytes)};
}

// --- requests --------------------------------------------------------------------------

Bytes encodeHello(const RequestMeta& meta, const HelloRequest& hello) {
  Bytes out = begin(makeHeader(meta, Opcode::kHello, 0, 0), 8);
  ByteWriter w(out);
  w.put(hello.min_version);
  w.put(hello.max_version);
  w.put(static_cast<uint32_t>(hello.role));
  return finish(std::move(out));
}

Result<HelloRequest> decodeHello(const Message& m) {
  ByteReader in(m.payload);
  HelloRequest hello;
  uint32_t role = 0;
  if (!in.get(hello.min_version) || !in.get(hello.max_version) || !in.get(role)) {
    return malformed(m.header, "Hello payload shorter than 8 bytes");
  }
  WEFT_RETURN_IF_ERROR(expectEnd(m.header, in));
  if (hello.min_version > hello.max_version) {
    return malformed(m.header, strCat("version range ", hello.min_version, "..", hello.max_version,
                                      " is empty"));
  }
  if (role > static_cast<uint32_t>(Role::kTool)) {
    return malformed(m.header, strCat("unknown role ", role));
  }
  hello.role = static_cast<Role>(role);
  return hello;
}

Bytes encodeCreateTable(const RequestMeta& meta, const TableSpec& spec) {
  RequestMeta m = meta;
  m.table_id = spec.id;
  Bytes out = begin(makeHeader(m, Opcode::kCreateTable, 0, 0), 96 + spec.name.size());
  appendTableSpec(spec, out);
  return finish(std::move(out));
}

Result<TableSpec> decodeCreateTable(const Message& m) {
  ByteReader in(m.payload);
  auto spec = readTableSpec(in, m.header.table_id);
  if (!spec.isOk()) return spec.status().withContext(strCat("ps wire: ", describe(m.header)));
  WEFT_RETURN_IF_ERROR(expectEnd(m.header, in));
  return spec;
}

Bytes encodeKeyed(const RequestMeta& meta, const KeyedRequest& r) {
  Bytes out = begin(makeHeader(meta, r.op, 0, static_cast<uint32_t>(r.keys.size())),
                    kKeyedPrefixBytes + r.keys.sizeBytes() + r.values.sizeBytes());
  ByteWriter w(out);
  w.put(r.dim);
  w.put(r.clock);
  w.putBytes(r.keys.bytes(), r.keys.sizeBytes());
  w.putBytes(r.values.bytes(), r.values.sizeBytes());
  return finish(std::move(out));
}

KeyedArea encodeKeyedInPlace(const RequestMeta& meta, Opcode op, uint32_t dim, uint32_t clock,
                             uint32_t key_count, Bytes& out) {
  const bool has_values = op == Opcode::kPush || op == Opcode::kPushPull;
  const size_t payload = kKeyedPrefixBytes + size_t{8} * key_count +
                         (has_values ? size_t{4} * key_count * dim : 0);
  out.resize(kHeaderBytes + payload);
  Header h = makeHeader(meta, op, 0, key_count);
  h.payload_bytes = payload;
  std::memcpy(out.data(), &h, kHeaderBytes);
  std::memcpy(out.data() + kHeaderBytes, &dim, 4);
  std::memcpy(out.data() + kHeaderBytes + 4, &clock, 4);
  uint8_t* keys = out.data() + kHeaderBytes + kKeyedPrefixBytes;
  return KeyedArea{keys, has_values ? keys + size_t{8} * key_count : nullptr};
}

uint8_t* encodeKeyedRefInPlace(const RequestMeta& meta, Opcode op, uint32_t dim, uint32_t clock,
                               uint32_t key_count, std::string_view key, uint64_t offset,
                               Bytes& out) {
  const size_t keys_end = kHeaderBytes + kKeyedPrefixBytes + size_t{8} * key_count;
  const size_t payload = keys_end - kHeaderBytes + kValuesRefFixedBytes + key.size();
  out.resize(kHeaderBytes + payload);
  Header h = makeHeader(meta, op, kFlagValuesByRef, key_count);
  h.version = kVersionValuesByRef;
  h.payload_bytes = payload;
  std::memcpy(out.data(), &h, kHeaderBytes);
  std::memcpy(out.data() + kHeaderBytes, &dim, 4);
  std::memcpy(out.data() + kHeaderBytes + 4, &clock, 4);
  const auto key_bytes = static_cast<uint32_t>(key.size());
  std::memcpy(out.data() + keys_end, &offset, 8);
  std::memcpy(out.data() + keys_end + 8, &key_bytes, 4);
  std::memcpy(out.data() + keys_end + kValuesRefFixedBytes, key.data(), key.size());
  return out.data() + kHeaderBytes + kKeyedPrefixBytes;
}

Bytes inlineValues(const Header& header, const KeyedRequest& r, FloatSpan values) {
  Bytes out;
  RequestMeta meta{header.request_id, header.src_rank, header.table_id, header.map_version};
  const KeyedArea area =
      encodeKeyedInPlace(meta, r.op, r.dim, r.clock, static_cast<uint32_t>(r.keys.size()), out);
  std::memcpy(area.keys, r.keys.bytes(), size_t{8} * r.keys.size());
  if (area.values != nullptr)
    values.copyTo(0, values.size(), reinterpret_cast<float*>(area.values));
  return out;
}

Result<KeyedRequest> decodeKeyed(const Message& m) {
  KeyedRequest r;
  r.op = m.opcode();
  const bool has_values = r.op == Opcode::kPush || r.op == Opcode::kPushPull;
  const bool by_ref =
      (m.header.flags & kFlagValuesByRef) != 0 && (has_values || r.op == Opcode::kPull);
  ByteReader in(m.payload);
  if (!in.get(r.dim) || !in.get(r.clock)) {
    return malformed(m.header, "payload shorter than the 8-byte dim/clock prefix");
  }
  if (r.dim < 1 || r.dim > kMaxDim) {
    return malformed(m.header, strCat("dim ", r.dim, " is out of range (1..", kMaxDim, ")"));
  }
  const uint64_t n = m.header.key_count;
  if (by_ref) {
    uint32_t key_bytes = 0;
    if (!in.getArray(n, r.keys) || !in.get(r.values_ref.offset) || !in.get(key_bytes)) {
      return malformed(m.header, strCat("payload of ", m.payload.size(), " bytes is too short for ",
                                        n, " keys and a values reference"));
    }
    if (key_bytes == 0 || key_bytes > kMaxValuesKeyBytes || in.remaining() != key_bytes) {
      return malformed(m.header, strCat("values reference of ", key_bytes, " key bytes with ",
                                        in.remaining(), " bytes left in the payload (1..",
                                        kMaxValuesKeyBytes, ", all of the rest)"));
    }
    r.values_ref.key = m.payload.subspan(m.payload.size() - key_bytes);
    return r;
  }
  const uint64_t expected = kKeyedPrefixBytes + 8 * n + (has_values ? 4 * n * r.dim : 0);
  if (m.payload.size() != expected) {
    return malformed(m.header, strCat("payload of ", m.payload.size(), " bytes does not match ", n,
                                      " keys of dim ", r.dim, " (expected ", expected, " bytes)"));
  }
  if (!in.getArray(n, r.keys) || (has_values && !in.getArray(n * r.dim, r.values))) {
    return Status(StatusCode::kInternal, "ps wire: keyed payload size check inconsistent");
  }
  return r;
}

Bytes encodeClock(const RequestMeta& meta, const ClockRequest& clock) {
  Bytes out = begin(makeHeader(meta, Opcode::kClock, 0, 0), 8);
  ByteWriter w(out);
  w.put(clock.worker);
  w.put(clock.clock);
  return finish(std::move(out));
}

Result<ClockRequest> decodeClock(const Message& m) {
  ByteReader in(m.payload);
  ClockRequest c;
  if (!in.get(c.worker) || !in.get(c.clock)) {
    return malformed(m.header, "Clock payload shorter than 8 bytes");
  }
  WEFT_RETURN_IF_ERROR(expectEnd(m.header, in));
  return c;
}

Bytes encodeHeartbeat(const RequestMeta& meta, uint64_t nonce) {
  Bytes out = begin(makeHeader(meta, Opcode::kHeartbeat, 0, 0), 8);
  ByteWriter(out).put(nonce);
  return finish(std::move(out));
}

Result<uint64_t> decodeHeartbeat(const Message& m) {
  ByteReader in(m.payload);
  uint64_t nonce = 0;
  if (!in.get(nonce)) return malformed(m.header, "Heartbeat payload shorter than 8 bytes");
  WEFT_RETURN_IF_ERROR(expectEnd(m.header, in));
  return nonce;
}

Bytes encodeCheckpoint(const RequestMeta& meta, const CheckpointRequest& request) {
  const uint8_t flags =
      (request.restore ? kFlagRestore : 0) | (request.restore && request.verify ? kFlagVerify : 0);
  Bytes out = begin(makeHeader(meta, Opcode::kCheckpoint, flags, 0), 8 + request.path.size());
  ByteWriter w(out);
  w.put(static_cast<uint16_t>(request.path.size()));
  w.putZeros(2);
  w.put(request.checkpoint_id);
  w.putBytes(request.path.data(), request.path.size());
  return finish(std::move(out));
}

Result<CheckpointRequest> decodeCheckpoint(const Message& m, const WireLimits& limits) {
  ByteReader in(m.payload);
  uint16_t length = 0;
  CheckpointRequest r;
  r.restore = (m.header.flags & kFlagRestore) != 0;
  r.verify = (m.header.flags & kFlagVerify) != 0;
  if (r.verify && !r.restore) {
    return malformed(m.header, "Checkpoint flag Verify without Restore");
  }
  if (!in.get(length) || !in.skipZeros(2) || !in.get(r.checkpoint_id)) {
    return malformed(m.header, "Checkpoint prefix truncated or its reserved bytes are not zero");
  }
  if (length == 0 || length > limits.max_path_chars) {
    return malformed(m.header, strCat("checkpoint path of ", length, " bytes (allowed 1..",
                                      limits.max_path_chars, ")"));
  }
  if (!in.getString(length, r.path)) {
    return malformed(m.header, strCat("checkpoint path of ", length, " bytes is truncated"));
  }
  WEFT_RETURN_IF_ERROR(expectEnd(m.header, in));
  if (r.path.find('\0') != std::string::npos) {
    return malformed(m.header, "checkpoint path contains a NUL byte");
  }
  return r;
}

Bytes encodeImportRows(const RequestMeta& meta, const ImportRowsRequest& request) {
  Bytes spec;
  appendTableSpec(request.spec, spec);
  Bytes out = begin(makeHeader(meta, Opcode::kImportRows, 0, request.row_count),
                    spec.size() + kImportPrefixBytes + 4 * request.clocks.size() +
                        request.records.size());
  ByteWriter w(out);
  w.putBytes(spec.data(), spec.size());
  w.put(request.record_bytes);
  w.put(static_cast<uint32_t>(request.clocks.size()));
  for (const uint32_t c : request.clocks) w.put(c);
  w.putBytes(request.records.data(), request.records.size());
  return finish(std::move(out));
}

Result<ImportRowsRequest> decodeImportRows(const Message& m) {
  ByteReader in(m.payload);
  ImportRowsRequest r;
  auto spec = readTableSpec(in, m.header.table_id);
  if (!spec.isOk()) return spec.status().withContext(strCat("ps wire: ", describe(m.header)));
  r.spec = std::move(spec).value();
  uint32_t clocks = 0;
  if (!in.get(r.record_bytes) || !in.get(clocks)) {
    return malformed(m.header, "ImportRows prefix truncated");
  }
  if (clocks > kMaxImportClocks || in.remaining() < uint64_t{4} * clocks) {
    return malformed(m.header, strCat("ImportRows announces ", clocks, " clocks (at most ",
                                      kMaxImportClocks, ") in ", in.remaining(), " bytes"));
  }
  r.clocks.resize(clocks);
  for (uint32_t& c : r.clocks) (void)in.get(c);  // the bytes are there (checked)
  r.row_count = m.header.key_count;
  if (r.record_bytes < kMinRecordBytes && r.row_count != 0) {
    return malformed(m.header, strCat("row records of ", r.record_bytes, " bytes (at least ",
                                      kMinRecordBytes, ")"));
  }
  const uint64_t want = uint64_t{r.record_bytes} * r.row_count;
  if (in.remaining() != want) {
    return malformed(m.header, strCat(in.remaining(), " bytes of row records for ", r.row_count,
                                      " rows of ", r.record_bytes, " bytes"));
  }
  r.records = m.payload.subspan(m.payload.size() - in.remaining());
  return r;
}

}  // namespace weft::ps::wire
