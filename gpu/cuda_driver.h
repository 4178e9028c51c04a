// The CUDA driver API, loaded lazily with dlopen("libcuda.so.1").
//
// Contract
//  - Nothing here links libcuda: binaries start on hosts without the NVIDIA driver, and every
//    entry point then reports "not available" with the reason (dlopen error, cuInit result).
//  - driver() loads and initializes once (thread-safe, first call wins); afterwards it is a
//    pointer read. The table lives until process exit; its function pointers are never null
//    when available() is true.
//  - The table is internal to gpu/ and transport/ibverbs (GPUDirect registration); other
//    layers use memory_type.h, gpudirect.h and the cudart-based headers.
#pragma once

#include <cuda.h>

#include <string>

#include "common/status.h"

namespace weft::gpu {

struct CudaDriver {
  // OK when libcuda.so.1 loaded and cuInit(0) succeeded; otherwise kUnavailable naming why.
  Status status;
  int version = 0;       // cuDriverGetVersion, e.g. 13000
  int device_count = 0;  // 0 when unavailable
  bool available() const { return status.isOk(); }

  CUresult (*cuDriverGetVersion)(int*) = nullptr;
  CUresult (*cuDeviceGetCount)(int*) = nullptr;
  CUresult (*cuDeviceGet)(CUdevice*, int) = nullptr;
  CUresult (*cuDeviceGetAttribute)(int*, CUdevice_attribute, CUdevice) = nullptr;
  CUresult (*cuDeviceGetName)(char*, int, CUdevice) = nullptr;
  CUresult (*cuGetErrorString)(CUresult, const char**) = nullptr;
  CUresult (*cuGetErrorName)(CUresult, const char**) = nullptr;
  CUresult (*cuPointerGetAttributes)(unsigned, CUpointer_attribute*, void**, CUdeviceptr) = nullptr;
  CUresult (*cuMemGetHandleForAddressRange)(void*, CUdeviceptr, size_t, CUmemRangeHandleType,
                                            unsigned long long) = nullptr;  // may stay null
  CUresult (*cuCtxPushCurrent)(CUcontext) = nullptr;
  CUresult (*cuCtxPopCurrent)(CUcontext*) = nullptr;
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice) = nullptr;
  CUresult (*cuDevicePrimaryCtxRelease)(CUdevice) = nullptr;
  CUresult (*cuMemAlloc)(CUdeviceptr*, size_t) = nullptr;
  CUresult (*cuMemFree)(CUdeviceptr) = nullptr;
  // Optional (may stay null): the staging copies and the GPUDirect write flush
  // (memory_type.h).
  CUresult (*cuStreamCreate)(CUstream*, unsigned) = nullptr;
  CUresult (*cuStreamSynchronize)(CUstream) = nullptr;
  CUresult (*cuMemcpyDtoHAsync)(void*, CUdeviceptr, size_t, CUstream) = nullptr;
  CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr, const void*, size_t, CUstream) = nullptr;
  CUresult (*cuFlushGPUDirectRDMAWrites)(CUflushGPUDirectRDMAWritesTarget,
                                         CUflushGPUDirectRDMAWritesScope) = nullptr;
};

// The process-wide table (loaded on first use).
const CudaDriver& driver();

// "CUDA_ERROR_INVALID_VALUE (invalid argument)"; works without a loaded driver too.
std::string cuResultText(CUresult r);

}  // namespace weft::gpu
