#include "paramserver/client/client_codec.h"

#include <algorithm>
#include <cstring>

namespace weft::ps {

namespace {

// Per-thread scratch for routing (no allocation once grown).
struct RouteScratch {
  std::vector<uint32_t> slot_of;  // per key: its owner's slot in map.servers()
  std::vector<uint32_t> counts;   // per slot: keys routed there
};

RouteScratch& routeScratch() {
  thread_local RouteScratch s;
  return s;
}

// Fills s.slot_of / s.counts; returns the number of servers that own keys of the batch.
size_t route(const ShardMap& map, std::span<const uint64_t> keys, RouteScratch& s) {
  const size_t servers = map.servers().size();
  s.counts.assign(servers, 0);
  s.slot_of.resize(keys.size());
  if (servers == 1) {
    std::fill(s.slot_of.begin(), s.slot_of.end(), 0u);
    s.counts[0] = static_cast<uint32_t>(keys.size());
  } else {
    for (size_t i = 0; i < keys.size(); ++i) {
      const uint32_t slot = map.slotOf(keys[i]);
      s.slot_of[i] = slot;
      ++s.counts[slot];
    }
  }
  return static_cast<size_t>(
      std::count_if(s.counts.begin(), s.counts.end(), [](uint32_t c) { return c != 0; }));
}

}  // namespace

std::vector<ServerBatch> partitionKeys(const ShardMap& map, std::span<const uint64_t> keys) {
  RouteScratch& s = routeScratch();
  std::vector<ServerBatch> out(route(map, keys, s));
  std::vector<uint32_t> batch_of(s.counts.size());
  for (size_t slot = 0, b = 0; slot < s.counts.size(); ++slot) {
    if (s.counts[slot] == 0) continue;
    batch_of[slot] = static_cast<uint32_t>(b);
    out[b].server = map.servers()[slot];
    out[b].keys.reserve(s.counts[slot]);
    out[b].positions.reserve(s.counts[slot]);
    ++b;
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    ServerBatch& b = out[batch_of[s.slot_of[i]]];
    b.keys.push_back(keys[i]);
    b.positions.push_back(static_cast<uint32_t>(i));
  }
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

void ClientCodec::encodeOne(Outgoing& o, wire::Opcode op, uint32_t map_version, uint32_t table_id,
                            uint32_t dim, uint32_t clock, std::span<const uint64_t> keys,
                            std::span<const float> grads, uint8_t* values_at,
                            std::string_view values_key, uint64_t values_offset) {
  PendingRequest& p = o.pending;
  p.request_id = nextRequestId();
  p.op = op;
  p.table_id = table_id;
  p.dim = dim;
  const uint32_t n = p.keyCount();
  const wire::RequestMeta meta{p.request_id, src_rank_, table_id, map_version};
  wire::KeyedArea area;
  if (values_at != nullptr) {
    area.keys =
        wire::encodeKeyedRefInPlace(meta, op, dim, clock, n, values_key, values_offset, o.message);
    // A Pull's reference is room for the reply's values: nothing to write now.
    const bool has_values = op == wire::Opcode::kPush || op == wire::Opcode::kPushPull;
    area.values = has_values ? values_at : nullptr;
  } else {
    area = wire::encodeKeyedInPlace(meta, op, dim, clock, n, o.message);
  }
  const size_t row = size_t{4} * dim;
  if (p.whole_batch) {
    std::memcpy(area.keys, keys.data(), size_t{8} * n);
    if (area.values != nullptr) std::memcpy(area.values, grads.data(), row * n);
    return;
  }
  for (uint32_t i = 0; i < n; ++i) std::memcpy(area.keys + size_t{8} * i, &keys[p.positions[i]], 8);
  if (area.values == nullptr) return;
  for (uint32_t i = 0; i < n; ++i) {
    std::memcpy(area.values + row * i, grads.data() + size_t{p.positions[i]} * dim, row);
  }
}

void ClientCodec::encodeInto(wire::Opcode op, const ShardMap& map, uint32_t table_id, uint32_t dim,
                             uint32_t clock, std::span<const uint64_t> keys,
                             std::span<const float> grads, std::vector<Outgoing>& out,
                             const ValuesPlacement* placement) {
  RouteScratch& s = routeScratch();
  const size_t owners = route(map, keys, s);
  out.resize(owners);
  size_t b = 0;
  for (size_t slot = 0; slot < s.counts.size(); ++slot) {
    if (s.counts[slot] == 0) continue;
    PendingRequest& p = out[b].pending;
    p.server = map.servers()[slot];
    p.whole_batch = owners == 1;
    p.key_count = s.counts[slot];
    p.positions.clear();
    if (!p.whole_batch) p.positions.reserve(s.counts[slot]);
    s.counts[slot] = static_cast<uint32_t>(b++);  // from here on: slot -> batch index
  }
  if (owners > 1) {
    for (size_t i = 0; i < keys.size(); ++i) {
      out[s.counts[s.slot_of[i]]].pending.positions.push_back(static_cast<uint32_t>(i));
    }
  }
  const bool has_values = op == wire::Opcode::kPush || op == wire::Opcode::kPushPull;
  const bool by_ref = placement != nullptr && (has_values || op == wire::Opcode::kPull);
  for (size_t i = 0; i < out.size(); ++i) {
    Outgoing& o = out[i];
    const size_t n = o.pending.keyCount();
    const size_t value_bytes = size_t{4} * n * dim;
    const size_t keys_bytes = wire::kHeaderBytes + wire::kKeyedPrefixBytes + size_t{8} * n;
    // The exchange's large message: the request with its gradients, or the values reply.
    const size_t large = has_values ? keys_bytes + value_bytes
                                    : wire::kHeaderBytes + wire::kReplyPrefixBytes + value_bytes;
    const size_t front = keys_bytes + wire::kValuesRefFixedBytes + wire::kMaxValuesKeyBytes;
    uint8_t* at = nullptr;
    std::string_view key;
    uint64_t offset = 0;
    if (by_ref && large > placement->above && front <= placement->max_front) {
      at = placement->place(i, o.pending.server, value_bytes, &key, &offset);
    }
    encodeOne(o, op, map.version(), table_id, dim, clock, keys, grads, at, key, offset);
  }
}

std::vector<Outgoing> ClientCodec::encode(wire::Opcode op, const ShardMap& map, uint32_t table_id,
                                          uint32_t dim, uint32_t clock,
                                          std::span<const uint64_t> keys,
                                          std::span<const float> grads) {
  std::vector<Outgoing> out;
  encodeInto(op, map, table_id, dim, clock, keys, grads, out);
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
                                float* out, const wire::WireLimits& limits,
                                const uint8_t* placed) const {
  auto message = wire::decodeMessage(reply, limits);
  if (!message.isOk()) {
    return Status(StatusCode::kPeerFailure,
                  strCat("reply from server ", pending.server, ": ", message.status().message()));
  }
  WEFT_ASSIGN_OR_RETURN(const wire::ReplyView view,
                        wire::checkReply(*message, pending.request_id, pending.op));
  if (pending.op == wire::Opcode::kPush) return Status::ok();
  const uint32_t n = pending.keyCount();
  FloatSpan values;
  if (view.values_placed) {
    if (placed == nullptr) {
      return Status(
          StatusCode::kPeerFailure,
          strCat("reply from server ", pending.server, " to pull request ", pending.request_id,
                 " says its values were written to this client's memory, but the "
                 "request offered none"));
    }
    WEFT_RETURN_IF_ERROR(wire::checkPlacedValuesReply(view, n, pending.dim));
    values = FloatSpan(placed, size_t{n} * pending.dim);
  } else {
    WEFT_ASSIGN_OR_RETURN(values, wire::decodeValuesReply(view, n, pending.dim));
  }
  if (pending.whole_batch) {
    values.copyTo(0, values.size(), out);
  } else {
    scatterRows(values, pending.dim, pending.positions, out);
  }
  return Status::ok();
}

}  // namespace weft::ps
