// Recursive halving / doubling (Rabenseifner) and recursive doubling, with the MPICH fold
// for sizes that are not powers of two (builder.h, Fold): slot 0 folds the extras into their
// hosts, slots 1.. run the power-of-two exchanges among new ranks, the last slot hands the
// result back to the extras.
#include <algorithm>
#include <vector>

#include "collectives/schedule/algorithms.h"
#include "collectives/schedule/builder.h"

namespace weft::coll {

using detail::Fold;
using detail::inSlice;
using detail::outSlice;
using detail::PlanBuilder;
using detail::scrSlice;

namespace {

// A range [lo, hi) of new-rank groups.
struct GroupRange {
  int lo = 0;
  int hi = 0;
};

// Halving step with distance d on the range `cur` (of 2d groups) of new rank v: the half
// that v keeps and the half its partner v^d keeps.
void halve(int v, int d, const GroupRange& cur, GroupRange* keep, GroupRange* give) {
  const int mid = cur.lo + d;
  const GroupRange lower{cur.lo, mid};
  const GroupRange upper{mid, cur.hi};
  *keep = (v & d) ? upper : lower;
  *give = (v & d) ? lower : upper;
}

// Doubling step with distance d: v holds `mine` (d groups aligned to d); the partner's range
// is the other half of the aligned 2d range.
GroupRange partnerRange(int v, int d, const GroupRange& mine) {
  return (v & d) ? GroupRange{mine.lo - d, mine.lo} : GroupRange{mine.hi, mine.hi + d};
}

GroupRange merge(const GroupRange& a, const GroupRange& b) {
  return {std::min(a.lo, b.lo), std::max(a.hi, b.hi)};
}

}  // namespace

// The vector is split into pof2 balanced blocks; new rank v ends the halving with block v
// fully reduced (each partial computed once, by the rank that keeps it), then the doubling
// gathers all blocks. Everything accumulates in the output; no scratch.
Plan buildRabenseifnerAllreduce(const CollSpec& spec) {
  const int p = spec.size;
  const int r = spec.rank;
  if (p == 1) return detail::singleRankPlan("rabenseifner", spec, true);
  PlanBuilder b("rabenseifner", spec);
  b.setNeedsFinalize();
  const size_t n = spec.count;
  const Fold f(p);
  const size_t lastSlot = static_cast<size_t>(2 * f.steps + 1);
  if (f.isExtra(r)) {
    b.send(0, r + 1, inSlice(0, n));
    b.recv(lastSlot, r + 1, outSlice(0, n));
    return b.finish();
  }
  const detail::Blocks blocks{n, static_cast<size_t>(f.pof2)};
  auto slice = [&blocks](BufferId buffer, const GroupRange& g) {
    const size_t lo = blocks.offset(static_cast<size_t>(g.lo));
    return Slice{buffer, lo, blocks.offset(static_cast<size_t>(g.hi)) - lo};
  };
  BufferId cur = BufferId::kInput;
  if (f.isHost(r)) {
    b.recvReduce(0, r - 1, inSlice(0, n), outSlice(0, n));
    cur = BufferId::kOutput;
  }
  const int v = f.newRank(r);
  GroupRange range{0, f.pof2};
  size_t slot = 1;
  for (int d = f.pof2 / 2; d >= 1; d /= 2, ++slot) {
    GroupRange keep, give;
    halve(v, d, range, &keep, &give);
    const int peer = f.realRank(v ^ d);
    b.send(slot, peer, slice(cur, give));
    b.recvReduce(slot, peer, slice(cur, keep), slice(BufferId::kOutput, keep));
    cur = BufferId::kOutput;
    range = keep;
  }
  for (int d = 1; d < f.pof2; d *= 2, ++slot) {
    const GroupRange other = partnerRange(v, d, range);
    const int peer = f.realRank(v ^ d);
    b.send(slot, peer, slice(BufferId::kOutput, range));
    b.recv(slot, peer, slice(BufferId::kOutput, other));
    range = merge(range, other);
  }
  if (f.isHost(r)) b.send(lastSlot, r - 1, outSlice(0, n));
  return b.finish();
}

namespace {

// Element ranges of the reduce-scatter: new-rank groups of original blocks (Fold), partials
// in scratch laid out like the input from element `base` on.
struct RsLayout {
  Fold f;
  size_t n;
  size_t base = 0;
  bool inScratch = false;  // false: the current data is still the input

  size_t elem(int group) const { return static_cast<size_t>(f.groupStart(group)) * n; }
  Slice slice(BufferId buffer, size_t lo, size_t count) const {
    return {buffer, buffer == BufferId::kScratch ? lo - base : lo, count};
  }
  Slice current(size_t lo, size_t count) const {
    return slice(inScratch ? BufferId::kScratch : BufferId::kInput, lo, count);
  }
  Slice current(const GroupRange& g) const { return current(elem(g.lo), elem(g.hi) - elem(g.lo)); }
  Slice partial(const GroupRange& g) const {
    return slice(BufferId::kScratch, elem(g.lo), elem(g.hi) - elem(g.lo));
  }
};

// The last halving step (distance 1): new rank v keeps its own group and sends group u.
// Groups of two blocks (hosts) travel as two messages, one per block, because the host's
// first block goes to scratch (for its extra) and its own block straight to the output.
void rsLastStep(PlanBuilder& b, const RsLayout& l, size_t slot, int v, int rank) {
  const int u = v ^ 1;
  const int peer = l.f.realRank(u);
  for (int blk = l.f.groupStart(u); blk < l.f.groupStart(u + 1); ++blk) {
    b.send(slot, peer, l.current(static_cast<size_t>(blk) * l.n, l.n));
  }
  for (int blk = l.f.groupStart(v); blk < l.f.groupStart(v + 1); ++blk) {
    const size_t lo = static_cast<size_t>(blk) * l.n;
    const Slice dst = blk == rank ? outSlice(0, l.n) : l.slice(BufferId::kScratch, lo, l.n);
    b.recvReduce(slot, peer, l.current(lo, l.n), dst);
  }
}

}  // namespace

// Recursive halving over the fold's groups: each new rank ends with its group reduced; a
// host then hands its extra's block back. Scratch holds the partials (the whole vector on a
// host, half of it elsewhere); the own block is reduced straight into the output.
Plan buildRabenseifnerReduceScatter(const CollSpec& spec) {
  const int p = spec.size;
  const int r = spec.rank;
  if (p == 1) return detail::singleRankPlan("rabenseifner", spec, true);
  PlanBuilder b("rabenseifner", spec);
  b.setNeedsFinalize();
  const size_t n = spec.count;
  RsLayout l{Fold(p), n};
  const size_t total = n * static_cast<size_t>(p);
  const size_t lastSlot = static_cast<size_t>(l.f.steps + 1);
  if (l.f.isExtra(r)) {
    b.send(0, r + 1, inSlice(0, total));
    b.recv(lastSlot, r + 1, outSlice(0, n));
    return b.finish();
  }
  if (l.f.isHost(r)) {
    b.recvReduce(0, r - 1, inSlice(0, total), scrSlice(0, total));
    l.inScratch = true;
  }
  const int v = l.f.newRank(r);
  GroupRange range{0, l.f.pof2};
  size_t slot = 1;
  for (int d = l.f.pof2 / 2; d >= 2; d /= 2, ++slot) {
    GroupRange keep, give;
    halve(v, d, range, &keep, &give);
    if (!l.inScratch) l.base = l.elem(keep.lo);
    const int peer = l.f.realRank(v ^ d);
    b.send(slot, peer, l.current(give));
    b.recvReduce(slot, peer, l.current(keep), l.partial(keep));
    l.inScratch = true;
    range = keep;
  }
  rsLastStep(b, l, slot, v, r);
  if (l.f.isHost(r)) {
    b.send(lastSlot, r - 1, l.slice(BufferId::kScratch, static_cast<size_t>(r - 1) * n, n));
  }
  return b.finish();
}

namespace {

// The fold's buffers for recursive doubling allreduce: step k reads B[k-1] and writes
// B[k] != B[k-1], B[steps-1] is the output. B[-1] is the input, or (on a host) where the
// fold reduced to. Because input and output may alias, a step that reads the input never
// writes the output: the first step of a plain rank then writes scratch.
struct DoublingBuffers {
  std::vector<Slice> b;    // b[k + 1] is B[k]
  bool finalCopy = false;  // one step only: B[0] is scratch, copied to the output at the end
};

DoublingBuffers doublingBuffers(int steps, bool host, size_t n) {
  DoublingBuffers d;
  auto alternating = [&](int k) {  // B[k] when counting back from B[steps-1] = out
    return (steps - 1 - k) % 2 == 0 ? outSlice(0, n) : scrSlice(0, n);
  };
  d.b.push_back(host ? alternating(-1) : inSlice(0, n));
  for (int k = 0; k < steps; ++k) d.b.push_back(alternating(k));
  if (!host && d.b[1].buffer == BufferId::kOutput) {
    if (steps == 1) {
      d.b[1] = scrSlice(0, n);
      d.finalCopy = true;
    } else {
      d.b[1] = scrSlice(n, n);  // B[1] is scratch [0, n)
    }
  }
  return d;
}

}  // namespace

// Every new rank exchanges its whole partial with v^1, v^2, ...: all of them compute the
// same sums (the op is commutative, and both partners combine the same two partials).
Plan buildRecursiveDoublingAllreduce(const CollSpec& spec) {
  const int p = spec.size;
  const int r = spec.rank;
  if (p == 1) return detail::singleRankPlan("recursive_doubling", spec, true);
  PlanBuilder b("recursive_doubling", spec);
  b.setNeedsFinalize();
  const size_t n = spec.count;
  const Fold f(p);
  const size_t lastSlot = static_cast<size_t>(f.steps + 1);
  if (f.isExtra(r)) {
    b.send(0, r + 1, inSlice(0, n));
    b.recv(lastSlot, r + 1, outSlice(0, n));
    return b.finish();
  }
  const DoublingBuffers bufs = doublingBuffers(f.steps, f.isHost(r), n);
  if (f.isHost(r)) b.recvReduce(0, r - 1, inSlice(0, n), bufs.b[0]);
  const int v = f.newRank(r);
  for (int k = 0; k < f.steps; ++k) {
    const int peer = f.realRank(v ^ (1 << k));
    const size_t slot = static_cast<size_t>(k + 1);
    b.send(slot, peer, bufs.b[static_cast<size_t>(k)]);
    b.recvReduce(slot, peer, bufs.b[static_cast<size_t>(k)], bufs.b[static_cast<size_t>(k + 1)]);
  }
  if (bufs.finalCopy) b.copy(lastSlot, bufs.b[1], outSlice(0, n));
  if (f.isHost(r)) b.send(lastSlot, r - 1, outSlice(0, n));
  return b.finish();
}

// Each new rank holds a contiguous range of groups of output blocks and swaps it with v^d,
// doubling it. Hosts collect their extra's block first and send it the full output at the end.
Plan buildRecursiveDoublingAllgather(const CollSpec& spec) {
  const int p = spec.size;
  const int r = spec.rank;
  if (p == 1) return detail::singleRankPlan("recursive_doubling", spec, false);
  PlanBuilder b("recursive_doubling", spec);
  const size_t n = spec.count;
  const size_t total = n * static_cast<size_t>(p);
  const Fold f(p);
  const size_t lastSlot = static_cast<size_t>(f.steps + 1);
  if (f.isExtra(r)) {
    b.send(0, r + 1, inSlice(0, n));
    b.recv(lastSlot, r + 1, outSlice(0, total));
    return b.finish();
  }
  auto elem = [&](int group) { return static_cast<size_t>(f.groupStart(group)) * n; };
  auto out = [&](const GroupRange& g) { return outSlice(elem(g.lo), elem(g.hi) - elem(g.lo)); };
  if (f.isHost(r)) b.recv(0, r - 1, outSlice(static_cast<size_t>(r - 1) * n, n));
  b.copy(0, inSlice(0, n), outSlice(static_cast<size_t>(r) * n, n));
  const int v = f.newRank(r);
  GroupRange range{v, v + 1};
  for (int k = 0; k < f.steps; ++k) {
    const int d = 1 << k;
    const int peer = f.realRank(v ^ d);
    const size_t slot = static_cast<size_t>(k + 1);
    const GroupRange other = partnerRange(v, d, range);
    // A plain rank's first range is its own block: send it from the input.
    b.send(slot, peer, (k == 0 && !f.isHost(r)) ? inSlice(0, n) : out(range));
    b.recv(slot, peer, out(other));
    range = merge(range, other);
  }
  if (f.isHost(r)) b.send(lastSlot, r - 1, outSlice(0, total));
  return b.finish();
}

}  // namespace weft::coll
