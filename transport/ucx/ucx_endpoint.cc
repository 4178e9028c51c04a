// UcxEndpoint: tagged messages, RMA, atomics, flush and close over one ucp_ep_h.
#include <algorithm>
#include <ios>
#include <sstream>

#include "common/logging.h"
#include "transport/ucx/ucx_internal.h"

namespace weft::transport::ucx {
namespace {

using detail::RequestSlot;

// UCP wants a non-null buffer even for zero-length messages.
char kEmptyBuffer[8];

// Sends up to this size first try to complete while posted (UCX's inline / short path
// is far smaller on every transport, so larger ones would only fail the attempt).
constexpr size_t kImmediateSendMax = 4096;

// How long a destructor waits for a forced close (it normally completes at once).
constexpr double kDestroyCloseSeconds = 2.0;

std::string hex(uint64_t v) {
  std::ostringstream os;
  os << "0x" << std::hex << v;
  return os.str();
}

void sendCallback(void* request, ucs_status_t status, void* user_data) {
  auto* slot = static_cast<RequestSlot*>(user_data);
  ucp_request_free(request);
  if (auto* ep = static_cast<UcxEndpoint*>(slot->owner)) {
    ep->onSendDone(slot, status);
  } else {
    slot->pool->complete(slot,
                         status == UCS_OK ? Status::ok() : ucxError(status, opKindName(slot->op)));
  }
}

void recvCallback(void* request, ucs_status_t status, const ucp_tag_recv_info_t* info,
                  void* user_data) {
  // `info` lives inside the UCX request: use it before freeing the request.
  auto* slot = static_cast<RequestSlot*>(user_data);
  if (auto* ep = static_cast<UcxEndpoint*>(slot->owner)) {
    ep->onRecvDone(slot, status, info);
  } else {
    slot->pool->complete(slot,
                         status == UCS_OK ? Status::ok() : ucxError(status, opKindName(slot->op)));
  }
  ucp_request_free(request);
}

void errorCallback(void* arg, ucp_ep_h /*ep*/, ucs_status_t status) {
  static_cast<UcxEndpoint*>(arg)->onPeerError(status);
}

// Shared by close() and the destructor: outlives an abandoned close.
struct CloseOp {
  bool done = false;
  bool abandoned = false;
  ucs_status_t status = UCS_OK;
};

void closeCallback(void* request, ucs_status_t status, void* user_data) {
  auto* op = static_cast<CloseOp*>(user_data);
  ucp_request_free(request);
  if (op->abandoned) {
    delete op;
    return;
  }
  op->done = true;
  op->status = status;
}

ucp_request_param_t sendParams(RequestSlot* slot, ucp_send_nbx_callback_t cb) {
  ucp_request_param_t p;
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  p.cb.send = cb;
  p.user_data = slot;
  return p;
}

}  // namespace

UcxEndpoint::UcxEndpoint(StatePtr state, int peer, std::string how)
    : state_(std::move(state)),
      pool_(state_->pool()),
      engine_(state_->engine()),
      peer_(peer),
      how_(std::move(how)),
      send_base_(kKindUser | rankBits(state_->rank())),
      recv_base_(kKindUser | rankBits(peer)) {}

Result<std::unique_ptr<UcxEndpoint>> UcxEndpoint::create(StatePtr state, int peer,
                                                         ucp_ep_params_t params, std::string how,
                                                         bool same_host, bool peer_allows) {
  const bool peer_errors = state->ucxPeerErrors(same_host, peer_allows);
  const bool check_lanes = !peer_errors && same_host && state->peerErrors() && !state->shmOnly();
  WEFT_ASSIGN_OR_RETURN(std::unique_ptr<UcxEndpoint> ep,
                        createWithMode(state, peer, params, how, peer_errors));
  // Without UCX's error mode because the transports promised shared-memory lanes
  // (UcxState::ucxPeerErrors): check that UCX chose them. Any other lane (a network one
  // would be fatal to UCX when it breaks) means: start again in UCX's error mode. The peer
  // sees the same lanes and does the same. (Not with WEFT_UCX_ERROR_HANDLING=0: no error
  // mode anywhere, as asked.)
  if (check_lanes) {
    const std::vector<std::string> lanes = ucxLaneTransports(ep->ep_);
    WEFT_LOG(kDebug, "ucx") << ep->describe() << ": lanes [" << joinStrings(lanes, ",") << "]";
    if (lanes.empty() || !std::all_of(lanes.begin(), lanes.end(), isSharedMemoryTransport)) {
      WEFT_LOG(kInfo, "ucx") << ep->describe() << ": UCX chose lanes ["
                             << joinStrings(lanes, ",")
                             << "] for a peer on this host; connecting again with UCX peer "
                                "error handling";
      ep->retireUcpEndpoint();
      return createWithMode(std::move(state), peer, params, std::move(how), true);
    }
  }
  return ep;
}

Result<std::unique_ptr<UcxEndpoint>> UcxEndpoint::createWithMode(StatePtr state, int peer,
                                                                 ucp_ep_params_t params,
                                                                 std::string how,
                                                                 bool peer_errors) {
  std::unique_ptr<UcxEndpoint> ep(new UcxEndpoint(std::move(state), peer, std::move(how)));
  params.field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
  ep->peer_errors_ = peer_errors;
  params.err_mode = peer_errors ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
  params.err_handler.cb = errorCallback;
  params.err_handler.arg = ep.get();
  const ucs_status_t st = ucp_ep_create(ep->state_->worker(), &params, &ep->ep_);
  if (st != UCS_OK) {
    ep->closed_ = true;  // nothing to close
    ep->never_created_ = true;
    return ucxError(st, strCat("ucp_ep_create for ", ep->describe()));
  }
  return ep;
}

// The endpoint object gives up its UCP endpoint (closeQuietly) and has nothing left to
// destroy. The peer still holds its own first endpoint, so the UCP endpoint may stay until
// the worker is destroyed (one with p2p lanes waits for the peer's disconnect).
void UcxEndpoint::retireUcpEndpoint() {
  closeQuietly();
  closed_ = true;
  never_created_ = true;
}

// Closes the UCP endpoint without waiting: forced in UCX's error mode (UCX purges what it
// holds); otherwise gracefully (UCX refuses a forced close there), with the request
// released at once so that UCX frees it when the close ends, or at worker destruction if it
// never does (a close request still owned makes ucp_worker_destroy assert). Either way the
// endpoint is marked closed, so UCX no longer calls its error callback.
void UcxEndpoint::closeQuietly() {
  if (ep_ == nullptr) return;
  ucp_request_param_t p;
  p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  p.flags = peer_errors_ ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  ucs_status_ptr_t ret = ucp_ep_close_nbx(ep_, &p);
  if (UCS_PTR_IS_PTR(ret)) {
    ucp_request_free(ret);
  } else if (UCS_PTR_IS_ERR(ret) && !isPeerError(UCS_PTR_STATUS(ret))) {
    WEFT_LOG(kDebug, "ucx") << describe() << ": ucp_ep_close_nbx: "
                            << ucs_status_string(UCS_PTR_STATUS(ret));
  }
  ep_ = nullptr;
}

UcxEndpoint::~UcxEndpoint() {
  // Called without the engine lock (the destructor takes it).
  if (never_created_) return;
  detail::EngineLock lock(engine_);
  if (peer_pid_ != 0) state_->unwatch(this);
  peer_pid_ = 0;
  if (!closed_) {
    closed_ = true;
    pool_.forEach(recvs_, [&](RequestSlot* s) {
      s->forced = WEFT_ERROR(StatusCode::kCanceled, opKindName(s->op), " canceled: ", describe(),
                             " was destroyed");
      if (s->handle != nullptr) ucp_request_cancel(state_->worker(), s->handle);
    });
    destroyRkeys(/*keep_pinned=*/false);
    engine_.unlock();
    Status st = closeUcpEndpoint(Deadline::afterSeconds(kDestroyCloseSeconds), true);
    engine_.lock();
    if (!st.isOk()) {
      WEFT_LOG(kWarn, "ucx") << "destroying endpoint: " << st;
    }
    state_->releasePeer(peer_);
  }
  destroyRkeys(/*keep_pinned=*/false);  // pinned keys a failure left
  if (posted_.size + recvs_.size > 0) {
    WEFT_LOG(kDebug, "ucx") << describe() << " destroyed with " << posted_.size + recvs_.size
                            << " requests UCX did not complete: canceling them";
    abandonPending(WEFT_ERROR(StatusCode::kCanceled, describe(), " was destroyed"));
  }
  state_->forget(this);
}

std::string UcxEndpoint::describe() const {
  return strCat("ucx rank ", state_->rank(), " -> rank ", peer_, " (", how_, ")");
}

Status UcxEndpoint::health() const {
  detail::EngineLock lock(engine_);
  if (closed_) return usable(OpKind::kNone);
  return failure_;
}

Status UcxEndpoint::usable(OpKind op) const {
  if (closed_) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, opKindName(op), " on ", describe(),
                      ": the endpoint is closed")
        .withHint("create a new Endpoint; a closed one cannot be reused");
  }
  return failure_.withContext(opKindName(op));
}

Status UcxEndpoint::argError(OpKind op, std::string_view what) const {
  return WEFT_ERROR(StatusCode::kInvalidArgument, opKindName(op), " on ", describe(), ": ", what);
}

Status UcxEndpoint::statusFor(const RequestSlot* slot, ucs_status_t status) const {
  const std::string_view op = opKindName(slot->op);
  if (status == UCS_OK) return Status::ok();
  if (status == UCS_ERR_CANCELED) {
    if (!failure_.isOk()) return failure_.withContext(op);
    return WEFT_ERROR(StatusCode::kCanceled, op, " on ", describe(), " was canceled");
  }
  if (!failure_.isOk()) return failure_.withContext(op);
  if (isPeerError(status)) {
    return WEFT_ERROR(StatusCode::kPeerFailure, op, " on ", describe(), ": peer rank ", peer_,
                      " failed or disconnected (", ucs_status_string(status), ")");
  }
  return ucxError(status, strCat(op, " on ", describe()));
}

void UcxEndpoint::onPeerError(ucs_status_t status) {
  if (!failure_.isOk()) return;
  failure_ = WEFT_ERROR(StatusCode::kPeerFailure, describe(), ": peer rank ", peer_,
                        " failed or disconnected (", ucs_status_string(status), ")")
                 .withHint(
                     "the peer process died, closed its endpoint, or the network path "
                     "broke; see the peer's log");
  WEFT_LOG(kInfo, "ucx") << failure_.message();
  state_->queueFailed(this);
}

void UcxEndpoint::watchProcess(uint32_t pid, uint64_t start_time) {
  peer_pid_ = pid;
  peer_start_ = start_time;
  state_->watch(this);
}

void UcxEndpoint::onPeerDeath() {
  if (!failure_.isOk() || closed_) return;
  failure_ = WEFT_ERROR(StatusCode::kPeerFailure, describe(), ": peer rank ", peer_, " (pid ",
                        peer_pid_, " on this host) exited or was killed")
                 .withHint("see the peer's log or exit status");
  WEFT_LOG(kInfo, "ucx") << failure_.message();
  failPending();
}

void UcxEndpoint::failPending() {
  // 1. Receives live in the worker: cancel them (UCX completes them with the forced status).
  pool_.forEach(recvs_, [&](RequestSlot* s) {
    s->forced = failure_.withContext(opKindName(s->op));
    if (s->handle != nullptr) ucp_request_cancel(state_->worker(), s->handle);
  });
  pool_.forEach(posted_,
                [&](RequestSlot* s) { s->forced = failure_.withContext(opKindName(s->op)); });
  // 2. Drop the UCP endpoint: in UCX's error mode a forced close purges the operations UCX
  //    still holds; without it (a same-host peer) a graceful one marks it closed. Pinned
  //    keys stay until close: destroying one unmaps memory a caller may be reading.
  destroyRkeys(/*keep_pinned=*/true);
  closeQuietly();
  // 3. UCX 1.13 does not purge everything (a rendezvous send waiting in its RTS stage
  //    survives the close): complete the rest now; late UCX callbacks are absorbed.
  abandonPending(failure_);
}

void UcxEndpoint::abandonPending(const Status& why) {
  auto abandon = [&](RequestSlot* s) { pool_.abandon(s, why.withContext(opKindName(s->op))); };
  pool_.forEach(recvs_, abandon);
  pool_.forEach(posted_, abandon);
}

void UcxEndpoint::onSendDone(RequestSlot* slot, ucs_status_t status) {
  if (status == UCS_OK) [[likely]] {
    slot->bytes = slot->capacity;
    pool_.completeOk(slot);
    return;
  }
  failSlot(slot, status, nullptr, false);
}

void UcxEndpoint::onRecvDone(RequestSlot* slot, ucs_status_t status,
                             const ucp_tag_recv_info_t* info) {
  if (status == UCS_OK) [[likely]] {
    slot->bytes = info != nullptr ? info->length : 0;
    slot->tag = info != nullptr ? (info->sender_tag & kUserTagMask) : 0;
    pool_.completeOk(slot);
    return;
  }
  failSlot(slot, status, info, true);
}

void UcxEndpoint::failSlot(RequestSlot* slot, ucs_status_t status,
                           const ucp_tag_recv_info_t* info, bool receive) {
  if (receive && status == UCS_ERR_MESSAGE_TRUNCATED) {
    std::string sent;
    if (info != nullptr && info->length > slot->capacity) {
      sent = strCat(" of ", info->length, " bytes");
    }
    pool_.complete(
        slot, WEFT_ERROR(StatusCode::kInvalidArgument, opKindName(slot->op), " on ", describe(),
                         ": the message", sent, " does not fit the receive buffer of ",
                         slot->capacity, " bytes (truncated)")
                  .withHint("post receives at least as large as the largest "
                            "message the peer sends with that tag"));
    return;
  }
  pool_.complete(slot, statusFor(slot, status));
}

void UcxEndpoint::track(RequestSlot* slot, ucs_status_ptr_t ret) {
  if (ret == nullptr) {
    onSendDone(slot, UCS_OK);
  } else if (UCS_PTR_IS_ERR(ret)) {
    onSendDone(slot, UCS_PTR_STATUS(ret));
  } else {
    slot->handle = ret;
  }
}

Result<Request> UcxEndpoint::finishPost(RequestSlot* slot) {
  Request r = pool_.handle(slot);
  engine_.kick();
  return r;
}

Result<Request> UcxEndpoint::sendRaw(OpKind op, const void* buffer, size_t length,
                                     uint64_t ucp_tag) {
  RequestSlot* slot = pool_.acquire(op, &posted_, this);
  if (slot == nullptr) return pool_.exhausted(op);
  slot->capacity = length;
  ucp_request_param_t p = sendParams(slot, sendCallback);
  track(slot, ucp_tag_send_nbx(ep_, length != 0 ? buffer : kEmptyBuffer, length, ucp_tag, &p));
  return finishPost(slot);
}

Result<Request> UcxEndpoint::recvRaw(OpKind op, void* buffer, size_t length, uint64_t ucp_tag,
                                     uint64_t ucp_mask) {
  RequestSlot* slot = pool_.acquire(op, &recvs_, this);
  if (slot == nullptr) return pool_.exhausted(op);
  slot->capacity = length;
  if (op == OpKind::kRecvNotify) buffer = &slot->value;
  void* const dest = length != 0 ? buffer : kEmptyBuffer;
  // UCX 1.13 leaves recv_info unfilled when ucp_tag_recv_nbx completes while posting (a
  // message that was already here), so immediate completion is turned off: UCX then runs
  // the callback inline, with the length and tag (test
  // ReceivePostedAfterArrivalReportsLengthAndTag). (Before: a probe ahead of every receive,
  // ~40 instructions on the common path, where the receive is posted first.)
  ucp_request_param_t p;
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                   UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
  p.cb.recv = recvCallback;
  p.user_data = slot;
  ucs_status_ptr_t ret = ucp_tag_recv_nbx(state_->worker(), dest, length, ucp_tag, ucp_mask, &p);
  if (UCS_PTR_IS_ERR(ret)) {
    onRecvDone(slot, UCS_PTR_STATUS(ret), nullptr);
  } else if (slot->state.load(std::memory_order_relaxed) == detail::kSlotPending) {
    // (Else the callback already ran, and freed the request.) A UCX that completes at once
    // despite the flag returns no request: complete the slot, without length and tag.
    if (ret == nullptr) {
      onRecvDone(slot, UCS_OK, nullptr);
    } else {
      slot->handle = ret;
    }
  }
  return finishPost(slot);
}

Status UcxEndpoint::sendError(const void* buffer, size_t length, Tag tag) const {
  if (closed_ || !failure_.isOk()) return usable(OpKind::kSend);
  if (buffer == nullptr && length != 0) {
    return argError(OpKind::kSend, strCat("null buffer with length ", length));
  }
  return argError(OpKind::kSend,
                  strCat("tag ", hex(tag), " uses bits above the ", kTagBits, " caller bits"));
}

Status UcxEndpoint::recvError(const void* buffer, size_t length, Tag tag, Tag mask) const {
  if (closed_ || !failure_.isOk()) return usable(OpKind::kRecv);
  if (buffer == nullptr && length != 0) {
    return argError(OpKind::kRecv, strCat("null buffer with length ", length));
  }
  return argError(OpKind::kRecv, strCat("tag ", hex(tag), " (mask ", hex(mask),
                                        ") uses bits above the ", kTagBits, " caller bits"));
}

Result<Request> UcxEndpoint::send(const void* buffer, size_t length, Tag tag) {
  detail::EngineLock lock(engine_);
  if (closed_ || !failure_.isOk() || (buffer == nullptr && length != 0) ||
      (tag & ~kUserTagMask) != 0) [[unlikely]] {
    return sendError(buffer, length, tag);
  }
  if (length <= kImmediateSendMax) {
    // Small messages usually complete while being posted: try that first, without a slot
    // (UCX answers NO_RESOURCE instead of queuing when it cannot).
    ucp_request_param_t p;
    p.op_attr_mask = UCP_OP_ATTR_FLAG_FORCE_IMM_CMPL;
    ucs_status_ptr_t ret =
        ucp_tag_send_nbx(ep_, length != 0 ? buffer : kEmptyBuffer, length, send_base_ | tag, &p);
    if (ret == nullptr) {
      engine_.kick();
      return detail::RequestPool::completed(OpKind::kSend, static_cast<uint32_t>(length));
    }
    // Anything else (NO_RESOURCE, an error) takes the tracked path, which reports it.
  }
  return sendRaw(OpKind::kSend, buffer, length, send_base_ | tag);
}

Result<Request> UcxEndpoint::recv(void* buffer, size_t length, Tag tag, Tag mask) {
  detail::EngineLock lock(engine_);
  if (closed_ || !failure_.isOk() || (buffer == nullptr && length != 0) ||
      (tag & mask & ~kUserTagMask) != 0) [[unlikely]] {
    return recvError(buffer, length, tag, mask);
  }
  return recvRaw(OpKind::kRecv, buffer, length, recv_base_ | (tag & kUserTagMask),
                 kKindMask | kRankMask | (mask & kUserTagMask));
}

Result<Request> UcxEndpoint::flush() {
  detail::EngineLock lock(engine_);
  if (closed_ || !failure_.isOk()) [[unlikely]]
    return usable(OpKind::kFlush);
  RequestSlot* slot = pool_.acquire(OpKind::kFlush, &posted_, this);
  if (slot == nullptr) return pool_.exhausted(OpKind::kFlush);
  ucp_request_param_t p = sendParams(slot, sendCallback);
  track(slot, ucp_ep_flush_nbx(ep_, &p));
  return finishPost(slot);
}

Status UcxEndpoint::closeUcpEndpoint(Deadline deadline, bool force) {
  {
    detail::EngineLock lock(engine_);
    if (ep_ == nullptr) return Status::ok();  // already dropped after a peer death
  }
  auto* op = new CloseOp;
  ucs_status_ptr_t ret;
  {
    detail::EngineLock lock(engine_);
    ucp_request_param_t p;
    p.op_attr_mask =
        UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
    // UCX accepts a forced close only on endpoints with peer error handling.
    p.flags = force && peer_errors_ ? UCP_EP_CLOSE_FLAG_FORCE : 0;
    p.cb.send = closeCallback;
    p.user_data = op;
    ret = ucp_ep_close_nbx(ep_, &p);
    ep_ = nullptr;
  }
  if (ret == nullptr || UCS_PTR_IS_ERR(ret)) {
    delete op;
    // A failed peer makes a graceful close fail too; the endpoint is gone either way.
    if (ret == nullptr || !failure_.isOk() || isPeerError(UCS_PTR_STATUS(ret))) {
      return Status::ok();
    }
    return ucxError(UCS_PTR_STATUS(ret), strCat("close of ", describe()));
  }
  if (!engine_.waitUntil([&] { return op->done; }, deadline)) {
    detail::EngineLock lock(engine_);
    if (!op->done) {
      op->abandoned = true;
      return WEFT_ERROR(StatusCode::kTimeout, "close of ", describe(),
                        ": outstanding operations did not finish before the deadline "
                        "(closed anyway)");
    }
  }
  const ucs_status_t st = op->status;
  delete op;
  if (st != UCS_OK && !isPeerError(st) && st != UCS_ERR_CANCELED) {
    return ucxError(st, strCat("close of ", describe()));
  }
  return Status::ok();
}

Status UcxEndpoint::close(Deadline deadline) {
  bool force = false;
  {
    detail::EngineLock lock(engine_);
    if (closed_) return Status::ok();
    closed_ = true;
    if (peer_pid_ != 0) state_->unwatch(this);
    peer_pid_ = 0;
    pool_.forEach(recvs_, [&](RequestSlot* s) {
      s->forced = WEFT_ERROR(StatusCode::kCanceled, opKindName(s->op), " canceled: ", describe(),
                             " was closed");
      if (s->handle != nullptr) ucp_request_cancel(state_->worker(), s->handle);
    });
    destroyRkeys(/*keep_pinned=*/false);
    force = !failure_.isOk();
  }
  Status st = closeUcpEndpoint(deadline, force);
  detail::EngineLock lock(engine_);
  if (posted_.size + recvs_.size > 0) {
    abandonPending(failure_.isOk() ? WEFT_ERROR(StatusCode::kCanceled, describe(), " was closed")
                                   : failure_);
  }
  state_->releasePeer(peer_);
  return st;
}

}  // namespace weft::transport::ucx
