#include "gpu/gpudirect.h"

#include <sys/stat.h>
#include <unistd.h>

#include "gpu/cuda_driver.h"
#include "gpu/memory_type.h"

namespace weft::gpu {
namespace {

// Makes the primary context of a device current for the scope of the object.
class PrimaryContextScope {
 public:
  explicit PrimaryContextScope(int ordinal) {
    const CudaDriver& d = driver();
    if (d.cuDeviceGet(&dev_, ordinal) != CUDA_SUCCESS) return;
    result_ = d.cuDevicePrimaryCtxRetain(&ctx_, dev_);
    if (result_ != CUDA_SUCCESS) return;
    result_ = d.cuCtxPushCurrent(ctx_);
    if (result_ != CUDA_SUCCESS) {
      d.cuDevicePrimaryCtxRelease(dev_);
      ctx_ = nullptr;
    }
  }
  ~PrimaryContextScope() {
    if (ctx_ == nullptr) return;
    CUcontext popped = nullptr;
    driver().cuCtxPopCurrent(&popped);
    driver().cuDevicePrimaryCtxRelease(dev_);
  }
  PrimaryContextScope(const PrimaryContextScope&) = delete;
  PrimaryContextScope& operator=(const PrimaryContextScope&) = delete;

  bool ok() const { return ctx_ != nullptr; }
  CUresult result() const { return result_; }

 private:
  CUdevice dev_ = 0;
  CUcontext ctx_ = nullptr;
  CUresult result_ = CUDA_ERROR_INVALID_DEVICE;
};

size_t hostPageSize() {
  const long page = sysconf(_SC_PAGESIZE);
  return page > 0 ? static_cast<size_t>(page) : 4096;
}

// The dma-buf export proper; the caller made the owning context current.
Result<DmabufExport> exportRange(uintptr_t address, size_t length, int ordinal) {
  const CudaDriver& d = driver();
  const size_t page = hostPageSize();
  const uintptr_t base = address & ~(page - 1);
  const size_t span = ((address + length - base) + page - 1) & ~(page - 1);
  int fd = -1;
  const CUresult r = d.cuMemGetHandleForAddressRange(&fd, static_cast<CUdeviceptr>(base), span,
                                                     CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD, 0);
  if (r != CUDA_SUCCESS || fd < 0) {
    return WEFT_ERROR(StatusCode::kNotSupported, "dma-buf export of [0x", std::hex, base, ", +0x",
                      span, std::dec, ") on CUDA device ", ordinal,
                      " failed: cuMemGetHandleForAddressRange: ", cuResultText(r))
        .withHint(
            "dma-buf needs the NVIDIA open kernel module (or R515+ with "
            "CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED) and Linux >= 5.12");
  }
  return DmabufExport(fd, base, span, address - base);
}

}  // namespace

DmabufExport& DmabufExport::operator=(DmabufExport&& o) noexcept {
  if (this != &o) {
    reset();
    fd_ = std::exchange(o.fd_, -1);
    base_ = o.base_;
    length_ = o.length_;
    offset_ = o.offset_;
  }
  return *this;
}

void DmabufExport::reset() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

Result<DmabufExport> exportDmabuf(const void* address, size_t length) {
  const CudaDriver& d = driver();
  if (!d.available()) return d.status;
  if (d.cuMemGetHandleForAddressRange == nullptr) {
    return WEFT_ERROR(StatusCode::kNotSupported, "dma-buf export: the CUDA driver (version ",
                      d.version, ") lacks cuMemGetHandleForAddressRange")
        .withHint("needs driver R515 / CUDA 11.7 or newer");
  }
  const PointerInfo info = pointerInfo(address);
  if (info.type != MemoryType::kCudaDevice || length == 0) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "dma-buf export: ", address, " (+", length,
                      " bytes) is ", toString(info.type), " memory, not CUDA device memory");
  }
  PrimaryContextScope scope(info.device);
  if (!scope.ok()) {
    return WEFT_ERROR(StatusCode::kUnavailable, "dma-buf export: cannot make CUDA device ",
                      info.device, " current: ", cuResultText(scope.result()));
  }
  return exportRange(reinterpret_cast<uintptr_t>(address), length, info.device);
}

std::string loadedPeerMemModule() {
  struct stat st {};
  for (const char* m : {"nvidia_peermem", "nv_peer_mem"}) {
    if (stat(strCat("/sys/module/", m).c_str(), &st) == 0) return m;
  }
  return "";
}

namespace {

// Device 0: the dma-buf attribute, then a real export of a fresh 2 MiB allocation.
void probeDmabuf(GpuDirectProbe& p) {
  const CudaDriver& d = driver();
  CUdevice dev = 0;
  int attr = 0;
  if (d.cuDeviceGet(&dev, 0) == CUDA_SUCCESS &&
      d.cuDeviceGetAttribute(&attr, CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED, dev) == CUDA_SUCCESS) {
    p.dmabuf_attribute = attr != 0;
  }
  PrimaryContextScope scope(0);
  if (!scope.ok()) {
    p.dmabuf_text =
        strCat("dmabuf export: not tested (device 0 context: ", cuResultText(scope.result()), ")");
    return;
  }
  constexpr size_t kBytes = 2u << 20;
  CUdeviceptr mem = 0;
  const CUresult r = d.cuMemAlloc(&mem, kBytes);
  if (r != CUDA_SUCCESS) {
    p.dmabuf_text = strCat("dmabuf export: not tested (cuMemAlloc 2 MiB: ", cuResultText(r), ")");
    return;
  }
  Result<DmabufExport> e =
      d.cuMemGetHandleForAddressRange != nullptr
          ? exportRange(static_cast<uintptr_t>(mem), kBytes, 0)
          : Result<DmabufExport>(WEFT_ERROR(StatusCode::kNotSupported,
                                            "the driver lacks cuMemGetHandleForAddressRange"));
  p.dmabuf_export = e.isOk();
  const std::string attrText = strCat("device attribute DMA_BUF_SUPPORTED=", attr);
  p.dmabuf_text =
      e.isOk()
          ? strCat("dmabuf export: supported (", attrText, ", got fd ", e.value().fd(), ")")
          : strCat("dmabuf export: not supported (", attrText, "; ", e.status().message(), ")");
  if (e.isOk()) e.value().reset();
  d.cuMemFree(mem);
}

GpuDirectProbe runProbe(bool realExport) {
  GpuDirectProbe p;
  const CudaDriver& d = driver();
  const std::string module = loadedPeerMemModule();
  p.peermem = !module.empty();
  p.peermem_text = p.peermem ? strCat("peer memory: ", module, " loaded")
                             : "peer memory: not loaded (no /sys/module/nvidia_peermem or "
                               "/sys/module/nv_peer_mem)";
  if (!d.available()) {
    p.driver_text = strCat("CUDA: not available (", d.status.message(), ")");
    p.dmabuf_text = "dmabuf export: not supported (no CUDA driver)";
    return p;
  }
  p.driver = true;
  p.devices = d.device_count;
  char name[128] = "?";
  CUdevice dev = 0;
  if (d.device_count > 0 && d.cuDeviceGet(&dev, 0) == CUDA_SUCCESS) {
    d.cuDeviceGetName(name, sizeof name, dev);
  }
  p.driver_text = strCat("CUDA: driver ", d.version, ", ", d.device_count, " device(s)",
                         d.device_count > 0 ? strCat(", device 0: ", name) : std::string());
  if (d.device_count == 0) {
    p.dmabuf_text = "dmabuf export: not supported (no CUDA device)";
    return p;
  }
  if (realExport) {
    probeDmabuf(p);
    return p;
  }
  int attr = 0;
  if (d.cuDeviceGetAttribute(&attr, CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED, dev) == CUDA_SUCCESS) {
    p.dmabuf_attribute = attr != 0;
  }
  p.dmabuf_text =
      strCat("dmabuf export: not tried (device 0 attribute DMA_BUF_SUPPORTED=", attr, ")");
  return p;
}

}  // namespace

std::string GpuDirectProbe::text() const {
  return strCat(driver_text, "; ", dmabuf_text, "; ", peermem_text);
}

const GpuDirectProbe& probeGpuDirect(bool real_export) {
  if (real_export) {
    static const GpuDirectProbe full = runProbe(true);
    return full;
  }
  static const GpuDirectProbe light = runProbe(false);
  return light;
}

}  // namespace weft::gpu
