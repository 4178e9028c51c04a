// Binary trees: NCCL's double binary tree for allreduce, and a balanced binary tree rooted
// anywhere for reduce and broadcast.
//
// Timing (slots): a leaf sends up at slot 0; a parent reduces its children one slot after
// another (they write the same accumulator), in the order their partials become ready,
// delaying a child's send to the slot at which the parent takes it; it sends up one slot
// after its last child. The broadcast leaves the root at the slot its reduction finishes
// (or 0) and moves one level per slot.
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

struct Tree {
  int root = 0;
  std::vector<int> parent;                 // -1 at the root
  std::vector<std::vector<int>> children;  // ascending rank
};

Tree fromParents(std::vector<int> parent) {
  Tree t;
  t.children.resize(parent.size());
  for (size_t x = 0; x < parent.size(); ++x) {
    if (parent[x] < 0) {
      t.root = static_cast<int>(x);
    } else {
      t.children[static_cast<size_t>(parent[x])].push_back(static_cast<int>(x));
    }
  }
  t.parent = std::move(parent);
  return t;
}

// NCCL's in-order binary tree (ncclGetBtree): rank x with lowest set bit b hangs under
// (x ^ b) | (b << 1), or under x ^ b when that is out of range. Rank 0 is the root and has
// one child, so that the mirrored / shifted second tree has a root too.
int btreeParent(int x, int p) {
  if (x == 0) return -1;
  const int bit = detail::lowBit(x);
  const int up = (x ^ bit) | (bit << 1);
  return up < p ? up : (x ^ bit);
}

// The two trees of the double binary tree. The second is the first mirrored (even sizes:
// x -> p-1-x) or shifted by one (odd sizes), so that a leaf of one is an inner node of the
// other and the two halves of the data use different links.
Tree doubleTree(int p, int which) {
  std::vector<int> parent(static_cast<size_t>(p));
  for (int x = 0; x < p; ++x) {
    int up;
    if (which == 0) {
      up = btreeParent(x, p);
    } else if (p % 2 == 0) {
      const int u = btreeParent(p - 1 - x, p);
      up = u < 0 ? -1 : p - 1 - u;
    } else {
      const int u = btreeParent(detail::modRank(x - 1, p), p);
      up = u < 0 ? -1 : (u + 1) % p;
    }
    parent[static_cast<size_t>(x)] = up;
  }
  return fromParents(std::move(parent));
}

// Heap-shaped binary tree over positions relative to the root: v's parent is (v-1)/2.
Tree heapTree(const CollSpec& spec) {
  std::vector<int> parent(static_cast<size_t>(spec.size));
  for (int x = 0; x < spec.size; ++x) {
    const int v = detail::relRank(spec, x);
    parent[static_cast<size_t>(x)] = v == 0 ? -1 : detail::absRank(spec, (v - 1) / 2);
  }
  return fromParents(std::move(parent));
}

struct TreeTimes {
  std::vector<size_t> up;                   // slot a node sends to its parent; root: done
  std::vector<std::vector<int>> order;      // children in the order they are reduced
  std::vector<std::vector<size_t>> recvAt;  // slot of each of those receives
  std::vector<size_t> down;                 // slot a node receives the broadcast
};

void timeReduce(const Tree& t, int x, TreeTimes* tt) {
  const auto xi = static_cast<size_t>(x);
  for (int c : t.children[xi]) timeReduce(t, c, tt);
  std::vector<int> kids = t.children[xi];
  std::stable_sort(kids.begin(), kids.end(), [tt](int a, int b) {
    return tt->up[static_cast<size_t>(a)] < tt->up[static_cast<size_t>(b)];
  });
  size_t next = 0;
  for (int c : kids) {
    const size_t at = std::max(next, tt->up[static_cast<size_t>(c)]);
    tt->up[static_cast<size_t>(c)] = at;  // the child waits for its turn
    tt->recvAt[xi].push_back(at);
    next = at + 1;
  }
  tt->order[xi] = kids;
  tt->up[xi] = next;
}

void timeBroadcast(const Tree& t, int x, size_t at, TreeTimes* tt) {
  tt->down[static_cast<size_t>(x)] = at;
  for (int c : t.children[static_cast<size_t>(x)]) timeBroadcast(t, c, at + 1, tt);
}

TreeTimes timeTree(const Tree& t, bool reduce) {
  const size_t p = t.parent.size();
  TreeTimes tt{std::vector<size_t>(p, 0), std::vector<std::vector<int>>(p),
               std::vector<std::vector<size_t>>(p), std::vector<size_t>(p, 0)};
  if (reduce) timeReduce(t, t.root, &tt);
  // The root "receives" the broadcast when its reduction is done; its children one later.
  timeBroadcast(t, t.root, reduce ? tt.up[static_cast<size_t>(t.root)] - 1 : 0, &tt);
  return tt;
}

// This rank's part of reducing `in` up tree `t`: children's partials are reduced into `acc`
// one after another, then `acc` (or `in`, at a leaf) goes to the parent.
void addTreeReduce(PlanBuilder& b, const Tree& t, const TreeTimes& tt, Slice in, Slice acc) {
  const auto x = static_cast<size_t>(b.spec().rank);
  for (size_t i = 0; i < tt.order[x].size(); ++i) {
    b.recvReduce(tt.recvAt[x][i], tt.order[x][i], i == 0 ? in : acc, acc);
  }
  if (t.parent[x] >= 0) b.send(tt.up[x], t.parent[x], t.children[x].empty() ? in : acc);
}

// This rank's part of broadcasting down tree `t`: the root sends `from`, every other rank
// receives into `out` and forwards it.
void addTreeBroadcast(PlanBuilder& b, const Tree& t, const TreeTimes& tt, Slice from, Slice out) {
  const auto x = static_cast<size_t>(b.spec().rank);
  if (t.parent[x] >= 0) b.recv(tt.down[x], t.parent[x], out);
  for (int c : t.children[x]) b.send(tt.down[x] + 1, c, t.parent[x] >= 0 ? out : from);
}

}  // namespace

// Tree k reduces and broadcasts half k of the data; the root's sum is computed once, so all
// ranks receive the same bits.
Plan buildDoubleTreeAllreduce(const CollSpec& spec) {
  if (spec.size == 1) return detail::singleRankPlan("double_tree", spec, true);
  PlanBuilder b("double_tree", spec);
  b.setNeedsFinalize();
  const detail::Blocks halves{spec.count, 2};
  for (int k = 0; k < 2; ++k) {
    const Tree t = doubleTree(spec.size, k);
    const TreeTimes tt = timeTree(t, true);
    const Slice in =
        inSlice(halves.offset(static_cast<size_t>(k)), halves.count(static_cast<size_t>(k)));
    const Slice out = outSlice(in.offset, in.count);
    addTreeReduce(b, t, tt, in, out);
    addTreeBroadcast(b, t, tt, out, out);
  }
  return b.finish();
}

// Inner nodes accumulate in scratch (the output exists only at the root), leaves send
// their input.
Plan buildBinaryTreeReduce(const CollSpec& spec) {
  if (spec.size == 1) return detail::singleRankPlan("binary_tree", spec, true);
  PlanBuilder b("binary_tree", spec);
  const size_t n = spec.count;
  const Tree t = heapTree(spec);
  const TreeTimes tt = timeTree(t, true);
  const bool root = spec.rank == spec.root;
  if (root) b.setNeedsFinalize();
  addTreeReduce(b, t, tt, inSlice(0, n), root ? outSlice(0, n) : scrSlice(0, n));
  return b.finish();
}

Plan buildBinaryTreeBroadcast(const CollSpec& spec) {
  if (spec.size == 1) return detail::singleRankPlan("binary_tree", spec, false);
  PlanBuilder b("binary_tree", spec);
  const size_t n = spec.count;
  const Tree t = heapTree(spec);
  const TreeTimes tt = timeTree(t, false);
  if (spec.rank == spec.root) b.copy(0, inSlice(0, n), outSlice(0, n));
  addTreeBroadcast(b, t, tt, inSlice(0, n), outSlice(0, n));
  return b.finish();
}

}  // namespace weft::coll
