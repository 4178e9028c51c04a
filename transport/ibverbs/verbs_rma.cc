// VerbsEndpoint one-sided operations: native RDMA WRITE / READ, WRITE with immediate,
// and 64-bit atomics. RemoteKey::packed of a verbs region is its rkey (u32, little-endian).
#include <arpa/inet.h>

#include <cstring>

#include "transport/ibverbs/verbs_internal.h"

namespace weft::transport::verbs {

Result<uint32_t> VerbsEndpoint::remoteAccess(OpKind op, const RemoteKey& key, uint64_t offset,
                                             size_t length) {
  // The key checked last (callers stream operations on one key): field-equal on what the
  // operation uses (address, length) and on its identity, it needs no second checksum
  // (~500 instructions, a quarter of an 8-byte put); its rkey was read when it was checked.
  if (last_key_.valid && key.region_id == last_key_.region_id &&
      key.checksum == last_key_.checksum && key.address == last_key_.address &&
      key.length == last_key_.length && key.owner_rank == last_key_.owner &&
      offset <= key.length && length <= key.length - offset) [[likely]] {
    return last_key_.rkey;
  }
  return checkKey(op, key, offset, length);
}

Result<uint32_t> VerbsEndpoint::checkKey(OpKind op, const RemoteKey& key, uint64_t offset,
                                         size_t length) {
  if (!key.valid()) return argError(op, "empty RemoteKey (default-constructed)");
  if (key.backend != "verbs") {
    return argError(op, strCat("RemoteKey from backend \"", key.backend,
                               "\" cannot be used on a verbs endpoint"));
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
  if (key.length > 0 && key.packed.size() != sizeof(uint32_t)) {
    return argError(op, strCat("RemoteKey of ", key.describe(), " has no verbs rkey"));
  }
  if (offset > key.length || length > key.length - offset) [[unlikely]] {
    return argError(op, strCat("[offset ", offset, ", +", length, ") is outside the ", key.length,
                               " bytes of ", key.describe()))
        .withHint("one-sided accesses must stay inside the registered range");
  }
  uint32_t rkey = 0;
  for (size_t i = 0; i < key.packed.size() && i < 4; ++i) {
    rkey |= static_cast<uint32_t>(static_cast<unsigned char>(key.packed[i])) << (8 * i);
  }
  last_key_ = {key.region_id, key.checksum, key.address, key.length, key.owner_rank, rkey, true};
  return rkey;
}

Result<Request> VerbsEndpoint::postRma(OpType type, OpKind kind, ibv_wr_opcode opcode, char* local,
                                       size_t length, const RemoteKey& key, uint64_t offset,
                                       uint64_t imm) {
  if (closed_ || !failure_.isOk()) [[unlikely]]
    return usable(kind);
  if (local == nullptr && length != 0) [[unlikely]] {
    return argError(kind, strCat("null buffer with length ", length));
  }
  WEFT_ASSIGN_OR_RETURN(uint32_t rkey, remoteAccess(kind, key, offset, length));
  if (length == 0 && type != OpType::kPutNotify) {
    return detail::RequestPool::completed(kind, 0);  // nothing to move
  }
  const bool inline_put = opcode != IBV_WR_RDMA_READ && length <= inline_max_;
  // A device buffer: GPUDirect, or staged (inline puts always: the CPU copies them).
  const bool device = isDeviceBuffer(local, length);
  DeviceUse use;
  if (device) [[unlikely]] {
    WEFT_ASSIGN_OR_RETURN(use,
                          deviceUse(kind, local, length, !inline_put, opcode != IBV_WR_RDMA_READ));
  }
  VerbsOp* op = newOp(type, kind, true);
  if (op == nullptr) {
    dropDeviceUse(use);
    return pool_.exhausted(kind);
  }
  op->local = local;
  op->length = length;
  op->remote_addr = key.address + offset;
  op->rkey = rkey;
  op->opcode = opcode;
  op->operand = imm;
  op->slot->capacity = length;
  op->stage = Stage::kToPost;
  if (device) [[unlikely]]
    attachDeviceUse(op, use, opcode == IBV_WR_RDMA_READ);
  Result<Request> r = handleFor(op);
  if (length > 0 && !inline_put && op->reg == nullptr) {
    auto reg = state_->cache().acquire(
        op->local, length, MemoryType::kHost,
        opcode == IBV_WR_RDMA_READ ? LocalAccess::kWrite : LocalAccess::kRead);
    if (!reg.isOk()) {
      completeOp(op, reg.status().withContext(strCat(opKindName(kind), " on ", name_)));
      return r;
    }
    op->reg = *reg;
  }
  ++rma_started_;
  enqueue(op);
  return r;
}

// Posts the chunks of a put / get; the last one completes the op (it or a later signaled
// WR: see kSignalEvery).
bool VerbsEndpoint::postRmaChunks(VerbsOp* op) {
  while (op->posted < op->length) {
    if (sqFree() < 1) return false;
    const size_t chunk = std::min(max_wr_bytes_, op->length - op->posted);
    const bool last = op->posted + chunk == op->length;
    ibv_sge sge{reinterpret_cast<uintptr_t>(op->local + op->posted), static_cast<uint32_t>(chunk),
                op->reg != nullptr ? op->reg->reg.lkey : 0};
    ibv_send_wr wr{};
    wr.opcode = op->opcode;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    if (op->reg == nullptr) wr.send_flags = IBV_SEND_INLINE;
    wr.wr.rdma.remote_addr = op->remote_addr + op->posted;
    wr.wr.rdma.rkey = op->rkey;
    if (!postSend(&wr, last ? op : nullptr, -1, false, /*deferrable=*/true)) return false;
    op->posted += chunk;
  }
  op->stage = Stage::kPosted;
  return true;
}

// putNotify: the data by RDMA WRITE, then the notification. An immediate that fits 32 bits
// rides on the last WRITE (WRITE with immediate: consumes one of the peer's receive
// buffers, hence a credit); a wider one follows as a kNotify message (RC orders it after
// the data).
bool VerbsEndpoint::postNotifyOp(VerbsOp* op) {
  while (op->length - op->posted > max_wr_bytes_) {  // all but the last chunk, unsignaled
    if (sqFree() < 3) return false;
    ibv_sge sge{reinterpret_cast<uintptr_t>(op->local + op->posted),
                static_cast<uint32_t>(max_wr_bytes_), op->reg->reg.lkey};
    ibv_send_wr wr{};
    wr.opcode = IBV_WR_RDMA_WRITE;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.wr.rdma.remote_addr = op->remote_addr + op->posted;
    wr.wr.rdma.rkey = op->rkey;
    if (!postSend(&wr, nullptr, -1)) return false;
    op->posted += max_wr_bytes_;
  }
  const bool imm32 = op->operand <= UINT32_MAX;
  if (sqFree() < 2 || !haveCredit(MsgType::kNotify)) return false;
  const size_t chunk = op->length - op->posted;
  ibv_sge sge{reinterpret_cast<uintptr_t>(op->local + op->posted), static_cast<uint32_t>(chunk),
              op->reg != nullptr ? op->reg->reg.lkey : 0};
  ibv_send_wr wr{};
  wr.opcode = imm32 ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE;
  wr.sg_list = chunk > 0 ? &sge : nullptr;
  wr.num_sge = chunk > 0 ? 1 : 0;
  if (op->reg == nullptr && chunk > 0) wr.send_flags = IBV_SEND_INLINE;
  wr.wr.rdma.remote_addr = op->remote_addr + op->posted;
  wr.wr.rdma.rkey = op->rkey;
  if (imm32) {
    wr.imm_data = htonl(static_cast<uint32_t>(op->operand));
    --credits_;
    if (!postSend(&wr, op, -1)) return false;
  } else {
    PreparedSend note;
    if (!prepareMessage(MsgType::kNotify, op->operand, nullptr, 0, nullptr, 0, note)) return false;
    wr.next = &note.wr;
    if (!postSend(&wr, op, note.bounce)) return false;
  }
  op->posted = op->length;
  op->stage = Stage::kPosted;
  return true;
}

bool VerbsEndpoint::postAtomicOp(VerbsOp* op) {
  if (sqFree() < 1 || free_atomic_.empty()) return false;
  op->atomic_slot = free_atomic_.back();
  free_atomic_.pop_back();
  uint64_t* result = channel_->atomicWord(op->atomic_slot);
  ibv_sge sge{reinterpret_cast<uintptr_t>(result), sizeof(uint64_t), channel_->ctlLkey()};
  ibv_send_wr wr{};
  wr.opcode = op->opcode;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.wr.atomic.remote_addr = op->remote_addr;
  wr.wr.atomic.rkey = op->rkey;
  if (op->opcode == IBV_WR_ATOMIC_CMP_AND_SWP) {
    wr.wr.atomic.compare_add = op->compare;
    wr.wr.atomic.swap = op->operand;
  } else {
    wr.wr.atomic.compare_add = op->operand;
  }
  if (!postSend(&wr, op, -1)) return false;
  op->stage = Stage::kPosted;
  return true;
}

Result<Request> VerbsEndpoint::postAtomic(OpKind kind, ibv_wr_opcode opcode, const RemoteKey& key,
                                          uint64_t offset, uint64_t operand, uint64_t compare) {
  detail::EngineLock lock(engine_);
  if (closed_ || !failure_.isOk()) [[unlikely]]
    return usable(kind);
  if (!state_->caps().atomics64) {
    return WEFT_ERROR(StatusCode::kNotSupported, opKindName(kind), " on ", name_, ": ",
                      state_->port().device, " has no atomic operations");
  }
  WEFT_ASSIGN_OR_RETURN(uint32_t rkey, remoteAccess(kind, key, offset, sizeof(uint64_t)));
  if ((key.address + offset) % sizeof(uint64_t) != 0) [[unlikely]] {
    return argError(kind, strCat("remote word at ", hex(key.address + offset), " (offset ", offset,
                                 " of ", key.describe(), ") is not 8-byte aligned"));
  }
  VerbsOp* op = newOp(OpType::kAtomic, kind, true);
  if (op == nullptr) return pool_.exhausted(kind);
  op->remote_addr = key.address + offset;
  op->rkey = rkey;
  op->opcode = opcode;
  op->operand = operand;
  op->compare = compare;
  op->length = sizeof(uint64_t);
  op->slot->capacity = sizeof(uint64_t);
  op->stage = Stage::kToPost;
  Result<Request> r = handleFor(op);
  ++rma_started_;
  enqueue(op);
  return r;
}

Result<Request> VerbsEndpoint::put(const void* source, size_t length, const RemoteKey& key,
                                   uint64_t offset) {
  detail::EngineLock lock(engine_);
  return postRma(OpType::kPut, OpKind::kPut, IBV_WR_RDMA_WRITE,
                 static_cast<char*>(const_cast<void*>(source)), length, key, offset, 0);
}

Result<Request> VerbsEndpoint::get(void* destination, size_t length, const RemoteKey& key,
                                   uint64_t offset) {
  detail::EngineLock lock(engine_);
  return postRma(OpType::kGet, OpKind::kGet, IBV_WR_RDMA_READ, static_cast<char*>(destination),
                 length, key, offset, 0);
}

Result<Request> VerbsEndpoint::putNotify(const void* source, size_t length, const RemoteKey& key,
                                         uint64_t offset, uint64_t immediate) {
  detail::EngineLock lock(engine_);
  return postRma(OpType::kPutNotify, OpKind::kPutNotify, IBV_WR_RDMA_WRITE_WITH_IMM,
                 static_cast<char*>(const_cast<void*>(source)), length, key, offset, immediate);
}

Result<void*> VerbsEndpoint::mappedAddress(const RemoteKey& key, uint64_t offset, size_t length) {
  detail::EngineLock lock(engine_);
  if (closed_ || !failure_.isOk()) [[unlikely]]
    return usable(OpKind::kGet);
  // The peer's memory is behind the NIC: never mapped here. The key is still checked.
  WEFT_RETURN_IF_ERROR(remoteAccess(OpKind::kGet, key, offset, length).status());
  return nullptr;
}

Result<Request> VerbsEndpoint::fetchAdd(const RemoteKey& key, uint64_t offset, uint64_t addend) {
  return postAtomic(OpKind::kFetchAdd, IBV_WR_ATOMIC_FETCH_AND_ADD, key, offset, addend, 0);
}

Result<Request> VerbsEndpoint::compareSwap(const RemoteKey& key, uint64_t offset, uint64_t expected,
                                           uint64_t desired) {
  return postAtomic(OpKind::kCompareSwap, IBV_WR_ATOMIC_CMP_AND_SWP, key, offset, desired,
                    expected);
}

}  // namespace weft::transport::verbs
