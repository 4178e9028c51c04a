// Plans of the v-variants (per-rank counts), built per call. Internal to collectives/.
//
// Simple and correct rather than clever: gatherv / scatterv talk to the root directly (one
// message per non-empty block, all in one round), allgatherv is a ring that forwards block
// r-s at step s, alltoallv a pairwise exchange (step k: send to r+k, receive from r-k).
// Empty blocks send no message on either side (both sides know every count). Plans follow
// plan.h: buffer offsets are the displacements, in elements; in-place layouts (see
// collectives.h) work because the own block's copy is then a copy onto itself.
#pragma once

#include <cstddef>
#include <span>

#include "collectives/schedule/plan.h"

namespace weft::coll::detail {

// counts / displs: one entry per rank (validated by the caller).
Plan buildGathervPlan(int rank, int size, int root, std::span<const size_t> counts,
                      std::span<const size_t> displs);
Plan buildScattervPlan(int rank, int size, int root, std::span<const size_t> counts,
                       std::span<const size_t> displs);
Plan buildAllgathervPlan(int rank, int size, std::span<const size_t> counts,
                         std::span<const size_t> displs);
Plan buildAlltoallvPlan(int rank, int size, std::span<const size_t> send_counts,
                        std::span<const size_t> send_displs, std::span<const size_t> recv_counts,
                        std::span<const size_t> recv_displs);
// One message: a send of count elements from the input, or a receive into the output.
Plan buildSendPlan(int peer, size_t count);
Plan buildRecvPlan(int peer, size_t count);

}  // namespace weft::coll::detail
