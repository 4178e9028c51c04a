#include "collectives/innet/innet_roles.h"

#include <cstring>

namespace weft::coll::detail {

void RankRole::start(const std::byte* send, std::byte* recv) {
  send_ = send;
  recv_ = recv;
  next_up_ = next_down_ = 0;
}

Result<bool> RankRole::step(const InNetOp& op) {
  bool moved = false;
  const size_t esize = sizeOf(op.type);
  // Up: each chunk of the input once, behind a header. In place is safe: chunk c of the
  // result only comes down after chunk c went up.
  while (next_up_ < op.num_chunks && up_->canSend(next_up_)) {
    const size_t c = next_up_;
    std::byte* msg = staging_.at(c);
    const ChunkHeader h = op.headerOf(c, node_);
    std::memcpy(msg, &h, sizeof(h));
    std::memcpy(msg + sizeof(h), send_ + c * op.chunk_elems * esize, op.elemsOf(c) * esize);
    WEFT_RETURN_IF_ERROR(up_->post(c, msg, op.bytesOf(c)));
    ++next_up_;
    moved = true;
  }
  // Down: the result, once.
  while (next_down_ < op.num_chunks) {
    const size_t c = next_down_;
    WEFT_ASSIGN_OR_RETURN(bool here, down_->arrived(c));
    if (!here) break;
    std::memcpy(recv_ + c * op.chunk_elems * esize, down_->slot(c) + sizeof(ChunkHeader),
                op.elemsOf(c) * esize);
    WEFT_RETURN_IF_ERROR(down_->release(c));
    ++next_down_;
    moved = true;
  }
  return moved;
}

void SwitchRole::start() {
  next_reduce_ = down_avail_ = next_release_ = 0;
  next_fwd_.assign(down_out_.size(), 0);
}

Result<bool> SwitchRole::reduceReady(size_t c) {
  for (Link* in : up_in_) {
    WEFT_ASSIGN_OR_RETURN(bool here, in->arrived(c));
    if (!here) return false;
  }
  if (!isRoot()) return up_out_->canSend(c);
  // The root's output slot for c last held chunk c - slots, sent to every child by now?
  return c < slots_ || next_release_ > c - slots_;
}

Status SwitchRole::reduceChunk(const InNetOp& op, const Reducer& reducer, size_t c) {
  std::byte* msg = out_.at(c);
  const ChunkHeader h = op.headerOf(c, node_);
  std::memcpy(msg, &h, sizeof(h));
  std::byte* acc = msg + sizeof(h);
  const size_t n = op.elemsOf(c);
  auto payload = [&](size_t j) { return up_in_[j]->slot(c) + sizeof(ChunkHeader); };
  // The fixed order that makes results bit-identical: ((c0 op c1) op c2) op ...
  if (up_in_.size() == 1) {
    std::memcpy(acc, payload(0), n * sizeOf(op.type));
  } else {
    reducer.reduce(acc, payload(0), payload(1), n);
    for (size_t j = 2; j < up_in_.size(); ++j) reducer.reduce(acc, payload(j), n);
  }
  if (isRoot() && reducer.needsFinalize()) {
    reducer.finalize(acc, n, static_cast<size_t>(ranks_));
  }
  for (Link* in : up_in_) WEFT_RETURN_IF_ERROR(in->release(c));
  if (!isRoot()) WEFT_RETURN_IF_ERROR(up_out_->post(c, msg, op.bytesOf(c)));
  return Status::ok();
}

const std::byte* SwitchRole::downSource(size_t c) {
  return isRoot() ? out_.at(c) : down_in_->slot(c);
}

Result<bool> SwitchRole::forwardDown(const InNetOp& op) {
  bool moved = false;
  if (isRoot()) {
    down_avail_ = next_reduce_;
  } else {
    while (down_avail_ < op.num_chunks) {
      WEFT_ASSIGN_OR_RETURN(bool here, down_in_->arrived(down_avail_));
      if (!here) break;
      ++down_avail_;
    }
  }
  for (size_t j = 0; j < down_out_.size(); ++j) {
    while (next_fwd_[j] < down_avail_ && down_out_[j]->canSend(next_fwd_[j])) {
      const size_t c = next_fwd_[j];
      WEFT_RETURN_IF_ERROR(down_out_[j]->post(c, downSource(c), op.bytesOf(c)));
      ++next_fwd_[j];
      moved = true;
    }
  }
  while (next_release_ < down_avail_) {
    for (Link* out : down_out_) {
      if (!out->sent(next_release_)) return moved;
    }
    if (!isRoot()) WEFT_RETURN_IF_ERROR(down_in_->release(next_release_));
    ++next_release_;
    moved = true;
  }
  return moved;
}

Result<bool> SwitchRole::step(const InNetOp& op, const Reducer& reducer) {
  bool moved = false;
  while (next_reduce_ < op.num_chunks) {
    WEFT_ASSIGN_OR_RETURN(bool ready, reduceReady(next_reduce_));
    if (!ready) break;
    WEFT_RETURN_IF_ERROR(reduceChunk(op, reducer, next_reduce_));
    ++next_reduce_;
    moved = true;
  }
  WEFT_ASSIGN_OR_RETURN(bool forwarded, forwardDown(op));
  return moved || forwarded;
}

}  // namespace weft::coll::detail
