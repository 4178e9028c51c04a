#include "gpu/device_buffer.h"

#include <utility>

#include "common/logging.h"

namespace weft::gpu {
namespace {

int currentDevice() {
  int dev = -1;
  if (cudaGetDevice(&dev) != cudaSuccess) return -1;
  return dev;
}

Status copyError(const char* op, cudaError_t e, const void* dst, const void* src, size_t bytes) {
  return WEFT_ERROR(StatusCode::kIoError, op, " of ", bytes, " bytes from ", src, " to ", dst,
                    " (current CUDA device ", currentDevice(), ") failed: ", cudaErrorText(e));
}

Status copy(const char* op, void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (bytes == 0) return Status::ok();
  WEFT_RETURN_IF_ERROR(cudaAvailable());
  if (dst == nullptr || src == nullptr) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, op, " of ", bytes, " bytes: null pointer (dst ",
                      dst, ", src ", src, ")");
  }
  const cudaError_t e = cudaMemcpy(dst, src, bytes, kind);
  if (e != cudaSuccess) return copyError(op, e, dst, src, bytes);
  return Status::ok();
}

Status probeRuntime() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the (non-sticky) error
    return WEFT_ERROR(StatusCode::kUnavailable,
                      "CUDA runtime not usable: cudaGetDeviceCount: ", cudaErrorText(e))
        .withHint(e == cudaErrorInsufficientDriver
                      ? "no NVIDIA driver, or one older than the CUDA runtime this was built with"
                      : "check nvidia-smi and CUDA_VISIBLE_DEVICES");
  }
  if (count == 0) return WEFT_ERROR(StatusCode::kUnavailable, "no CUDA device visible");
  return Status::ok();
}

}  // namespace

std::string cudaErrorText(cudaError_t e) {
  return strCat(cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
}

Status cudaAvailable() {
  static const Status status = probeRuntime();
  return status;
}

int cudaDeviceCount() {
  int count = 0;
  if (!cudaAvailable().isOk() || cudaGetDeviceCount(&count) != cudaSuccess) return 0;
  return count;
}

DeviceScope::DeviceScope(int device) : previous_(currentDevice()) {
  if (device >= 0 && device != previous_) error_ = cudaSetDevice(device);
}

DeviceScope::~DeviceScope() {
  if (previous_ >= 0 && previous_ != currentDevice()) cudaSetDevice(previous_);
}

Result<DeviceBuffer> DeviceBuffer::allocate(size_t bytes, int device) {
  WEFT_RETURN_IF_ERROR(cudaAvailable());
  if (bytes == 0) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "DeviceBuffer::allocate: size is 0");
  }
  DeviceScope scope(device);
  if (scope.error() != cudaSuccess) {
    return WEFT_ERROR(StatusCode::kInvalidArgument,
                      "DeviceBuffer::allocate: cannot select CUDA "
                      "device ",
                      device, " (of ", cudaDeviceCount(), "): ", cudaErrorText(scope.error()));
  }
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();  // out of memory is not sticky: leave no error for the next caller
    return WEFT_ERROR(StatusCode::kNoResource, "cudaMalloc of ", bytes, " bytes on CUDA device ",
                      currentDevice(), " failed: ", cudaErrorText(e));
  }
  return DeviceBuffer(p, bytes, currentDevice());
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      device_(std::exchange(o.device_, -1)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    device_ = std::exchange(o.device_, -1);
  }
  return *this;
}

void DeviceBuffer::release() {
  if (data_ == nullptr) return;
  DeviceScope scope(device_);
  const cudaError_t e = cudaFree(data_);
  if (e != cudaSuccess) {
    WEFT_LOG(kWarn, "gpu") << "cudaFree(" << data_ << ", " << size_ << " bytes) on CUDA device "
                           << device_ << " failed: " << cudaErrorText(e);
  }
  data_ = nullptr;
  size_ = 0;
  device_ = -1;
}

Status DeviceBuffer::checkRange(const char* op, size_t bytes, size_t offset) const {
  if (offset > size_ || bytes > size_ - offset) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, op, ": [", offset, ", +", bytes,
                      ") is outside the ", size_, "-byte buffer on CUDA device ", device_);
  }
  return Status::ok();
}

Status DeviceBuffer::copyFromHost(const void* src, size_t bytes, size_t offset) {
  WEFT_RETURN_IF_ERROR(checkRange("DeviceBuffer::copyFromHost", bytes, offset));
  return copyHostToDevice(static_cast<char*>(data_) + offset, src, bytes);
}

Status DeviceBuffer::copyToHost(void* dst, size_t bytes, size_t offset) const {
  WEFT_RETURN_IF_ERROR(checkRange("DeviceBuffer::copyToHost", bytes, offset));
  return copyDeviceToHost(dst, static_cast<const char*>(data_) + offset, bytes);
}

Status DeviceBuffer::fill(int byte) {
  if (data_ == nullptr) return Status::ok();
  DeviceScope scope(device_);
  const cudaError_t e = cudaMemset(data_, byte, size_);
  if (e != cudaSuccess) {
    return WEFT_ERROR(StatusCode::kIoError, "cudaMemset of ", size_, " bytes on CUDA device ",
                      device_, " failed: ", cudaErrorText(e));
  }
  return Status::ok();
}

Status copyHostToDevice(void* dst, const void* src, size_t bytes) {
  return copy("cudaMemcpy host->device", dst, src, bytes, cudaMemcpyHostToDevice);
}

Status copyDeviceToHost(void* dst, const void* src, size_t bytes) {
  return copy("cudaMemcpy device->host", dst, src, bytes, cudaMemcpyDeviceToHost);
}

Status copyDeviceToDevice(void* dst, const void* src, size_t bytes) {
  return copy("cudaMemcpy device->device", dst, src, bytes, cudaMemcpyDeviceToDevice);
}

}  // namespace weft::gpu
