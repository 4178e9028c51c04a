#include "gpu/ipc.h"

#include <charconv>
#include <cstring>
#include <utility>

#include "common/logging.h"
#include "gpu/device_buffer.h"
#include "gpu/memory_type.h"

namespace weft::gpu {
namespace {

constexpr char kHex[] = "0123456789abcdef";

bool parseSize(std::string_view s, size_t& out) {
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

// Splits "a:b:c:d" into exactly four fields.
bool splitFields(std::string_view text, std::string_view (&f)[4]) {
  for (int i = 0; i < 3; ++i) {
    const size_t colon = text.find(':');
    if (colon == std::string_view::npos) return false;
    f[i] = text.substr(0, colon);
    text.remove_prefix(colon + 1);
  }
  f[3] = text;
  return true;
}

bool parseHex(std::string_view hex, cudaIpcMemHandle_t& out) {
  if (hex.size() != 2 * sizeof out.reserved) return false;
  for (size_t i = 0; i < sizeof out.reserved; ++i) {
    const char* hi = std::strchr(kHex, hex[2 * i]);
    const char* lo = std::strchr(kHex, hex[2 * i + 1]);
    if (hi == nullptr || lo == nullptr || *hi == 0 || *lo == 0) return false;
    out.reserved[i] = static_cast<char>(((hi - kHex) << 4) | (lo - kHex));
  }
  return true;
}

}  // namespace

std::string IpcHandle::serialize() const {
  std::string hex;
  for (char c : handle.reserved) {
    const auto b = static_cast<unsigned char>(c);
    hex += kHex[b >> 4];
    hex += kHex[b & 15];
  }
  return strCat(device, ":", offset, ":", size, ":", hex);
}

Result<IpcHandle> IpcHandle::parse(std::string_view text) {
  std::string_view f[4];
  IpcHandle h;
  size_t device = 0;
  if (!splitFields(text, f) || !parseSize(f[0], device) || !parseSize(f[1], h.offset) ||
      !parseSize(f[2], h.size) || !parseHex(f[3], h.handle)) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "CUDA IPC handle '", text,
                      "' is malformed (expected device:offset:size:<128 hex digits>)");
  }
  h.device = static_cast<int>(device);
  return h;
}

Result<IpcHandle> exportIpc(const void* ptr, size_t size) {
  WEFT_RETURN_IF_ERROR(cudaAvailable());
  const PointerInfo info = pointerInfo(ptr);
  if (info.type != MemoryType::kCudaDevice) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "CUDA IPC export: ", ptr, " is ",
                      toString(info.type), " memory, not CUDA device memory");
  }
  const auto address = reinterpret_cast<uintptr_t>(ptr);
  if (info.range_start == 0 || address < info.range_start ||
      size > info.range_size - (address - info.range_start)) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "CUDA IPC export: [", ptr, ", +", size,
                      ") is not inside one CUDA allocation (device ", info.device, ")");
  }
  DeviceScope scope(info.device);
  IpcHandle h;
  h.device = info.device;
  h.size = size;
  h.offset = address - info.range_start;  // the handle names the whole allocation
  auto* base = reinterpret_cast<void*>(info.range_start);
  const cudaError_t e = cudaIpcGetMemHandle(&h.handle, base);
  if (e != cudaSuccess) {
    return WEFT_ERROR(StatusCode::kNotSupported, "CUDA IPC export of ", ptr, " (", size,
                      " bytes, allocation ", base, ") on device ", info.device, ": ",
                      cudaErrorText(e));
  }
  return h;
}

IpcMapping::IpcMapping(IpcMapping&& o) noexcept
    : base_(std::exchange(o.base_, nullptr)),
      offset_(std::exchange(o.offset_, 0)),
      size_(std::exchange(o.size_, 0)) {}

IpcMapping& IpcMapping::operator=(IpcMapping&& o) noexcept {
  if (this != &o) {
    close();
    base_ = std::exchange(o.base_, nullptr);
    offset_ = std::exchange(o.offset_, 0);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

Result<IpcMapping> IpcMapping::open(const IpcHandle& h) {
  WEFT_RETURN_IF_ERROR(cudaAvailable());
  IpcMapping m;
  const cudaError_t e = cudaIpcOpenMemHandle(&m.base_, h.handle, cudaIpcMemLazyEnablePeerAccess);
  if (e != cudaSuccess) {
    m.base_ = nullptr;
    int current = -1;
    cudaGetDevice(&current);
    return WEFT_ERROR(StatusCode::kUnavailable, "CUDA IPC open of a handle from device ", h.device,
                      " (", h.size, " bytes at offset ", h.offset, ") on device ", current, ": ",
                      cudaErrorText(e))
        .withHint(
            "the exporting process must be alive and on this node; a process cannot "
            "open its own handle");
  }
  m.offset_ = h.offset;
  m.size_ = h.size;
  return m;
}

void IpcMapping::close() {
  if (base_ == nullptr) return;
  const cudaError_t e = cudaIpcCloseMemHandle(base_);
  if (e != cudaSuccess) {
    WEFT_LOG(kWarn, "gpu") << "cudaIpcCloseMemHandle(" << base_ << ") failed: " << cudaErrorText(e);
  }
  base_ = nullptr;
}

}  // namespace weft::gpu
