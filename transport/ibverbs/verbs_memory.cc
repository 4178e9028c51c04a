// VerbsMemoryRegion: ibv_reg_mr of caller memory, its rkey inside the RemoteKey.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>

#include "common/logging.h"
#include "transport/ibverbs/verbs_internal.h"

namespace weft::transport::verbs {
namespace {

std::string rangeText(const void* address, size_t length) {
  return strCat("[", address, "+", length, ")");
}

// mincore fails with ENOMEM on a hole: a clearer error than ibv_reg_mr's EFAULT.
Status checkMapped(const void* address, size_t length) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  uintptr_t begin = reinterpret_cast<uintptr_t>(address) & ~(page - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(address) + length;
  if (end < reinterpret_cast<uintptr_t>(address)) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "registerMemory: ", rangeText(address, length),
                      " wraps around the address space");
  }
  constexpr size_t kPagesPerCall = 4096;
  unsigned char vec[kPagesPerCall];
  while (begin < end) {
    const size_t pages = std::min<size_t>(kPagesPerCall, (end - begin + page - 1) / page);
    if (::mincore(reinterpret_cast<void*>(begin), pages * page, vec) != 0 && errno == ENOMEM) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, "registerMemory: ",
                        rangeText(address, length),
                        " is not mapped memory of this process (no mapping at ",
                        reinterpret_cast<void*>(begin), " or after it)")
          .withHint("register memory the process allocated and still owns");
    }
    begin += pages * page;
  }
  return Status::ok();
}

Status cudaUnsupported(const VerbsState& st, const void* address, size_t length) {
  static std::once_flag once;
  std::call_once(once, [&] {
    WEFT_LOG(kWarn, "verbs") << st.name() << ": GPUDirect RDMA is not available: "
                             << st.gpuDirect().text;
  });
  return WEFT_ERROR(StatusCode::kNotSupported, "registerMemory on ", st.name(), ": ",
                    rangeText(address, length), " is CUDA memory, and GPUDirect RDMA is not "
                    "available (", st.gpuDirect().text, ")")
      .withHint("stage through host memory, or build with CUDA on a host with nvidia_peermem "
                "or a dma-buf capable NIC");
}

}  // namespace

Result<std::unique_ptr<MemoryRegion>> VerbsMemoryRegion::create(StatePtr state, void* address,
                                                                size_t length, MemoryType type) {
  if (address == nullptr && length != 0) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "registerMemory on ", state->name(),
                      ": null address with length ", length);
  }
  if (type == MemoryType::kCuda) return cudaUnsupported(*state, address, length);
  if (length > 0) WEFT_RETURN_IF_ERROR(checkMapped(address, length));
  std::unique_ptr<VerbsMemoryRegion> mr(new VerbsMemoryRegion(state, address, length, type));
  mr->registered_ = true;
  if (length > 0) {
    detail::EngineLock lock(state->engine());
    const int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |
                       (state->caps().atomics64 ? IBV_ACCESS_REMOTE_ATOMIC : 0);
    mr->mr_ = track(ibv_reg_mr(state->pd(), address, length, access), ObjectKind::kMr);
    if (!mr->mr_) {
      mr->registered_ = false;
      return registrationError(errno, strCat("registerMemory on ", state->name()), address, length);
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
