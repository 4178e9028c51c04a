// How parameter-server messages ride the transport's tagged messages (PROTOCOL.md §10).
//
// Caller tag bits used (Capabilities::tag_bits must be >= kPsTagBits):
//   39..38  kind: 1 request, 2 request body (large requests), 3 reply
//   31..0   request id, low 32 bits (body and reply tags; 0 for requests)
//
// A request of at most eager_bytes is one message with tag kTagRequest. A larger request is
// announced by its 40-byte header alone (tag kTagRequest, payload_bytes > 0), followed by the
// whole message (header + payload) with tagBody(request_id): the server validates the header
// first and posts a receive of exactly the announced size, so large payloads move once, by
// the transport's rendezvous, straight from the client's buffer. A reply is one message
// with tagReply(request_id); the client pre-posts its receive before sending the request
// (it knows the reply's size), so replies are matched by request id, in any order.
//
// Contract: constants and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>

#include "paramserver/wire/header.h"
#include "transport/api/types.h"

namespace weft::ps::net {

inline constexpr int kPsTagBits = 40;
inline constexpr transport::Tag kKindShift = 38;
inline constexpr transport::Tag kTagRequest = transport::Tag{1} << kKindShift;
inline constexpr transport::Tag kTagBodyKind = transport::Tag{2} << kKindShift;
inline constexpr transport::Tag kTagReplyKind = transport::Tag{3} << kKindShift;

inline transport::Tag tagBody(uint64_t request_id) { return kTagBodyKind | (request_id & 0xffffffffu); }
inline transport::Tag tagReply(uint64_t request_id) {
  return kTagReplyKind | (request_id & 0xffffffffu);
}

// Largest Error reply: header, error prefix (20 bytes) and a message of at most 4096 bytes.
inline constexpr size_t kMaxErrorReplyBytes = wire::kHeaderBytes + 20 + 4096;

}  // namespace weft::ps::net
