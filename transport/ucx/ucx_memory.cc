// UcxMemoryRegion: ucp_mem_map registration and the packed rkey inside the RemoteKey.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ios>
#include <optional>
#include <sstream>

#include "common/logging.h"
#include "transport/core/memory_map.h"
#include "transport/core/owned_region.h"
#include "transport/ucx/ucx_internal.h"

namespace weft::transport::ucx {
namespace {

std::string rangeText(const void* address, size_t length) {
  std::ostringstream os;
  os << "[" << address << "+" << length << ")";
  return os.str();
}

}  // namespace

Result<std::unique_ptr<MemoryRegion>> UcxMemoryRegion::create(StatePtr state, void* address,
                                                              size_t length, MemoryType type) {
  if (address == nullptr && length != 0) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "registerMemory on ", state->name(),
                      ": null address with length ", length);
  }
  if (type == MemoryType::kCuda && !state->caps().cuda_memory) {
    return WEFT_ERROR(StatusCode::kNotSupported, "registerMemory on ", state->name(), ": ",
                      rangeText(address, length), " is CUDA memory, but this UCX build (",
                      state->caps().transports, ") has no CUDA memory support")
        .withHint(
            "use a UCX built with CUDA (ucx_info -d lists cuda_copy), or stage "
            "through host memory");
  }
  if (type == MemoryType::kHost && length > 0) {
    Status st = detail::checkMapped(address, length);
    if (!st.isOk()) return st;
  }
  std::unique_ptr<UcxMemoryRegion> mr(new UcxMemoryRegion(state, address, length, type));
  mr->registered_ = false;  // until mapped: a failure below needs no deregistration
  if (length > 0) {
    detail::EngineLock lock(state->engine());
    ucp_mem_map_params_t mp{};
    mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                    UCP_MEM_MAP_PARAM_FIELD_MEMORY_TYPE;
    mp.address = address;
    mp.length = length;
    mp.memory_type = type == MemoryType::kCuda ? UCS_MEMORY_TYPE_CUDA : UCS_MEMORY_TYPE_HOST;
    ucs_status_t st = ucp_mem_map(state->ucpContext(), &mp, &mr->memh_);
    if (st != UCS_OK) {
      Status err = ucxError(st, strCat("registerMemory on ", state->name(), ": ucp_mem_map of ",
                                       rangeText(address, length)));
      if (st == UCS_ERR_NO_MEMORY) {
        err = err.withHint("locked memory limit too low? raise `ulimit -l`");
      }
      return err;
    }
    Status packed = mr->packKey(strCat("registerMemory on ", state->name(), ": ucp_rkey_pack of ",
                                       rangeText(address, length)));
    if (!packed.isOk()) {
      ucp_mem_unmap(state->ucpContext(), mr->memh_);
      return packed;
    }
  }
  mr->finishKey();
  return std::unique_ptr<MemoryRegion>(std::move(mr));
}

Result<std::unique_ptr<MemoryRegion>> UcxMemoryRegion::allocate(StatePtr state, size_t length) {
  const std::string who = strCat("allocateMemory on ", state->name());
  WEFT_RETURN_IF_ERROR(detail::checkAllocationLength(length, who));
  std::unique_ptr<UcxMemoryRegion> mr(
      new UcxMemoryRegion(state, nullptr, length, MemoryType::kHost));
  mr->registered_ = false;
  std::optional<detail::EngineLock> lock;
  lock.emplace(state->engine());
  ucp_mem_map_params_t mp{};
  mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                  UCP_MEM_MAP_PARAM_FIELD_FLAGS | UCP_MEM_MAP_PARAM_FIELD_MEMORY_TYPE;
  mp.address = nullptr;
  mp.length = length;
  mp.flags = UCP_MEM_MAP_ALLOCATE;
  mp.memory_type = UCS_MEMORY_TYPE_HOST;
  ucs_status_t st = ucp_mem_map(state->ucpContext(), &mp, &mr->memh_);
  if (st != UCS_OK) {
    return ucxError(st, strCat(who, ": ucp_mem_map(ALLOCATE) of ", length, " bytes"))
        .withHint(
            "out of memory, or /dev/shm and the System V shared-memory limits are full "
            "(df /dev/shm, ipcs -m)");
  }
  ucp_mem_attr_t attr{};
  attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
  st = ucp_mem_query(mr->memh_, &attr);
  if (st != UCS_OK) {
    ucp_mem_unmap(state->ucpContext(), mr->memh_);
    return ucxError(st, strCat(who, ": ucp_mem_query of the allocated ", length, " bytes"));
  }
  if (attr.address == nullptr || attr.length < length) {
    ucp_mem_unmap(state->ucpContext(), mr->memh_);
    return WEFT_ERROR(StatusCode::kInternal, who, ": UCX allocated ", attr.length, " bytes at ",
                      attr.address, " for ", length, " requested");
  }
  mr->address_ = attr.address;
  Status packed = mr->packKey(strCat(who, ": ucp_rkey_pack of ", length, " bytes"));
  if (!packed.isOk()) {
    ucp_mem_unmap(state->ucpContext(), mr->memh_);
    return packed;
  }
  mr->finishKey();
  lock.reset();
  // Shared-memory segments and fresh mappings are zero; UCX's last resort (the heap) is not.
  // Which one UCX took is not exposed, so the contract is kept by hand (also pre-faults),
  // outside the engine lock: the region is not known to anyone yet.
  std::memset(attr.address, 0, length);
  return std::unique_ptr<MemoryRegion>(std::move(mr));
}

Status UcxMemoryRegion::packKey(const std::string& what) {
  void* packed = nullptr;
  size_t packed_len = 0;
  const ucs_status_t st = ucp_rkey_pack(state_->ucpContext(), memh_, &packed, &packed_len);
  if (st != UCS_OK) return ucxError(st, what);
  key_.packed.assign(static_cast<const char*>(packed), packed_len);
  ucp_rkey_buffer_release(packed);
  return Status::ok();
}

void UcxMemoryRegion::finishKey() {
  registered_ = true;
  RemoteKey& k = key_;
  k.backend = "ucx";
  k.owner_rank = state_->rank();
  k.region_id = state_->nextRegionId();
  k.address = reinterpret_cast<uintptr_t>(address_);
  k.length = length_;
  k.memory_type = type_;
  k.seal();
}

UcxMemoryRegion::~UcxMemoryRegion() {
  if (!registered_) return;
  Status st = deregister();
  if (!st.isOk()) {
    WEFT_LOG(kWarn, "ucx") << "destroying a memory region: " << st;
  }
}

Status UcxMemoryRegion::deregister() {
  detail::EngineLock lock(state_->engine());
  if (!registered_) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "deregister on ", state_->name(), ": region ",
                      key_.region_id, " ", rangeText(address_, length_),
                      " was already deregistered")
        .withHint("a region is deregistered once, by deregister() or by its destructor");
  }
  registered_ = false;
  if (memh_ == nullptr) return Status::ok();
  const ucs_status_t st = ucp_mem_unmap(state_->ucpContext(), memh_);
  memh_ = nullptr;
  if (st != UCS_OK) {
    return ucxError(st, strCat("deregister on ", state_->name(), ": ucp_mem_unmap of region ",
                               key_.region_id, " ", rangeText(address_, length_)));
  }
  return Status::ok();
}

}  // namespace weft::transport::ucx
