#include "collectives/innet/innet_tree.h"

#include "common/status.h"

namespace weft::coll::detail {

namespace {

// Largest node number the tag layout of innet.cc can carry (21 bits).
constexpr int kMaxNodes = 1 << 21;

}  // namespace

Result<InNetTree> InNetTree::build(int ranks, int radix) {
  if (ranks < 1 || radix < 2) {
    return WEFT_ERROR(StatusCode::kInvalidArgument,
                      "in-network tree: need ranks >= 1 and radix >= 2, got ", ranks,
                      " ranks and radix ", radix)
        .withHint("set WEFT_INNET_RADIX to 2 or more");
  }
  InNetTree t;
  t.ranks = ranks;
  t.radix = radix;
  t.leaf_of_rank.resize(static_cast<size_t>(ranks));
  // Children of the level being built: node numbers of the level below.
  std::vector<int> below(static_cast<size_t>(ranks));
  for (int r = 0; r < ranks; ++r) below[static_cast<size_t>(r)] = r;
  for (int level = 0;; ++level) {
    std::vector<int> built;
    const int n = static_cast<int>(below.size());
    for (int first = 0, index = 0; first < n; first += radix, ++index) {
      InNetSwitch s;
      s.level = level;
      s.index = index;
      const int number = static_cast<int>(t.switches.size());
      s.host = level == 0 ? first : (number * radix + 1) % ranks;
      for (int k = first; k < n && k < first + radix; ++k) {
        const int child = below[static_cast<size_t>(k)];
        s.children.push_back(child);
        if (level == 0)
          t.leaf_of_rank[static_cast<size_t>(child)] = number;
        else
          t.switches[static_cast<size_t>(child - ranks)].parent = number;
      }
      t.switches.push_back(std::move(s));
      built.push_back(ranks + number);
    }
    t.levels = level + 1;
    if (built.size() == 1) break;
    below = std::move(built);
  }
  if (t.numNodes() > kMaxNodes) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "in-network tree: ", t.numNodes(),
                      " nodes exceed the tag space (", kMaxNodes, ")");
  }
  return t;
}

int InNetTree::hostOf(int node) const {
  return isRank(node) ? node : switches[static_cast<size_t>(node - ranks)].host;
}

int InNetTree::parentOf(int node) const {
  return isRank(node) ? leaf_of_rank[static_cast<size_t>(node)]
                      : switches[static_cast<size_t>(node - ranks)].parent;
}

std::string InNetTree::nodeName(int node) const {
  if (isRank(node)) return strCat("rank ", node);
  const InNetSwitch& s = switches[static_cast<size_t>(node - ranks)];
  return strCat("switch L", s.level, ".", s.index, " (on rank ", s.host, ")");
}

std::vector<int> InNetTree::hostedBy(int rank) const {
  std::vector<int> out;
  for (size_t s = 0; s < switches.size(); ++s) {
    if (switches[s].host == rank) out.push_back(static_cast<int>(s));
  }
  return out;
}

std::string InNetTree::toString() const {
  auto shortName = [&](int node) {
    if (isRank(node)) return strCat("r", node);
    const InNetSwitch& s = switches[static_cast<size_t>(node - ranks)];
    return strCat("L", s.level, ".", s.index);
  };
  std::string out = strCat("ranks ", ranks, " radix ", radix, " levels ", levels, "\n");
  for (size_t i = 0; i < switches.size(); ++i) {
    const InNetSwitch& s = switches[i];
    out += strCat("L", s.level, ".", s.index, " @r", s.host, ":");
    for (int c : s.children) out += " " + shortName(c);
    out += s.parent < 0 ? std::string(" -> root") : " -> " + shortName(ranks + s.parent);
    out += "\n";
  }
  return out;
}

}  // namespace weft::coll::detail
