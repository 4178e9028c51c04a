// Device (GPU) memory on the verbs data path (internal to transport/ibverbs).
//
// send / recv / put / get / putNotify accept CUDA device pointers. The CPU must never touch
// such a buffer and the NIC can reach it only through GPUDirect RDMA, so an operation on
// one takes one of two paths (VerbsEndpoint::deviceUse, verbs_staging.cc):
//  - zero-copy: the buffer is registered for the NIC (DeviceMemory::registerForNic: dma-buf,
//    then peer memory) for this operation only. Never cached: the userfaultfd monitor does
//    not see cudaFree, so a cached MR could outlive its allocation.
//  - staged: a host buffer from the Context's StagingPool stands in for it; the device
//    bytes are copied into it before a send / put, and out of it after a receive / get
//    completed successfully (synchronous copies, DeviceMemory::toHost / toDevice).
// Eager-sized sends and inline puts are always staged (a copy, as for host memory).
// WEFT_GPUDIRECT: off refuses device buffers; on takes the zero-copy path or fails with
// the registration's reasons; auto (default) tries zero-copy and, when the registration is
// not supported, says why once (a warning) and stages from then on (other failures, such
// as the memlock limit, stage that one operation).
// The caller makes sure a device buffer is ready (its producing kernel finished) when the
// operation starts and reads it after the request completed; the copies run inside the
// progress engine, synchronously, on a stream of their own.
//
// DeviceMemory is the seam between the backend and the GPU runtime: with CUDA built in and
// a device present it is the driver API (gpu/); tests install their own
// (setDeviceMemoryForTesting) to run both paths on soft-RoCE without a GPU.
#pragma once

#include <infiniband/verbs.h>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace weft::transport::verbs {

class VerbsState;

class DeviceMemory {
 public:
  virtual ~DeviceMemory() = default;
  // "CUDA"
  virtual std::string_view name() const = 0;
  // True when p is device memory the CPU cannot access (CUDA managed and pinned host
  // memory are host memory here).
  virtual bool contains(const void* p) const = 0;
  // Synchronous copies; errors name the range and the runtime's reason.
  virtual Status toHost(void* dst, const void* src, size_t n) = 0;
  virtual Status toDevice(void* dst, const void* src, size_t n) = 0;
  // After the NIC wrote [p, ...) by GPUDirect (a receive, a get): makes the writes visible
  // to the device's kernels where the platform does not order them by itself.
  virtual Status flushNicWrites(void* p) = 0;
  // GPUDirect RDMA registration of exactly [p, p + n) on st's PD with `access`, or why not
  // (kNotSupported naming the dma-buf and the peer-memory reasons; `what` starts it).
  virtual Result<ibv_mr*> registerForNic(const VerbsState& st, std::string_view what, void* p,
                                         size_t n, int access) = 0;
};

// The process's DeviceMemory: a test's, else CUDA's when built with CUDA and the driver
// sees a device, else nullptr (then every pointer is host memory: one branch per
// operation). Contexts read it when they open.
DeviceMemory* deviceMemory();
// Tests: installs d for Contexts opened afterwards (nullptr: back to the default).
void setDeviceMemoryForTesting(DeviceMemory* d);

// Host buffers that stand in for device memory (one per Context, engine lock held).
// Power-of-two size classes from 4 KiB, page-aligned, kept for reuse (their
// registrations then hit the cache) up to kMaxIdleBytes; larger ones are freed.
class StagingPool {
 public:
  static constexpr size_t kMinClass = 4096;
  static constexpr size_t kMaxIdleBytes = size_t{256} << 20;
  StagingPool() = default;
  ~StagingPool();
  StagingPool(const StagingPool&) = delete;
  StagingPool& operator=(const StagingPool&) = delete;

  // A buffer of at least n bytes (n > 0), its capacity in *capacity; nullptr when out of
  // memory.
  char* take(size_t n, size_t* capacity);
  void give(char* p, size_t capacity);

 private:
  std::vector<std::vector<char*>> free_;  // by class: kMinClass << i
  size_t idle_bytes_ = 0;
};

}  // namespace weft::transport::verbs
