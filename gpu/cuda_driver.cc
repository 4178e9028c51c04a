#include "gpu/cuda_driver.h"

#include <dlfcn.h>

namespace weft::gpu {
namespace {

// dlsym into a typed pointer; false when the symbol is missing.
template <class Fn>
bool bind(void* lib, const char* name, Fn& fn) {
  fn = reinterpret_cast<Fn>(dlsym(lib, name));
  return fn != nullptr;
}

bool bindAll(void* lib, CudaDriver& d, std::string& missing) {
  struct Entry {
    const char* name;
    bool ok;
  };
  const Entry entries[] = {
      {"cuDriverGetVersion", bind(lib, "cuDriverGetVersion", d.cuDriverGetVersion)},
      {"cuDeviceGetCount", bind(lib, "cuDeviceGetCount", d.cuDeviceGetCount)},
      {"cuDeviceGet", bind(lib, "cuDeviceGet", d.cuDeviceGet)},
      {"cuDeviceGetAttribute", bind(lib, "cuDeviceGetAttribute", d.cuDeviceGetAttribute)},
      {"cuDeviceGetName", bind(lib, "cuDeviceGetName", d.cuDeviceGetName)},
      {"cuGetErrorString", bind(lib, "cuGetErrorString", d.cuGetErrorString)},
      {"cuGetErrorName", bind(lib, "cuGetErrorName", d.cuGetErrorName)},
      {"cuPointerGetAttributes", bind(lib, "cuPointerGetAttributes", d.cuPointerGetAttributes)},
      {"cuCtxPushCurrent_v2", bind(lib, "cuCtxPushCurrent_v2", d.cuCtxPushCurrent)},
      {"cuCtxPopCurrent_v2", bind(lib, "cuCtxPopCurrent_v2", d.cuCtxPopCurrent)},
      {"cuDevicePrimaryCtxRetain",
       bind(lib, "cuDevicePrimaryCtxRetain", d.cuDevicePrimaryCtxRetain)},
      {"cuDevicePrimaryCtxRelease_v2",
       bind(lib, "cuDevicePrimaryCtxRelease_v2", d.cuDevicePrimaryCtxRelease)},
      {"cuMemAlloc_v2", bind(lib, "cuMemAlloc_v2", d.cuMemAlloc)},
      {"cuMemFree_v2", bind(lib, "cuMemFree_v2", d.cuMemFree)},
  };
  for (const Entry& e : entries) {
    if (!e.ok) missing += strCat(missing.empty() ? "" : ", ", e.name);
  }
  // Optional (CUDA >= 11.7 drivers): dma-buf export of device memory.
  bind(lib, "cuMemGetHandleForAddressRange", d.cuMemGetHandleForAddressRange);
  bind(lib, "cuStreamCreate", d.cuStreamCreate);
  bind(lib, "cuStreamSynchronize", d.cuStreamSynchronize);
  bind(lib, "cuMemcpyDtoHAsync_v2", d.cuMemcpyDtoHAsync);
  bind(lib, "cuMemcpyHtoDAsync_v2", d.cuMemcpyHtoDAsync);
  bind(lib, "cuFlushGPUDirectRDMAWrites", d.cuFlushGPUDirectRDMAWrites);
  return missing.empty();
}

CudaDriver load() {
  CudaDriver d;
  dlerror();
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* err = dlerror();
    d.status =
        WEFT_ERROR(StatusCode::kUnavailable,
                   "CUDA driver not found (dlopen libcuda.so.1: ", err ? err : "unknown error", ")")
            .withHint("no NVIDIA driver on this host; GPU features are off");
    return d;
  }
  std::string missing;
  if (!bindAll(lib, d, missing)) {
    d.status =
        WEFT_ERROR(StatusCode::kUnavailable, "libcuda.so.1 lacks ", missing, ": driver too old");
    return d;
  }
  auto init = reinterpret_cast<CUresult (*)(unsigned)>(dlsym(lib, "cuInit"));
  const CUresult r = init != nullptr ? init(0) : CUDA_ERROR_NOT_INITIALIZED;
  if (r != CUDA_SUCCESS) {
    const char* text = nullptr;
    d.cuGetErrorString(r, &text);
    d.status = WEFT_ERROR(StatusCode::kUnavailable, "cuInit failed: ", text ? text : "?",
                          " (CUresult ", static_cast<int>(r), ")")
                   .withHint(r == CUDA_ERROR_NO_DEVICE ? "no CUDA device is visible "
                                                         "(CUDA_VISIBLE_DEVICES?)"
                                                       : "check nvidia-smi");
    return d;
  }
  d.cuDriverGetVersion(&d.version);
  if (d.cuDeviceGetCount(&d.device_count) != CUDA_SUCCESS) d.device_count = 0;
  return d;
}

}  // namespace

const CudaDriver& driver() {
  static const CudaDriver d = load();
  return d;
}

std::string cuResultText(CUresult r) {
  const CudaDriver& d = driver();
  const char* name = nullptr;
  const char* text = nullptr;
  if (d.cuGetErrorName != nullptr) d.cuGetErrorName(r, &name);
  if (d.cuGetErrorString != nullptr) d.cuGetErrorString(r, &text);
  if (name == nullptr) return strCat("CUresult ", static_cast<int>(r));
  return strCat(name, " (", text ? text : "?", ")");
}

}  // namespace weft::gpu
