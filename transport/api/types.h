// Basic vocabulary of the transport API: tags, memory types, operation kinds.
//
// Contract: plain values, no ownership, usable from any thread.
#pragma once

#include <cstdint>
#include <string_view>

namespace weft::transport {

// A message tag. Backends reserve the high bits for their own use; Capabilities::tag_bits
// says how many low bits are the caller's (40 for UCX). A tag with bits above that is
// kInvalidArgument. Receives match (received_tag & mask) == (tag & mask).
using Tag = uint64_t;
inline constexpr Tag kTagMaskAll = ~Tag{0};

enum class MemoryType : uint8_t {
  kHost = 0,  // ordinary (pageable or pinned) host memory
  kCuda = 1,  // CUDA device memory (needs a CUDA-enabled backend build)
};
std::string_view memoryTypeName(MemoryType type);

// What a Request stands for (for messages and Request::op()).
enum class OpKind : uint8_t {
  kNone = 0,
  kSend,
  kRecv,
  kPut,
  kGet,
  kPutNotify,
  kRecvNotify,
  kFetchAdd,
  kCompareSwap,
  kFlush,
};
std::string_view opKindName(OpKind op);

}  // namespace weft::transport
