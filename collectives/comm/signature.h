// WEFT_CHECK: the signature of one collective call, compared across ranks before the call
// runs. Internal to collectives/.
//
// Every rank contributes its Signature to an allgather (Bruck, in the check phase of the
// operation's tag space: executor/tags.h), then every rank compares all of them. Ranks that
// called different things all fail the same way, with kInvalidArgument listing the groups of
// ranks and what each group called. The exchange moves 64 bytes per rank, so it costs about
// ceil(log2 size) message latencies per call.
//
// Wire format: the struct below, host-endian (ranks of one job share an architecture).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "collectives/api/collectives.h"
#include "collectives/api/communicator.h"
#include "collectives/api/types.h"
#include "collectives/comm/op_code.h"
#include "common/status.h"

namespace weft::coll::detail {

struct Signature {
  uint32_t magic = kMagic;
  uint8_t op = 0;    // OpCode
  uint8_t type = 0;  // DataType
  uint8_t reduce_op = kNoReduceOp;
  uint8_t reserved = 0;
  int32_t root = -1;  // -1 when the operation has none
  uint32_t chunk_elems = 0;
  uint64_t count = 0;
  uint64_t counts_hash = 0;  // v-variants: FNV-1a over counts and displacements
  char algorithm[24] = {};   // NUL-padded
  uint64_t reserved2 = 0;

  static constexpr uint32_t kMagic = 0x47495357;  // "WSIG"
  static constexpr uint8_t kNoReduceOp = 0xFF;

  // "allreduce(count 4, f32, sum, algorithm ring, chunk 65536)".
  std::string describe() const;
};
static_assert(sizeof(Signature) == 64);

// FNV-1a 64 over the arrays (v-variants).
uint64_t hashCounts(std::span<const size_t> a, std::span<const size_t> b);

// OK when every signature equals the first; otherwise kInvalidArgument: "<what>: WEFT_CHECK
// found mismatched calls: ranks 0, 1, 3 called ...; rank 2 called ..." (comm ranks, and
// world ranks when world_ranks differ from them).
Status compareSignatures(std::string_view what, std::span<const Signature> all,
                         std::span<const int> world_ranks);

// WEFT_CHECK for allreduce algorithms that run outside the plan executor (innet,
// hierarchical): an allgather of every rank's Signature on `comm`, then compareSignatures.
// OK at once when the communicator does not check.
Status checkAllreduceCall(Communicator& comm, std::string_view algorithm, size_t count,
                          DataType type, ReduceOp op, const CallOptions& opts);

}  // namespace weft::coll::detail
