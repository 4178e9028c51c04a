// RequestHandler: the server's whole request path as a function of bytes,
//   handle(request bytes) -> reply bytes,
// over a Shard. The networked server (a later layer) receives a message, calls handle() on
// one of its handler threads and sends the result back; nothing here touches the network.
//
// Every request gets exactly one reply: a Reply, or an Error naming the problem (status
// code, message, and for a pull that must wait for slower workers the clock it waits
// for). A malformed, truncated or oversized message, an unknown table, a dimension
// mismatch, a non-finite gradient or a stale shard map is an Error reply; the tables are
// then unchanged (see Table for the all-or-nothing rules). handle() never blocks on
// clocks: a pull the consistency model does not allow yet is answered with a kNoResource
// Error carrying retry_clock; handleDetailed() also returns that wait so the server can
// park the request and call handle() again once the table's min clock reaches it.
//
// Contract: thread-safe (any number of threads may call handle() concurrently); the Shard
// must outlive the handler.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "common/result.h"
#include "paramserver/server/shard.h"
#include "paramserver/wire/codec.h"

namespace weft::ps {

struct HandlerOptions {
  wire::WireLimits limits;
  // Checkpoint requests name a relative directory below this root ("" refuses them).
  std::string checkpoint_root;
  // Told to clients in the Hello reply (the largest request received eagerly; 0: none).
  uint32_t eager_bytes = 0;
  // The highest protocol version Hello agrees on (wire/header.h; lower: act as an older
  // release, e.g. to test clients against one).
  uint16_t max_version = wire::kMaxVersion;
};

struct ClockWait {
  uint32_t table_id = 0;
  uint32_t need_min_clock = 0;
};

struct HandleResult {
  Bytes reply;
  std::optional<ClockWait> blocked;  // set when the reply is a "wait for clock" Error
};

class RequestHandler {
 public:
  RequestHandler(Shard& shard, HandlerOptions options)
      : shard_(shard), options_(std::move(options)) {}

  // The reply to `request`. Fails only if no reply can be built at all (never in practice:
  // every problem with the request itself becomes an Error reply).
  Result<Bytes> handle(std::span<const uint8_t> request);
  // spare: a buffer whose capacity a values reply (Pull, PushPull) may reuse, so that a
  // server recycling its sent replies allocates nothing per request. ref_values: the
  // gradients of a request with wire::kFlagValuesByRef, which the caller fetched or mapped
  // from the sender's memory (key_count * dim floats; such a request without them is an
  // Error reply). placed: where a Pull or PushPull with that flag may have its values
  // written (the caller's mapping of the sender's memory, key_count * dim floats; for a
  // PushPull the gradients' own place); the reply then carries none. Without it the values
  // go into the reply.
  HandleResult handleDetailed(std::span<const uint8_t> request, Bytes spare = {},
                              FloatSpan ref_values = {}, float* placed = nullptr);

  const wire::WireLimits& limits() const { return options_.limits; }

 private:
  struct External {
    FloatSpan ref_values;
    float* placed = nullptr;
  };
  Result<Bytes> dispatch(const wire::Message& m, std::optional<ClockWait>& blocked, Bytes& spare,
                         const External& ext);
  Result<Bytes> onHello(const wire::Message& m);
  Result<Bytes> onCreateTable(const wire::Message& m);
  Result<Bytes> onKeyed(const wire::Message& m, std::optional<ClockWait>& blocked, Bytes& spare,
                        const External& ext);
  Result<Bytes> onClock(const wire::Message& m);
  Result<Bytes> onCheckpoint(const wire::Message& m);
  Result<Bytes> onImportRows(const wire::Message& m);
  Result<Table*> findTable(const wire::Header& h) const;
  Status checkKeyed(const wire::Header& h, const wire::KeyedRequest& r, const Table& t) const;
  // The kUnavailable of a request (named by `what`) routed with another shard map version
  // than this server serves; callers check h.map_version (0: not checked) first.
  Status staleMapError(const wire::Header& h, const std::string& what) const;
  Result<Bytes> applyKeyed(const wire::Header& h, const wire::KeyedRequest& r, Table& t,
                           Bytes& spare, float* placed);

  Shard& shard_;
  const HandlerOptions options_;
};

}  // namespace weft::ps
