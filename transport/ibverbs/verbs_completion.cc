// Failed work completions -> Status, with the usual cause as a hint.
#include "transport/ibverbs/verbs_internal.h"

namespace weft::transport::verbs {
namespace {

struct WcInfo {
  const char* name;
  StatusCode code;
  const char* hint;  // nullptr: none
};

WcInfo wcInfo(ibv_wc_status status) {
  switch (status) {
    case IBV_WC_RETRY_EXC_ERR:
      return {"IBV_WC_RETRY_EXC_ERR", StatusCode::kPeerFailure,
              "the peer did not acknowledge: it died or closed the connection, or the path is "
              "wrong: check the GID index (WEFT_IB_GID_INDEX), the MTU (WEFT_IB_MTU) and the "
              "link"};
    case IBV_WC_RNR_RETRY_EXC_ERR:
      return {"IBV_WC_RNR_RETRY_EXC_ERR", StatusCode::kPeerFailure,
              "the peer had no receive buffer posted (receiver not ready)"};
    case IBV_WC_REM_ACCESS_ERR:
      return {"IBV_WC_REM_ACCESS_ERR", StatusCode::kInvalidArgument,
              "the remote key or the bounds are wrong, the peer deregistered the region, or "
              "the region is read-only (registered from read-only memory: reads only)"};
    case IBV_WC_REM_INV_REQ_ERR:
      return {"IBV_WC_REM_INV_REQ_ERR", StatusCode::kInvalidArgument,
              "the peer rejected the request (length above its limit, or an operation its QP "
              "does not allow)"};
    case IBV_WC_REM_OP_ERR:
      return {"IBV_WC_REM_OP_ERR", StatusCode::kPeerFailure, nullptr};
    case IBV_WC_REM_ABORT_ERR:
      return {"IBV_WC_REM_ABORT_ERR", StatusCode::kPeerFailure, nullptr};
    case IBV_WC_LOC_LEN_ERR: return {"IBV_WC_LOC_LEN_ERR", StatusCode::kInternal, nullptr};
    case IBV_WC_LOC_QP_OP_ERR: return {"IBV_WC_LOC_QP_OP_ERR", StatusCode::kInternal, nullptr};
    case IBV_WC_LOC_PROT_ERR:
      return {"IBV_WC_LOC_PROT_ERR", StatusCode::kInternal,
              "a local buffer was not covered by its registration (freed while in use?)"};
    case IBV_WC_LOC_ACCESS_ERR: return {"IBV_WC_LOC_ACCESS_ERR", StatusCode::kInternal, nullptr};
    case IBV_WC_WR_FLUSH_ERR:
      return {"IBV_WC_WR_FLUSH_ERR", StatusCode::kCanceled,
              "the QP entered the error state because of an earlier failure"};
    case IBV_WC_MW_BIND_ERR: return {"IBV_WC_MW_BIND_ERR", StatusCode::kInternal, nullptr};
    case IBV_WC_BAD_RESP_ERR: return {"IBV_WC_BAD_RESP_ERR", StatusCode::kPeerFailure, nullptr};
    case IBV_WC_FATAL_ERR: return {"IBV_WC_FATAL_ERR", StatusCode::kIoError, nullptr};
    case IBV_WC_RESP_TIMEOUT_ERR:
      return {"IBV_WC_RESP_TIMEOUT_ERR", StatusCode::kPeerFailure, nullptr};
    case IBV_WC_GENERAL_ERR: return {"IBV_WC_GENERAL_ERR", StatusCode::kIoError, nullptr};
    default: return {"IBV_WC_?", StatusCode::kIoError, nullptr};
  }
}

}  // namespace

std::string wcStatusText(ibv_wc_status status) {
  return strCat(ibv_wc_status_str(status), " (", wcInfo(status).name, ", status ",
                static_cast<int>(status), ")");
}

std::string_view wrOpcodeName(ibv_wr_opcode opcode) {
  switch (opcode) {
    case IBV_WR_RDMA_WRITE: return "RDMA_WRITE";
    case IBV_WR_RDMA_WRITE_WITH_IMM: return "RDMA_WRITE_WITH_IMM";
    case IBV_WR_SEND: return "SEND";
    case IBV_WR_SEND_WITH_IMM: return "SEND_WITH_IMM";
    case IBV_WR_RDMA_READ: return "RDMA_READ";
    case IBV_WR_ATOMIC_CMP_AND_SWP: return "ATOMIC_CMP_AND_SWP";
    case IBV_WR_ATOMIC_FETCH_AND_ADD: return "ATOMIC_FETCH_AND_ADD";
    default: return "other";
  }
}

std::string_view wcOpcodeName(ibv_wc_opcode opcode) {
  switch (opcode) {
    case IBV_WC_SEND: return "SEND";
    case IBV_WC_RDMA_WRITE: return "RDMA_WRITE";
    case IBV_WC_RDMA_READ: return "RDMA_READ";
    case IBV_WC_COMP_SWAP: return "COMP_SWAP";
    case IBV_WC_FETCH_ADD: return "FETCH_ADD";
    case IBV_WC_RECV: return "RECV";
    case IBV_WC_RECV_RDMA_WITH_IMM: return "RECV_RDMA_WITH_IMM";
    default: return "other";
  }
}

Status wcError(const ibv_wc& wc, std::string_view op, std::string_view endpoint, uint32_t local_qp,
               uint32_t remote_qp, int peer_rank, std::string_view gid_note, bool peer_buffer) {
  WcInfo info = wcInfo(wc.status);
  if (peer_buffer && wc.status == IBV_WC_REM_ACCESS_ERR) {
    // A key the peer handed us for a rendezvous (or its keepalive word) is gone: the peer
    // deregistered it by dying or closing, not because the caller passed a bad key.
    info.code = StatusCode::kPeerFailure;
    info.hint = "the peer's registration of its buffer went away in the middle of the "
                "transfer: it died or closed the connection";
  }
  Status s(info.code, strCat(op, " on ", endpoint, ": work completion failed: ",
                             wcStatusText(wc.status), ", vendor error ", hex(wc.vendor_err),
                             ", local QP ", hex(local_qp), ", remote QP ", hex(remote_qp),
                             ", peer rank ", peer_rank));
  if (info.hint == nullptr) return s;
  if (wc.status == IBV_WC_RETRY_EXC_ERR) {
    return s.withHint(strCat(info.hint, " (this rank uses ", gid_note, ")"));
  }
  return s.withHint(info.hint);
}

}  // namespace weft::transport::verbs
