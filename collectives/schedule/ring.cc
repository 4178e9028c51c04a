// Ring algorithms. Blocks travel to rank+1 and arrive from rank-1.
#include "collectives/schedule/algorithms.h"
#include "collectives/schedule/builder.h"

namespace weft::coll {

using detail::Blocks;
using detail::inSlice;
using detail::modRank;
using detail::outSlice;
using detail::PlanBuilder;
using detail::scrSlice;

namespace {
Slice blockOf(BufferId buffer, const Blocks& blocks, int i) {
  return {buffer, blocks.offset(static_cast<size_t>(i)), blocks.count(static_cast<size_t>(i))};
}
}  // namespace

// Reduce-scatter then allgather over `size` balanced blocks. In reduce-scatter step s rank r
// sends block r-s and reduces block r-s-1 (its own input + what arrives), so block b is
// reduced once along b, b+1, ..., b-1 and rank r ends with block r+1, which the allgather
// passes around. Block r is sent straight from the input, so no initial copy is needed.
Plan buildRingAllreduce(const CollSpec& spec) {
  const int p = spec.size;
  const int r = spec.rank;
  if (p == 1) return detail::singleRankPlan("ring", spec, true);
  PlanBuilder b("ring", spec);
  b.setNeedsFinalize();
  const Blocks blocks{spec.count, static_cast<size_t>(p)};
  const int next = modRank(r + 1, p);
  const int prev = modRank(r - 1, p);
  for (int s = 0; s < p - 1; ++s) {
    const int sendBlock = modRank(r - s, p);
    const int recvBlock = modRank(r - s - 1, p);
    const BufferId from = s == 0 ? BufferId::kInput : BufferId::kOutput;
    b.send(s, next, blockOf(from, blocks, sendBlock));
    b.recvReduce(s, prev, blockOf(BufferId::kInput, blocks, recvBlock),
                 blockOf(BufferId::kOutput, blocks, recvBlock));
  }
  for (int s = 0; s < p - 1; ++s) {
    const size_t slot = static_cast<size_t>(p - 1 + s);
    b.send(slot, next, blockOf(BufferId::kOutput, blocks, modRank(r + 1 - s, p)));
    b.recv(slot, prev, blockOf(BufferId::kOutput, blocks, modRank(r - s, p)));
  }
  return b.finish();
}

// Step s: send the partial of block r-s-1 (the input block at s = 0), reduce block r-s-2
// from the previous rank with the own input block. Partials alternate between two scratch
// blocks; the last step (block r) lands in the output.
Plan buildRingReduceScatter(const CollSpec& spec) {
  const int p = spec.size;
  const int r = spec.rank;
  if (p == 1) return detail::singleRankPlan("ring", spec, true);
  PlanBuilder b("ring", spec);
  b.setNeedsFinalize();
  const size_t n = spec.count;
  const Blocks blocks{n * static_cast<size_t>(p), static_cast<size_t>(p)};
  const int next = modRank(r + 1, p);
  const int prev = modRank(r - 1, p);
  auto partial = [n](int s) { return scrSlice(static_cast<size_t>(s % 2) * n, n); };
  for (int s = 0; s < p - 1; ++s) {
    const Slice src =
        s == 0 ? blockOf(BufferId::kInput, blocks, modRank(r - 1, p)) : partial(s - 1);
    const int recvBlock = modRank(r - s - 2, p);
    const Slice dst = s == p - 2 ? outSlice(0, n) : partial(s);
    b.send(s, next, src);
    b.recvReduce(s, prev, blockOf(BufferId::kInput, blocks, recvBlock), dst);
  }
  return b.finish();
}

// Step s: send block r-s (the own input at s = 0), receive block r-s-1.
Plan buildRingAllgather(const CollSpec& spec) {
  const int p = spec.size;
  const int r = spec.rank;
  if (p == 1) return detail::singleRankPlan("ring", spec, false);
  PlanBuilder b("ring", spec);
  const size_t n = spec.count;
  const Blocks blocks{n * static_cast<size_t>(p), static_cast<size_t>(p)};
  const int next = modRank(r + 1, p);
  const int prev = modRank(r - 1, p);
  b.copy(0, inSlice(0, n), blockOf(BufferId::kOutput, blocks, r));
  for (int s = 0; s < p - 1; ++s) {
    const Slice src =
        s == 0 ? inSlice(0, n) : blockOf(BufferId::kOutput, blocks, modRank(r - s, p));
    b.send(s, next, src);
    b.recv(s, prev, blockOf(BufferId::kOutput, blocks, modRank(r - s - 1, p)));
  }
  return b.finish();
}

// A chain root -> root+1 -> ... -> root-1; the executor pipelines it chunk by chunk.
Plan buildRingBroadcast(const CollSpec& spec) {
  const int p = spec.size;
  if (p == 1) return detail::singleRankPlan("ring", spec, false);
  PlanBuilder b("ring", spec);
  const size_t n = spec.count;
  const int v = detail::relRank(spec, spec.rank);
  const int next = modRank(spec.rank + 1, p);
  if (v == 0) {
    b.copy(0, inSlice(0, n), outSlice(0, n));
    b.send(0, next, inSlice(0, n));
    return b.finish();
  }
  b.recv(static_cast<size_t>(v - 1), modRank(spec.rank - 1, p), outSlice(0, n));
  if (v < p - 1) b.send(static_cast<size_t>(v), next, outSlice(0, n));
  return b.finish();
}

}  // namespace weft::coll
