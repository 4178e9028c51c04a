// Transport tags of the collectives. Internal to collectives/.
//
// Bit layout of the 40 caller bits a transport Tag offers (Capabilities::tag_bits; UCX has
// exactly 40, and the backend owns the bits above them):
//
//   collective messages (bit 39 = 0):
//     38..27  communicator id (12 bits; ids wrap after 4096 communicators)
//     26..15  operation sequence number modulo 4096 (at most kMaxOutstanding operations
//             of one communicator are in flight, so live operations never share a value)
//     14      phase: 1 for the WEFT_CHECK signature exchange, 0 for the operation itself
//     13..0   index of the plan message between this (sender, receiver) pair, in plan
//             order (kMaxPairMessages per pair and operation); the chunks of one message
//             share its tag and match in posting order (transport non-overtaking rule)
//   point-to-point messages (bit 39 = 1):
//     38..27  communicator id
//     26..0   the caller's tag (kMaxUserTag)
//
// Distinct (communicator, sequence, phase, index) values never share a tag, so several
// outstanding collectives of one communicator, and communicators that share endpoints (all
// that derive from one world share its Context), never receive each other's messages.
#pragma once

#include <cstdint>

#include "transport/api/types.h"

namespace weft::coll::detail {

inline constexpr int kTagBits = 40;
inline constexpr uint64_t kP2pBit = uint64_t{1} << 39;
inline constexpr int kCommShift = 27;
inline constexpr uint32_t kCommIdMask = 0xFFF;
inline constexpr int kSeqShift = 15;
inline constexpr uint64_t kSeqMask = 0xFFF;
inline constexpr uint64_t kCheckPhaseBit = uint64_t{1} << 14;
inline constexpr uint32_t kMaxPairMessages = 1u << 14;
inline constexpr int64_t kMaxUserTag = (int64_t{1} << 27) - 1;
// Operations of one communicator in flight at once (half the sequence space).
inline constexpr uint32_t kMaxOutstanding = 2048;

// The tag bits shared by every message of one collective operation.
inline transport::Tag collectiveTagBase(uint32_t comm_id, uint64_t seq) {
  return (static_cast<uint64_t>(comm_id & kCommIdMask) << kCommShift) |
         ((seq & kSeqMask) << kSeqShift);
}

inline transport::Tag p2pTag(uint32_t comm_id, int64_t user_tag) {
  return kP2pBit | (static_cast<uint64_t>(comm_id & kCommIdMask) << kCommShift) |
         static_cast<uint64_t>(user_tag);
}

}  // namespace weft::coll::detail
