#include "gpu/memory_type.h"

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
