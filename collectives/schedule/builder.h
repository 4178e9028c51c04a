// Internal to collectives/schedule/: what the algorithm builders share. Not a public header.
//
// PlanBuilder collects steps by *slot*, a global time step that every rank of the algorithm
// agrees on (the two sides of a message are always added at the same slot), and finish()
// turns the non-empty slots into rounds. Building against one global timeline is what keeps
// plans deadlock-free when rounds run strictly in order: at every slot, each message has
// both of its ends in the current round of their ranks. Data steps with empty slices (empty
// blocks when count < size) are left out on both sides; signal()/wait() add the 0-count
// messages of barriers.
//
// Contract: plain values, no threads, no allocation beyond the plan itself.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "collectives/schedule/plan.h"

namespace weft::coll::detail {

inline Slice inSlice(size_t offset, size_t count) {
  return {BufferId::kInput, offset, count};
}
inline Slice outSlice(size_t offset, size_t count) {
  return {BufferId::kOutput, offset, count};
}
inline Slice scrSlice(size_t offset, size_t count) {
  return {BufferId::kScratch, offset, count};
}
// The sub-range [offset, offset + count) of `s` (offsets relative to s.offset).
inline Slice subSlice(const Slice& s, size_t offset, size_t count) {
  return {s.buffer, s.offset + offset, count};
}

// `total` elements split into `parts` balanced blocks: the first total % parts blocks have one
// element more. Block i is [offset(i), offset(i + 1)).
struct Blocks {
  size_t total = 0;
  size_t parts = 1;
  size_t offset(size_t i) const { return i * (total / parts) + std::min(i, total % parts); }
  size_t count(size_t i) const { return offset(i + 1) - offset(i); }
};

class PlanBuilder {
 public:
  PlanBuilder(std::string algorithm, const CollSpec& spec);

  // Data steps; left out when their slices are empty.
  void send(size_t slot, int peer, Slice src);
  void recv(size_t slot, int peer, Slice dst);
  void recvReduce(size_t slot, int peer, Slice src, Slice dst);  // dst = src op received
  void copy(size_t slot, Slice src, Slice dst);
  void reduce(size_t slot, Slice src, Slice dst);  // dst = dst op src
  // 0-count messages (barriers); always kept.
  void signal(size_t slot, int peer);
  void wait(size_t slot, int peer);

  void setNeedsFinalize() { plan_.needs_finalize = true; }
  const CollSpec& spec() const { return spec_; }

  // Drops empty slots; scratch_count = the highest scratch element any step touches + 1.
  Plan finish();

 private:
  void add(size_t slot, const Step& step);

  CollSpec spec_;
  Plan plan_;
  std::vector<Round> slots_;
};

// The copy every algorithm does with one rank: the whole input into the output.
Plan singleRankPlan(std::string algorithm, const CollSpec& spec, bool needsFinalize);

inline int modRank(int x, int size) {
  return ((x % size) + size) % size;
}
// Rank <-> position relative to the root (the root is 0).
inline int relRank(const CollSpec& spec, int rank) {
  return modRank(rank - spec.root, spec.size);
}
inline int absRank(const CollSpec& spec, int rel) {
  return modRank(rel + spec.root, spec.size);
}

int pow2Floor(int x);  // largest power of two <= x (x >= 1)
int log2Floor(int x);  // x >= 1
int log2Ceil(int x);   // smallest k with 2^k >= x (x >= 1)
inline int lowBit(int x) {
  return x & -x;
}

// The MPICH fix-up that folds `size` ranks onto pof2 = pow2Floor(size) "new ranks": with
// rem = size - pof2, the first 2*rem ranks pair up; the even one of each pair (an "extra")
// hands its data to the odd one (the "host") and sits out, every other rank keeps going.
// New rank v is real rank realRank(v). For block-per-rank collectives, new rank v owns the
// contiguous group of original blocks [groupStart(v), groupStart(v + 1)): two blocks for a
// host, one otherwise.
struct Fold {
  explicit Fold(int size);
  bool isExtra(int rank) const { return rank < 2 * rem && rank % 2 == 0; }
  bool isHost(int rank) const { return rank < 2 * rem && rank % 2 == 1; }
  int newRank(int rank) const { return rank < 2 * rem ? rank / 2 : rank - rem; }
  int realRank(int v) const { return v < rem ? 2 * v + 1 : v + rem; }
  int groupStart(int v) const { return v < rem ? 2 * v : v + rem; }

  int size;
  int pof2;
  int rem;
  int steps;  // log2(pof2)
};

}  // namespace weft::coll::detail
