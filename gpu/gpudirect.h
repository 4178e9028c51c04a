// GPUDirect RDMA building blocks: the dma-buf export of CUDA device memory and a probe that
// says, with reasons, whether a NIC could access GPU memory directly on this host.
//
// Contract: thread-safe; library code (returns Status, never throws). Everything goes through
// the lazily loaded driver (cuda_driver.h), so it works, and says "not available", on hosts
// without the NVIDIA driver. A DmabufExport owns its file descriptor (move-only).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "common/result.h"
#include "common/status.h"

namespace weft::gpu {

// A dma-buf fd covering the host-page-aligned range around [address, address + length).
class DmabufExport {
 public:
  DmabufExport() = default;
  DmabufExport(int fd, uintptr_t base, size_t length, size_t offset)
      : fd_(fd), base_(base), length_(length), offset_(offset) {}
  DmabufExport(DmabufExport&& o) noexcept { *this = std::move(o); }
  DmabufExport& operator=(DmabufExport&& o) noexcept;
  DmabufExport(const DmabufExport&) = delete;
  DmabufExport& operator=(const DmabufExport&) = delete;
  ~DmabufExport() { reset(); }

  int fd() const { return fd_; }
  uintptr_t base() const { return base_; }   // page-aligned start of the exported range
  size_t length() const { return length_; }  // page-aligned length of the exported range
  size_t offset() const { return offset_; }  // address - base: the offset for ibv_reg_dmabuf_mr
  void reset();

 private:
  int fd_ = -1;
  uintptr_t base_ = 0;
  size_t length_ = 0;
  size_t offset_ = 0;
};

// Exports CUDA device memory as a dma-buf (cuMemGetHandleForAddressRange). Errors:
// kUnavailable (no driver / device), kInvalidArgument (not device memory), kNotSupported
// (driver or device without dma-buf, e.g. the open kernel module is missing) with the reason.
Result<DmabufExport> exportDmabuf(const void* address, size_t length);

struct GpuDirectProbe {
  bool driver = false;            // libcuda loaded and cuInit succeeded
  int devices = 0;                // CUDA devices visible
  bool dmabuf_attribute = false;  // CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED on device 0
  bool dmabuf_export = false;     // a real export of a small allocation gave an fd
  bool peermem = false;           // nvidia_peermem or nv_peer_mem is loaded
  std::string driver_text;        // "driver 13000, 1 device(s): NVIDIA H100" or why not
  std::string dmabuf_text;   // "dmabuf export: ok (fd)" or "dmabuf export: not supported (...)"
  std::string peermem_text;  // "peer memory: nvidia_peermem loaded" or "...not loaded"
  // One line with all three: "CUDA: ...; dmabuf export: ...; peer memory: ...".
  std::string text() const;
};

// Runs the probe once and caches the answer. With real_export (the default) the first call
// allocates 2 MiB on device 0 for a real export attempt (this creates device 0's primary
// context); without it, only the driver, the device attribute and /sys/module are read
// (dmabuf_export stays false and dmabuf_text says "not tried"). Each form is cached.
const GpuDirectProbe& probeGpuDirect(bool real_export = true);

// "nvidia_peermem" / "nv_peer_mem" when /sys/module has one of them, else "".
std::string loadedPeerMemModule();

}  // namespace weft::gpu
