#include "paramserver/client/client_codec.h"

#include <cstring>
#include <map>

namespace weft::ps {

std::vector<ServerBatch> partitionKeys(const ShardMap& map, std::span<const uint64_t> keys) {
  std::map<uint32_t, ServerBatch> by_server;
  for (size_t i = 0; i < keys.size(); ++i) {
    const uint32_t server = map.ownerOf(keys[i]);
    ServerBatch& b = by_server[server];
    b.server = server;
    b.keys.push_back(keys[i]);
    b.positions.push_back(static_cast<uint32_t>(i));
  }
  std::vector<ServerBatch> out;
  out.reserve(by_server.size());
  for (auto& entry : by_server) out.push_back(std::move(entry.second));
  return out;
}

void gatherRows(std::span<const float> values, uint32_t dim, std::span<const uint32_t> positions,
                std::vector<float>& out) {
  out.resize(positions.size() * dim);
  for (size_t i = 0; i < positions.size(); ++i) {
    std::memcpy(out.data() + i * dim, values.data() + size_t{positions[i]} * dim, size_t{4} * dim);
  }
}

void scatterRows(FloatSpan rows, uint32_t dim, std::span<const uint32_t> positions, float* out) {
  for (size_t i = 0; i < positions.size(); ++i) {
    rows.copyTo(i * dim, dim, out + size_t{positions[i]} * dim);
  }
}

std::vector<Outgoing> ClientCodec::encode(wire::Opcode op, const ShardMap& map, uint32_t table_id,
                                          uint32_t dim, uint32_t clock,
                                          std::span<const uint64_t> keys,
                                          std::span<const float> grads) {
  std::vector<Outgoing> out;
  std::vector<float> packed;
  for (ServerBatch& b : partitionKeys(map, keys)) {
    Outgoing o;
    o.pending = PendingRequest{nextRequestId(), op, b.server, table_id, dim, {}};
    wire::KeyedRequest r;
    r.op = op;
    r.dim = dim;
    r.clock = clock;
    r.keys = KeySpan::of(b.keys);
    if (!grads.empty()) {
      gatherRows(grads, dim, b.positions, packed);
      r.values = FloatSpan::of(packed);
    }
    o.message = wire::encodeKeyed({o.pending.request_id, src_rank_, table_id, map.version()}, r);
    o.pending.positions = std::move(b.positions);
    out.push_back(std::move(o));
  }
  return out;
}

std::vector<Outgoing> ClientCodec::encodePull(const ShardMap& map, uint32_t table_id, uint32_t dim,
                                              uint32_t clock, std::span<const uint64_t> keys) {
  return encode(wire::Opcode::kPull, map, table_id, dim, clock, keys, {});
}

std::vector<Outgoing> ClientCodec::encodePush(const ShardMap& map, uint32_t table_id, uint32_t dim,
                                              uint32_t clock, std::span<const uint64_t> keys,
                                              std::span<const float> grads) {
  return encode(wire::Opcode::kPush, map, table_id, dim, clock, keys, grads);
}

std::vector<Outgoing> ClientCodec::encodePushPull(const ShardMap& map, uint32_t table_id,
                                                  uint32_t dim, uint32_t clock,
                                                  std::span<const uint64_t> keys,
                                                  std::span<const float> grads) {
  return encode(wire::Opcode::kPushPull, map, table_id, dim, clock, keys, grads);
}

Status ClientCodec::decodeReply(const PendingRequest& pending, std::span<const uint8_t> reply,
                                float* out, const wire::WireLimits& limits) const {
  auto message = wire::decodeMessage(reply, limits);
  if (!message.isOk()) {
    return Status(StatusCode::kPeerFailure,
                  strCat("reply from server ", pending.server, ": ", message.status().message()));
  }
  WEFT_ASSIGN_OR_RETURN(const wire::ReplyView view,
                        wire::checkReply(*message, pending.request_id, pending.op));
  if (pending.op == wire::Opcode::kPush) return Status::ok();
  const auto n = static_cast<uint32_t>(pending.positions.size());
  WEFT_ASSIGN_OR_RETURN(const FloatSpan values, wire::decodeValuesReply(view, n, pending.dim));
  scatterRows(values, pending.dim, pending.positions, out);
  return Status::ok();
}

}  // namespace weft::ps
