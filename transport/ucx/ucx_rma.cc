// UcxEndpoint one-sided operations: put / get / putNotify / atomics, and the per-endpoint
// cache of unpacked remote keys.
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <ios>
#include <sstream>

#include "transport/ucx/ucx_internal.h"

namespace weft::transport::ucx {
namespace {

using detail::RequestSlot;

// Whether [p, p + length) lies inside one shared mapping of this process (/proc/self/maps):
// where ucp_rkey_ptr puts a peer's shared-memory segment. The pointer is computed from
// addresses in the peer's key, which the rkey does not bound: a corrupt key would otherwise
// hand out this process's heap or stack.
bool insideOneSharedMapping(const void* p, size_t length) {
  const auto at = reinterpret_cast<uintptr_t>(p);
  std::FILE* maps = std::fopen("/proc/self/maps", "r");
  if (maps == nullptr) return false;
  bool inside = false;
  char line[512];
  while (std::fgets(line, sizeof(line), maps) != nullptr) {
    uintptr_t lo = 0, hi = 0;
    char perms[8] = {};
    if (std::sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %7s", &lo, &hi, perms) != 3) continue;
    if (at < lo || at >= hi) continue;
    inside = perms[3] == 's' && length <= hi - at;
    break;
  }
  std::fclose(maps);
  return inside;
}

void rmaCallback(void* request, ucs_status_t status, void* user_data) {
  auto* slot = static_cast<RequestSlot*>(user_data);
  ucp_request_free(request);
  if (auto* ep = static_cast<UcxEndpoint*>(slot->owner)) {
    ep->onSendDone(slot, status);
  } else {
    slot->pool->complete(slot,
                         status == UCS_OK ? Status::ok() : ucxError(status, opKindName(slot->op)));
  }
}

void notifyFlushCallback(void* request, ucs_status_t status, void* user_data) {
  auto* slot = static_cast<RequestSlot*>(user_data);
  ucp_request_free(request);
  if (auto* ep = static_cast<UcxEndpoint*>(slot->owner)) {
    ep->onNotifyFlushed(slot, status);
  } else {
    slot->pool->complete(slot, ucxError(status == UCS_OK ? UCS_ERR_CANCELED : status, "putNotify"));
  }
}

// Puts up to this size first try to complete while being posted, without a request slot.
constexpr size_t kImmediatePutMax = 4096;
// After a put that could not complete at once, puts try that again this often.
constexpr uint32_t kImmediatePutRetry = 64;

ucp_request_param_t rmaParams(RequestSlot* slot, ucp_send_nbx_callback_t cb) {
  ucp_request_param_t p;
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  p.cb.send = cb;
  p.user_data = slot;
  return p;
}

std::string hex(uint64_t v) {
  std::ostringstream os;
  os << "0x" << std::hex << v;
  return os.str();
}

}  // namespace

Result<ucp_rkey_h> UcxEndpoint::unpackKey(OpKind op, const RemoteKey& key) {
  if (!key.valid()) return argError(op, "empty RemoteKey (default-constructed)");
  if (key.backend != "ucx") {
    return argError(op, strCat("RemoteKey from backend \"", key.backend,
                               "\" cannot be used on a ucx endpoint"));
  }
  if (key.owner_rank != peer_) {
    return argError(op, strCat("RemoteKey of ", key.describe(),
                               " belongs to another rank than this endpoint's peer"))
        .withHint("use a key on the endpoint to the rank that registered the memory");
  }
  if (key.checksum != key.computeChecksum()) {
    return argError(op, strCat("RemoteKey of ", key.describe(), " is corrupt (checksum mismatch)"))
        .withHint("pass RemoteKey values unmodified from the owner (serialize/deserialize)");
  }
  ucp_rkey_h rkey = nullptr;
  if (key.length > 0) {
    if (key.packed.empty()) {
      return argError(op, strCat("RemoteKey of ", key.describe(), " has no packed UCX rkey"));
    }
    const ucs_status_t st = ucp_ep_rkey_unpack(ep_, key.packed.data(), &rkey);
    if (st != UCS_OK) {
      return Status(StatusCode::kInvalidArgument,
                    strCat(opKindName(op), " on ", describe(), ": RemoteKey of ", key.describe(),
                           " cannot be unpacked: ", ucs_status_string(st)));
    }
  }
  rkeys_.push_back(
      CachedRkey{key.region_id, key.checksum, key.address, key.length, rkey, ++rkey_tick_, false});
  trimRkeys();
  last_rkey_ = rkeys_.size() - 1;  // trimRkeys keeps the newest entry last
  return rkey;
}

// Destroys the least recently used keys beyond kMaxCachedRkeys unpinned ones, but only while
// no operation of this endpoint is pending (UCX may still use a pending operation's key).
// Pinned keys (mappedAddress) neither count nor go.
void UcxEndpoint::trimRkeys() {
  if (rkeys_.size() <= kMaxCachedRkeys || posted_.size != 0) return;
  const CachedRkey newest = rkeys_.back();
  rkeys_.pop_back();
  size_t unpinned = static_cast<size_t>(
      std::count_if(rkeys_.begin(), rkeys_.end(), [](const CachedRkey& c) { return !c.pinned; }));
  while (unpinned + 1 > kMaxCachedRkeys) {
    auto oldest = std::min_element(
        rkeys_.begin(), rkeys_.end(), [](const CachedRkey& a, const CachedRkey& b) {
          return (a.pinned ? UINT64_MAX : a.used) < (b.pinned ? UINT64_MAX : b.used);
        });
    if (oldest == rkeys_.end() || oldest->pinned) break;
    if (oldest->rkey != nullptr) ucp_rkey_destroy(oldest->rkey);
    *oldest = rkeys_.back();
    rkeys_.pop_back();
    --unpinned;
  }
  rkeys_.push_back(newest);
}

Result<ucp_rkey_h> UcxEndpoint::findRkey(OpKind op, const RemoteKey& key, uint64_t offset,
                                         size_t length) {
  ucp_rkey_h rkey = nullptr;
  bool found = false;
  for (size_t i = 0; i < rkeys_.size(); ++i) {
    if (sameKey(rkeys_[i], key)) {
      last_rkey_ = i;
      rkey = rkeys_[i].rkey;
      rkeys_[i].used = ++rkey_tick_;
      found = true;
      break;
    }
  }
  if (!found) {
    WEFT_ASSIGN_OR_RETURN(rkey, unpackKey(op, key));
  }
  if (offset > key.length || length > key.length - offset) [[unlikely]] {
    return argError(op, strCat("[offset ", offset, ", +", length, ") is outside the ", key.length,
                               " bytes of ", key.describe()))
        .withHint("one-sided accesses must stay inside the registered range");
  }
  return rkey;
}

void UcxEndpoint::destroyRkeys(bool keep_pinned) {
  std::erase_if(rkeys_, [&](const CachedRkey& c) {
    if (keep_pinned && c.pinned) return false;
    if (c.rkey != nullptr) ucp_rkey_destroy(c.rkey);
    return true;
  });
  last_rkey_ = rkeys_.size();  // none: the next access searches
}

Status UcxEndpoint::releaseMapping(const RemoteKey& key) {
  detail::EngineLock lock(engine_);
  for (CachedRkey& c : rkeys_) {
    if (sameKey(c, key)) c.pinned = false;  // destroyed by trimRkeys or close, as any other
  }
  return Status::ok();
}

Result<void*> UcxEndpoint::mappedAddress(const RemoteKey& key, uint64_t offset, size_t length) {
  detail::EngineLock lock(engine_);
  if (closed_ || !failure_.isOk()) [[unlikely]]
    return usable(OpKind::kGet);
  WEFT_ASSIGN_OR_RETURN(ucp_rkey_h rkey, remoteAccess(OpKind::kGet, key, offset, length));
  if (rkey == nullptr) return nullptr;  // an empty region
  void* p = nullptr;
  // UCS_ERR_UNREACHABLE: no transport of this rkey maps the memory here.
  if (ucp_rkey_ptr(rkey, key.address + offset, &p) != UCS_OK) return nullptr;
  CachedRkey& entry = rkeys_[last_rkey_];  // remoteAccess left the key's entry as the last one
  if (!entry.mapping_checked) {            // once per key: the whole region, so every range of it
    void* base = nullptr;
    if (ucp_rkey_ptr(rkey, key.address, &base) != UCS_OK ||
        !insideOneSharedMapping(base, key.length)) {
      return argError(OpKind::kGet, strCat(key.describe(), " would map to ", base, " +", key.length,
                                           ", not inside one shared-memory mapping "
                                           "here: a corrupt or foreign key"));
    }
    entry.mapping_checked = true;
  }
  entry.pinned = true;
  return p;
}

Result<Request> UcxEndpoint::put(const void* source, size_t length, const RemoteKey& key,
                                 uint64_t offset) {
  detail::EngineLock lock(engine_);
  if (closed_ || !failure_.isOk()) [[unlikely]]
    return usable(OpKind::kPut);
  if (source == nullptr && length != 0) [[unlikely]] {
    return argError(OpKind::kPut, strCat("null source with length ", length));
  }
  WEFT_ASSIGN_OR_RETURN(ucp_rkey_h rkey, remoteAccess(OpKind::kPut, key, offset, length));
  // Small puts usually complete locally while being posted (as small sends do): try that
  // without a slot first; UCX answers NO_RESOURCE instead of queuing when it cannot. Where
  // UCX emulates puts with messages (posix / sysv / tcp into memory UCX did not allocate)
  // they never complete at once, and the failed try cost as much as the put itself
  // (callgrind: ucp_put_nbx ~214 instructions per put): after a miss only every
  // kImmediatePutRetry-th put tries again.
  if (length != 0 && length <= kImmediatePutMax &&
      (immediate_puts_ || (++put_count_ % kImmediatePutRetry) == 0)) {
    ucp_request_param_t p;
    p.op_attr_mask = UCP_OP_ATTR_FLAG_FORCE_IMM_CMPL;
    const ucs_status_ptr_t ret = ucp_put_nbx(ep_, source, length, key.address + offset, rkey, &p);
    if (ret == nullptr) {
      immediate_puts_ = true;
      engine_.kick();
      return detail::RequestPool::completed(OpKind::kPut, static_cast<uint32_t>(length));
    }
    // NO_RESOURCE: not at once (emulated, or a full queue for now); an error: the tracked
    // path below reports it.
    immediate_puts_ = !(UCS_PTR_IS_ERR(ret) && UCS_PTR_STATUS(ret) == UCS_ERR_NO_RESOURCE);
  }
  RequestSlot* slot = pool_.acquire(OpKind::kPut, &posted_, this);
  if (slot == nullptr) return pool_.exhausted(OpKind::kPut);
  slot->capacity = length;
  if (length == 0) {
    onSendDone(slot, UCS_OK);
  } else {
    ucp_request_param_t p = rmaParams(slot, rmaCallback);
    track(slot, ucp_put_nbx(ep_, source, length, key.address + offset, rkey, &p));
  }
  return finishPost(slot);
}

Result<Request> UcxEndpoint::get(void* destination, size_t length, const RemoteKey& key,
                                 uint64_t offset) {
  detail::EngineLock lock(engine_);
  if (closed_ || !failure_.isOk()) [[unlikely]]
    return usable(OpKind::kGet);
  if (destination == nullptr && length != 0) [[unlikely]] {
    return argError(OpKind::kGet, strCat("null destination with length ", length));
  }
  WEFT_ASSIGN_OR_RETURN(ucp_rkey_h rkey, remoteAccess(OpKind::kGet, key, offset, length));
  RequestSlot* slot = pool_.acquire(OpKind::kGet, &posted_, this);
  if (slot == nullptr) return pool_.exhausted(OpKind::kGet);
  slot->capacity = length;
  if (length == 0) {
    onSendDone(slot, UCS_OK);
  } else {
    ucp_request_param_t p = rmaParams(slot, rmaCallback);
    track(slot, ucp_get_nbx(ep_, destination, length, key.address + offset, rkey, &p));
  }
  return finishPost(slot);
}

// putNotify = put, then an endpoint flush (the data is complete at the target), then a
// notification message carrying the immediate. slot->stage: 1 flushing, 2 notifying.
Result<Request> UcxEndpoint::putNotify(const void* source, size_t length, const RemoteKey& key,
                                       uint64_t offset, uint64_t immediate) {
  detail::EngineLock lock(engine_);
  if (closed_ || !failure_.isOk()) [[unlikely]]
    return usable(OpKind::kPutNotify);
  if (source == nullptr && length != 0) [[unlikely]] {
    return argError(OpKind::kPutNotify, strCat("null source with length ", length));
  }
  WEFT_ASSIGN_OR_RETURN(ucp_rkey_h rkey, remoteAccess(OpKind::kPutNotify, key, offset, length));
  RequestSlot* slot = pool_.acquire(OpKind::kPutNotify, &posted_, this);
  if (slot == nullptr) return pool_.exhausted(OpKind::kPutNotify);
  slot->capacity = length;
  slot->operand = immediate;
  if (length == 0) {
    postNotification(slot);
    return finishPost(slot);
  }
  ucp_request_param_t none;
  none.op_attr_mask = 0;
  ucs_status_ptr_t ret = ucp_put_nbx(ep_, source, length, key.address + offset, rkey, &none);
  if (UCS_PTR_IS_ERR(ret)) {
    onSendDone(slot, UCS_PTR_STATUS(ret));
    return finishPost(slot);
  }
  if (ret != nullptr) ucp_request_free(ret);  // the flush below reports its outcome
  slot->stage = 1;
  ucp_request_param_t p = rmaParams(slot, notifyFlushCallback);
  ret = ucp_ep_flush_nbx(ep_, &p);
  if (ret == nullptr) {
    postNotification(slot);
  } else if (UCS_PTR_IS_ERR(ret)) {
    onSendDone(slot, UCS_PTR_STATUS(ret));
  } else {
    slot->handle = ret;
  }
  return finishPost(slot);
}

void UcxEndpoint::onNotifyFlushed(RequestSlot* slot, ucs_status_t status) {
  slot->handle = nullptr;
  if (status != UCS_OK || closed_) {
    onSendDone(slot, status != UCS_OK ? status : UCS_ERR_CANCELED);
    return;
  }
  postNotification(slot);
}

void UcxEndpoint::postNotification(RequestSlot* slot) {
  slot->stage = 2;
  ucp_request_param_t p = rmaParams(slot, rmaCallback);
  track(slot, ucp_tag_send_nbx(ep_, &slot->operand, sizeof(slot->operand),
                               kKindNotify | rankBits(state_->rank()), &p));
}

Result<Request> UcxEndpoint::recvNotify() {
  detail::EngineLock lock(engine_);
  if (closed_ || !failure_.isOk()) [[unlikely]]
    return usable(OpKind::kRecvNotify);
  return recvRaw(OpKind::kRecvNotify, nullptr, sizeof(uint64_t), kKindNotify | rankBits(peer_),
                 kKindMask | kRankMask | kUserTagMask);
}

Result<Request> UcxEndpoint::postAtomic(OpKind op, ucp_atomic_op_t opcode, const RemoteKey& key,
                                        uint64_t offset, uint64_t operand, uint64_t reply_in) {
  detail::EngineLock lock(engine_);
  if (closed_ || !failure_.isOk()) [[unlikely]]
    return usable(op);
  WEFT_ASSIGN_OR_RETURN(ucp_rkey_h rkey, remoteAccess(op, key, offset, sizeof(uint64_t)));
  if ((key.address + offset) % sizeof(uint64_t) != 0) [[unlikely]] {
    return argError(op, strCat("remote word at ", hex(key.address + offset), " (offset ", offset,
                               " of ", key.describe(), ") is not 8-byte aligned"));
  }
  RequestSlot* slot = pool_.acquire(op, &posted_, this);
  if (slot == nullptr) return pool_.exhausted(op);
  slot->capacity = sizeof(uint64_t);
  slot->operand = operand;
  slot->value = reply_in;
  ucp_request_param_t p = rmaParams(slot, rmaCallback);
  p.op_attr_mask |= UCP_OP_ATTR_FIELD_DATATYPE | UCP_OP_ATTR_FIELD_REPLY_BUFFER;
  p.datatype = ucp_dt_make_contig(sizeof(uint64_t));
  p.reply_buffer = &slot->value;
  track(slot, ucp_atomic_op_nbx(ep_, opcode, &slot->operand, 1, key.address + offset, rkey, &p));
  return finishPost(slot);
}

Result<Request> UcxEndpoint::fetchAdd(const RemoteKey& key, uint64_t offset, uint64_t addend) {
  return postAtomic(OpKind::kFetchAdd, UCP_ATOMIC_OP_ADD, key, offset, addend, 0);
}

Result<Request> UcxEndpoint::compareSwap(const RemoteKey& key, uint64_t offset, uint64_t expected,
                                         uint64_t desired) {
  // UCP CSWAP: `buffer` holds the value to compare, the reply buffer holds the value to
  // store on input and receives the old remote value.
  return postAtomic(OpKind::kCompareSwap, UCP_ATOMIC_OP_CSWAP, key, offset, expected, desired);
}

}  // namespace weft::transport::ucx
