// VerbsEndpoint: the protocol on one RC connection. This file: construction and teardown,
// the send queue (selective signaling, bounce buffers, credits, the pending queue), and the
// two-sided API. Receive processing is in verbs_recv.cc, one-sided operations in
// verbs_rma.cc.
//
// Protocol summary (wire formats in verbs_wire.h):
// - Sends of up to eager_max bytes are messages into the peer's pre-posted receive buffers:
//   inline (copied into the WQE at post) when header + payload fit the device's inline
//   size, else copied into a registered bounce buffer; either way the caller's buffer is
//   free once posted, so a send that can be posted at once returns a completed Request.
//   Payloads of kEagerZcopyMin bytes and more (when the registration cache caches) go
//   zero-copy instead: a 2-SGE SEND of the header (bounce buffer) and the caller's buffer
//   (registered through the cache), signaled; the Request completes with that WR's
//   completion (or with the endpoint's failure), which releases the registration.
// - Eager messages whose tag fits 24 bits drop the 16-byte header: SEND with immediate =
//   credits << 24 | tag (kCompactTagBits), so a 4 KiB payload is 4 KiB on the wire (one
//   packet fewer at MTU 1024 / 4096: that packet, not the copy, was the cost at 4 KiB).
// - Credits: each message (and each RDMA WRITE with immediate) consumes one receive buffer
//   of the peer. credits_ counts the buffers the peer holds for us; the peer returns them
//   in the `credits` field of every message it sends, or in a credit-only message once it
//   owes credit_threshold_ buffers of other messages, or quiet_threshold_ buffers in all
//   (see maybeReturnCredits: credit-only messages must not answer each other forever). The
//   last credit is reserved for credit-only messages, so two ranks that both ran out can
//   always announce what they re-posted: no receiver-not-ready retries ever happen.
// - A message that cannot be posted (no credit, full send queue, no bounce buffer) waits in
//   the pending queue (queue_), posted in order as completions and credits come back.
// - Larger sends use a rendezvous straight between the user buffers: RTS {sender buffer,
//   rkey, length} -> the receiver RDMA-READs into its buffer and answers FIN (read, the
//   default), or CTS {receiver buffer, rkey} -> the sender RDMA-WRITEs and sends FIN behind
//   the data (write). Both register user buffers through the registration cache.
// - Selective signaling: see kSignalEvery. A signaled completion retires every earlier WR
//   (their bounce buffers come back); resources running low force signaling so that a
//   completion always comes.
#include <arpa/inet.h>

#include <cstring>

#include "common/logging.h"
#include "transport/ibverbs/verbs_internal.h"

namespace weft::transport::verbs {
namespace {

// How long a destructor lets already-posted sends reach the peer before destroying the QP.
constexpr double kDestroyDrainSeconds = 2.0;
// Largest single RDMA WR (devices accept up to 2 GiB; chunks keep the pending queue fair).
constexpr size_t kMaxWrBytes = size_t{1} << 30;

}  // namespace

VerbsEndpoint::VerbsEndpoint(StatePtr state, int peer, std::unique_ptr<Channel> channel,
                             std::string how)
    : state_(std::move(state)),
      dev_(state_->deviceMemory()),
      pool_(state_->pool()),
      engine_(state_->engine()),
      ops_(state_->ops()),
      channel_(std::move(channel)),
      peer_(peer),
      how_(std::move(how)) {
  const VerbsConfig& cfg = state_->config();
  const PortSelection& port = state_->port();
  sq_depth_ = cfg.sq_depth;
  sq_.resize(sq_depth_);
  for (uint32_t i = channel_->sendBuffers(); i > 0; --i) free_bounce_.push_back(i - 1);
  for (uint32_t i = kAtomicSlots; i > 0; --i) free_atomic_.push_back(i - 1);
  credits_ = channel_->remote().recv_buffers;
  credit_threshold_ = std::max<uint32_t>(1, channel_->recvBuffers() / 4);
  quiet_threshold_ = std::max<uint32_t>(2, channel_->recvBuffers() / 2);
  const uint32_t eager = std::min(channel_->eagerSize(), channel_->remote().eager_size);
  eager_max_ = eager - static_cast<uint32_t>(sizeof(MsgHeader));
  inline_max_ = state_->maxInline();
  if (state_->cache().caching() && state_->deviceAttr().max_sge >= 2) {
    // Zero-copy only pays where a cache hit replaces the copy, and only above the inline size.
    const uint32_t above_inline =
        inline_max_ >= sizeof(MsgHeader) ? inline_max_ + 1 - uint32_t{sizeof(MsgHeader)} : 0;
    zcopy_min_ = std::max(kEagerZcopyMin, above_inline);
  }
  max_wr_bytes_ = port.max_msg > 0 ? std::min<size_t>(port.max_msg, kMaxWrBytes) : kMaxWrBytes;
  repost_wrs_.resize(kPollBatch);
  repost_sges_.resize(kPollBatch);
  name_ = strCat("verbs rank ", state_->rank(), " -> rank ", peer_, " (", how_, ", ", port.device,
                 ":", port.port, " QP ", hex(channel_->qp()->qp_num), " -> QP ",
                 hex(channel_->remote().qpn), ")");
  last_heard_ = Deadline::Clock::now();
  state_->addEndpoint(this);
}

VerbsEndpoint::~VerbsEndpoint() {
  detail::EngineLock lock(engine_);
  if (closed_) return;
  // Let WRs already posted (eager sends completed for the caller) reach the peer.
  if (failure_.isOk() && sq_posted_ != sq_retired_) {
    engine_.unlock();
    engine_.waitUntil(
        [&] {
          if (!failure_.isOk() || sq_posted_ == sq_retired_) return true;
          if (!keepalive_in_flight_ && postKeepalive()) keepalive_in_flight_ = true;
          return false;
        },
        Deadline::afterSeconds(kDestroyDrainSeconds));
    engine_.lock();
  }
  closed_ = true;
  failAll(WEFT_ERROR(StatusCode::kCanceled, describe(), " was destroyed"));
  state_->removeEndpoint(this);
  state_->releasePeer(peer_);
  channel_.reset();
}

std::string VerbsEndpoint::describe() const {
  return name_;
}

Status VerbsEndpoint::health() const {
  detail::EngineLock lock(engine_);
  if (closed_) return usable(OpKind::kNone);
  return failure_;
}

Status VerbsEndpoint::usable(OpKind op) const {
  if (closed_) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, opKindName(op), " on ", name_,
                      ": the endpoint is closed")
        .withHint("create a new Endpoint; a closed one cannot be reused");
  }
  return failure_.withContext(opKindName(op));
}

Status VerbsEndpoint::argError(OpKind op, std::string_view what) const {
  return WEFT_ERROR(StatusCode::kInvalidArgument, opKindName(op), " on ", name_, ": ", what);
}

// ---- operation bookkeeping ----------------------------------------------------------------

VerbsOp* VerbsEndpoint::newOp(OpType type, OpKind kind, bool with_slot) {
  RequestSlot* slot = nullptr;
  if (with_slot) {
    slot = pool_.acquire(kind, &slots_, this);
    if (slot == nullptr) return nullptr;
  }
  VerbsOp* op = ops_.acquire();
  op->slot = slot;
  op->ep = this;
  op->type = type;
  op->all_next = all_;
  if (all_ != nullptr) all_->all_prev = op;
  all_ = op;
  return op;
}

void VerbsEndpoint::freeOp(VerbsOp* op) {
  if (op->all_prev != nullptr) {
    op->all_prev->all_next = op->all_next;
  } else {
    all_ = op->all_next;
  }
  if (op->all_next != nullptr) op->all_next->all_prev = op->all_prev;
  ops_.release(op);
}

Result<Request> VerbsEndpoint::handleFor(VerbsOp* op) {
  Request r = pool_.handle(op->slot);
  engine_.kick();
  return r;
}

void VerbsEndpoint::completeOp(VerbsOp* op, Status status) {
  if (op->in_recvs) unlinkRecv(op);
  if (op->device_local) [[unlikely]]
    status = finishDevice(op, std::move(status));
  if (op->reg != nullptr) {
    state_->cache().release(op->reg);
    op->reg = nullptr;
  }
  if (op->staged != nullptr) [[unlikely]]
    status = finishStaged(op, std::move(status));
  if (op->atomic_slot != UINT32_MAX) {
    free_atomic_.push_back(op->atomic_slot);
    op->atomic_slot = UINT32_MAX;
  }
  if (op->slot != nullptr) {
    if (status.isOk()) {
      pool_.completeOk(op->slot);
    } else {
      pool_.complete(op->slot, std::move(status));
    }
  }
  freeOp(op);
}

void VerbsEndpoint::enqueue(VerbsOp* op) {
  queue_.push_back(op);
  pump();
}

void VerbsEndpoint::pump() {
  while (!queue_.empty() && failure_.isOk()) {
    if (!tryPost(queue_.front())) break;
    queue_.pop_front();
  }
  if (failure_.isOk()) maybeReturnCredits();
}

bool VerbsEndpoint::tryPost(VerbsOp* op) {
  switch (op->type) {
    case OpType::kControl: {
      if (!postMessage(op->msg, 0, op->body, op->body_len, nullptr, 0, nullptr)) return false;
      freeOp(op);
      return true;
    }
    case OpType::kSend:
      if (op->stage == Stage::kEager) return postEager(op);
      if (op->stage == Stage::kRtsToPost) {
        RndvBody b{op->wireId(), reinterpret_cast<uintptr_t>(op->local), op->length,
                   op->reg != nullptr ? op->reg->reg.rkey : 0, 0};
        if (!postMessage(MsgType::kRts, op->tag, &b, sizeof(b), nullptr, 0, nullptr)) return false;
        op->stage = state_->config().rndv == Rndv::kRead ? Stage::kAwaitFin : Stage::kAwaitCts;
        return true;
      }
      return postWriteAndFin(op);  // Stage::kWriteToPost
    case OpType::kRecv: return op->stage == Stage::kFinToPost ? postRecvFin(op) : postRead(op);
    case OpType::kPut:
    case OpType::kGet: return postRmaChunks(op);
    case OpType::kPutNotify: return postNotifyOp(op);
    case OpType::kAtomic: return postAtomicOp(op);
    default: return true;
  }
}

// ---- failure --------------------------------------------------------------------------

void VerbsEndpoint::fail(Status why) {
  if (!failure_.isOk() || closed_) return;
  failure_ = std::move(why);
  WEFT_LOG(kInfo, "verbs") << failure_.message();
  if (channel_) {
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_ERR;  // flushes every outstanding WR
    ibv_modify_qp(channel_->qp(), &a, IBV_QP_STATE);
  }
  failAll(failure_);
}

void VerbsEndpoint::failAll(Status why) {
  queue_.clear();
  notify_waiters_.clear();
  flushes_.clear();
  unexpected_.clear();
  recvs_head_ = recvs_tail_ = nullptr;
  while (all_ != nullptr) {
    VerbsOp* op = all_;
    op->in_recvs = false;
    const std::string_view name = op->slot != nullptr ? opKindName(op->slot->op) : "message";
    completeOp(op, why.withContext(name));
  }
}

void VerbsEndpoint::onAsyncError(std::string_view what) {
  fail(WEFT_ERROR(StatusCode::kPeerFailure, name_, ": the QP reported ", what, " (peer rank ",
                  peer_, ")"));
}

// ---- posting ---------------------------------------------------------------------------

bool VerbsEndpoint::wantSignal(bool must) {
  if (must || ++unsignaled_ >= kSignalEvery || free_bounce_.size() < kSignalEvery ||
      sqFree() <= kSignalEvery) {
    unsignaled_ = 0;
    return true;
  }
  return false;
}

bool VerbsEndpoint::postSend(ibv_send_wr* first, VerbsOp* op, int32_t bounce, bool keepalive,
                             bool deferrable) {
  uint32_t n = 0;
  ibv_send_wr* last = first;
  for (ibv_send_wr* w = first; w != nullptr; w = w->next) {
    w->wr_id = sq_posted_ + n;
    sq_[(sq_posted_ + n) % sq_depth_] = SqEntry{};
    last = w;
    ++n;
  }
  // A deferrable op is signaled unless the queue is deep (kSignalEvery WRs in flight) and
  // a signaled WR is among them: short bursts keep one round trip per operation.
  const bool must =
      keepalive || (op != nullptr && (!deferrable || sq_posted_ - sq_retired_ < kSignalEvery ||
                                      signaled_end_ <= sq_retired_));
  const bool signaled = wantSignal(must);
  if (signaled) last->send_flags |= IBV_SEND_SIGNALED;
  SqEntry& e = sq_[(sq_posted_ + n - 1) % sq_depth_];
  e.op = op;
  e.op_gen = op != nullptr ? op->gen : 0;
  e.bounce = bounce;
  e.keepalive = keepalive;
  e.opcode = last->opcode;
  ibv_send_wr* bad = nullptr;
  const int rc = ibv_post_send(channel_->qp(), first, &bad);
  if (rc != 0) {
    if (bounce >= 0) free_bounce_.push_back(static_cast<uint32_t>(bounce));
    e = SqEntry{};
    fail(WEFT_ERROR(StatusCode::kIoError, "ibv_post_send on ", name_, ": ", errnoString(rc)));
    return false;
  }
  sq_posted_ += n;
  for (ibv_send_wr* w = first; w != nullptr; w = w->next) {
    if (w->opcode == IBV_WR_SEND || w->opcode == IBV_WR_SEND_WITH_IMM) ++counters_.messages_sent;
  }
  if (signaled) {
    signaled_end_ = sq_posted_;
    deferred_ = 0;
  } else if (op != nullptr) {
    ++deferred_;
  }
  return true;
}

void VerbsEndpoint::kickDeferred() {
  if (deferred_ == 0 || signaled_end_ > sq_retired_ || keepalive_in_flight_) return;
  if (postKeepalive()) keepalive_in_flight_ = true;
}

uint16_t VerbsEndpoint::takeCredits(uint32_t max) {
  const uint32_t n = std::min<uint32_t>(owed_, max);
  owed_ -= n;
  owed_quiet_ = std::min(owed_quiet_, owed_);  // the others are announced first
  return static_cast<uint16_t>(n);
}

bool VerbsEndpoint::haveCredit(MsgType type) const {
  return credits_ >= (type == MsgType::kCredit ? 1u : 2u);
}

bool VerbsEndpoint::prepareMessage(MsgType type, Tag tag, const void* body, uint32_t body_len,
                                   const void* payload, uint32_t payload_len, PreparedSend& p,
                                   uint32_t payload_lkey) {
  if (!haveCredit(type)) return false;
  const bool compact = type == MsgType::kEager && payload_len > 0 && tag <= kCompactTagMax;
  const uint32_t head_len = compact ? 0 : static_cast<uint32_t>(sizeof(MsgHeader)) + body_len;
  const uint32_t total = head_len + payload_len;
  const bool inl = total <= inline_max_ && body_len <= sizeof(p.head) - sizeof(MsgHeader);
  const bool zcopy = !inl && payload_lkey != 0 && payload_len > 0;
  char* dst = reinterpret_cast<char*>(p.head);
  p.bounce = -1;
  if (!inl && !(zcopy && compact)) {  // a compact zero-copy message needs no bounce buffer
    if (free_bounce_.empty()) return false;
    p.bounce = static_cast<int32_t>(free_bounce_.back());
    free_bounce_.pop_back();
    dst = channel_->sendBuffer(static_cast<uint32_t>(p.bounce));
  }
  p.wr = ibv_send_wr{};
  p.wr.opcode = IBV_WR_SEND;
  p.wr.sg_list = p.sge;
  if (compact) {
    p.wr.opcode = IBV_WR_SEND_WITH_IMM;
    const uint32_t credits = takeCredits(kCompactCreditMax);
    p.wr.imm_data = htonl(credits << kCompactTagBits | static_cast<uint32_t>(tag));
  } else {
    MsgHeader h{static_cast<uint8_t>(type), 0, takeCredits(UINT16_MAX), payload_len, tag};
    std::memcpy(dst, &h, sizeof(h));
    if (body_len > 0) std::memcpy(dst + sizeof(h), body, body_len);
  }
  --credits_;
  int n = 0;
  const uint32_t head_lkey = inl ? 0 : channel_->sendLkey();
  if (!inl && !zcopy) {  // copied: header and payload in one bounce buffer
    if (payload_len > 0) std::memcpy(dst + head_len, payload, payload_len);
    p.sge[n++] = ibv_sge{reinterpret_cast<uintptr_t>(dst), total, head_lkey};
  } else {  // inline (copied at post) or zero-copy: gather header and payload
    if (head_len > 0) p.sge[n++] = ibv_sge{reinterpret_cast<uintptr_t>(dst), head_len, head_lkey};
    if (payload_len > 0) {
      p.sge[n++] =
          ibv_sge{reinterpret_cast<uintptr_t>(payload), payload_len, inl ? 0 : payload_lkey};
    }
  }
  if (inl) p.wr.send_flags = IBV_SEND_INLINE;
  p.wr.num_sge = n;
  return true;
}

bool VerbsEndpoint::postMessage(MsgType type, Tag tag, const void* body, uint32_t body_len,
                                const void* payload, uint32_t payload_len, VerbsOp* op,
                                uint32_t payload_lkey) {
  if (sqFree() < 1) return false;
  PreparedSend p;
  if (!prepareMessage(type, tag, body, body_len, payload, payload_len, p, payload_lkey)) {
    return false;
  }
  return postSend(&p.wr, op, p.bounce);
}

bool VerbsEndpoint::postEager(VerbsOp* op) {
  const auto length = static_cast<uint32_t>(op->length);
  if (op->reg == nullptr) {  // copied: the caller's buffer is free once posted
    if (!postMessage(MsgType::kEager, op->tag, nullptr, 0, op->local, length, nullptr)) {
      return false;
    }
    op->slot->bytes = op->length;
    completeOp(op, Status::ok());
    return true;
  }
  // Zero-copy: the signaled SEND's completion completes the op (opDone), which releases
  // the registration; a failed QP completes it through failAll instead.
  if (!postMessage(MsgType::kEager, op->tag, nullptr, 0, op->local, length, op,
                   op->reg->reg.lkey)) {
    return false;
  }
  op->stage = Stage::kEagerPosted;
  return true;
}

void VerbsEndpoint::sendControl(MsgType type, const void* body, uint32_t body_len) {
  if (queue_.empty() && postMessage(type, 0, body, body_len, nullptr, 0, nullptr)) return;
  if (!failure_.isOk()) return;
  VerbsOp* op = newOp(OpType::kControl, OpKind::kNone, false);
  op->msg = type;
  op->body_len = body_len;
  std::memcpy(op->body, body, body_len);
  enqueue(op);
}

// A credit-only message itself takes a receive buffer, which the peer re-posts and then owes
// back. Were those buffers counted against credit_threshold_ like the others, a threshold of
// 1 (WEFT_IB_RECV_BUFFERS < 8) would make two ranks answer each other's credit messages for
// as long as both poll (measured on rxe0: ~150 per connection in a 50-message test that
// needed none). So they count only against quiet_threshold_ (>= 2): each credit-only message
// answers at least two, and such an exchange dies out. Still, no rank waits for credits
// that are never returned: a rank that is done owes at most quiet_threshold_ - 1 <=
// recv_buffers - 2 buffers, which leaves its peer 2 credits, enough for a message.
void VerbsEndpoint::maybeReturnCredits() {
  if (owed_ - owed_quiet_ < credit_threshold_ && owed_ < quiet_threshold_) return;
  if (postMessage(MsgType::kCredit, 0, nullptr, 0, nullptr, 0, nullptr)) {
    ++counters_.credit_messages_sent;
  }
}

VerbsEndpoint::Counters VerbsEndpoint::counters() const {
  detail::EngineLock lock(engine_);
  return counters_;
}

bool VerbsEndpoint::postKeepalive() {
  if (sqFree() < 1 || !failure_.isOk() || !channel_) return false;
  uint64_t* word = channel_->atomicWord(0) - 1;  // control word 0: never read by anyone
  ibv_sge sge{reinterpret_cast<uintptr_t>(word), sizeof(uint64_t), channel_->ctlLkey()};
  ibv_send_wr wr{};
  wr.opcode = IBV_WR_RDMA_WRITE;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.wr.rdma.remote_addr = channel_->remote().scratch_addr;
  wr.wr.rdma.rkey = channel_->remote().scratch_rkey;
  return postSend(&wr, nullptr, -1, true);
}

void VerbsEndpoint::checkTimers(Deadline::Clock::time_point now) {
  if (heard_) {
    heard_ = false;
    last_heard_ = now;
  }
  if (closed_ || !failure_.isOk() || keepalive_in_flight_) return;
  if (slots_.size == 0 && queue_.empty()) return;  // nobody waits for the peer
  const auto interval = std::chrono::duration<double>(state_->config().keepalive_s);
  if (now - last_heard_ < interval) return;
  if (postKeepalive()) {
    keepalive_in_flight_ = true;
    WEFT_LOG(kDebug, "verbs") << name_ << ": probing the peer (silent for "
                              << formatDuration(now - last_heard_) << " with " << slots_.size
                              << " requests pending)";
  }
}

void VerbsEndpoint::arm() {
  ibv_req_notify_cq(channel_->cq(), 0);
}

unsigned VerbsEndpoint::poll() {
  const unsigned n = pollCq();
  if (n > 0 && failure_.isOk()) pump();
  if (deferred_ > 0 && failure_.isOk()) {
    // Probe when nothing came (the caller waits), or after many busy polls in a row (a
    // stream of receives on this CQ must not hold deferred operations back).
    if (n == 0 || ++busy_polls_ >= kBusyPollsBeforeKick) {
      busy_polls_ = 0;
      kickDeferred();
    }
  }
  return n;
}

// ---- two-sided API ---------------------------------------------------------------------

Result<Request> VerbsEndpoint::send(const void* buffer, size_t length, Tag tag) {
  detail::EngineLock lock(engine_);
  if (closed_ || !failure_.isOk()) [[unlikely]]
    return usable(OpKind::kSend);
  if (buffer == nullptr && length != 0) [[unlikely]] {
    return argError(OpKind::kSend, strCat("null buffer with length ", length));
  }
  if ((tag & ~kUserTagMask) != 0) [[unlikely]] {
    return argError(OpKind::kSend,
                    strCat("tag ", hex(tag), " uses bits above the ", kTagBits, " caller bits"));
  }
  if (isDeviceBuffer(buffer, length)) [[unlikely]]
    return sendDevice(buffer, length, tag);
  const bool eager = length <= eager_max_;
  if (eager && length < zcopy_min_) {
    if (queue_.empty() && postMessage(MsgType::kEager, tag, nullptr, 0, buffer,
                                      static_cast<uint32_t>(length), nullptr)) {
      engine_.kick();
      return detail::RequestPool::completed(OpKind::kSend, static_cast<uint32_t>(length));
    }
    if (!failure_.isOk()) return usable(OpKind::kSend);
  }
  VerbsOp* op = newOp(OpType::kSend, OpKind::kSend, true);
  if (op == nullptr) return pool_.exhausted(OpKind::kSend);
  op->local = static_cast<char*>(const_cast<void*>(buffer));
  op->length = length;
  op->tag = tag;
  op->slot->capacity = length;
  return startSend(op, eager);
}

// The send op (local, length, tag set; reg set for a GPUDirect device buffer) registered as
// its path needs and queued.
Result<Request> VerbsEndpoint::startSend(VerbsOp* op, bool eager) {
  Result<Request> r = handleFor(op);
  if (eager) {
    op->stage = Stage::kEager;
    if (op->length >= zcopy_min_) {  // registration failed: copy instead (always correct)
      auto reg =
          state_->cache().acquire(op->local, op->length, MemoryType::kHost, LocalAccess::kRead);
      if (reg.isOk()) op->reg = *reg;
    }
  } else {
    if (op->reg == nullptr) {
      auto reg =
          state_->cache().acquire(op->local, op->length, MemoryType::kHost, LocalAccess::kRead);
      if (!reg.isOk()) {
        completeOp(op, reg.status().withContext(strCat("send on ", name_)));
        return r;
      }
      op->reg = *reg;
    }
    op->stage = Stage::kRtsToPost;
  }
  enqueue(op);
  return r;
}

// send() of a device buffer: eager sizes are staged (copied like host memory), larger ones go
// by GPUDirect or through a staging buffer (deviceUse).
Result<Request> VerbsEndpoint::sendDevice(const void* buffer, size_t length, Tag tag) {
  const bool eager = length <= eager_max_;
  WEFT_ASSIGN_OR_RETURN(DeviceUse use, deviceUse(OpKind::kSend, buffer, length, !eager, true));
  VerbsOp* op = newOp(OpType::kSend, OpKind::kSend, true);
  if (op == nullptr) {
    dropDeviceUse(use);
    return pool_.exhausted(OpKind::kSend);
  }
  op->local = static_cast<char*>(const_cast<void*>(buffer));
  op->length = length;
  op->tag = tag;
  op->slot->capacity = length;
  attachDeviceUse(op, use, false);
  return startSend(op, eager);
}

Result<Request> VerbsEndpoint::recv(void* buffer, size_t length, Tag tag, Tag mask) {
  detail::EngineLock lock(engine_);
  if (closed_ || !failure_.isOk()) [[unlikely]]
    return usable(OpKind::kRecv);
  if (buffer == nullptr && length != 0) [[unlikely]] {
    return argError(OpKind::kRecv, strCat("null buffer with length ", length));
  }
  if ((tag & mask & ~kUserTagMask) != 0) [[unlikely]] {
    return argError(OpKind::kRecv,
                    strCat("tag ", hex(tag), " uses bits above the ", kTagBits, " caller bits"));
  }
  // A device buffer: GPUDirect when a rendezvous-sized message could arrive, else staged.
  const bool device = isDeviceBuffer(buffer, length);
  DeviceUse use;
  if (device) [[unlikely]] {
    WEFT_ASSIGN_OR_RETURN(use,
                          deviceUse(OpKind::kRecv, buffer, length, length > eager_max_, false));
  }
  VerbsOp* op = newOp(OpType::kRecv, OpKind::kRecv, true);
  if (op == nullptr) {
    dropDeviceUse(use);
    return pool_.exhausted(OpKind::kRecv);
  }
  op->local = static_cast<char*>(buffer);
  if (device) [[unlikely]]
    attachDeviceUse(op, use, true);
  op->length = length;
  op->mask = mask & kUserTagMask;
  op->tag = tag & op->mask;
  op->slot->capacity = length;
  op->stage = Stage::kPosted;
  Result<Request> r = handleFor(op);
  for (auto it = unexpected_.begin(); it != unexpected_.end(); ++it) {
    if ((it->tag & op->mask) != op->tag) continue;
    Unexpected u = std::move(*it);
    unexpected_.erase(it);
    if (u.type == MsgType::kEager) {
      deliverEager(op, u.tag, u.data.data(), u.length);
    } else {
      startRndvRecv(op, u.tag, u.rts);
    }
    return r;
  }
  op->in_recvs = true;
  op->prev = recvs_tail_;
  op->next = nullptr;
  if (recvs_tail_ != nullptr) {
    recvs_tail_->next = op;
  } else {
    recvs_head_ = op;
  }
  recvs_tail_ = op;
  return r;
}

Result<Request> VerbsEndpoint::recvNotify() {
  detail::EngineLock lock(engine_);
  if (closed_ || !failure_.isOk()) [[unlikely]]
    return usable(OpKind::kRecvNotify);
  VerbsOp* op = newOp(OpType::kRecvNotify, OpKind::kRecvNotify, true);
  if (op == nullptr) return pool_.exhausted(OpKind::kRecvNotify);
  Result<Request> r = handleFor(op);
  if (!notifications_.empty()) {
    op->slot->value = notifications_.front();
    notifications_.pop_front();
    completeOp(op, Status::ok());
  } else {
    notify_waiters_.push_back(op);
  }
  return r;
}

Result<Request> VerbsEndpoint::flush() {
  detail::EngineLock lock(engine_);
  if (closed_ || !failure_.isOk()) [[unlikely]]
    return usable(OpKind::kFlush);
  if (rma_finished_ == rma_started_) return detail::RequestPool::completed(OpKind::kFlush, 0);
  VerbsOp* op = newOp(OpType::kFlush, OpKind::kFlush, true);
  if (op == nullptr) return pool_.exhausted(OpKind::kFlush);
  op->flush_target = rma_started_;
  flushes_.push_back(op);
  return handleFor(op);
}

Status VerbsEndpoint::close(Deadline deadline) {
  {
    detail::EngineLock lock(engine_);
    if (closed_) return Status::ok();
    for (VerbsOp* op = recvs_head_; op != nullptr;) {
      VerbsOp* next = op->next;
      completeOp(op, WEFT_ERROR(StatusCode::kCanceled, "recv canceled: ", name_, " was closed"));
      op = next;
    }
    while (!notify_waiters_.empty()) {
      VerbsOp* op = notify_waiters_.front();
      notify_waiters_.pop_front();
      completeOp(op,
                 WEFT_ERROR(StatusCode::kCanceled, "recvNotify canceled: ", name_, " was closed"));
    }
  }
  // Let posted sends and one-sided operations finish (a signaled probe retires the
  // unsignaled WRs behind it).
  const bool drained = engine_.waitUntil(
      [&] {
        if (!failure_.isOk()) return true;
        if (all_ == nullptr && queue_.empty() && sq_posted_ == sq_retired_) return true;
        if (all_ == nullptr && queue_.empty() && !keepalive_in_flight_ && postKeepalive()) {
          keepalive_in_flight_ = true;
        }
        return false;
      },
      deadline);
  detail::EngineLock lock(engine_);
  if (closed_) return Status::ok();
  size_t left = 0;
  for (VerbsOp* op = all_; op != nullptr; op = op->all_next) ++left;
  closed_ = true;
  failAll(WEFT_ERROR(StatusCode::kCanceled, name_, " was closed"));
  state_->removeEndpoint(this);
  state_->releasePeer(peer_);
  channel_.reset();
  if (!drained) {
    return WEFT_ERROR(StatusCode::kTimeout, "close of ", name_, ": ", left,
                      " operations had not finished by the deadline (canceled)");
  }
  return Status::ok();
}

}  // namespace weft::transport::verbs
