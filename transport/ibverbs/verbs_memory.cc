// VerbsMemoryRegion: ibv_reg_mr of caller memory, its rkey inside the RemoteKey.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>

#include "common/config.h"
#include "common/logging.h"
#include "transport/core/memory_map.h"
#include "transport/ibverbs/verbs_internal.h"
#ifdef WEFT_HAVE_CUDA
#include "gpu/gpudirect.h"
#include "gpu/memory_type.h"
#endif

namespace weft::transport::verbs {
namespace {

std::string rangeText(const void* address, size_t length) {
  return strCat("[", address, "+", length, ")");
}

// Logs the first GPUDirect failure of the process loudly; later ones only return a Status.
void warnOnce(const std::string& text) {
  static std::once_flag once;
  std::call_once(once, [&] { WEFT_LOG(kWarn, "verbs") << text; });
}

#ifdef WEFT_HAVE_CUDA
std::string gpuDirectHint() {
  return "load nvidia_peermem, or use a dma-buf capable NIC with the NVIDIA open kernel module "
         "(`weft-info --gpu` shows both); without GPUDirect, WEFT_GPUDIRECT=auto stages device "
         "buffers of send / recv / put / get through host memory, but a registered region (a "
         "one-sided target) must be host memory";
}

// ibv_reg_dmabuf_mr on a dma-buf of the allocation; the fd may close once the MR exists.
ibv_mr* registerDmabuf(ibv_pd* pd, void* address, size_t length, int access, std::string& why) {
  Result<gpu::DmabufExport> e = gpu::exportDmabuf(address, length);
  if (!e.isOk()) {
    why = e.status().message();
    return nullptr;
  }
  ibv_mr* mr = ibv_reg_dmabuf_mr(pd, e.value().offset(), length,
                                 reinterpret_cast<uintptr_t>(address), e.value().fd(), access);
  if (mr == nullptr) why = strCat("ibv_reg_dmabuf_mr: ", errnoString(errno));
  return mr;
}

#endif

}  // namespace

#ifdef WEFT_HAVE_CUDA
// GPUDirect registration: dma-buf first, then ibv_reg_mr on the device pointer (peer memory).
Result<ibv_mr*> registerCudaForNic(const VerbsState& st, std::string_view what, void* address,
                                   size_t length, int access) {
  const gpu::PointerInfo info = gpu::pointerInfo(address);
  if (info.type != gpu::MemoryType::kCudaDevice) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what, ": ", rangeText(address, length), " is ",
                      gpu::toString(info.type), " memory, not CUDA device memory")
        .withHint("register host and managed memory as MemoryType::kHost");
  }
  std::string dmabufWhy;
  if (ibv_mr* mr = registerDmabuf(st.pd(), address, length, access, dmabufWhy)) return mr;
  ibv_mr* mr = ibv_reg_mr(st.pd(), address, length, access);
  if (mr != nullptr) return mr;
  const std::string peerWhy =
      strCat("ibv_reg_mr: ", errnoString(errno),
             st.gpuDirect().peer_memory ? "" : " (nvidia_peermem is not loaded)");
  Status err = WEFT_ERROR(StatusCode::kNotSupported, what, ": GPUDirect RDMA registration of ",
                          rangeText(address, length), " on CUDA device ", info.device,
                          " failed: dma-buf: ", dmabufWhy, "; peer memory: ", peerWhy)
                   .withHint(gpuDirectHint());
  warnOnce(err.message());
  return err;
}
#endif

namespace {

// No GPUDirect at all here (CUDA not built in, no driver or no device): one clear error.
Status gpuDirectUnavailable(const VerbsState& st, const void* address, size_t length,
                            std::string_view hint) {
  Status err = WEFT_ERROR(StatusCode::kNotSupported, "registerMemory(kCuda) on ", st.name(), ": ",
                          rangeText(address, length), " is CUDA memory, and GPUDirect RDMA is "
                          "not available (", st.gpuDirect().text, ")")
                   .withHint(hint);
  warnOnce(err.message());
  return err;
}

// MemoryType::kCuda: GPUDirect RDMA when built with CUDA and WEFT_GPUDIRECT allows it.
Result<ibv_mr*> registerCudaMemory(const VerbsState& st, void* address, size_t length,
                                   int access) {
  if (st.gpuDirectMode() == GpuDirectMode::kOff) {
    return WEFT_ERROR(StatusCode::kNotSupported, "registerMemory(kCuda) on ", st.name(), ": ",
                      rangeText(address, length), " is CUDA memory and WEFT_GPUDIRECT=off")
        .withHint("unset WEFT_GPUDIRECT (auto) to try GPUDirect RDMA");
  }
  if (DeviceMemory* dev = st.deviceMemory(); dev != nullptr && dev->contains(address)) {
    return dev->registerForNic(st, strCat("registerMemory(kCuda) on ", st.name()), address, length,
                               access);
  }
#ifdef WEFT_HAVE_CUDA
  if (gpu::probeGpuDirect(false).devices == 0) {
    return gpuDirectUnavailable(st, address, length,
                                "this host has no usable CUDA device (`weft-info --gpu`)");
  }
  return registerCudaForNic(st, strCat("registerMemory(kCuda) on ", st.name()), address, length,
                            access);
#else
  (void)access;
  return gpuDirectUnavailable(st, address, length,
                              "build with CUDA (-DWEFT_WITH_CUDA=ON) on a host with "
                              "nvidia_peermem or a dma-buf capable NIC");
#endif
}

}  // namespace

Result<std::unique_ptr<MemoryRegion>> VerbsMemoryRegion::create(StatePtr state, void* address,
                                                                size_t length, MemoryType type) {
  if (address == nullptr && length != 0) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "registerMemory on ", state->name(),
                      ": null address with length ", length);
  }
  if (length > 0 && type != MemoryType::kCuda) {
    WEFT_RETURN_IF_ERROR(detail::checkMapped(address, length));
  }
  std::unique_ptr<VerbsMemoryRegion> mr(new VerbsMemoryRegion(state, address, length, type));
  mr->registered_ = true;
  if (length > 0) {
    detail::EngineLock lock(state->engine());
    const int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |
                       (state->caps().atomics64 ? IBV_ACCESS_REMOTE_ATOMIC : 0);
    if (type == MemoryType::kCuda) {
      Result<ibv_mr*> cuda = registerCudaMemory(*state, address, length, access);
      if (!cuda.isOk()) {
        mr->registered_ = false;
        return cuda.status();
      }
      mr->mr_ = track(cuda.value(), ObjectKind::kMr);
    } else {
      // Read-only memory (a const table, a PROT_READ mapping of a file) registers for remote
      // reads only: peers may get from it; their puts and atomics fail with an access error.
      bool writable = true;
      mr->mr_ = track(registerWithReadOnlyFallback(state->pd(), address, length, access, true,
                                                   &writable),
                      ObjectKind::kMr);
      if (mr->mr_ && !writable) {
        WEFT_LOG(kDebug, "verbs") << "registerMemory on " << state->name() << ": "
                                  << rangeText(address, length)
                                  << " is read-only: registered for remote reads only";
      }
    }
    if (!mr->mr_) {
      mr->registered_ = false;
      // Write access was tried, then (EFAULT) read-only access: neither worked.
      return registrationError(errno, strCat("registerMemory on ", state->name()), address,
                               length, false);
    }
    const uint32_t rkey = mr->mr_->rkey;
    for (int i = 0; i < 4; ++i) mr->key_.packed.push_back(static_cast<char>((rkey >> (8 * i)) & 0xff));
  }
  RemoteKey& k = mr->key_;
  k.backend = "verbs";
  k.owner_rank = state->rank();
  k.region_id = state->nextRegionId();
  k.address = reinterpret_cast<uintptr_t>(address);
  k.length = length;
  k.memory_type = type;
  k.seal();
  return std::unique_ptr<MemoryRegion>(std::move(mr));
}

VerbsMemoryRegion::~VerbsMemoryRegion() {
  if (!registered_) return;
  Status st = deregister();
  if (!st.isOk()) {
    WEFT_LOG(kWarn, "verbs") << "destroying a memory region: " << st;
  }
}

Status VerbsMemoryRegion::deregister() {
  detail::EngineLock lock(state_->engine());
  if (!registered_) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "deregister on ", state_->name(), ": region ",
                      key_.region_id, " ", rangeText(address_, length_),
                      " was already deregistered")
        .withHint("a region is deregistered once, by deregister() or by its destructor");
  }
  registered_ = false;
  mr_.reset();
  return Status::ok();
}

}  // namespace weft::transport::verbs
