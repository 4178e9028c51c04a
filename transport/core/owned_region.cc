#include "transport/core/owned_region.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

#include "common/logging.h"

namespace weft::transport::detail {
namespace {

class AnonymousRegion final : public MemoryRegion {
 public:
  AnonymousRegion(void* base, size_t mapped, std::unique_ptr<MemoryRegion> inner)
      : MemoryRegion(base, inner->length(), MemoryType::kHost),
        mapped_(mapped),
        inner_(std::move(inner)) {
    key_ = inner_->remoteKey();
  }
  ~AnonymousRegion() override {
    if (!registered_) return;
    Status st = deregister();
    if (!st.isOk()) {
      WEFT_LOG(kWarn, "transport") << "destroying an allocated region: " << st;
    }
  }
  Status deregister() override {
    if (!registered_) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, "deregister of allocated region ",
                        key_.describe(), ": it was already deregistered")
          .withHint("a region is deregistered once, by deregister() or by its destructor");
    }
    registered_ = false;
    Status st = inner_->deregister();
    if (!st.isOk()) return st;  // still registered: the pages stay mapped (leaked)
    munmap(address_, mapped_);
    return st;
  }

 private:
  size_t mapped_;
  std::unique_ptr<MemoryRegion> inner_;
};

}  // namespace

Status checkAllocationLength(size_t length, const std::string& who) {
  if (length != 0) return Status::ok();
  return WEFT_ERROR(StatusCode::kInvalidArgument, who, ": 0 bytes requested")
      .withHint("allocate at least one byte; registerMemory(nullptr, 0) gives an empty region");
}

Result<std::unique_ptr<MemoryRegion>> allocateAnonymous(Context& ctx, size_t length,
                                                        const std::string& who) {
  WEFT_RETURN_IF_ERROR(checkAllocationLength(length, who));
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (length > SIZE_MAX - page) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, who, ": ", length, " bytes is too large");
  }
  const size_t mapped = (length + page - 1) / page * page;
  void* p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return WEFT_ERROR(StatusCode::kNoResource, who, ": mmap of ", mapped,
                      " bytes failed: ", errnoString(errno));
  }
  auto inner = ctx.registerMemory(p, length);
  if (!inner.isOk()) {
    munmap(p, mapped);
    return inner.status().withContext(who);
  }
  return std::unique_ptr<MemoryRegion>(new AnonymousRegion(p, mapped, std::move(inner).value()));
}

}  // namespace weft::transport::detail
