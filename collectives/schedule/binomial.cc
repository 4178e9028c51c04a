// Binomial trees over positions v relative to the root (v = rank - root mod size). v's parent
// is v - lowbit(v); its children are v + 2^i for 2^i < lowbit(v) (every 2^i < size at the
// root) inside the group; the subtree of v covers positions [v, v + extent(v)).
//
// Timing (slots), with L = ceil(log2 size): going down (broadcast, scatter) the edge of
// distance 2^i is used at slot L-1-i, so the root serves its largest subtree first; going up
// (reduce, gather) it is used at slot i, so a node hears its smallest subtrees first.
#include <algorithm>
#include <vector>

#include "collectives/schedule/algorithms.h"
#include "collectives/schedule/builder.h"

namespace weft::coll {

using detail::inSlice;
using detail::outSlice;
using detail::PlanBuilder;
using detail::scrSlice;

namespace {

struct Binomial {
  explicit Binomial(const CollSpec& s)
      : spec(s), v(detail::relRank(s, s.rank)), levels(detail::log2Ceil(s.size)) {}

  // Distance exponents of the children of position `u`, ascending.
  std::vector<int> childBits(int u) const {
    std::vector<int> bits;
    for (int i = 0; (1 << i) < spec.size; ++i) {
      if (u != 0 && (1 << i) >= detail::lowBit(u)) break;
      if (u + (1 << i) < spec.size) bits.push_back(i);
    }
    return bits;
  }
  int parentBit() const { return detail::log2Floor(detail::lowBit(v)); }  // v != 0
  int parentRank() const { return detail::absRank(spec, v - detail::lowBit(v)); }
  int extent(int u) const {
    return u == 0 ? spec.size : std::min(detail::lowBit(u), spec.size - u);
  }
  size_t downSlot(int bit) const { return static_cast<size_t>(levels - 1 - bit); }
  int rankAt(int u) const { return detail::absRank(spec, u); }

  CollSpec spec;
  int v;
  int levels;
};

// Positions [lo, hi) of a block-per-rank buffer split where the ranks wrap around (the
// position of rank 0), so that each piece is contiguous in rank order: {lo, mid, hi}.
struct WrapSplit {
  int lo, mid, hi;
};
WrapSplit wrapSplit(const CollSpec& spec, int lo, int hi) {
  const int wrapAt = detail::relRank(spec, 0);  // the position of rank 0
  const int mid = (wrapAt > lo && wrapAt < hi) ? wrapAt : hi;
  return {lo, mid, hi};
}

// The buffer slice holding positions [lo, hi) at the root, in rank order.
Slice rootBlocks(const CollSpec& spec, BufferId buffer, int lo, int hi) {
  const size_t n = spec.count;
  return {buffer, static_cast<size_t>(detail::absRank(spec, lo)) * n,
          static_cast<size_t>(hi - lo) * n};
}

}  // namespace

Plan buildBinomialBroadcast(const CollSpec& spec) {
  if (spec.size == 1) return detail::singleRankPlan("binomial", spec, false);
  PlanBuilder b("binomial", spec);
  const Binomial t(spec);
  const size_t n = spec.count;
  Slice from = inSlice(0, n);
  if (t.v == 0) {
    b.copy(0, inSlice(0, n), outSlice(0, n));
  } else {
    b.recv(t.downSlot(t.parentBit()), t.parentRank(), outSlice(0, n));
    from = outSlice(0, n);
  }
  for (int bit : t.childBits(t.v)) b.send(t.downSlot(bit), t.rankAt(t.v + (1 << bit)), from);
  return b.finish();
}

// Children's partials are reduced one slot after another into the accumulator: the output
// at the root, scratch at inner nodes; leaves send their input.
Plan buildBinomialReduce(const CollSpec& spec) {
  if (spec.size == 1) return detail::singleRankPlan("binomial", spec, true);
  PlanBuilder b("binomial", spec);
  const Binomial t(spec);
  const size_t n = spec.count;
  if (t.v == 0) b.setNeedsFinalize();
  const Slice acc = t.v == 0 ? outSlice(0, n) : scrSlice(0, n);
  const std::vector<int> bits = t.childBits(t.v);
  for (size_t i = 0; i < bits.size(); ++i) {
    b.recvReduce(static_cast<size_t>(bits[i]), t.rankAt(t.v + (1 << bits[i])),
                 i == 0 ? inSlice(0, n) : acc, acc);
  }
  if (t.v != 0) {
    b.send(static_cast<size_t>(t.parentBit()), t.parentRank(), bits.empty() ? inSlice(0, n) : acc);
  }
  return b.finish();
}

// Inner nodes collect their subtree's blocks in scratch in position order; the root's
// children send their range in two messages when it wraps past the last rank.
Plan buildBinomialGather(const CollSpec& spec) {
  if (spec.size == 1) return detail::singleRankPlan("binomial", spec, false);
  PlanBuilder b("binomial", spec);
  const Binomial t(spec);
  const size_t n = spec.count;
  const std::vector<int> bits = t.childBits(t.v);
  if (t.v == 0) {
    b.copy(0, inSlice(0, n), outSlice(static_cast<size_t>(spec.rank) * n, n));
    for (int bit : bits) {
      const int c = 1 << bit;
      const WrapSplit w = wrapSplit(spec, c, c + t.extent(c));
      b.recv(static_cast<size_t>(bit), t.rankAt(c),
             rootBlocks(spec, BufferId::kOutput, w.lo, w.mid));
      b.recv(static_cast<size_t>(bit), t.rankAt(c),
             rootBlocks(spec, BufferId::kOutput, w.mid, w.hi));
    }
    return b.finish();
  }
  const size_t slot = static_cast<size_t>(t.parentBit());
  const Slice mine =
      bits.empty() ? inSlice(0, n) : scrSlice(0, static_cast<size_t>(t.extent(t.v)) * n);
  if (!bits.empty()) b.copy(0, inSlice(0, n), scrSlice(0, n));
  for (int bit : bits) {
    const int c = t.v + (1 << bit);
    b.recv(static_cast<size_t>(bit), t.rankAt(c),
           scrSlice(static_cast<size_t>(c - t.v) * n, static_cast<size_t>(t.extent(c)) * n));
  }
  if (t.parentRank() == spec.root) {
    const WrapSplit w = wrapSplit(spec, t.v, t.v + t.extent(t.v));
    b.send(slot, spec.root, detail::subSlice(mine, 0, static_cast<size_t>(w.mid - w.lo) * n));
    b.send(slot, spec.root,
           detail::subSlice(mine, static_cast<size_t>(w.mid - w.lo) * n,
                            static_cast<size_t>(w.hi - w.mid) * n));
  } else {
    b.send(slot, t.parentRank(), mine);
  }
  return b.finish();
}

// The mirror image of gather: inner nodes receive their subtree's blocks into scratch, keep
// the first and forward the rest; leaves receive straight into the output.
Plan buildBinomialScatter(const CollSpec& spec) {
  if (spec.size == 1) return detail::singleRankPlan("binomial", spec, false);
  PlanBuilder b("binomial", spec);
  const Binomial t(spec);
  const size_t n = spec.count;
  const std::vector<int> bits = t.childBits(t.v);
  if (t.v == 0) {
    b.copy(0, inSlice(static_cast<size_t>(spec.rank) * n, n), outSlice(0, n));
    for (auto it = bits.rbegin(); it != bits.rend(); ++it) {
      const int c = 1 << *it;
      const WrapSplit w = wrapSplit(spec, c, c + t.extent(c));
      b.send(t.downSlot(*it), t.rankAt(c), rootBlocks(spec, BufferId::kInput, w.lo, w.mid));
      b.send(t.downSlot(*it), t.rankAt(c), rootBlocks(spec, BufferId::kInput, w.mid, w.hi));
    }
    return b.finish();
  }
  const size_t slot = t.downSlot(t.parentBit());
  const Slice mine =
      bits.empty() ? outSlice(0, n) : scrSlice(0, static_cast<size_t>(t.extent(t.v)) * n);
  if (t.parentRank() == spec.root) {
    const WrapSplit w = wrapSplit(spec, t.v, t.v + t.extent(t.v));
    b.recv(slot, spec.root, detail::subSlice(mine, 0, static_cast<size_t>(w.mid - w.lo) * n));
    b.recv(slot, spec.root,
           detail::subSlice(mine, static_cast<size_t>(w.mid - w.lo) * n,
                            static_cast<size_t>(w.hi - w.mid) * n));
  } else {
    b.recv(slot, t.parentRank(), mine);
  }
  if (bits.empty()) return b.finish();
  b.copy(slot + 1, scrSlice(0, n), outSlice(0, n));
  for (auto it = bits.rbegin(); it != bits.rend(); ++it) {
    const int c = t.v + (1 << *it);
    b.send(t.downSlot(*it), t.rankAt(c),
           scrSlice(static_cast<size_t>(c - t.v) * n, static_cast<size_t>(t.extent(c)) * n));
  }
  return b.finish();
}

}  // namespace weft::coll
