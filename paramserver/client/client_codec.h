// The client half of the protocol without the network: split a batch of keys by owning
// server, encode one request per server, and decode each reply into the caller's buffer
// at the keys' original positions.
//
//   ClientCodec codec(my_rank);
//   auto out = codec.encodePull(map, table, dim, clock, keys);   // one Outgoing per server
//   ... send out[i].message to server out[i].pending.server, receive reply ...
//   WEFT_RETURN_IF_ERROR(codec.decodeReply(out[i].pending, reply, values));
//
// Keys may come in any order and repeat. A pull of repeated keys fills every position;
// a push of repeated keys is summed by the server (PROTOCOL.md).
//
// Contract: encode* and decodeReply are thread-safe (request ids come from an atomic
// counter). Outgoing::pending must be kept until its reply is decoded.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "paramserver/sharding/shard_map.h"
#include "paramserver/wire/codec.h"

namespace weft::ps {

// Keys of one server, with the positions they had in the caller's batch.
struct ServerBatch {
  uint32_t server = 0;
  std::vector<uint64_t> keys;
  std::vector<uint32_t> positions;
};

// Groups keys by owner (batches in ascending server order; keys keep their relative order).
std::vector<ServerBatch> partitionKeys(const ShardMap& map, std::span<const uint64_t> keys);
// Copies rows (dim floats each) of `values` at `positions`, packed, into out.
void gatherRows(std::span<const float> values, uint32_t dim, std::span<const uint32_t> positions,
                std::vector<float>& out);
// Writes packed rows back to their positions in out.
void scatterRows(FloatSpan rows, uint32_t dim, std::span<const uint32_t> positions, float* out);

// What decoding a reply needs.
struct PendingRequest {
  uint64_t request_id = 0;
  wire::Opcode op = wire::Opcode::kPull;
  uint32_t server = 0;
  uint32_t table_id = 0;
  uint32_t dim = 0;
  std::vector<uint32_t> positions;  // where this server's keys sit in the caller's batch
  // This server got the caller's whole batch in order (positions is then empty).
  bool whole_batch = false;
  uint32_t key_count = 0;  // keys sent to this server (encode* sets it)

  uint32_t keyCount() const {
    return whole_batch ? key_count : static_cast<uint32_t>(positions.size());
  }
};

struct Outgoing {
  PendingRequest pending;
  Bytes message;
};

// Where encodeInto may put the gradients of a large Push / PushPull instead of the message
// (wire::kFlagValuesByRef): memory the caller registered with the transport, which the
// server reads in place or fetches; for a Pull with a large reply, room the server may
// write the values to. place(i, server, bytes, key, offset) returns where out[i]'s `bytes`
// bytes of values go and names them (a serialized RemoteKey and an offset in its region),
// or null to keep them in the messages.
struct ValuesPlacement {
  size_t above = SIZE_MAX;  // only when the request or reply would be longer than this
  size_t max_front = 0;     // ... whose message without the gradients fits in this
  std::function<uint8_t*(size_t i, uint32_t server, size_t bytes, std::string_view* key,
                         uint64_t* offset)>
      place;
};

class ClientCodec {
 public:
  explicit ClientCodec(uint32_t src_rank, uint64_t first_request_id = 1)
      : src_rank_(src_rank), next_id_(first_request_id) {}

  std::vector<Outgoing> encodePull(const ShardMap& map, uint32_t table_id, uint32_t dim,
                                   uint32_t clock, std::span<const uint64_t> keys);
  // grads: keys.size() * dim floats.
  std::vector<Outgoing> encodePush(const ShardMap& map, uint32_t table_id, uint32_t dim,
                                   uint32_t clock, std::span<const uint64_t> keys,
                                   std::span<const float> grads);
  std::vector<Outgoing> encodePushPull(const ShardMap& map, uint32_t table_id, uint32_t dim,
                                       uint32_t clock, std::span<const uint64_t> keys,
                                       std::span<const float> grads);

  // The encode* functions into `out` (one entry per owning server, ascending server
  // order), reusing the capacity of its messages and positions: no allocation once the
  // buffers have grown. When one server owns every key, its request copies keys and values
  // straight from the caller's buffers (whole_batch, no positions).
  void encodeInto(wire::Opcode op, const ShardMap& map, uint32_t table_id, uint32_t dim,
                  uint32_t clock, std::span<const uint64_t> keys, std::span<const float> grads,
                  std::vector<Outgoing>& out, const ValuesPlacement* placement = nullptr);

  // Checks the reply (id, opcode, sizes) and, for Pull / PushPull, writes its values to
  // out (the caller's whole batch: keys.size() * dim floats). An Error reply is returned
  // as its Status.
  // placed: where a Pull offered by reference (ValuesPlacement) had the server write its
  // values, when the reply says it did.
  Status decodeReply(const PendingRequest& pending, std::span<const uint8_t> reply, float* out,
                     const wire::WireLimits& limits = {}, const uint8_t* placed = nullptr) const;

  uint64_t nextRequestId() { return next_id_.fetch_add(1, std::memory_order_relaxed); }
  uint32_t srcRank() const { return src_rank_; }

 private:
  std::vector<Outgoing> encode(wire::Opcode op, const ShardMap& map, uint32_t table_id,
                               uint32_t dim, uint32_t clock, std::span<const uint64_t> keys,
                               std::span<const float> grads);
  // One server's request: keys (and values) at `positions` of the batch, or all of them.
  void encodeOne(Outgoing& o, wire::Opcode op, uint32_t map_version, uint32_t table_id,
                 uint32_t dim, uint32_t clock, std::span<const uint64_t> keys,
                 std::span<const float> grads, uint8_t* values_at, std::string_view values_key,
                 uint64_t values_offset);

  const uint32_t src_rank_;
  std::atomic<uint64_t> next_id_;
};

}  // namespace weft::ps
