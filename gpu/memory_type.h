// Where a pointer's memory lives: host, CUDA device, CUDA managed or CUDA-pinned host memory.
//
// Contract: thread-safe; never fails. On a host without the NVIDIA driver (or without a GPU)
// every pointer is kHost, and the first call costs one dlopen attempt; afterwards a call is
// one cuPointerGetAttributes (a few hundred ns) or, without a driver, a branch. Pointers into
// the middle of an allocation are classified like its start. nullptr is kHost.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string_view>

#include "common/status.h"

namespace weft::gpu {

enum class MemoryType : uint8_t {
  kHost,            // pageable host memory (or anything CUDA does not know)
  kCudaDevice,      // cudaMalloc / cuMemAlloc / VMM device memory
  kCudaManaged,     // cudaMallocManaged
  kCudaHostPinned,  // cudaMallocHost / cudaHostAlloc / cudaHostRegister
};

std::string_view toString(MemoryType t);  // "host", "cuda", "cuda-managed", "cuda-pinned"
std::ostream& operator<<(std::ostream& os, MemoryType t);

struct PointerInfo {
  MemoryType type = MemoryType::kHost;
  int device = -1;            // CUDA device ordinal owning the memory; -1 for host memory
  uintptr_t range_start = 0;  // start and size of the CUDA allocation holding the pointer
  size_t range_size = 0;      // (0 for host memory)
};

PointerInfo pointerInfo(const void* p);
inline MemoryType memoryTypeOf(const void* p) {
  return pointerInfo(p).type;
}

// True for memory a GPU kernel can read directly (device and managed memory).
inline bool isDeviceAccessible(MemoryType t) {
  return t == MemoryType::kCudaDevice || t == MemoryType::kCudaManaged;
}

// Copies between CUDA device memory and host memory for the transport's staging of device
// buffers: on a private non-blocking stream of the pointer's context (its device's primary
// context for memory without one), synchronized before returning, so the bytes are in
// place when the call returns (also for pageable host memory, where a plain cuMemcpyHtoD
// may return before the DMA finished). The stream does not wait for other GPU work: the
// caller makes sure the kernels that produce or consume the buffer are done. Process-wide
// mutex (one copy at a time). kUnavailable without a driver, kInvalidArgument when the
// pointer is not device memory, kIoError naming the CUresult.
bool hostCopySupported();  // the driver has the entry points
Status copyToHost(void* dst, const void* device_src, size_t n);
Status copyToDevice(void* device_dst, const void* src, size_t n);
// After a NIC wrote device memory by GPUDirect RDMA: makes the writes visible to the owning
// context (cuFlushGPUDirectRDMAWrites) on devices that do not order them natively
// (CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WRITES_ORDERING below OWNER); else nothing.
Status flushRdmaWrites(const void* device_ptr);

}  // namespace weft::gpu
