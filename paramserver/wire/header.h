// The parameter-server message header (see paramserver/PROTOCOL.md for the whole format).
//
// Every message is one 40-byte header followed by exactly `payload_bytes` bytes of payload.
// All integers are little-endian; every field sits at its natural alignment, so the struct
// has no padding and its in-memory image is the wire image (checked below).
//
//   offset size field          meaning
//   0      4    magic          kMagic, the bytes "WFPS"
//   4      2    version        the lowest protocol version defining what it uses (below)
//   6      1    opcode         Opcode
//   7      1    flags          per-opcode bits (kFlag*); unknown bits are rejected
//   8      8    request_id     chosen by the requester, echoed in the reply
//   16     4    src_rank       rank of the sender
//   20     4    table_id       table addressed (0 when the opcode has none)
//   24     4    key_count      number of keys (keyed opcodes and their replies), else 0
//   28     4    map_version    shard-map version the client routed with (0: unchecked)
//   32     8    payload_bytes  bytes after the header
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace weft::ps::wire {

inline constexpr uint32_t kMagic = 0x53504657u;  // "WFPS" in memory order
// Protocol versions this build speaks. The header layout above is frozen across
// versions, so a Hello from any version can be read and answered.
//   1  the base protocol.
//   2  adds values by reference: kFlagValuesByRef on requests, kFlagValuesMapped /
//      kFlagValuesPlaced on replies (PROTOCOL.md §3, §5.1).
// A message carries the lowest version that defines everything it uses: one with a
// version-2 flag carries 2, every other one kVersion (1). So a peer of version 1 reads all
// it is sent, as long as version-2 flags go only to peers whose Hello agreed on 2.
inline constexpr uint16_t kVersion = 1;
inline constexpr uint16_t kMinVersion = 1;
inline constexpr uint16_t kMaxVersion = 2;
inline constexpr uint16_t kVersionValuesByRef = 2;

enum class Opcode : uint8_t {
  kHello = 1,        // version negotiation
  kCreateTable = 2,  // create (or confirm) a table from a TableSpec
  kPush = 3,         // apply gradients
  kPull = 4,         // read rows
  kPushPull = 5,     // apply gradients, then read the updated rows
  kReply = 6,        // success reply to any request
  kError = 7,        // error reply to any request (or to an undecodable message)
  kClock = 8,        // a worker finished a clock (barrier for BSP / SSP)
  kHeartbeat = 9,    // liveness probe, echoed
  kCheckpoint = 10,  // write (or restore, with kFlagRestore) a checkpoint
  kLocate = 11,      // where rows live in registered memory (for one-sided reads)
  kImportRows = 12,  // server to server: rows moved by a shard-map change (PROTOCOL.md §11)
};
inline constexpr uint8_t kMaxOpcode = 12;

// Flags. Each opcode accepts only the bits listed here; anything else is malformed.
inline constexpr uint8_t kFlagRestore = 0x01;  // kCheckpoint: restore instead of write
inline constexpr uint8_t kFlagVerify = 0x02;   // kCheckpoint with kFlagRestore: only check
// kPush / kPushPull: the gradients are not in the message but in the sender's registered
// memory, named by a values reference after the keys. kPull: the server may write the
// values there instead of into the reply (PROTOCOL.md §5.1).
inline constexpr uint8_t kFlagValuesByRef = 0x04;
// kReply to a request with kFlagValuesByRef: the server accessed the values through a
// mapping of the sender's memory (no copy): read the gradients, or wrote the values there
// (then also kFlagValuesPlaced). Without it, it fetched the gradients with a get, and the
// values of a Pull / PushPull are in the reply.
inline constexpr uint8_t kFlagValuesMapped = 0x04;
// kReply to a Pull / PushPull with kFlagValuesByRef: the values are not in this reply but
// at the request's reference (the server wrote them there; with kFlagValuesMapped).
inline constexpr uint8_t kFlagValuesPlaced = 0x08;

struct Header {
  uint32_t magic;
  uint16_t version;
  uint8_t opcode;
  uint8_t flags;
  uint64_t request_id;
  uint32_t src_rank;
  uint32_t table_id;
  uint32_t key_count;
  uint32_t map_version;
  uint64_t payload_bytes;
};

inline constexpr size_t kHeaderBytes = 40;
static_assert(sizeof(Header) == kHeaderBytes, "the header must have no padding");
static_assert(offsetof(Header, magic) == 0);
static_assert(offsetof(Header, version) == 4);
static_assert(offsetof(Header, opcode) == 6);
static_assert(offsetof(Header, flags) == 7);
static_assert(offsetof(Header, request_id) == 8);
static_assert(offsetof(Header, src_rank) == 16);
static_assert(offsetof(Header, table_id) == 20);
static_assert(offsetof(Header, key_count) == 24);
static_assert(offsetof(Header, map_version) == 28);
static_assert(offsetof(Header, payload_bytes) == 32);

// "Push", "Pull", ...; "opcode 42" for unknown values.
std::string opcodeName(uint8_t opcode);
inline std::string opcodeName(Opcode op) {
  return opcodeName(static_cast<uint8_t>(op));
}

}  // namespace weft::ps::wire
