// The aggregation tree of the in-network allreduce emulation (collectives/api/innet.h):
// which "switches" exist, which rank hosts each one, and who their parents and children
// are. A pure function of (ranks, radix); no network. Internal to collectives/.
//
// Layout
//  - Nodes are numbered: ranks 0 .. ranks-1, then switch s is node ranks + s.
//  - Switches are numbered level by level from the leaves (level 0) up; the last one is
//    the root. Leaf switch i has the ranks [i*radix, min(ranks, (i+1)*radix)) as children,
//    in rank order; a switch of level l > 0 has up to `radix` consecutive switches of level
//    l-1 as children, in index order. A level with one switch is the top: the tree has
//    ceil(log_radix(ranks)) levels (one for ranks <= radix).
//  - Hosting: leaf switch i runs in its first rank (i*radix), so that child's data never
//    crosses the network; an upper switch with global number s runs in rank
//    (s*radix + 1) mod ranks, which spreads the upper levels over ranks that host no leaf.
//  - Children are reduced in the order listed here, on every rank and every run (this
//    order is what makes results bit-identical).
//
// Contract: plain values; thread-safe to read.
#pragma once

#include <string>
#include <vector>

#include "common/result.h"

namespace weft::coll::detail {

struct InNetSwitch {
  int level = 0;
  int index = 0;              // within its level
  int host = 0;               // the rank whose process runs it
  int parent = -1;            // switch number; -1 for the root
  std::vector<int> children;  // node numbers (ranks < InNetTree::ranks, then switches)
};

struct InNetTree {
  int ranks = 0;
  int radix = 0;
  int levels = 0;
  std::vector<InNetSwitch> switches;  // leaf-first level order; the root last
  std::vector<int> leaf_of_rank;      // switch number of every rank's leaf switch

  // kInvalidArgument for ranks < 1 or radix < 2 (or a tree too large for the tag space).
  static Result<InNetTree> build(int ranks, int radix);

  int root() const { return static_cast<int>(switches.size()) - 1; }
  int numNodes() const { return ranks + static_cast<int>(switches.size()); }
  bool isRank(int node) const { return node < ranks; }
  // The host rank of a node (a rank hosts itself).
  int hostOf(int node) const;
  // The parent switch of a node (-1 for the root switch).
  int parentOf(int node) const;
  // "rank 3" or "switch L1.0 (on rank 5)".
  std::string nodeName(int node) const;
  // Switch numbers hosted by `rank`, in switch order.
  std::vector<int> hostedBy(int rank) const;
  // Golden form: one line per switch, "L<level>.<index> @r<host>: <children> -> <parent>".
  std::string toString() const;
};

}  // namespace weft::coll::detail
