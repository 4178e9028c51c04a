// VerbsEndpoint: completion processing, tag matching, and the rendezvous state machine.
#include <arpa/inet.h>

#include <cstring>

#include "common/logging.h"
#include "transport/ibverbs/verbs_internal.h"

namespace weft::transport::verbs {

unsigned VerbsEndpoint::pollCq() {
  if (!channel_) return 0;
  ibv_wc wcs[kPollBatch];
  const int n = ibv_poll_cq(channel_->cq(), kPollBatch, wcs);
  if (n <= 0) {
    if (n < 0) fail(WEFT_ERROR(StatusCode::kIoError, "ibv_poll_cq on ", name_, " failed"));
    return 0;
  }
  uint32_t reposts = 0;
  batch_credit_msgs_ = 0;
  for (int i = 0; i < n; ++i) {
    const ibv_wc& wc = wcs[i];
    if ((wc.wr_id & kRecvWrFlag) == 0) {
      onSendCompletion(wc);
      continue;
    }
    if (wc.status != IBV_WC_SUCCESS || !failure_.isOk()) {
      if (wc.status != IBV_WC_WR_FLUSH_ERR) {
        fail(wcError(wc, "receive", name_, channel_->qp()->qp_num, channel_->remote().qpn, peer_,
                     state_->port().gid_why));
      }
      continue;
    }
    heard_ = true;
    ++counters_.messages_received;
    const auto buf = static_cast<uint32_t>(wc.wr_id & ~kRecvWrFlag);
    if (wc.opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
      onNotify(ntohl(wc.imm_data));
    } else if ((wc.wc_flags & IBV_WC_WITH_IMM) != 0) {
      onCompactEager(channel_->recvBuffer(buf), wc.byte_len, ntohl(wc.imm_data));
    } else if (!handleMessage(channel_->recvBuffer(buf), wc.byte_len)) {
      continue;  // the endpoint failed
    }
    if (!failure_.isOk()) continue;
    ibv_sge& sge = repost_sges_[reposts];
    sge.addr = reinterpret_cast<uintptr_t>(channel_->recvBuffer(buf));
    sge.length = channel_->eagerSize();
    sge.lkey = channel_->recvLkey();
    ibv_recv_wr& wr = repost_wrs_[reposts];
    wr = ibv_recv_wr{};
    wr.wr_id = kRecvWrFlag | buf;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    if (reposts > 0) repost_wrs_[reposts - 1].next = &wr;
    ++reposts;
  }
  if (reposts > 0 && failure_.isOk()) {
    ibv_recv_wr* bad = nullptr;
    const int rc = ibv_post_recv(channel_->qp(), repost_wrs_.data(), &bad);
    if (rc != 0) {
      fail(WEFT_ERROR(StatusCode::kIoError, "ibv_post_recv on ", name_, ": ", errnoString(rc)));
    } else {
      owed_ += reposts;
      owed_quiet_ += std::min(batch_credit_msgs_, reposts);
    }
  }
  return static_cast<unsigned>(n);
}

void VerbsEndpoint::onSendCompletion(const ibv_wc& wc) {
  const uint64_t seq = wc.wr_id;
  if (seq < sq_retired_ || seq >= sq_posted_) return;  // not ours (cannot happen)
  const SqEntry e = sq_[seq % sq_depth_];
  retired_.clear();
  for (uint64_t s = sq_retired_; s <= seq; ++s) {
    SqEntry& x = sq_[s % sq_depth_];
    if (x.bounce >= 0) free_bounce_.push_back(static_cast<uint32_t>(x.bounce));
    if (s < seq && x.op != nullptr) {  // an unsignaled put / get: done before this WR
      retired_.emplace_back(x.op, x.op_gen);
    }
    x = SqEntry{};
  }
  sq_retired_ = seq + 1;
  if (e.keepalive) keepalive_in_flight_ = false;
  // RC completes in order: the earlier WRs succeeded even when this one failed.
  for (const auto& [op, gen] : retired_) {
    if (op->gen == gen) opDone(op);
  }
  if (wc.status != IBV_WC_SUCCESS) {
    if (failure_.isOk()) {
      std::string op = e.keepalive ? "keepalive probe" : std::string(wrOpcodeName(e.opcode));
      bool user_rma = false;
      if (e.op != nullptr && e.op->gen == e.op_gen && e.op->slot != nullptr) {
        op = strCat(opKindName(e.op->slot->op), " (", wrOpcodeName(e.opcode), ")");
        user_rma = e.op->type != OpType::kSend && e.op->type != OpType::kRecv;
      }
      fail(wcError(wc, op, name_, channel_->qp()->qp_num, channel_->remote().qpn, peer_,
                   state_->port().gid_why, !user_rma));
    }
    return;
  }
  heard_ = true;
  if (e.op != nullptr && e.op->gen == e.op_gen) opDone(e.op);
}

void VerbsEndpoint::opDone(VerbsOp* op) {
  switch (op->type) {
    case OpType::kPut:
    case OpType::kGet:
    case OpType::kPutNotify:
      op->slot->bytes = op->length;
      rmaDone(op, Status::ok());
      return;
    case OpType::kAtomic:
      op->slot->value = *channel_->atomicWord(op->atomic_slot);
      op->slot->bytes = sizeof(uint64_t);
      rmaDone(op, Status::ok());
      return;
    case OpType::kRecv: {  // the RDMA READ of a rendezvous finished
      // The recv completes only once its FIN is posted: a caller that stops driving
      // progress after its recv (caller-driven Context) must not leave the sender without
      // its FIN (the EightRanks ring on rxe0 with 4 receive buffers hung in CI that way).
      op->slot->bytes = op->length;
      op->slot->tag = op->tag;
      finishRecvWithFin(op, kFinOk, Status::ok());
      return;
    }
    case OpType::kSend:  // write protocol: the FIN behind the data was acknowledged
      op->slot->bytes = op->length;
      completeOp(op, Status::ok());
      return;
    default: return;
  }
}

void VerbsEndpoint::rmaDone(VerbsOp* op, Status status) {
  completeOp(op, std::move(status));
  ++rma_finished_;
  checkFlushes();
}

void VerbsEndpoint::checkFlushes() {
  while (!flushes_.empty() && flushes_.front()->flush_target <= rma_finished_) {
    VerbsOp* f = flushes_.front();
    flushes_.pop_front();
    completeOp(f, Status::ok());
  }
}

Status VerbsEndpoint::protocolError(std::string_view what) const {
  return WEFT_ERROR(StatusCode::kPeerFailure, name_, ": protocol error from peer rank ", peer_,
                    ": ", what)
      .withHint("do both ranks run the same Weft build and WEFT_IB_* settings?");
}

bool VerbsEndpoint::handleMessage(const char* data, uint32_t bytes) {
  MsgHeader h;
  if (bytes < sizeof(h)) {
    fail(protocolError(strCat("a message of ", bytes, " bytes (shorter than the header)")));
    return false;
  }
  std::memcpy(&h, data, sizeof(h));
  credits_ += h.credits;
  const char* body = data + sizeof(h);
  const uint32_t body_bytes = bytes - static_cast<uint32_t>(sizeof(h));
  auto need = [&](size_t n) {
    if (body_bytes >= n) return true;
    fail(protocolError(strCat("message type ", int{h.type}, " with a ", body_bytes, "-byte body")));
    return false;
  };
  switch (static_cast<MsgType>(h.type)) {
    case MsgType::kEager:
      if (!need(h.length)) return false;
      onEager(h, body);
      return true;
    case MsgType::kRts: {
      if (!need(sizeof(RndvBody))) return false;
      RndvBody rts;
      std::memcpy(&rts, body, sizeof(rts));
      onRts(h, rts);
      return true;
    }
    case MsgType::kCts: {
      if (!need(sizeof(CtsBody))) return false;
      CtsBody cts;
      std::memcpy(&cts, body, sizeof(cts));
      onCts(cts);
      return true;
    }
    case MsgType::kFin: {
      if (!need(sizeof(FinBody))) return false;
      FinBody fin;
      std::memcpy(&fin, body, sizeof(fin));
      onFin(fin);
      return true;
    }
    case MsgType::kNotify: onNotify(h.tag); return true;
    case MsgType::kCredit:
      ++batch_credit_msgs_;
      ++counters_.credit_messages_received;
      return true;
  }
  fail(protocolError(strCat("unknown message type ", int{h.type})));
  return false;
}

// An eager message without header (see kCompactTagBits): the immediate has the rest.
void VerbsEndpoint::onCompactEager(const char* data, uint32_t bytes, uint32_t imm) {
  credits_ += imm >> kCompactTagBits;
  MsgHeader h{static_cast<uint8_t>(MsgType::kEager), 0, 0, bytes, imm & kCompactTagMax};
  onEager(h, data);
}

VerbsOp* VerbsEndpoint::matchRecv(Tag tag) {
  for (VerbsOp* op = recvs_head_; op != nullptr; op = op->next) {
    if ((tag & op->mask) == op->tag) return op;
  }
  return nullptr;
}

void VerbsEndpoint::unlinkRecv(VerbsOp* op) {
  if (op->prev != nullptr) {
    op->prev->next = op->next;
  } else {
    recvs_head_ = op->next;
  }
  if (op->next != nullptr) {
    op->next->prev = op->prev;
  } else {
    recvs_tail_ = op->prev;
  }
  op->prev = op->next = nullptr;
  op->in_recvs = false;
}

Status VerbsEndpoint::truncation(const VerbsOp* op, size_t sent) const {
  return WEFT_ERROR(StatusCode::kInvalidArgument, "recv on ", name_, ": the message of ", sent,
                    " bytes does not fit the receive buffer of ", op->length, " bytes (truncated)")
      .withHint(
          "post receives at least as large as the largest message the peer sends with "
          "that tag");
}

void VerbsEndpoint::deliverEager(VerbsOp* op, Tag tag, const char* data, size_t length) {
  if (length > op->length) {
    completeOp(op, truncation(op, length));
    return;
  }
  if (op->device_local && length > 0) [[unlikely]] {  // GPUDirect receive buffer
    Status c = dev_->toDevice(op->local, data, length);
    if (!c.isOk()) {
      completeOp(op, c.withContext(strCat("recv on ", name_, ": copying an eager message of ",
                                          length, " bytes to ", dev_->name(), " memory")));
      return;
    }
  } else if (length > 0) {
    std::memcpy(op->local, data, length);
  }
  op->slot->bytes = length;
  op->slot->tag = tag & kUserTagMask;
  completeOp(op, Status::ok());
}

void VerbsEndpoint::onEager(const MsgHeader& h, const char* payload) {
  if (VerbsOp* op = matchRecv(h.tag)) {
    unlinkRecv(op);
    deliverEager(op, h.tag, payload, h.length);
    return;
  }
  Unexpected u;
  u.type = MsgType::kEager;
  u.tag = h.tag;
  u.length = h.length;
  u.data.assign(payload, payload + h.length);
  unexpected_.push_back(std::move(u));
}

void VerbsEndpoint::onRts(const MsgHeader& h, const RndvBody& rts) {
  if (VerbsOp* op = matchRecv(h.tag)) {
    unlinkRecv(op);
    startRndvRecv(op, h.tag, rts);
    return;
  }
  Unexpected u;
  u.type = MsgType::kRts;
  u.tag = h.tag;
  u.length = rts.length;
  u.rts = rts;
  unexpected_.push_back(std::move(u));
}

void VerbsEndpoint::startRndvRecv(VerbsOp* op, Tag tag, const RndvBody& rts) {
  op->tag = tag & kUserTagMask;
  op->peer_op = rts.sender_op;
  if (rts.length > op->length) {
    finishRecvWithFin(op, kFinTruncated, truncation(op, rts.length));
    return;
  }
  if (op->reg == nullptr) {  // (a GPUDirect receive buffer is registered already)
    auto reg =
        state_->cache().acquire(op->local, rts.length, MemoryType::kHost, LocalAccess::kWrite);
    if (!reg.isOk()) {
      finishRecvWithFin(op, kFinFailed, reg.status().withContext(strCat("recv on ", name_)));
      return;
    }
    op->reg = *reg;
  }
  op->length = rts.length;
  if (state_->config().rndv == Rndv::kRead) {
    op->remote_addr = rts.addr;
    op->rkey = rts.rkey;
    op->posted = 0;
    op->stage = Stage::kReadToPost;
    enqueue(op);
    return;
  }
  CtsBody cts{rts.sender_op, op->wireId(), reinterpret_cast<uintptr_t>(op->local),
              op->reg->reg.rkey, 0};
  op->stage = Stage::kAwaitFin;
  sendControl(MsgType::kCts, &cts, sizeof(cts));
}

void VerbsEndpoint::onCts(const CtsBody& cts) {
  VerbsOp* op = ops_.find(cts.sender_op);
  if (op == nullptr || op->ep != this || op->type != OpType::kSend ||
      op->stage != Stage::kAwaitCts) {
    fail(protocolError(strCat("a clear-to-send for unknown send ", hex(cts.sender_op))));
    return;
  }
  op->remote_addr = cts.addr;
  op->rkey = cts.rkey;
  op->peer_op = cts.receiver_op;
  op->posted = 0;
  op->stage = Stage::kWriteToPost;
  enqueue(op);
}

void VerbsEndpoint::onFin(const FinBody& fin) {
  VerbsOp* op = ops_.find(fin.op);
  if (op == nullptr || op->ep != this ||
      (op->stage != Stage::kAwaitFin && op->stage != Stage::kAwaitCts)) {
    fail(protocolError(strCat("a FIN for unknown operation ", hex(fin.op))));
    return;
  }
  if (op->type == OpType::kRecv) {  // write protocol: the data is in place
    op->slot->bytes = op->length;
    op->slot->tag = op->tag;
    completeOp(op, Status::ok());
    return;
  }
  if (fin.status == kFinOk) {
    op->slot->bytes = op->length;
    completeOp(op, Status::ok());
  } else if (fin.status == kFinTruncated) {
    completeOp(op, WEFT_ERROR(StatusCode::kInvalidArgument, "send on ", name_, ": the message of ",
                              op->length, " bytes does not fit the peer's receive buffer of ",
                              fin.length, " bytes (truncated)"));
  } else {
    completeOp(op, WEFT_ERROR(StatusCode::kIoError, "send on ", name_, ": peer rank ", peer_,
                              " could not register its receive buffer (see its log)"));
  }
}

void VerbsEndpoint::onNotify(uint64_t value) {
  if (!notify_waiters_.empty()) {
    VerbsOp* op = notify_waiters_.front();
    notify_waiters_.pop_front();
    op->slot->value = value;
    completeOp(op, Status::ok());
    return;
  }
  notifications_.push_back(value);
}

bool VerbsEndpoint::postRead(VerbsOp* op) {
  while (op->posted < op->length) {
    if (sqFree() < 1) return false;
    const size_t chunk = std::min(max_wr_bytes_, op->length - op->posted);
    const bool last = op->posted + chunk == op->length;
    ibv_sge sge{reinterpret_cast<uintptr_t>(op->local + op->posted), static_cast<uint32_t>(chunk),
                op->reg->reg.lkey};
    ibv_send_wr wr{};
    wr.opcode = IBV_WR_RDMA_READ;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.wr.rdma.remote_addr = op->remote_addr + op->posted;
    wr.wr.rdma.rkey = op->rkey;
    if (!postSend(&wr, last ? op : nullptr, -1)) return false;
    op->posted += chunk;
  }
  op->stage = Stage::kReading;
  return true;
}

void VerbsEndpoint::finishRecvWithFin(VerbsOp* op, uint32_t fin_status, Status error) {
  op->fin_status = fin_status;
  op->fin_error = std::move(error);
  op->stage = Stage::kFinToPost;
  if (queue_.empty() && postRecvFin(op)) return;
  if (failure_.isOk()) enqueue(op);  // else failAll completed it
}

bool VerbsEndpoint::postRecvFin(VerbsOp* op) {
  FinBody fin{op->peer_op, op->length, op->fin_status, 0};
  if (!postMessage(MsgType::kFin, 0, &fin, sizeof(fin), nullptr, 0, nullptr)) return false;
  Status st = op->fin_status == kFinOk ? Status::ok() : std::move(op->fin_error);
  completeOp(op, std::move(st));
  return true;
}

bool VerbsEndpoint::postWriteAndFin(VerbsOp* op) {
  while (op->length - op->posted > max_wr_bytes_) {  // all but the last chunk
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
  if (sqFree() < 2) return false;
  PreparedSend fin;
  FinBody body{op->peer_op, op->length, kFinOk, 0};
  if (!prepareMessage(MsgType::kFin, 0, &body, sizeof(body), nullptr, 0, fin)) return false;
  const size_t chunk = op->length - op->posted;
  ibv_sge sge{reinterpret_cast<uintptr_t>(op->local + op->posted), static_cast<uint32_t>(chunk),
              op->reg->reg.lkey};
  ibv_send_wr wr{};
  wr.opcode = IBV_WR_RDMA_WRITE;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.wr.rdma.remote_addr = op->remote_addr + op->posted;
  wr.wr.rdma.rkey = op->rkey;
  wr.next = &fin.wr;  // RC executes in order: the FIN lands after the data
  if (!postSend(&wr, op, fin.bounce)) return false;
  op->posted = op->length;
  op->stage = Stage::kWriting;
  return true;
}

}  // namespace weft::transport::verbs
