// One direction of one edge of the in-network aggregation tree, as seen by this process:
// chunks flow from the sender node to the receiver node, credits flow back. Internal to
// collectives/innet.
//
//  - Credit-based flow control: the receiver owns `credits` slots of one message each
//    (a ChunkHeader plus at most one chunk). The sender may send chunk c only once the
//    receiver released chunk c - credits (a credit message carrying that chunk number), so
//    the receiver never holds more than credits x chunk bytes for this edge, and the
//    sender's own buffer for chunk c (slot c % credits) is reused only after its send of
//    chunk c - credits completed. Credits are sent only for chunks that free a slot for a
//    later chunk of the same operation, so nothing is left over when an operation ends.
//  - A remote link talks over the transport Endpoint to the other host with two tags
//    (data, credit); a local link (both nodes in this process) copies the message into the
//    receiver's slot and returns credits by counting. Chunks are sent and released in
//    order.
//  - Errors name the operation, the edge ("rank 3 -> switch L0.0 (on rank 2)"), the chunk
//    and the transport's reason; a dead peer is reported to the Engine (which tells the
//    other ranks through the store).
//  - Threads: the world's thread. Buffers stay allocated across operations.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "collectives/api/types.h"
#include "collectives/innet/innet_tree.h"
#include "common/deadline.h"
#include "common/result.h"
#include "common/status.h"
#include "transport/api/endpoint.h"
#include "transport/api/request.h"

namespace weft::coll::detail {

class Engine;

inline constexpr uint32_t kChunkMagic = 0x414E4957;   // "WINA"
inline constexpr uint32_t kCreditMagic = 0x434E4957;  // "WINC"

// Every chunk message starts with this header (host byte order: one machine's ranks).
struct ChunkHeader {
  uint32_t magic = kChunkMagic;
  uint32_t seq = 0;    // operation sequence number (low 32 bits)
  uint64_t count = 0;  // elements of the whole operation
  uint32_t chunk = 0;  // chunk number
  uint32_t elems = 0;  // elements in this chunk
  uint8_t type = 0;    // DataType
  uint8_t op = 0;      // ReduceOp
  uint8_t pad[2] = {};
  uint32_t from = 0;  // sender node
};
static_assert(sizeof(ChunkHeader) == 32);

struct CreditMsg {
  uint32_t magic = kCreditMagic;
  uint32_t seq = 0;
  uint64_t chunk = 0;  // the chunk the receiver released
};

// What one operation needs to know to check and size messages.
struct InNetOp {
  uint64_t seq = 0;
  size_t count = 0;
  DataType type = DataType::kU8;
  ReduceOp op = ReduceOp::kSum;
  size_t chunk_elems = 1;
  size_t num_chunks = 0;
  Deadline deadline = Deadline::never();
  std::string name;  // "innet allreduce #3 (rank 1 of 4, ...)"
  const InNetTree* tree = nullptr;

  size_t elemsOf(size_t c) const {
    const size_t first = c * chunk_elems;
    return count - first < chunk_elems ? count - first : chunk_elems;
  }
  size_t bytesOf(size_t c) const { return sizeof(ChunkHeader) + elemsOf(c) * sizeOf(type); }
  ChunkHeader headerOf(size_t c, int from) const;
  // OK when `h` (received in a message of `bytes`) is chunk c of this operation.
  Status check(const ChunkHeader& h, size_t bytes, size_t c) const;
  // "rank 3", "switch L0.1 (on rank 2)".
  std::string sender(uint32_t node) const;
};

struct LinkSetup {
  std::string what;  // "rank 3 -> switch L0.0 (on rank 2)"
  int credits = 1;
  size_t slot_bytes = 0;                    // sizeof(ChunkHeader) + chunk bytes
  bool sends = false;                       // this process hosts the sender node
  bool receives = false;                    // ... the receiver node (both: local link)
  transport::Endpoint* endpoint = nullptr;  // to the other host (remote links)
  int peer_world_rank = -1;
  Engine* engine = nullptr;
  uint64_t data_tag_base = 0;  // tags without the sequence bits
  uint64_t credit_tag_base = 0;
  int seq_shift = 0;  // where (seq mod 16) goes in the tag
};

class Link {
 public:
  explicit Link(LinkSetup setup);

  // Resets the counters for a new operation; the receiver posts its first receives.
  Status start(const InNetOp& op);

  // Sender side. canSend: chunk c is next, a credit is free and the sender's slot c % credits
  // is no longer in flight. post: sends chunk c (`msg` stays valid until sent(c)); waits out
  // a full transport request pool (kNoResource) until the operation's deadline.
  bool canSend(size_t c) const;
  Status post(size_t c, const std::byte* msg, size_t len);
  bool sent(size_t c) const;
  size_t posted() const { return posted_; }

  // Receiver side. arrived: OK(false) while chunk c is not here yet; the header is
  // checked when it is. release: frees the slot (next receive, credit to the sender).
  Result<bool> arrived(size_t c);
  const std::byte* slot(size_t c) const { return slots_.get() + (c % k_) * s_.slot_bytes; }
  Status release(size_t c);
  size_t released() const { return released_; }

  // Takes in credit messages and completions; true when something changed.
  Result<bool> poll();
  // Every send and credit of the operation done.
  bool idle() const;
  // What this link still waits for, "" when nothing.
  std::string waitingFor() const;
  // The receive slots: kept alive after a failure (the transport may still write them).
  std::unique_ptr<std::byte[]> takeSlots() { return std::move(slots_); }

 private:
  Status fail(const Status& st, const char* what, size_t c) const;
  Status postRecv(size_t c);
  Status postCreditRecv(size_t n);
  uint64_t tag(uint64_t base) const;

  LinkSetup s_;
  size_t k_;
  const InNetOp* op_ = nullptr;
  std::unique_ptr<std::byte[]> slots_;  // receiver: k_ message slots
  // Sender.
  size_t posted_ = 0;
  size_t credits_ = 0;  // credits received (local: released by the receiver)
  size_t credit_recvs_ = 0;
  std::vector<transport::Request> sends_;
  std::vector<transport::Request> credit_in_;
  std::vector<CreditMsg> credit_in_buf_;
  // Receiver.
  size_t recvs_ = 0;
  size_t arrived_ = 0;  // local links: chunks copied in
  size_t released_ = 0;
  std::vector<transport::Request> recv_reqs_;
  std::vector<transport::Request> credit_out_;
  std::vector<CreditMsg> credit_out_buf_;
  std::vector<size_t> local_len_;  // local links: bytes copied into each slot
  size_t checked_ = 0;             // chunks whose header was checked
};

}  // namespace weft::coll::detail
