// Pairwise exchange alltoall.
#include "collectives/schedule/algorithms.h"
#include "collectives/schedule/builder.h"

namespace weft::coll {

using detail::inSlice;
using detail::modRank;
using detail::outSlice;
using detail::scrSlice;

// Step k = 1..size-1: rank r sends input block r+k to rank r+k and receives output block
// r-k from rank r-k (the shift schedule, for every size). In place, output block r-k is
// input block r-k, which leaves at step size-k: when that is not earlier than k (k <=
// size/2) the block is received into scratch and copied to the output after the last step.
// So out-of-place calls pay one extra copy of about half the data, in exchange for plans
// that are correct both ways (plan.h).
Plan buildPairwiseAlltoall(const CollSpec& spec) {
  const int p = spec.size;
  const int r = spec.rank;
  if (p == 1) return detail::singleRankPlan("pairwise", spec, false);
  detail::PlanBuilder b("pairwise", spec);
  const size_t n = spec.count;
  auto block = [n](int i) { return static_cast<size_t>(i) * n; };
  b.copy(0, inSlice(block(r), n), outSlice(block(r), n));
  for (int k = 1; k < p; ++k) {
    const int to = modRank(r + k, p);
    const int from = modRank(r - k, p);
    const auto slot = static_cast<size_t>(k);
    b.send(slot, to, inSlice(block(to), n));
    if (2 * k > p) {
      b.recv(slot, from, outSlice(block(from), n));
    } else {
      const Slice parked = scrSlice(block(k - 1), n);
      b.recv(slot, from, parked);
      b.copy(static_cast<size_t>(p), parked, outSlice(block(from), n));
    }
  }
  return b.finish();
}

}  // namespace weft::coll
