// Barriers: 0-count messages only (each one is a fence, plan.h).
#include "collectives/schedule/algorithms.h"
#include "collectives/schedule/builder.h"

namespace weft::coll {

using detail::modRank;

// Round k: signal r + 2^k, wait for r - 2^k. After ceil(log2 size) rounds every rank has
// (transitively) heard from every other.
Plan buildDisseminationBarrier(const CollSpec& spec) {
  detail::PlanBuilder b("dissemination", spec);
  size_t slot = 0;
  for (int d = 1; d < spec.size; d *= 2, ++slot) {
    b.signal(slot, modRank(spec.rank + d, spec.size));
    b.wait(slot, modRank(spec.rank - d, spec.size));
  }
  return b.finish();
}

// A token goes 0 -> 1 -> ... -> size-1 -> 0 (everyone has arrived once it is back at 0),
// then 0 -> 1 -> ... -> size-1 again to release the ranks: 2*size - 1 messages.
Plan buildTokenRingBarrier(const CollSpec& spec) {
  detail::PlanBuilder b("token_ring", spec);
  const int p = spec.size;
  const int r = spec.rank;
  if (p == 1) return b.finish();
  const int next = modRank(r + 1, p);
  const int prev = modRank(r - 1, p);
  if (r == 0) {
    b.signal(0, next);
    b.wait(1, prev);
    b.signal(2, next);
  } else {
    b.wait(0, prev);
    b.signal(1, next);
    b.wait(2, prev);
    if (r < p - 1) b.signal(3, next);
  }
  return b.finish();
}

}  // namespace weft::coll
