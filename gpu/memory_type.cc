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

std::mutex g_copy_mu;  // copies, the stream map and the primary contexts

// The primary context of `device`, retained on first use and kept for the process
// (g_copy_mu held).
Result<CUcontext> primaryContext(const CudaDriver& d, int device) {
  static std::vector<CUcontext> contexts;
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

struct DeviceTarget {
  CUcontext ctx = nullptr;
  int device = -1;
};

// The context owning device pointer p (g_copy_mu held).
Result<DeviceTarget> targetOf(const CudaDriver& d, const void* p, std::string_view what) {
  const PointerInfo info = pointerInfo(p);
  if (info.type != MemoryType::kCudaDevice) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what, ": ", p, " is ", toString(info.type),
                      " memory, not CUDA device memory");
  }
  DeviceTarget t;
  t.device = info.device;
  CUpointer_attribute attr = CU_POINTER_ATTRIBUTE_CONTEXT;
  void* value = &t.ctx;
  const auto addr = static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(p));
  if (d.cuPointerGetAttributes(1, &attr, &value, addr) != CUDA_SUCCESS || t.ctx == nullptr) {
    // VMM (cuMemCreate) allocations belong to no context: the device's primary one.
    WEFT_ASSIGN_OR_RETURN(t.ctx, primaryContext(d, info.device));
  }
  return t;
}

// Makes ctx current for the scope (pushed, popped at the end); result() says if the push
// worked.
class ContextScope {
 public:
  ContextScope(const CudaDriver& d, CUcontext ctx) : d_(d), result_(d.cuCtxPushCurrent(ctx)) {}
  ~ContextScope() {
    if (result_ != CUDA_SUCCESS) return;
    CUcontext popped = nullptr;
    d_.cuCtxPopCurrent(&popped);
  }
  ContextScope(const ContextScope&) = delete;
  ContextScope& operator=(const ContextScope&) = delete;
  CUresult result() const { return result_; }

 private:
  const CudaDriver& d_;
  CUresult result_;
};

// This process's copy stream in ctx (current), created on first use (g_copy_mu held).
Result<CUstream> copyStream(const CudaDriver& d, CUcontext ctx) {
  static std::vector<std::pair<CUcontext, CUstream>> streams;
  for (const auto& [c, s] : streams) {
    if (c == ctx) return s;
  }
  CUstream s = nullptr;
  const CUresult r = d.cuStreamCreate(&s, CU_STREAM_NON_BLOCKING);
  if (r != CUDA_SUCCESS) {
    return WEFT_ERROR(StatusCode::kIoError, "cuStreamCreate: ", cuResultText(r));
  }
  streams.emplace_back(ctx, s);
  return s;
}

// One copy on the copy stream of the device pointer's context, synchronized.
template <class Copy>
Status copyOnDevice(const void* device_ptr, size_t n, std::string_view what, Copy copy) {
  const CudaDriver& d = driver();
  if (!d.available()) return d.status;
  if (!hostCopySupported()) {
    return WEFT_ERROR(StatusCode::kUnavailable,
                      "libcuda.so.1 lacks cuStreamCreate / "
                      "cuMemcpy*Async_v2: driver too old");
  }
  std::lock_guard<std::mutex> lock(g_copy_mu);
  WEFT_ASSIGN_OR_RETURN(DeviceTarget t, targetOf(d, device_ptr, what));
  ContextScope scope(d, t.ctx);
  if (scope.result() != CUDA_SUCCESS) {
    return WEFT_ERROR(StatusCode::kIoError, what,
                      ": cuCtxPushCurrent: ", cuResultText(scope.result()));
  }
  Result<CUstream> stream = copyStream(d, t.ctx);
  if (!stream.isOk()) return stream.status().withContext(what);
  CUresult r = copy(d, *stream);
  if (r == CUDA_SUCCESS) r = d.cuStreamSynchronize(*stream);
  if (r != CUDA_SUCCESS) {
    return WEFT_ERROR(StatusCode::kIoError, what, " of ", n, " bytes at ", device_ptr,
                      " (CUDA device ", t.device, "): ", cuResultText(r));
  }
  return Status::ok();
}

}  // namespace

bool hostCopySupported() {
  const CudaDriver& d = driver();
  return d.available() && d.cuStreamCreate != nullptr && d.cuStreamSynchronize != nullptr &&
         d.cuMemcpyDtoHAsync != nullptr && d.cuMemcpyHtoDAsync != nullptr;
}

Status copyToHost(void* dst, const void* device_src, size_t n) {
  if (n == 0) return Status::ok();
  return copyOnDevice(device_src, n, "cuMemcpyDtoHAsync", [&](const CudaDriver& d, CUstream s) {
    return d.cuMemcpyDtoHAsync(
        dst, static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(device_src)), n, s);
  });
}

Status copyToDevice(void* device_dst, const void* src, size_t n) {
  if (n == 0) return Status::ok();
  return copyOnDevice(device_dst, n, "cuMemcpyHtoDAsync", [&](const CudaDriver& d, CUstream s) {
    return d.cuMemcpyHtoDAsync(static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(device_dst)),
                               src, n, s);
  });
}

Status flushRdmaWrites(const void* device_ptr) {
  const CudaDriver& d = driver();
  if (!d.available()) return d.status;
  if (d.cuFlushGPUDirectRDMAWrites == nullptr) return Status::ok();  // drivers before 11.3
  std::lock_guard<std::mutex> lock(g_copy_mu);
  WEFT_ASSIGN_OR_RETURN(DeviceTarget t, targetOf(d, device_ptr, "GPUDirect write flush"));
  static std::vector<int> ordering;  // per device; -1: not read yet
  if (ordering.size() < static_cast<size_t>(d.device_count)) ordering.resize(d.device_count, -1);
  if (ordering[t.device] < 0) {
    CUdevice dev = 0;
    int v = CU_GPU_DIRECT_RDMA_WRITES_ORDERING_NONE;
    if (d.cuDeviceGet(&dev, t.device) != CUDA_SUCCESS ||
        d.cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WRITES_ORDERING, dev) !=
            CUDA_SUCCESS) {
      v = CU_GPU_DIRECT_RDMA_WRITES_ORDERING_NONE;
    }
    ordering[t.device] = v;
  }
  if (ordering[t.device] >= CU_GPU_DIRECT_RDMA_WRITES_ORDERING_OWNER) return Status::ok();
  ContextScope scope(d, t.ctx);
  CUresult r = scope.result();
  if (r == CUDA_SUCCESS) {
    r = d.cuFlushGPUDirectRDMAWrites(CU_FLUSH_GPU_DIRECT_RDMA_WRITES_TARGET_CURRENT_CTX,
                                     CU_FLUSH_GPU_DIRECT_RDMA_WRITES_TO_OWNER);
  }
  if (r != CUDA_SUCCESS) {
    return WEFT_ERROR(StatusCode::kIoError, "cuFlushGPUDirectRDMAWrites for ", device_ptr,
                      " (CUDA device ", t.device, "): ", cuResultText(r));
  }
  return Status::ok();
}

}  // namespace weft::gpu
