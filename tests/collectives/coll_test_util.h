// Helpers of the collectives tests (tests/collectives): opening a world communicator over
// UCX in a rank process, typed test data, and serial references.
//
// Reference and tolerance (what "correct" means in these tests)
//  - Inputs are a deterministic function of (seed, rank, index), so every rank computes the
//    expected result of every rank by itself.
//  - Integer types: exact, with sum / prod wrapping modulo 2^bits (two's complement for
//    signed types) and avg the truncating division of the wrapped sum (reducer.h rules).
//  - Float types: min / max exact; sum, avg and prod against a reference computed in f64 from
//    the same (rounded) inputs, within
//        sum / avg: 2 (p + 1) u sum_i |x_i|      prod: 2 (p + 1) u |reference|
//    where p is the number of ranks and u the unit roundoff of the type (f16 2^-11,
//    bf16 2^-8, f32 2^-24, f64 2^-53): every pairwise step rounds once (reducer.h), and
//    a sum of p terms in any order is within (p - 1) u sum|x_i| of the exact one.
//    Inputs keep sums and products in range (|x| <= 4 for sum / avg, 0.5..2 for prod).
//  - Bit-identical results across ranks are checked separately (hashes allgathered).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "collectives/api/collectives.h"
#include "collectives/api/communicator.h"
#include "collectives/api/types.h"
#include "tests/support/rank_harness.h"
#include "transport/api/context.h"

namespace weft::coll::testing {

// Environment of every rank process: UCX over posix shared memory, a deadline well inside
// the harness's.
std::vector<std::pair<std::string, std::string>> rankEnv(double weft_timeout_s = 60);
weft::testing::RankOptions rankOptions(double timeout_s = 120);

// Throws (failing the rank) with the status text.
void must(const Status& s, std::string_view what);
template <typename T>
T must(Result<T> r, std::string_view what) {
  must(r.status(), what);
  return std::move(r).value();
}

struct RankComm {
  std::shared_ptr<transport::Context> ctx;
  std::unique_ptr<Communicator> comm;
};
// A UCX Context of rank env.rank and the world communicator over env.store. node_ids: the
// node of every rank (RankOptions::node_ids), empty: one node. options.rank is set here.
RankComm openWorld(weft::testing::RankEnv& env, const std::vector<std::string>& node_ids = {},
                   transport::ContextOptions options = {});

// A typed buffer of elements.
struct Buffer {
  DataType type = DataType::kU8;
  std::vector<std::byte> bytes;

  Buffer() = default;
  Buffer(DataType t, size_t count) : type(t), bytes(count * sizeOf(t)) {}
  size_t count() const { return bytes.size() / sizeOf(type); }
  std::byte* data() { return bytes.data(); }
  const std::byte* data() const { return bytes.data(); }
  std::byte* at(size_t element) { return bytes.data() + element * sizeOf(type); }
  double get(size_t i) const;     // as a double (exact for every type but u64/i64 extremes)
  uint64_t bits(size_t i) const;  // raw bits, zero-extended
  void setBits(size_t i, uint64_t bits);
};

// Element i of rank r's input for (seed, op): integers use every bit; floats stay in the
// ranges above.
uint64_t inputBits(DataType type, ReduceOp op, uint64_t seed, int rank, size_t i);
// Fills `count` elements starting at element `offset` of buf with inputBits(.., first + k).
void fillInput(Buffer& buf, size_t offset, size_t count, ReduceOp op, uint64_t seed, int rank,
               size_t first);

// Checks `got[offset .. offset+count)` against the reduction over ranks 0..p-1 of
// inputBits(type, op, seed, r, first + k). Returns "" or a description of the first mismatch.
std::string checkReduction(const Buffer& got, size_t offset, size_t count, ReduceOp op,
                           uint64_t seed, int p, size_t first);
// Checks `got[offset .. offset+count)` equals rank src's input elements first.. (a copy).
std::string checkCopy(const Buffer& got, size_t offset, size_t count, ReduceOp op, uint64_t seed,
                      int src, size_t first);

// FNV-1a of the bytes, allgathered over comm: true when every rank has the same hash.
bool sameOnAllRanks(Communicator& comm, const void* data, size_t bytes);

// Adds 1 to the store counter `name`, then waits (until env.deadline) until it reaches n:
// a barrier that does not need a working communicator (for tests where a rank died).
void waitForCount(weft::testing::RankEnv& env, const std::string& name, int n);

}  // namespace weft::coll::testing
