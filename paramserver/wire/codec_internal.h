// Helpers shared by the codec's translation units (not part of the public API).
#pragma once

#include <string>

#include "paramserver/wire/codec.h"

namespace weft::ps::wire::internal {

// "Push request 7 from rank 2" for messages.
std::string describe(const Header& h);
// kInvalidArgument "ps wire: <describe(h)>: <what>".
Status malformed(const Header& h, const std::string& what);
Header makeHeader(const RequestMeta& meta, Opcode op, uint8_t flags, uint32_t key_count);
// Starts a message with header h (payload_bytes patched by finish()).
Bytes begin(const Header& h, size_t payload_reserve);
Bytes finish(Bytes out);
// A Reply to `request`: header plus the 8-byte reply prefix.
Bytes beginReply(const Header& request, uint32_t dim, uint32_t key_count, size_t body);
Header replyHeader(const Header& request, Opcode op, uint32_t key_count);
// kInvalidArgument when bytes remain unread.
Status expectEnd(const Header& h, const ByteReader& in);

}  // namespace weft::ps::wire::internal
