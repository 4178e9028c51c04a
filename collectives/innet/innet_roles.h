// The two roles a process plays in the in-network allreduce emulation: its rank (streams
// its buffer up to its leaf switch, takes the result from it) and the switches it hosts
// (reduce the children's chunks in a fixed order, forward up, fan the result out down).
// Internal to collectives/innet; see collectives/api/innet.h.
//
// Both are non-blocking state machines: step() does whatever the links allow and says
// whether anything moved; innet.cc drives them, with the transport's progress, until
// done() or the deadline. Threads: the world's thread.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "collectives/innet/innet_link.h"
#include "collectives/reduce/reducer.h"

namespace weft::coll::detail {

// K message slots of slot_bytes each.
class SlotBuffer {
 public:
  SlotBuffer(size_t slots, size_t slot_bytes)
      : bytes_(slot_bytes), data_(std::make_unique<std::byte[]>(slots * slot_bytes)), n_(slots) {}
  std::byte* at(size_t c) { return data_.get() + (c % n_) * bytes_; }
  std::unique_ptr<std::byte[]> take() { return std::move(data_); }

 private:
  size_t bytes_;
  std::unique_ptr<std::byte[]> data_;
  size_t n_;
};

class RankRole {
 public:
  RankRole(int node, Link* up, Link* down, size_t slots, size_t slot_bytes)
      : node_(node), up_(up), down_(down), staging_(slots, slot_bytes) {}
  void start(const std::byte* send, std::byte* recv);
  Result<bool> step(const InNetOp& op);
  bool done(const InNetOp& op) const {
    return next_up_ == op.num_chunks && next_down_ == op.num_chunks;
  }
  std::unique_ptr<std::byte[]> takeBuffers() { return staging_.take(); }

 private:
  int node_;
  Link* up_;
  Link* down_;
  SlotBuffer staging_;  // chunk messages in flight to the leaf switch
  const std::byte* send_ = nullptr;
  std::byte* recv_ = nullptr;
  size_t next_up_ = 0;
  size_t next_down_ = 0;
};

class SwitchRole {
 public:
  // up_in / down_out: one per child, in the tree's child order; up_out / down_in: nullptr
  // for the root.
  SwitchRole(int node, int ranks, std::vector<Link*> up_in, std::vector<Link*> down_out,
             Link* up_out, Link* down_in, size_t slots, size_t slot_bytes)
      : node_(node),
        ranks_(ranks),
        up_in_(std::move(up_in)),
        down_out_(std::move(down_out)),
        up_out_(up_out),
        down_in_(down_in),
        out_(slots, slot_bytes),
        slots_(slots) {}
  void start();
  Result<bool> step(const InNetOp& op, const Reducer& reducer);
  bool done(const InNetOp& op) const {
    return next_reduce_ == op.num_chunks && next_release_ == op.num_chunks;
  }
  std::unique_ptr<std::byte[]> takeBuffers() { return out_.take(); }

 private:
  bool isRoot() const { return up_out_ == nullptr; }
  Result<bool> reduceReady(size_t c);
  Status reduceChunk(const InNetOp& op, const Reducer& reducer, size_t c);
  Result<bool> forwardDown(const InNetOp& op);
  const std::byte* downSource(size_t c);

  int node_;
  int ranks_;
  std::vector<Link*> up_in_;
  std::vector<Link*> down_out_;
  Link* up_out_;
  Link* down_in_;
  SlotBuffer out_;  // reduced chunks: going up, or (root) going down
  size_t slots_;
  size_t next_reduce_ = 0;
  size_t down_avail_ = 0;  // chunks of the result this switch has (root: reduced)
  std::vector<size_t> next_fwd_;
  size_t next_release_ = 0;
};

}  // namespace weft::coll::detail
