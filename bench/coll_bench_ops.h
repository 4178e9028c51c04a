// weft-bench operations: how a size maps to counts and buffers, how one call is made, what
// the bus-bandwidth factor is, and how a result is checked.
//
// Size convention (nccl-tests): the "size" of a row is
//   allreduce, broadcast, reduce, sendrecv: the vector (count x element size);
//   allgather, gather: the gathered output (size x count x element size);
//   reduce_scatter, scatter: the whole input (size x count x element size);
//   alltoall: one rank's send buffer (size x count x element size);
//   barrier: 0.
// busbw = algbw x factor, factors as nccl-tests: allreduce 2(n-1)/n; allgather,
// reduce_scatter, alltoall, gather, scatter (n-1)/n; broadcast, reduce, sendrecv 1.
//
// Data for --check: every rank's input is a deterministic function of (type, op, rank,
// element index) whose reductions are exact in every type (small integers for float sums,
// powers of two for float products, full-width bits for integers), so the expected output is
// recomputed locally and compared bit for bit.
//
// Contract: BenchBuffers belong to one rank (one thread). Functions throw nothing; errors of
// the collectives come back as Status.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "collectives/api/collectives.h"
#include "collectives/api/types.h"
#include "common/result.h"
#include "common/status.h"

namespace weft::bench {

enum class BenchOp : uint8_t {
  kBarrier,
  kBroadcast,
  kScatter,
  kGather,
  kAllgather,
  kReduce,
  kAllreduce,
  kReduceScatter,
  kAlltoall,
  kSendRecv,
};

std::string_view toString(BenchOp op);
// "allreduce", ... (also "bcast", "reducescatter", "reduce_scatter_block"); "all" is handled
// by the option parser. The error lists the names.
Result<BenchOp> parseBenchOp(std::string_view name);
bool isReduction(BenchOp op);
bool isRooted(BenchOp op);
double busFactor(BenchOp op, int nranks);

// One (op, size) on this rank: element counts of the call and of its buffers.
struct Shape {
  BenchOp op = BenchOp::kAllreduce;
  coll::DataType type = coll::DataType::kF32;
  coll::ReduceOp reduce_op = coll::ReduceOp::kSum;
  int root = 0;
  int rank = 0;
  int nranks = 1;
  size_t count = 0;      // the count argument of the call
  size_t in_count = 0;   // input elements this rank provides
  size_t out_count = 0;  // output elements this rank receives
  size_t bytes = 0;      // the row's size (convention above)
};
// Counts for a requested size (rounded down to whole elements / blocks).
Shape shapeFor(BenchOp op, size_t bytes, coll::DataType type, coll::ReduceOp reduce_op, int root,
               int rank, int nranks);

// Input and output of the largest shape, allocated and touched once (no page faults while
// timing).
class BenchBuffers {
 public:
  void reserve(size_t in_bytes, size_t out_bytes);
  std::byte* in() { return in_.get(); }
  std::byte* out() { return out_.get(); }

 private:
  struct Free {
    void operator()(std::byte* p) const;
  };
  std::unique_ptr<std::byte, Free> in_;
  std::unique_ptr<std::byte, Free> out_;
  size_t in_bytes_ = 0;
  size_t out_bytes_ = 0;
};

// One call of the shape's operation through the blocking API (coll::allreduce, ...), as the
// MPI benchmarks time MPI_Allreduce; the blocking form skips the Request of the non-blocking
// one where the call completes inside it (the shared-memory path).
Status runOnce(coll::Communicator& comm, const Shape& s, BenchBuffers& b,
               const coll::CallOptions& opts);
// The algorithm the collectives pick for the shape (one call, non-blocking form).
Result<std::string> algorithmOf(coll::Communicator& comm, const Shape& s, BenchBuffers& b,
                                const coll::CallOptions& opts);

// Fills the input with this rank's pattern and the output with a poison value.
void fillForCheck(const Shape& s, BenchBuffers& b);
// Elements of the output that differ from the expected result.
uint64_t countWrong(const Shape& s, BenchBuffers& b);

}  // namespace weft::bench
