// Capabilities: what a backend (as opened, with its current transports) can do.
//
// Contract: a plain value returned by Context::capabilities(); fixed for the Context's
// lifetime. Tests skip on capabilities, never on backend names.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace weft::transport {

struct Capabilities {
  std::string backend;         // "ucx", "verbs"
  std::string transports;      // backend detail, e.g. "UCX_TLS=posix" (for messages and logs)
  int tag_bits = 0;            // low bits of a Tag available to callers
  int max_rank = 0;            // largest rank a Context of this backend may have
  int immediate_bits = 0;      // bits of the putNotify immediate (64 for UCX, 32 for verbs)
  size_t max_message = 0;      // largest send / put / get in bytes
  size_t max_inline = 0;       // sends up to this size complete without a copy-out wait
  size_t max_outstanding = 0;  // requests in flight per Context before kNoResource
  bool tagged = false;         // send / recv with tag matching
  bool rdma_write = false;     // put
  bool rdma_read = false;      // get
  bool put_notify = false;     // put with remote notification
  bool atomics64 = false;      // fetchAdd / compareSwap on 8-byte aligned words
  // One-sided operations may need the target to drive progress (see endpoint.h).
  bool rma_needs_target_progress = true;
  bool cuda_memory = false;     // registerMemory(..., MemoryType::kCuda)
  bool dmabuf = false;          // CUDA registration through dma-buf
  bool blocking_wait = false;   // waits sleep on an event fd after spinning
  bool socket_connect = false;  // listen() / connectAddress()
  bool store_connect = false;   // connect(store, peer)
};

}  // namespace weft::transport
