// Wire formats of the verbs backend (internal to transport/): the header of every message
// that lands in a pre-posted receive buffer, and the connection records exchanged through
// the Store. Peers share an architecture (host byte order, little-endian on x86 / arm64);
// records carry a magic and a version and are checked on decode.
//
// Message = MsgHeader (16 bytes) + a type-specific body:
//
//   offset  size  field
//   0       1     type (MsgType)
//   1       1     flags (0)
//   2       2     credits: receive buffers the sender has re-posted for the receiver
//                 since its last message (credit return, piggybacked on everything)
//   4       4     length: eager payload bytes that follow the header (0 for control)
//   8       8     tag (eager, RTS) / immediate (notify) / 0
//
//   kEager   payload[length]
//   kRts     RndvBody: the sender's buffer, for the receiver's RDMA READ (read protocol), or
//            only its length (write protocol; addr and rkey unused)
//   kCts     CtsBody: the receiver's buffer, for the sender's RDMA WRITE (write protocol)
//   kFin     FinBody: a rendezvous ended (READ done at the receiver / WRITE done at the
//            sender), with a status (0 ok, 1 truncated: the receive buffer is too small)
//   kNotify  none: putNotify's 64-bit immediate travels in `tag` (after the RDMA WRITE of
//            the data, which RC orders before it)
//   kCredit  none: only returns credits
//
// Compact eager message (no MsgHeader): an eager message of 1 or more payload bytes whose
// tag fits 24 bits is a SEND with immediate carrying credits (8 bits) << 24 | tag; its
// payload is the whole received message (verbs_internal.h: kCompactTagBits). A receive
// completion with an immediate but no RDMA WRITE is one; everything else has the header.
#pragma once

#include <infiniband/verbs.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "common/result.h"

namespace weft::transport::verbs {

enum class MsgType : uint8_t {
  kEager = 1,
  kRts = 2,
  kCts = 3,
  kFin = 4,
  kNotify = 5,
  kCredit = 6,
};

struct MsgHeader {
  uint8_t type;
  uint8_t flags;
  uint16_t credits;
  uint32_t length;
  uint64_t tag;
};
static_assert(sizeof(MsgHeader) == 16);

struct RndvBody {
  uint64_t sender_op;  // the sender's operation id (echoed in CTS / FIN)
  uint64_t addr;       // the sender's buffer (read protocol)
  uint64_t length;     // message length
  uint32_t rkey;       // the sender's buffer key (read protocol)
  uint32_t reserved;
};
static_assert(sizeof(RndvBody) == 32);

struct CtsBody {
  uint64_t sender_op;
  uint64_t receiver_op;
  uint64_t addr;  // the receive buffer
  uint32_t rkey;
  uint32_t reserved;
};
static_assert(sizeof(CtsBody) == 32);

inline constexpr uint32_t kFinOk = 0;
inline constexpr uint32_t kFinTruncated = 1;
inline constexpr uint32_t kFinFailed = 2;  // the receiver could not register its buffer

struct FinBody {
  uint64_t op;        // the operation id of the side that receives the FIN
  uint64_t length;    // bytes moved (or the receiver's capacity when truncated)
  uint32_t status;    // kFinOk / kFinTruncated / kFinFailed
  uint32_t reserved;
};
static_assert(sizeof(FinBody) == 24);

// Largest control message (header + body): must fit the smallest eager buffer.
inline constexpr size_t kMaxControlBytes = sizeof(MsgHeader) + sizeof(RndvBody);

// ---- Store records -----------------------------------------------------------------------

// "transport/verbs/addr/<rank>": who a Context is (published by publishAddress / connect).
struct AddressRecord {
  int32_t rank = -1;
  uint64_t nonce = 0;  // random per Context: tells Contexts of one rank apart
  std::string device;  // "rxe0"
  uint8_t port = 0;
  uint16_t lid = 0;
  ibv_gid gid{};
  uint8_t gid_type = 0;  // ibv_gid_type
  uint8_t link_layer = 0;
  uint8_t mtu = 0;       // ibv_mtu
  uint8_t rndv = 0;      // 0 read, 1 write
  uint32_t eager_size = 0;
};

// "transport/verbs/qp/<from>/<to>/<seq>": one side of one RC connection.
struct QpRecord {
  int32_t from = -1;
  int32_t to = -1;
  uint32_t seq = 0;         // connection number of this pair (reconnects count up)
  uint64_t from_nonce = 0;  // the writer's Context
  uint64_t to_nonce = 0;    // the Context it connects to (from its AddressRecord)
  uint32_t qpn = 0;
  uint32_t psn = 0;
  uint16_t lid = 0;
  ibv_gid gid{};
  uint8_t gid_type = 0;
  uint8_t link_layer = 0;
  uint8_t mtu = 0;
  uint8_t rndv = 0;
  uint32_t recv_buffers = 0;  // initial credits of the peer
  uint32_t eager_size = 0;
  uint32_t max_dest_rd_atomic = 0;  // RDMA READs / atomics the writer serves at once
  uint64_t scratch_addr = 0;        // 8 writable bytes for keepalive probes
  uint32_t scratch_rkey = 0;
};

std::string encodeAddress(const AddressRecord& r);
Result<AddressRecord> decodeAddress(std::string_view bytes);
std::string encodeQp(const QpRecord& r);
Result<QpRecord> decodeQp(std::string_view bytes);

// "0000:0000:0000:0000:0000:ffff:0a4d:0001"
std::string gidText(const ibv_gid& gid);
// "10.77.0.1" for an IPv4-mapped GID (::ffff:a.b.c.d), "" otherwise.
std::string gidIpv4(const ibv_gid& gid);
// "IB", "RoCE v1", "RoCE v2"
std::string_view gidTypeName(uint32_t type);
// 256..4096 for IBV_MTU_*; 0 for anything else.
int mtuBytes(uint8_t mtu);

}  // namespace weft::transport::verbs
