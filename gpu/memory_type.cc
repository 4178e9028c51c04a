#include "gpu/memory_type.h"

#include <mutex>
#include <vector>

#include "common/result.h"
#include "gpu/cuda_driver.h"

namespace weft::gpu {

std::string_view toString(MemoryType t) {
  switch (t) {
    case MemoryType::kHost: return "host";
    case MemoryType::kCudaDevice: return "cuda";
    case MemoryType::kCudaManaged: return "cuda-managed";
    case MemoryType::kCudaHostPinned: return "cuda-pinned";
  }
  return "invalid";
}

std::ostream& operator<<(std::ostream& os, MemoryType t) {
  return os << toString(t);
}

PointerInfo pointerInfo(const void* p) {
  PointerInfo info;
  const CudaDriver& d = driver();
  if (p == nullptr || !d.available() || d.device_count == 0) return info;
  // cuPointerGetAttributes (plural) returns CUDA_SUCCESS with zeroed attributes for memory
  // CUDA does not know, unlike cuPointerGetAttribute.
  unsigned memType = 0;
  int isManaged = 0;
  int ordinal = -1;
  CUdeviceptr start = 0;
  size_t size = 0;
  CUpointer_attribute attrs[] = {CU_POINTER_ATTRIBUTE_MEMORY_TYPE, CU_POINTER_ATTRIBUTE_IS_MANAGED,
                                 CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
                                 CU_POINTER_ATTRIBUTE_RANGE_START_ADDR,
                                 CU_POINTER_ATTRIBUTE_RANGE_SIZE};
  void* values[] = {&memType, &isManaged, &ordinal, &start, &size};
  const auto addr = static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(p));
  if (d.cuPointerGetAttributes(5, attrs, values, addr) != CUDA_SUCCESS) {
    // Defensive: should an attribute not apply to this kind of memory, ask for the type only.
    ordinal = -1;
    start = 0;
    size = 0;
    if (d.cuPointerGetAttributes(2, attrs, values, addr) != CUDA_SUCCESS) return info;
  }
  if (isManaged != 0) {
    info.type = MemoryType::kCudaManaged;
  } else if (memType == CU_MEMORYTYPE_DEVICE) {
    info.type = MemoryType::kCudaDevice;
  } else if (memType == CU_MEMORYTYPE_HOST) {
    info.type = MemoryType::kCudaHostPinned;
  } else {
    return info;
  }
  info.device = ordinal;
  info.range_start = static_cast<uintptr_t>(start);
  info.range_size = size;
  return info;
}

}  // namespace weft::gpu

namespace weft::gpu {
namespace {

// The primary context of `device`, retained on first use and kept for the process.
Result<CUcontext> primaryContext(const CudaDriver& d, int device) {
  static std::mutex mu;
  static std::vector<CUcontext> contexts;
  std::lock_guard<std::mutex> lock(mu);
  if (device < 0 || device >= d.device_count) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "CUDA device ", device, " does not exist (",
                      d.device_count, " visible)");
  }
  if (contexts.size() < static_cast<size_t>(d.device_count)) contexts.resize(d.device_count);
  if (contexts[device] == nullptr) {
    CUdevice dev = 0;
    CUresult r = d.cuDeviceGet(&dev, device);
    if (r == CUDA_SUCCESS) r = d.cuDevicePrimaryCtxRetain(&contexts[device], dev);
    if (r != CUDA_SUCCESS) {
      contexts[device] = nullptr;
      return WEFT_ERROR(StatusCode::kIoError, "retaining the primary context of CUDA device ",
                        device, ": ", cuResultText(r));
    }
  }
  return contexts[device];
}

// One synchronous copy with the device pointer's context current.
template <class Copy>
Status copyOnDevice(const void* device_ptr, size_t n, std::string_view what, Copy copy) {
  const CudaDriver& d = driver();
  if (!d.available()) return d.status;
  if (d.cuMemcpyDtoH == nullptr || d.cuMemcpyHtoD == nullptr) {
    return WEFT_ERROR(StatusCode::kUnavailable,
                      "libcuda.so.1 lacks cuMemcpyDtoH_v2 / "
                      "cuMemcpyHtoD_v2: driver too old");
  }
  const PointerInfo info = pointerInfo(device_ptr);
  if (info.type != MemoryType::kCudaDevice) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what, ": ", device_ptr, " is ",
                      toString(info.type), " memory, not CUDA device memory");
  }
  WEFT_ASSIGN_OR_RETURN(CUcontext ctx, primaryContext(d, info.device));
  CUresult r = d.cuCtxPushCurrent(ctx);
  if (r != CUDA_SUCCESS) {
    return WEFT_ERROR(StatusCode::kIoError, what, ": cuCtxPushCurrent: ", cuResultText(r));
  }
  r = copy(d);
  CUcontext popped = nullptr;
  d.cuCtxPopCurrent(&popped);
  if (r != CUDA_SUCCESS) {
    return WEFT_ERROR(StatusCode::kIoError, what, " of ", n, " bytes at ", device_ptr,
                      " (CUDA device ", info.device, "): ", cuResultText(r));
  }
  return Status::ok();
}

}  // namespace

bool hostCopySupported() {
  const CudaDriver& d = driver();
  return d.available() && d.cuMemcpyDtoH != nullptr && d.cuMemcpyHtoD != nullptr;
}

Status copyToHost(void* dst, const void* device_src, size_t n) {
  if (n == 0) return Status::ok();
  return copyOnDevice(device_src, n, "cuMemcpyDtoH", [&](const CudaDriver& d) {
    return d.cuMemcpyDtoH(dst, static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(device_src)),
                          n);
  });
}

Status copyToDevice(void* device_dst, const void* src, size_t n) {
  if (n == 0) return Status::ok();
  return copyOnDevice(device_dst, n, "cuMemcpyHtoD", [&](const CudaDriver& d) {
    return d.cuMemcpyHtoD(static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(device_dst)), src,
                          n);
  });
}

}  // namespace weft::gpu
