// The collective operations and point-to-point messages of a Communicator, blocking and
// non-blocking (the i-prefixed forms return a Request, see request.h).
//
// Conventions (every function)
//  - Counts are elements of `type`; buffers are host memory. A buffer a rank does not use
//    (broadcast / scatter input off the root, reduce / gather output off the root) may be
//    nullptr. A used buffer that is nullptr with a non-zero count is kInvalidArgument.
//  - Every rank of the communicator calls the same collectives in the same order with the
//    same count, type, op, root and algorithm; WEFT_CHECK=1 verifies it on every call (an
//    exchange of a small signature before the operation) and fails all ranks with
//    kInvalidArgument naming the mismatched ranks and what each called.
//  - In place (plan.h): allreduce, reduce, alltoall: send == recv; broadcast has one
//    buffer; reduce_scatter: recv == send + rank*count; allgather / gather (root): send ==
//    recv + rank*count; scatter (root): recv == send + root*count; the v-variants the same
//    with displacements (alltoallv: never in place). Buffers that overlap otherwise are
//    kInvalidArgument.
//  - Reductions: validateReduce() rules (bitwise ops on integer types only). kAvg divides
//    by the communicator size (reduce/reducer.h rounding). All ranks get bit-identical
//    results (each block is reduced once, then copied).
//  - Deadlines: CallOptions::deadline, else now + WEFT_TIMEOUT. On expiry the operation
//    fails with kTimeout naming the operation, its sequence number and the ranks this rank
//    still waited for; a rank that died makes the operation fail with kPeerFailure naming
//    it (directly from the transport, or reported by another rank through the store).
//  - Algorithms: CallOptions::algorithm, else WEFT_ALGO_<OP>, else the tuner's cheapest
//    (tuner.h). An unknown name is kInvalidArgument listing the valid ones.
//  - v-variants: counts and displacements (elements) have one entry per rank and are
//    passed on every rank (identical arrays for gatherv / scatterv / allgatherv); they use
//    simple correct algorithms (gatherv / scatterv direct to and from the root, allgatherv
//    ring, alltoallv pairwise exchange). On one node gatherv / scatterv / allgatherv go
//    through shared memory ("shm") like their uniform forms; CallOptions::algorithm may name
//    "shm" or the schedule ("direct", "ring"); they have no WEFT_ALGO_<OP> override.
//  - send / recv: tags in [0, 2^27); messages between two ranks with equal tags match in
//    order. A recv's count must equal the matching send's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "collectives/api/communicator.h"
#include "collectives/api/request.h"
#include "collectives/api/types.h"
#include "common/deadline.h"
#include "common/result.h"
#include "common/status.h"

namespace weft::coll {

struct CallOptions {
  std::optional<Deadline> deadline;  // default: now + WEFT_TIMEOUT
  std::string_view algorithm;        // force an algorithm ("ring", ...); "" = automatic
  size_t chunk_bytes = 0;            // pipelining chunk; 0 = WEFT_COLL_CHUNK (same on all ranks)
};

Status barrier(Communicator& comm, const CallOptions& opts = {});
Result<Request> ibarrier(Communicator& comm, const CallOptions& opts = {});

// buffer: input at the root, output elsewhere (count elements on every rank).
Status broadcast(Communicator& comm, void* buffer, size_t count, DataType type, int root,
                 const CallOptions& opts = {});
Result<Request> ibroadcast(Communicator& comm, void* buffer, size_t count, DataType type, int root,
                           const CallOptions& opts = {});

// recv (root only): the reduction of every rank's send.
Status reduce(Communicator& comm, const void* send, void* recv, size_t count, DataType type,
              ReduceOp op, int root, const CallOptions& opts = {});
Result<Request> ireduce(Communicator& comm, const void* send, void* recv, size_t count,
                        DataType type, ReduceOp op, int root, const CallOptions& opts = {});

Status allreduce(Communicator& comm, const void* send, void* recv, size_t count, DataType type,
                 ReduceOp op, const CallOptions& opts = {});
Result<Request> iallreduce(Communicator& comm, const void* send, void* recv, size_t count,
                           DataType type, ReduceOp op, const CallOptions& opts = {});

// send: size*count elements; recv: count elements, block `rank` of the reduction.
Status reduceScatter(Communicator& comm, const void* send, void* recv, size_t count, DataType type,
                     ReduceOp op, const CallOptions& opts = {});
Result<Request> ireduceScatter(Communicator& comm, const void* send, void* recv, size_t count,
                               DataType type, ReduceOp op, const CallOptions& opts = {});

// send: count elements; recv: size*count, block r from rank r.
Status allgather(Communicator& comm, const void* send, void* recv, size_t count, DataType type,
                 const CallOptions& opts = {});
Result<Request> iallgather(Communicator& comm, const void* send, void* recv, size_t count,
                           DataType type, const CallOptions& opts = {});

// send: count elements; recv (root only): size*count, block r from rank r.
Status gather(Communicator& comm, const void* send, void* recv, size_t count, DataType type,
              int root, const CallOptions& opts = {});
Result<Request> igather(Communicator& comm, const void* send, void* recv, size_t count,
                        DataType type, int root, const CallOptions& opts = {});

// send (root only): size*count elements, block r to rank r; recv: count elements.
Status scatter(Communicator& comm, const void* send, void* recv, size_t count, DataType type,
               int root, const CallOptions& opts = {});
Result<Request> iscatter(Communicator& comm, const void* send, void* recv, size_t count,
                         DataType type, int root, const CallOptions& opts = {});

// send and recv: size*count elements; block j of rank i's send lands in block i of rank j.
Status alltoall(Communicator& comm, const void* send, void* recv, size_t count, DataType type,
                const CallOptions& opts = {});
Result<Request> ialltoall(Communicator& comm, const void* send, void* recv, size_t count,
                          DataType type, const CallOptions& opts = {});

// recv (root only) gets counts[r] elements from rank r at displs[r]; send_count == counts[rank].
Status gatherv(Communicator& comm, const void* send, size_t send_count, void* recv,
               std::span<const size_t> counts, std::span<const size_t> displs, DataType type,
               int root, const CallOptions& opts = {});
Result<Request> igatherv(Communicator& comm, const void* send, size_t send_count, void* recv,
                         std::span<const size_t> counts, std::span<const size_t> displs,
                         DataType type, int root, const CallOptions& opts = {});

// Rank r gets counts[r] elements from the root's send at displs[r]; recv_count == counts[rank].
Status scatterv(Communicator& comm, const void* send, std::span<const size_t> counts,
                std::span<const size_t> displs, void* recv, size_t recv_count, DataType type,
                int root, const CallOptions& opts = {});
Result<Request> iscatterv(Communicator& comm, const void* send, std::span<const size_t> counts,
                          std::span<const size_t> displs, void* recv, size_t recv_count,
                          DataType type, int root, const CallOptions& opts = {});

// Every rank's recv gets counts[r] elements from rank r at displs[r].
Status allgatherv(Communicator& comm, const void* send, size_t send_count, void* recv,
                  std::span<const size_t> counts, std::span<const size_t> displs, DataType type,
                  const CallOptions& opts = {});
Result<Request> iallgatherv(Communicator& comm, const void* send, size_t send_count, void* recv,
                            std::span<const size_t> counts, std::span<const size_t> displs,
                            DataType type, const CallOptions& opts = {});

// send_counts[j] elements at send_displs[j] go to rank j, which receives them into
// recv_displs[i] (recv_counts[i] == the sender's send_counts[j]).
Status alltoallv(Communicator& comm, const void* send, std::span<const size_t> send_counts,
                 std::span<const size_t> send_displs, void* recv,
                 std::span<const size_t> recv_counts, std::span<const size_t> recv_displs,
                 DataType type, const CallOptions& opts = {});
Result<Request> ialltoallv(Communicator& comm, const void* send,
                           std::span<const size_t> send_counts, std::span<const size_t> send_displs,
                           void* recv, std::span<const size_t> recv_counts,
                           std::span<const size_t> recv_displs, DataType type,
                           const CallOptions& opts = {});

// Point to point within the communicator (peer is a communicator rank, tag in [0, 2^27)).
Status send(Communicator& comm, const void* buffer, size_t count, DataType type, int peer,
            int64_t tag, const CallOptions& opts = {});
Result<Request> isend(Communicator& comm, const void* buffer, size_t count, DataType type, int peer,
                      int64_t tag, const CallOptions& opts = {});
Status recv(Communicator& comm, void* buffer, size_t count, DataType type, int peer, int64_t tag,
            const CallOptions& opts = {});
Result<Request> irecv(Communicator& comm, void* buffer, size_t count, DataType type, int peer,
                      int64_t tag, const CallOptions& opts = {});

}  // namespace weft::coll
