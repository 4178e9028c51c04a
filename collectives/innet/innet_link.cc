#include "collectives/innet/innet_link.h"

#include <algorithm>
#include <cstring>

#include "collectives/comm/engine.h"

namespace weft::coll::detail {

ChunkHeader InNetOp::headerOf(size_t c, int from) const {
  ChunkHeader h;
  h.seq = static_cast<uint32_t>(seq);
  h.count = count;
  h.chunk = static_cast<uint32_t>(c);
  h.elems = static_cast<uint32_t>(elemsOf(c));
  h.type = static_cast<uint8_t>(type);
  h.op = static_cast<uint8_t>(op);
  h.from = static_cast<uint32_t>(from);
  return h;
}

std::string InNetOp::sender(uint32_t node) const {
  if (tree == nullptr || node >= static_cast<uint32_t>(tree->numNodes())) {
    return strCat("node ", node);
  }
  return tree->nodeName(static_cast<int>(node));
}

Status InNetOp::check(const ChunkHeader& h, size_t bytes, size_t c) const {
  if (bytes < sizeof(ChunkHeader) || h.magic != kChunkMagic) {
    return WEFT_ERROR(StatusCode::kInternal, "malformed chunk message (", bytes, " bytes, magic ",
                      h.magic, ")");
  }
  const auto mine = headerOf(c, 0);
  if (h.seq != mine.seq || h.count != count || h.type != mine.type || h.op != mine.op) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, sender(h.from), " sent a chunk of operation #",
                      h.seq, " with ", h.count, " x ", static_cast<DataType>(h.type), " ",
                      static_cast<ReduceOp>(h.op), ", this rank called #", mine.seq, " with ",
                      count, " x ", type, " ", op)
        .withHint(
            "every rank must call allreduce with the same count, type and op, in the same "
            "order");
  }
  if (h.chunk != mine.chunk || h.elems != mine.elems || bytes != bytesOf(c)) {
    return WEFT_ERROR(StatusCode::kInternal, sender(h.from), " sent chunk ", h.chunk, " (", h.elems,
                      " elements, ", bytes, " bytes), expected chunk ", c, " (", mine.elems,
                      " elements)")
        .withHint("WEFT_INNET_CHUNK must be the same on every rank");
  }
  return Status::ok();
}

Link::Link(LinkSetup setup)
    : s_(std::move(setup)),
      k_(static_cast<size_t>(std::max(1, s_.credits))),
      sends_(k_),
      credit_in_(k_),
      credit_in_buf_(k_),
      recv_reqs_(k_),
      credit_out_(k_),
      credit_out_buf_(k_),
      local_len_(k_) {
  if (s_.receives) slots_ = std::make_unique<std::byte[]>(k_ * s_.slot_bytes);
}

uint64_t Link::tag(uint64_t base) const {
  return base | ((op_->seq & 15u) << s_.seq_shift);
}

Status Link::fail(const Status& st, const char* what, size_t c) const {
  if (st.code() == StatusCode::kPeerFailure && s_.engine != nullptr && s_.peer_world_rank >= 0 &&
      s_.engine->failureOf(s_.peer_world_rank).isOk()) {
    s_.engine->reportFailure(s_.peer_world_rank, st);
  }
  return Status(st.code(),
                strCat(op_->name, ": ", what, " chunk ", c, " on ", s_.what, ": ", st.message()));
}

namespace {

// Posts through `fn`, driving progress while the transport's request pool is full.
template <typename Fn>
Result<transport::Request> postRetrying(Engine* engine, Deadline deadline, Fn fn) {
  for (;;) {
    Result<transport::Request> r = fn();
    if (r.isOk() || r.status().code() != StatusCode::kNoResource || deadline.expired()) return r;
    engine->context().progress();
  }
}

}  // namespace

Status Link::start(const InNetOp& op) {
  op_ = &op;
  posted_ = credits_ = credit_recvs_ = 0;
  recvs_ = arrived_ = released_ = checked_ = 0;
  const size_t c = op.num_chunks;
  if (s_.endpoint == nullptr) return Status::ok();
  if (s_.receives) {
    for (size_t i = 0; i < std::min(k_, c); ++i) WEFT_RETURN_IF_ERROR(postRecv(i));
  }
  if (s_.sends && c > k_) {
    for (size_t n = 0; n < std::min(k_, c - k_); ++n) WEFT_RETURN_IF_ERROR(postCreditRecv(n));
  }
  return Status::ok();
}

Status Link::postRecv(size_t c) {
  std::byte* buf = slots_.get() + (c % k_) * s_.slot_bytes;
  auto r = postRetrying(s_.engine, op_->deadline, [&] {
    return s_.endpoint->recv(buf, s_.slot_bytes, tag(s_.data_tag_base));
  });
  if (!r.isOk()) return fail(r.status(), "posting the receive of", c);
  recv_reqs_[c % k_] = std::move(*r);
  ++recvs_;
  return Status::ok();
}

Status Link::postCreditRecv(size_t n) {
  auto r = postRetrying(s_.engine, op_->deadline, [&] {
    return s_.endpoint->recv(&credit_in_buf_[n % k_], sizeof(CreditMsg), tag(s_.credit_tag_base));
  });
  if (!r.isOk()) return fail(r.status(), "posting the credit receive for", n);
  credit_in_[n % k_] = std::move(*r);
  ++credit_recvs_;
  return Status::ok();
}

bool Link::canSend(size_t c) const {
  if (c != posted_ || c >= op_->num_chunks) return false;
  return c < k_ || (credits_ > c - k_ && sent(c - k_));
}

bool Link::sent(size_t c) const {
  if (c >= posted_) return false;
  if (s_.endpoint == nullptr || c + k_ < posted_) return true;
  const transport::Request& r = sends_[c % k_];
  return !r.valid() || r.done();
}

Status Link::post(size_t c, const std::byte* msg, size_t len) {
  if (s_.endpoint == nullptr) {  // local: straight into the receiver's slot
    std::memcpy(slots_.get() + (c % k_) * s_.slot_bytes, msg, len);
    local_len_[c % k_] = len;
    ++arrived_;
    ++posted_;
    return Status::ok();
  }
  auto r = postRetrying(s_.engine, op_->deadline,
                        [&] { return s_.endpoint->send(msg, len, tag(s_.data_tag_base)); });
  if (!r.isOk()) return fail(r.status(), "sending", c);
  sends_[c % k_] = std::move(*r);
  ++posted_;
  return Status::ok();
}

Result<bool> Link::arrived(size_t c) {
  if (c < checked_) return true;
  size_t bytes = 0;
  if (s_.endpoint == nullptr) {
    if (c >= arrived_) return false;
    bytes = local_len_[c % k_];
  } else {
    if (c >= recvs_ || !recv_reqs_[c % k_].done()) return false;
    transport::Request& r = recv_reqs_[c % k_];
    if (Status st = r.status(); !st.isOk()) return fail(st, "receiving", c);
    bytes = r.bytes();
  }
  ChunkHeader h;
  std::memcpy(&h, slot(c), sizeof(h));
  if (Status st = op_->check(h, bytes, c); !st.isOk()) return fail(st, "checking", c);
  checked_ = c + 1;
  return true;
}

Status Link::release(size_t c) {
  ++released_;
  if (c + k_ >= op_->num_chunks) return Status::ok();  // no later chunk needs this slot
  if (s_.endpoint == nullptr) {
    ++credits_;
    return Status::ok();
  }
  WEFT_RETURN_IF_ERROR(postRecv(c + k_));
  transport::Request& prev = credit_out_[c % k_];
  if (prev.valid()) {  // the credit for c - k: the sender already used it, so it is out
    if (Status st = prev.wait(op_->deadline); !st.isOk()) return fail(st, "crediting", c - k_);
  }
  CreditMsg& m = credit_out_buf_[c % k_];
  m = CreditMsg{kCreditMagic, static_cast<uint32_t>(op_->seq), c};
  auto r = postRetrying(s_.engine, op_->deadline,
                        [&] { return s_.endpoint->send(&m, sizeof(m), tag(s_.credit_tag_base)); });
  if (!r.isOk()) return fail(r.status(), "crediting", c);
  prev = std::move(*r);
  return Status::ok();
}

Result<bool> Link::poll() {
  if (s_.endpoint == nullptr) return false;
  bool changed = false;
  const size_t n = op_->num_chunks;
  while (s_.sends && credits_ < credit_recvs_ && credit_in_[credits_ % k_].done()) {
    transport::Request& r = credit_in_[credits_ % k_];
    if (Status st = r.status(); !st.isOk()) return fail(st, "waiting for the credit of", credits_);
    const CreditMsg& m = credit_in_buf_[credits_ % k_];
    if (m.magic != kCreditMagic || m.seq != static_cast<uint32_t>(op_->seq) ||
        m.chunk != credits_) {
      return fail(
          WEFT_ERROR(StatusCode::kInternal, "bad credit (seq ", m.seq, ", chunk ", m.chunk, ")"),
          "waiting for the credit of", credits_);
    }
    r = transport::Request();
    const size_t next = credits_ + k_;
    ++credits_;
    changed = true;
    if (next < n - k_) WEFT_RETURN_IF_ERROR(postCreditRecv(next));
  }
  for (size_t i = 0; i < k_; ++i) {
    for (transport::Request* r : {&sends_[i], &credit_out_[i]}) {
      if (!r->valid() || !r->done()) continue;
      if (Status st = r->status(); !st.isOk()) return fail(st, "sending", i);
      *r = transport::Request();
      changed = true;
    }
  }
  return changed;
}

bool Link::idle() const {
  const size_t n = op_->num_chunks;
  if (s_.sends) {
    if (posted_ < n || (n > 0 && !sent(n - 1))) return false;
    if (n > k_ && credits_ < n - k_) return false;
    if (s_.endpoint != nullptr) {
      for (const auto& r : sends_) {
        if (r.valid() && !r.done()) return false;
      }
    }
  }
  if (s_.receives) {
    if (released_ < n) return false;
    for (const auto& r : credit_out_) {
      if (r.valid() && !r.done()) return false;
    }
  }
  return true;
}

std::string Link::waitingFor() const {
  const size_t n = op_->num_chunks;
  if (s_.receives && released_ < n) {
    return strCat(s_.what, ": received ", released_, " of ", n, " chunks");
  }
  if (s_.sends && s_.endpoint != nullptr && !idle()) {
    return strCat(s_.what, ": sent ", posted_, " of ", n, " chunks (", credits_, " credits back)");
  }
  return "";
}

}  // namespace weft::coll::detail
