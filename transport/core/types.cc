#include "transport/api/types.h"

namespace weft::transport {

std::string_view memoryTypeName(MemoryType type) {
  switch (type) {
    case MemoryType::kHost: return "host";
    case MemoryType::kCuda: return "cuda";
  }
  return "unknown";
}

std::string_view opKindName(OpKind op) {
  switch (op) {
    case OpKind::kNone: return "none";
    case OpKind::kSend: return "send";
    case OpKind::kRecv: return "recv";
    case OpKind::kPut: return "put";
    case OpKind::kGet: return "get";
    case OpKind::kPutNotify: return "putNotify";
    case OpKind::kRecvNotify: return "recvNotify";
    case OpKind::kFetchAdd: return "fetchAdd";
    case OpKind::kCompareSwap: return "compareSwap";
    case OpKind::kFlush: return "flush";
  }
  return "unknown";
}

}  // namespace weft::transport
