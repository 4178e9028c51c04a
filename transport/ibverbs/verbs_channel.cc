// Channel: the RC QP of one connection, its CQ and buffers, and the QP state machine
// (RESET -> INIT at creation, INIT -> RTR -> RTS in connect()).
#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/logging.h"
#include "transport/ibverbs/verbs_internal.h"

namespace weft::transport::verbs {
namespace {

// Bytes of the control area: word 0 is the keepalive target, then the atomic result words.
constexpr size_t kCtlBytes = 8 * (1 + kAtomicSlots);
// RDMA READs / atomics one QP serves (or issues) at once, at most: devices offer 16..128
// (the device's own limits apply first). Streams of small gets are bound by it: on rxe
// (128) perftest's ib_read_bw keeps 128 in flight, and with 64 weft's 8-byte get rate was
// ~0.5-0.7x of perftest's.
constexpr int kMaxRdAtomic = 128;

uint8_t minMtu(uint8_t a, uint8_t b) {
  return a < b ? a : b;
}

}  // namespace

Result<std::unique_ptr<Channel>> Channel::create(VerbsState& state, int peer) {
  std::unique_ptr<Channel> ch(new Channel(state, peer));
  const VerbsConfig& cfg = state.config();
  ch->eager_size_ = cfg.eager_size;
  ch->recv_count_ = cfg.recv_buffers;
  ch->send_count_ = cfg.recv_buffers + 2 * kSignalEvery;
  ch->psn_ = state.nextPsn();
  WEFT_RETURN_IF_ERROR(ch->allocate());
  const std::string what = strCat(state.name(), ": connection to rank ", peer);
  const int cqe = static_cast<int>(cfg.sq_depth + ch->recv_count_ + 8);
  ch->cq_ = track(ibv_create_cq(state.device(), std::min(cqe, state.deviceAttr().max_cqe),
                                ch.get(), state.channel(), 0),
                  ObjectKind::kCq);
  if (!ch->cq_) {
    return WEFT_ERROR(StatusCode::kNoResource, what, ": ibv_create_cq(", cqe,
                      " entries): ", errnoString(errno));
  }
  ibv_qp_init_attr ia{};
  ia.qp_context = ch.get();
  ia.send_cq = ia.recv_cq = ch->cq_.get();
  ia.qp_type = IBV_QPT_RC;
  ia.cap.max_send_wr = cfg.sq_depth;
  ia.cap.max_recv_wr = ch->recv_count_;
  ia.cap.max_send_sge = static_cast<uint32_t>(std::min(3, state.deviceAttr().max_sge));
  ia.cap.max_recv_sge = 1;
  ia.cap.max_inline_data = state.maxInline();
  ch->qp_ = track(ibv_create_qp(state.pd(), &ia), ObjectKind::kQp);
  if (!ch->qp_) {
    return WEFT_ERROR(StatusCode::kNoResource, what, ": ibv_create_qp(RC, ", cfg.sq_depth,
                      " send / ", ch->recv_count_, " receive entries): ", errnoString(errno))
        .withHint("lower WEFT_IB_SQ_DEPTH / WEFT_IB_RECV_BUFFERS (device max_qp_wr is " +
                  std::to_string(state.deviceAttr().max_qp_wr) + ")");
  }
  ibv_qp_attr a{};
  a.qp_state = IBV_QPS_INIT;
  a.pkey_index = 0;
  a.port_num = static_cast<uint8_t>(state.port().port);
  a.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |
                      IBV_ACCESS_REMOTE_ATOMIC;
  int rc = ibv_modify_qp(ch->qp_.get(), &a,
                         IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
  if (rc != 0) {
    return WEFT_ERROR(StatusCode::kIoError, what, ": ibv_modify_qp(INIT) of QP ",
                      hex(ch->qp_->qp_num), ": ", errnoString(rc));
  }
  std::string err;
  for (uint32_t i = 0; i < ch->recv_count_; ++i) {
    if (!ch->postRecv(i, err)) return WEFT_ERROR(StatusCode::kIoError, what, ": ", err);
  }
  return ch;
}

Status Channel::allocate() {
  const std::string what = strCat(state_.name(), ": connection to rank ", peer_);
  recv_mem_ = allocateAligned(size_t{recv_count_} * eager_size_);
  send_mem_ = allocateAligned(size_t{send_count_} * eager_size_);
  ctl_mem_ = allocateAligned(kCtlBytes);
  if (!recv_mem_ || !send_mem_ || !ctl_mem_) {
    return WEFT_ERROR(StatusCode::kNoResource, what, ": cannot allocate ",
                      size_t{recv_count_ + send_count_} * eager_size_, " bytes of eager buffers");
  }
  std::memset(ctl_mem_.get(), 0, kCtlBytes);
  auto reg = [&](const AlignedBuffer& mem, size_t bytes, int access, MrPtr& out) -> Status {
    out = track(ibv_reg_mr(state_.pd(), mem.get(), bytes, access), ObjectKind::kMr);
    if (!out) return registrationError(errno, strCat(what, ": eager buffers"), mem.get(), bytes);
    return Status::ok();
  };
  WEFT_RETURN_IF_ERROR(reg(recv_mem_, size_t{recv_count_} * eager_size_, IBV_ACCESS_LOCAL_WRITE,
                           recv_mr_));
  WEFT_RETURN_IF_ERROR(reg(send_mem_, size_t{send_count_} * eager_size_, IBV_ACCESS_LOCAL_WRITE,
                           send_mr_));
  return reg(ctl_mem_, kCtlBytes, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, ctl_mr_);
}

Channel::~Channel() = default;

bool Channel::postRecv(uint32_t i, std::string& err) {
  ibv_sge sge{};
  sge.addr = reinterpret_cast<uintptr_t>(recvBuffer(i));
  sge.length = eager_size_;
  sge.lkey = recv_mr_->lkey;
  ibv_recv_wr wr{};
  wr.wr_id = kRecvWrFlag | i;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  ibv_recv_wr* bad = nullptr;
  const int rc = ibv_post_recv(qp_.get(), &wr, &bad);
  if (rc != 0) {
    err = strCat("ibv_post_recv on QP ", hex(qp_->qp_num), ": ", errnoString(rc));
    return false;
  }
  return true;
}

uint32_t Channel::maxDestRdAtomic() const {
  return static_cast<uint32_t>(std::max(1, std::min(state_.deviceAttr().max_qp_rd_atom,
                                                    kMaxRdAtomic)));
}

QpRecord Channel::localRecord() const {
  const PortSelection& p = state_.port();
  QpRecord r;
  r.qpn = qp_->qp_num;
  r.psn = psn_;
  r.lid = p.lid;
  r.gid = p.gid;
  r.gid_type = static_cast<uint8_t>(p.gid_type);
  r.link_layer = p.link_layer;
  r.mtu = offeredMtu(p.active_mtu, state_.config().mtu);
  r.rndv = static_cast<uint8_t>(state_.config().rndv);
  r.recv_buffers = recv_count_;
  r.eager_size = eager_size_;
  r.max_dest_rd_atomic = maxDestRdAtomic();
  r.scratch_addr = reinterpret_cast<uintptr_t>(ctl_mem_.get());
  r.scratch_rkey = ctl_mr_->rkey;
  return r;
}

Status Channel::checkPeer(const QpRecord& peer, std::string_view what,
                          const std::string& ends) const {
  const PortSelection& p = state_.port();
  const Rndv rndv = state_.config().rndv;
  if (peer.rndv != static_cast<uint8_t>(rndv)) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what, ": the peer uses the ",
                      peer.rndv == 0 ? "read" : "write", " rendezvous protocol, this rank the ",
                      rndv == Rndv::kRead ? "read" : "write", " one")
        .withHint("set the same WEFT_IB_RNDV on every rank");
  }
  if (peer.link_layer != p.link_layer ||
      (p.link_layer == IBV_LINK_LAYER_ETHERNET && peer.gid_type != p.gid_type)) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what, ": link layer / GID type differ (",
                      ends, ")")
        .withHint("both sides must use the same RoCE version: set WEFT_IB_GID_INDEX");
  }
  return Status::ok();
}

Status Channel::toRtr(const QpRecord& peer, std::string_view what, const std::string& ends) {
  const PortSelection& p = state_.port();
  const VerbsConfig& cfg = state_.config();
  ibv_qp_attr a{};
  a.qp_state = IBV_QPS_RTR;
  a.path_mtu = static_cast<ibv_mtu>(mtu_);
  a.dest_qp_num = peer.qpn;
  a.rq_psn = peer.psn;
  a.max_dest_rd_atomic = static_cast<uint8_t>(maxDestRdAtomic());
  a.min_rnr_timer = 12;  // 0.64 ms
  a.ah_attr.dlid = peer.lid;
  a.ah_attr.sl = static_cast<uint8_t>(cfg.sl);
  a.ah_attr.port_num = static_cast<uint8_t>(p.port);
  if (p.link_layer == IBV_LINK_LAYER_ETHERNET) {
    a.ah_attr.is_global = 1;
    a.ah_attr.grh.dgid = peer.gid;
    a.ah_attr.grh.sgid_index = static_cast<uint8_t>(p.gid_index);
    a.ah_attr.grh.hop_limit = 64;
    a.ah_attr.grh.traffic_class = static_cast<uint8_t>(cfg.traffic_class);
  }
  const int rc = ibv_modify_qp(qp_.get(), &a,
                               IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
                                   IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC |
                                   IBV_QP_MIN_RNR_TIMER);
  if (rc != 0) {
    return WEFT_ERROR(StatusCode::kIoError, what, ": ibv_modify_qp(RTR, MTU ", mtuBytes(mtu_),
                      "): ", errnoString(rc), "; ", ends)
        .withHint(strCat("check the GID index (", p.gid_why,
                         "; WEFT_IB_GID_INDEX overrides) and the MTU (WEFT_IB_MTU)"));
  }
  return Status::ok();
}

Status Channel::toRts(const QpRecord& peer, std::string_view what, const std::string& ends) {
  const VerbsConfig& cfg = state_.config();
  ibv_qp_attr a{};
  a.qp_state = IBV_QPS_RTS;
  a.timeout = static_cast<uint8_t>(cfg.timeout);
  a.retry_cnt = static_cast<uint8_t>(cfg.retry_count);
  a.rnr_retry = static_cast<uint8_t>(cfg.rnr_retry);
  a.sq_psn = psn_;
  a.max_rd_atomic = static_cast<uint8_t>(std::max<uint32_t>(
      1, std::min<uint32_t>(static_cast<uint32_t>(state_.deviceAttr().max_qp_init_rd_atom),
                            std::min<uint32_t>(peer.max_dest_rd_atomic, kMaxRdAtomic))));
  const int rc = ibv_modify_qp(qp_.get(), &a,
                               IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
                                   IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
  if (rc != 0) {
    return WEFT_ERROR(StatusCode::kIoError, what, ": ibv_modify_qp(RTS): ", errnoString(rc), "; ",
                      ends);
  }
  return Status::ok();
}

Status Channel::connect(const QpRecord& peer, std::string_view what) {
  const PortSelection& p = state_.port();
  const std::string ends =
      strCat("local QP ", hex(qp_->qp_num), " (", p.device, ":", p.port, " gid ", p.gid_index,
             " ", gidTypeName(p.gid_type), "), remote QP ", hex(peer.qpn), " (gid ",
             gidText(peer.gid), " ", gidTypeName(peer.gid_type), ", lid ", peer.lid, ")");
  WEFT_RETURN_IF_ERROR(checkPeer(peer, what, ends));
  mtu_ = minMtu(offeredMtu(p.active_mtu, state_.config().mtu), peer.mtu);
  remote_ = peer;
  WEFT_RETURN_IF_ERROR(toRtr(peer, what, ends));
  WEFT_RETURN_IF_ERROR(toRts(peer, what, ends));
  WEFT_LOG(kDebug, "verbs") << what << ": connected, MTU " << mtuBytes(mtu_) << "; " << ends;
  return Status::ok();
}

}  // namespace weft::transport::verbs
