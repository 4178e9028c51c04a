// CUDA IPC between processes of one node: export a device allocation as a small serializable
// handle, open it in another process.
//
// Contract
//  - exportIpc() works on any pointer into a cudaMalloc allocation (the handle carries the
//    offset from the allocation start). The exporting process must keep the allocation alive
//    while peers have it open.
//  - IpcHandle::serialize()/parse() give a printable hex string, so handles can travel through
//    a Store, an environment variable or a command line.
//  - IpcMapping owns the mapping in the importing process (cudaIpcCloseMemHandle in the
//    destructor; move-only). A process cannot open its own export (CUDA refuses it).
//  - Library code: errors are Status values naming the device and the CUDA error.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/status.h"

namespace weft::gpu {

struct IpcHandle {
  cudaIpcMemHandle_t handle{};
  size_t offset = 0;  // of the exported pointer from the allocation start
  size_t size = 0;    // bytes the peer may access from the exported pointer
  int device = -1;    // exporting device ordinal (informational)

  std::string serialize() const;  // "<device>:<offset>:<size>:<128 hex digits>"
  static Result<IpcHandle> parse(std::string_view text);
};

// Exports [ptr, ptr + size) of device memory.
Result<IpcHandle> exportIpc(const void* ptr, size_t size);

class IpcMapping {
 public:
  // Opens a handle exported by another process (cudaIpcMemLazyEnablePeerAccess) on the
  // calling thread's current device.
  static Result<IpcMapping> open(const IpcHandle& h);

  IpcMapping() = default;
  IpcMapping(IpcMapping&& o) noexcept;
  IpcMapping& operator=(IpcMapping&& o) noexcept;
  IpcMapping(const IpcMapping&) = delete;
  IpcMapping& operator=(const IpcMapping&) = delete;
  ~IpcMapping() { close(); }

  void* data() const { return base_ == nullptr ? nullptr : static_cast<char*>(base_) + offset_; }
  size_t size() const { return size_; }
  void close();

 private:
  void* base_ = nullptr;
  size_t offset_ = 0;
  size_t size_ = 0;
};

}  // namespace weft::gpu
