// Device buffers on the verbs data path: the DeviceMemory of the process, the StagingPool
// and the endpoint's choice between GPUDirect and staging (see verbs_device_memory.h).
#include <atomic>
#include <bit>
#include <cstdlib>
#include <cstring>

#include "common/logging.h"
#include "transport/ibverbs/verbs_device_memory.h"
#include "transport/ibverbs/verbs_internal.h"
#ifdef WEFT_HAVE_CUDA
#include "gpu/cuda_driver.h"
#include "gpu/memory_type.h"
#endif

namespace weft::transport::verbs {
namespace {

std::atomic<DeviceMemory*> g_test_memory{nullptr};

#ifdef WEFT_HAVE_CUDA
// CUDA device memory through the driver API (gpu/): pointer attributes, synchronous
// copies in the owning device's primary context, GPUDirect registration.
class CudaDeviceMemory final : public DeviceMemory {
 public:
  std::string_view name() const override { return "CUDA"; }
  bool contains(const void* p) const override {
    return gpu::memoryTypeOf(p) == gpu::MemoryType::kCudaDevice;
  }
  Status toHost(void* dst, const void* src, size_t n) override {
    return gpu::copyToHost(dst, src, n);
  }
  Status toDevice(void* dst, const void* src, size_t n) override {
    return gpu::copyToDevice(dst, src, n);
  }
  Status flushNicWrites(void* p) override { return gpu::flushRdmaWrites(p); }
  Result<ibv_mr*> registerForNic(const VerbsState& st, std::string_view what, void* p, size_t n,
                                 int access) override {
    return registerCudaForNic(st, what, p, n, access);
  }
};
#endif

}  // namespace

DeviceMemory* deviceMemory() {
  if (DeviceMemory* d = g_test_memory.load(std::memory_order_acquire)) return d;
#ifdef WEFT_HAVE_CUDA
  static DeviceMemory* const cuda = []() -> DeviceMemory* {
    const gpu::CudaDriver& d = gpu::driver();
    if (!d.available() || d.device_count == 0 || !gpu::hostCopySupported()) return nullptr;
    return new CudaDeviceMemory();  // process lifetime
  }();
  return cuda;
#else
  return nullptr;
#endif
}

void setDeviceMemoryForTesting(DeviceMemory* d) {
  g_test_memory.store(d, std::memory_order_release);
}

// ---- StagingPool --------------------------------------------------------------------------

namespace {
size_t classOf(size_t n) {
  const size_t c = std::bit_ceil(std::max(n, StagingPool::kMinClass));
  return static_cast<size_t>(std::countr_zero(c / StagingPool::kMinClass));
}
}  // namespace

StagingPool::~StagingPool() {
  for (auto& list : free_) {
    for (char* p : list) std::free(p);
  }
}

char* StagingPool::take(size_t n, size_t* capacity) {
  const size_t cls = classOf(n);
  const size_t cap = kMinClass << cls;
  if (cls < free_.size() && !free_[cls].empty()) {
    char* p = free_[cls].back();
    free_[cls].pop_back();
    idle_bytes_ -= cap;
    *capacity = cap;
    return p;
  }
  auto* p = static_cast<char*>(std::aligned_alloc(4096, cap));
  if (p == nullptr) return nullptr;
  *capacity = cap;
  return p;
}

void StagingPool::give(char* p, size_t capacity) {
  if (idle_bytes_ + capacity > kMaxIdleBytes) {
    std::free(p);
    return;
  }
  const size_t cls = classOf(capacity);
  if (free_.size() <= cls) free_.resize(cls + 1);
  free_[cls].push_back(p);
  idle_bytes_ += capacity;
}

// ---- the endpoint's choice ----------------------------------------------------------------

Result<DeviceUse> VerbsEndpoint::deviceUse(OpKind kind, const void* buffer, size_t length,
                                           bool zero_copy, bool copy_in) {
  VerbsState& st = *state_;
  const GpuDirectMode mode = st.gpuDirectMode();
  if (mode == GpuDirectMode::kOff) {
    return WEFT_ERROR(StatusCode::kNotSupported, opKindName(kind), " on ", name_, ": [", buffer,
                      "+", length, ") is ", dev_->name(), " device memory and WEFT_GPUDIRECT=off")
        .withHint(
            "unset WEFT_GPUDIRECT (auto) to move device buffers by GPUDirect RDMA or "
            "through host memory");
  }
  DeviceUse use;
  if (zero_copy && !st.gpuDirectFailed()) {
    auto reg = st.cache().acquireUncached(buffer, length, MemoryType::kCuda,
                                          copy_in ? LocalAccess::kRead : LocalAccess::kWrite);
    if (reg.isOk()) {
      use.reg = *reg;
      return use;
    }
    Status why = reg.status().withContext(strCat(opKindName(kind), " on ", name_));
    if (mode == GpuDirectMode::kOn) {
      return why.withHint(
          "WEFT_GPUDIRECT=on requires GPUDirect RDMA; auto (the default) "
          "stages device buffers through host memory when it is missing");
    }
    if (why.code() == StatusCode::kNotSupported) {
      st.noteGpuDirectFailure(why);  // for good: stage from now on
    } else {
      WEFT_LOG(kDebug, "verbs") << why << "; staging this operation";
    }
  }
  use.staged = st.staging().take(length, &use.staged_cap);
  if (use.staged == nullptr) {
    return WEFT_ERROR(StatusCode::kNoResource, opKindName(kind), " on ", name_,
                      ": no host memory for a staging buffer of ", length, " bytes");
  }
  if (copy_in) {
    Status c = dev_->toHost(use.staged, buffer, length);
    if (!c.isOk()) {
      st.staging().give(use.staged, use.staged_cap);
      return c.withContext(strCat(opKindName(kind), " on ", name_, ": staging ", length,
                                  " bytes of ", dev_->name(), " memory"));
    }
  }
  return use;
}

void VerbsEndpoint::dropDeviceUse(DeviceUse& use) {
  if (use.reg != nullptr) state_->cache().release(use.reg);
  if (use.staged != nullptr) state_->staging().give(use.staged, use.staged_cap);
  use = DeviceUse();
}

void VerbsEndpoint::attachDeviceUse(VerbsOp* op, const DeviceUse& use, bool copy_out) {
  if (use.reg != nullptr) {
    op->reg = use.reg;  // op->local stays the device buffer (GPUDirect)
    op->device_local = true;
    return;
  }
  if (copy_out) op->device_dst = op->local;
  op->local = use.staged;
  op->staged = use.staged;
  op->staged_cap = use.staged_cap;
}

Status VerbsEndpoint::finishDevice(VerbsOp* op, Status status) {
  const bool nic_wrote = op->type == OpType::kRecv || op->type == OpType::kGet;
  if (status.isOk() && nic_wrote && op->slot != nullptr && op->slot->bytes > 0) {
    Status f = dev_->flushNicWrites(op->local);
    if (!f.isOk()) status = f.withContext(strCat(opKindName(op->slot->op), " on ", name_));
  }
  return status;
}

Status VerbsEndpoint::finishStaged(VerbsOp* op, Status status) {
  if (status.isOk() && op->device_dst != nullptr && op->slot != nullptr && op->slot->bytes > 0) {
    Status c = dev_->toDevice(op->device_dst, op->staged, op->slot->bytes);
    if (!c.isOk()) {
      status =
          c.withContext(strCat(opKindName(op->slot->op), " on ", name_, ": copying ",
                               op->slot->bytes, " received bytes to ", dev_->name(), " memory"));
    }
  }
  state_->staging().give(op->staged, op->staged_cap);
  op->staged = nullptr;
  op->device_dst = nullptr;
  return status;
}

// ---- VerbsState ---------------------------------------------------------------------------

void VerbsState::noteGpuDirectFailure(const Status& why) {
  if (gpudirect_failed_) return;
  gpudirect_failed_ = true;
  WEFT_LOG(kWarn, "verbs") << name() << ": GPUDirect RDMA does not work here (" << why.message()
                           << "); WEFT_GPUDIRECT=auto: device buffers of send / recv / put / get "
                              "are staged through host memory from now on (slower: one extra "
                              "copy each way)";
}

}  // namespace weft::transport::verbs
