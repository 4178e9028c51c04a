// CUDA runtime helpers: availability, error text, an owning device allocation and copies.
//
// Contract
//  - Library code: every failure is a Status (never an exception) naming the operation, the
//    CUDA error (name and text), the size and the device.
//  - cudart is linked statically; on a host without driver or GPU, cudaAvailable() says why
//    and every other call returns that kUnavailable Status without touching CUDA again.
//  - DeviceBuffer owns one cudaMalloc allocation (move-only; freed in the destructor, a failed
//    free is logged). Methods are thread-safe as CUDA calls are; one buffer is not meant to be
//    moved while another thread uses it.
//  - Copies here are synchronous (cudaMemcpy); the current device of the calling thread is
//    restored after every call that selects a device.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>

#include "common/result.h"
#include "common/status.h"

namespace weft::gpu {

// "cudaErrorMemoryAllocation (out of memory)".
std::string cudaErrorText(cudaError_t e);

// OK when the CUDA runtime sees at least one device; kUnavailable naming why otherwise
// (no driver, driver older than the runtime, no device). Cached after the first call.
Status cudaAvailable();
// Number of CUDA devices (0 without driver or device).
int cudaDeviceCount();

class DeviceBuffer {
 public:
  // cudaMalloc of `bytes` (> 0) on `device` (-1: the calling thread's current device).
  static Result<DeviceBuffer> allocate(size_t bytes, int device = -1);

  DeviceBuffer() = default;
  DeviceBuffer(DeviceBuffer&& o) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { release(); }

  void* data() const { return data_; }
  size_t size() const { return size_; }
  int device() const { return device_; }
  bool empty() const { return data_ == nullptr; }

  // [offset, offset + bytes) must lie inside the buffer (kInvalidArgument otherwise).
  Status copyFromHost(const void* src, size_t bytes, size_t offset = 0);
  Status copyToHost(void* dst, size_t bytes, size_t offset = 0) const;
  // Sets every byte (cudaMemset).
  Status fill(int byte);
  // Frees now (the destructor does the same).
  void release();

 private:
  DeviceBuffer(void* data, size_t size, int device) : data_(data), size_(size), device_(device) {}
  Status checkRange(const char* op, size_t bytes, size_t offset) const;

  void* data_ = nullptr;
  size_t size_ = 0;
  int device_ = -1;
};

// Synchronous copies between any host and device pointers; `bytes` may be 0.
Status copyHostToDevice(void* dst, const void* src, size_t bytes);
Status copyDeviceToHost(void* dst, const void* src, size_t bytes);
Status copyDeviceToDevice(void* dst, const void* src, size_t bytes);

// Makes `device` current for the scope of the object and restores the previous one.
class DeviceScope {
 public:
  explicit DeviceScope(int device);
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;
  // cudaSuccess when `device` is current.
  cudaError_t error() const { return error_; }

 private:
  int previous_ = -1;
  cudaError_t error_ = cudaSuccess;
};

}  // namespace weft::gpu
