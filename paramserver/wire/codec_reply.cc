// Reply and Error messages (the server side encodes, the client side decodes).
#include <cstring>

#include "paramserver/wire/codec.h"
#include "paramserver/wire/codec_internal.h"

namespace weft::ps::wire {
namespace {

using internal::begin;
using internal::beginReply;
using internal::finish;
using internal::replyHeader;

}  // namespace

Bytes encodeValuesReply(const Header& request, uint32_t dim, uint32_t key_count) {
  const size_t body = size_t{4} * dim * key_count;
  Bytes out = beginReply(request, dim, key_count, body);
  out.resize(out.size() + body);
  return finish(std::move(out));
}

void encodeValuesReplyInPlace(const Header& request, uint32_t dim, uint32_t key_count,
                              Bytes& out) {
  const size_t body = size_t{4} * dim * key_count;
  out.resize(kHeaderBytes + kReplyPrefixBytes + body);
  Header h = replyHeader(request, Opcode::kReply, key_count);
  h.payload_bytes = kReplyPrefixBytes + body;
  std::memcpy(out.data(), &h, kHeaderBytes);
  const uint8_t prefix[4] = {request.opcode, 0, 0, 0};
  std::memcpy(out.data() + kHeaderBytes, prefix, 4);
  std::memcpy(out.data() + kHeaderBytes + 4, &dim, 4);
}

uint8_t* valuesReplyArea(Bytes& reply) {
  return reply.data() + kHeaderBytes + kReplyPrefixBytes;
}

Bytes encodeEmptyReply(const Header& request, uint32_t dim) {
  return finish(beginReply(request, dim, 0, 0));
}

Bytes encodeHelloReply(const Header& request, const HelloReply& hello) {
  Bytes out = beginReply(request, 0, 0, 32);
  ByteWriter w(out);
  w.put(hello.version);
  w.putZeros(2);
  w.put(hello.server_rank);
  w.put(hello.map_version);
  w.put(hello.max_keys);
  w.put(hello.max_payload_bytes);
  w.put(hello.eager_bytes);
  w.putZeros(4);
  return finish(std::move(out));
}

Bytes encodeClockReply(const Header& request, uint32_t min_clock) {
  Bytes out = beginReply(request, 0, 0, 8);
  ByteWriter w(out);
  w.put(min_clock);
  w.putZeros(4);
  return finish(std::move(out));
}

Bytes encodeHeartbeatReply(const Header& request, uint64_t nonce) {
  Bytes out = beginReply(request, 0, 0, 8);
  ByteWriter(out).put(nonce);
  return finish(std::move(out));
}

Bytes encodeCheckpointReply(const Header& request, const CheckpointReply& reply) {
  Bytes out = beginReply(request, 0, 0, 16);
  ByteWriter w(out);
  w.put(reply.tables);
  w.put(reply.checkpoint_id);
  w.put(reply.rows);
  return finish(std::move(out));
}

Bytes encodeLocateReply(const Header& request, uint32_t dim,
                        std::span<const RowLocation> locations) {
  const auto n = static_cast<uint32_t>(locations.size());
  Bytes out = beginReply(request, dim, n, kLocationBytes * n);
  ByteWriter w(out);
  for (const RowLocation& l : locations) {
    w.put(l.slab_id);
    w.put(l.present);
    w.put(l.offset);
  }
  return finish(std::move(out));
}

Bytes encodeError(const Header& request, const Status& status, const WireLimits& limits,
                  uint32_t retry_clock) {
  const std::string text = status.message();
  const size_t length = std::min<size_t>(text.size(), limits.max_message_chars);
  Bytes out = begin(replyHeader(request, Opcode::kError, 0), 16 + length);
  ByteWriter w(out);
  w.put(static_cast<uint32_t>(status.code()));
  w.put(request.opcode);
  w.putZeros(3);
  w.put(retry_clock);
  w.put(static_cast<uint32_t>(length));
  w.putBytes(text.data(), length);
  return finish(std::move(out));
}

void stampSource(Bytes& message, uint32_t src_rank) {
  if (message.size() < kHeaderBytes) return;
  std::memcpy(message.data() + offsetof(Header, src_rank), &src_rank, 4);
}

void markValuesMapped(Bytes& reply) {
  if (reply.size() < kHeaderBytes) return;
  Header h = peekHeader(reply);
  h.flags |= kFlagValuesMapped;
  h.version = kVersionValuesByRef;
  std::memcpy(reply.data(), &h, kHeaderBytes);
}

namespace {

Status badReply(const Header& h, const std::string& what) {
  return WEFT_ERROR(StatusCode::kPeerFailure, "ps wire: reply to request ", h.request_id,
                    " from server rank ", h.src_rank, ": ", what);
}

Status checkBodySize(const ReplyView& r, const Header& h, size_t expected) {
  if (r.body.size() == expected) return Status::ok();
  return badReply(h, strCat(opcodeName(r.request_op), " reply body of ", r.body.size(),
                            " bytes (expected ", expected, ")"));
}

// Views carry no header; rebuild the fields messages need.
Header viewHeader(const ReplyView& r) {
  Header h{};
  h.opcode = static_cast<uint8_t>(r.request_op);
  return h;
}

}  // namespace

Result<ErrorReply> decodeError(const Message& m) {
  ByteReader in(m.payload);
  ErrorReply e;
  uint32_t code = 0;
  uint32_t length = 0;
  if (!in.get(code) || !in.get(e.request_op) || !in.skipZeros(3) || !in.get(e.retry_clock) ||
      !in.get(length)) {
    return badReply(m.header, "Error prefix truncated or reserved bytes not zero");
  }
  if (code == 0 || code > static_cast<uint32_t>(StatusCode::kInternal)) {
    return badReply(m.header, strCat("Error carries unknown status code ", code));
  }
  e.code = static_cast<StatusCode>(code);
  if (!in.getString(length, e.message)) {
    return badReply(m.header, strCat("Error message of ", length, " bytes is truncated"));
  }
  if (in.remaining() != 0) return badReply(m.header, "bytes after the Error message");
  return e;
}

Result<ReplyView> checkReply(const Message& reply, uint64_t request_id, Opcode request_op) {
  const Header& h = reply.header;
  if (h.request_id != request_id) {
    return badReply(h, strCat("expected the reply to request ", request_id));
  }
  if (reply.opcode() == Opcode::kError) {
    WEFT_ASSIGN_OR_RETURN(const ErrorReply e, decodeError(reply));
    return Status(e.code, strCat(opcodeName(request_op), " request ", request_id, ": server rank ",
                                 h.src_rank, ": ", e.message));
  }
  if (reply.opcode() != Opcode::kReply) {
    return badReply(h, strCat("unexpected opcode ", opcodeName(h.opcode)));
  }
  ByteReader in(reply.payload);
  ReplyView r;
  uint8_t op = 0;
  if (!in.get(op) || !in.skipZeros(3) || !in.get(r.dim)) {
    return badReply(h, "Reply prefix truncated or reserved bytes not zero");
  }
  if (op != static_cast<uint8_t>(request_op)) {
    return badReply(h, strCat("answers a ", opcodeName(op), ", expected ", opcodeName(request_op)));
  }
  r.request_op = request_op;
  r.key_count = h.key_count;
  r.values_mapped = (h.flags & kFlagValuesMapped) != 0;
  r.values_placed = (h.flags & kFlagValuesPlaced) != 0;
  r.body = reply.payload.subspan(kReplyPrefixBytes);
  return r;
}

Result<HelloReply> decodeHelloReply(const ReplyView& r) {
  const Header h = viewHeader(r);
  // 24 bytes from servers that do not tell their eager size, 32 with it.
  if (r.body.size() != 24) WEFT_RETURN_IF_ERROR(checkBodySize(r, h, 32));
  ByteReader in(r.body);
  HelloReply hello;
  if (!in.get(hello.version) || !in.skipZeros(2) || !in.get(hello.server_rank) ||
      !in.get(hello.map_version) || !in.get(hello.max_keys) || !in.get(hello.max_payload_bytes)) {
    return badReply(h, "Hello reply truncated");
  }
  if (r.body.size() == 32 && (!in.get(hello.eager_bytes) || !in.skipZeros(4))) {
    return badReply(h, "Hello reply: bad eager size field");
  }
  return hello;
}

Result<FloatSpan> decodeValuesReply(const ReplyView& r, uint32_t key_count, uint32_t dim) {
  const Header h = viewHeader(r);
  if (r.dim != dim || r.key_count != key_count) {
    return badReply(h, strCat("carries ", r.key_count, " keys of dim ", r.dim, ", expected ",
                              key_count, " of dim ", dim));
  }
  WEFT_RETURN_IF_ERROR(checkBodySize(r, h, size_t{4} * key_count * dim));
  return FloatSpan(r.body.data(), size_t{key_count} * dim);
}

Bytes encodePlacedValuesReply(const Header& request, uint32_t dim, uint32_t key_count) {
  Bytes out;
  encodeValuesReplyInPlace(request, dim, 0, out);
  Header h = peekHeader(out);
  h.flags = kFlagValuesMapped | kFlagValuesPlaced;
  h.version = kVersionValuesByRef;
  h.key_count = key_count;
  std::memcpy(out.data(), &h, kHeaderBytes);
  return out;
}

Status checkPlacedValuesReply(const ReplyView& r, uint32_t key_count, uint32_t dim) {
  const Header h = viewHeader(r);
  if (r.dim != dim || r.key_count != key_count) {
    return badReply(h, strCat("carries ", r.key_count, " keys of dim ", r.dim, ", expected ",
                              key_count, " of dim ", dim));
  }
  return checkBodySize(r, h, 0);
}

Result<uint32_t> decodeClockReply(const ReplyView& r) {
  WEFT_RETURN_IF_ERROR(checkBodySize(r, viewHeader(r), 8));
  uint32_t min_clock = 0;
  std::memcpy(&min_clock, r.body.data(), 4);
  return min_clock;
}

Result<uint64_t> decodeHeartbeatReply(const ReplyView& r) {
  WEFT_RETURN_IF_ERROR(checkBodySize(r, viewHeader(r), 8));
  uint64_t nonce = 0;
  std::memcpy(&nonce, r.body.data(), 8);
  return nonce;
}

Result<CheckpointReply> decodeCheckpointReply(const ReplyView& r) {
  WEFT_RETURN_IF_ERROR(checkBodySize(r, viewHeader(r), 16));
  CheckpointReply c;
  std::memcpy(&c.tables, r.body.data(), 4);
  std::memcpy(&c.checkpoint_id, r.body.data() + 4, 4);
  std::memcpy(&c.rows, r.body.data() + 8, 8);
  return c;
}

Result<std::vector<RowLocation>> decodeLocateReply(const ReplyView& r, uint32_t key_count) {
  const Header h = viewHeader(r);
  if (r.key_count != key_count) {
    return badReply(h, strCat("carries ", r.key_count, " locations, expected ", key_count));
  }
  WEFT_RETURN_IF_ERROR(checkBodySize(r, h, kLocationBytes * key_count));
  std::vector<RowLocation> out(key_count);
  ByteReader in(r.body);
  for (RowLocation& l : out) {
    if (!in.get(l.slab_id) || !in.get(l.present) || !in.get(l.offset) || l.present > 1) {
      return badReply(h, "malformed location entry");
    }
  }
  return out;
}

std::string opcodeName(uint8_t opcode) {
  static constexpr const char* kNames[kMaxOpcode + 1] = {
      nullptr, "Hello", "CreateTable", "Push",      "Pull",       "PushPull",
      "Reply", "Error", "Clock",       "Heartbeat", "Checkpoint", "Locate",
      "ImportRows"};
  if (opcode == 0 || opcode > kMaxOpcode) return strCat("opcode ", int{opcode});
  return kNames[opcode];
}

}  // namespace weft::ps::wire
