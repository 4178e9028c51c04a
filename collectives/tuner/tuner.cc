#include "collectives/tuner/tuner.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "common/config.h"

namespace weft::coll {
namespace {

// Kinds the communicator can run through shared memory on one node (algorithm "shm").
bool hasShmPath(CollKind kind) {
  return kind == CollKind::kAllreduce || kind == CollKind::kBarrier ||
         kind == CollKind::kReduceScatter || kind == CollKind::kAllgather ||
         kind == CollKind::kBroadcast || kind == CollKind::kAlltoall;
}

struct Terms {
  double p;        // ranks
  double logp;     // ceil(log2 p)
  double pof2;     // largest power of two <= p
  double logpof2;  // log2(pof2)
  bool fold;       // p is not a power of two
  double depth;    // depth of a balanced binary tree of p nodes
  double a;        // alpha
  double b;        // seconds per byte on the link
  double g;        // seconds per byte reduced
  double c;        // seconds per byte copied
};

Terms termsFor(const CostModel& m, const TopologyShape& topo) {
  Terms t{};
  t.p = topo.size;
  int pof2 = 1, log = 0;
  while (pof2 * 2 <= topo.size) {
    pof2 *= 2;
    ++log;
  }
  t.pof2 = pof2;
  t.logpof2 = log;
  t.fold = pof2 != topo.size;
  t.logp = log + (t.fold ? 1 : 0);
  t.depth = std::floor(std::log2(std::max(1, topo.size)));
  const LinkCost& link = m.link(topo.linkClass());
  t.a = link.alpha_s;
  t.b = 1.0 / link.bytes_per_s;
  t.g = 1.0 / m.reduce_bytes_per_s;
  t.c = 1.0 / m.copy_bytes_per_s;
  return t;
}

// A chain of `hops` links carrying m bytes in chunks; `perByte` per chunk byte per hop.
double pipelined(const Terms& t, double hops, double m, double chunk, double perByte) {
  const double k = std::max(1.0, std::ceil(m / std::max(chunk, 1.0)));
  return (hops + k - 1) * (t.a + (m / k) * perByte);
}

// The MPICH fold for non-powers of two: one message of m bytes in (reduced), one back.
double foldCost(const Terms& t, double m, double back, bool reduces) {
  if (!t.fold) return 0;
  return 2 * t.a + (m + back) * t.b + (reduces ? m * t.g : 0);
}

double allreduceCost(std::string_view algo, const Terms& t, double n, double chunk) {
  const double frac = (t.p - 1) / t.p;
  const double fracPof2 = (t.pof2 - 1) / t.pof2;
  if (algo == "ring") return 2 * (t.p - 1) * t.a + 2 * frac * n * t.b + frac * n * t.g;
  if (algo == "rabenseifner") {
    return 2 * t.logpof2 * t.a + 2 * fracPof2 * n * t.b + fracPof2 * n * t.g +
           foldCost(t, n, n, true);
  }
  if (algo == "recursive_doubling") {
    return t.logpof2 * (t.a + n * t.b + n * t.g) + foldCost(t, n, n, true);
  }
  if (algo == "double_tree") {
    return 2 * pipelined(t, std::max(1.0, t.depth), n / 2, chunk, 2 * t.b + t.g);
  }
  return -1;
}

double rootedCost(std::string_view algo, CollKind kind, const Terms& t, double n, double chunk) {
  const bool red = kind == CollKind::kReduce;
  const double perByte = t.b + (red ? t.g : 0);
  if (kind == CollKind::kGather || kind == CollKind::kScatter) {
    return algo == "binomial" ? t.logp * t.a + (t.p - 1) * n * t.b : -1;
  }
  if (algo == "binomial") return t.logp * (t.a + n * perByte);
  if (algo == "binary_tree") return pipelined(t, std::max(1.0, t.depth), n, chunk, 2 * perByte);
  if (algo == "ring" && !red) return pipelined(t, t.p - 1, n, chunk, t.b);
  return -1;
}

double blockCost(std::string_view algo, CollKind kind, const Terms& t, double n) {
  const double total = t.p * n;
  if (kind == CollKind::kReduceScatter) {
    if (algo == "ring") return (t.p - 1) * (t.a + n * t.b + n * t.g);
    if (algo == "rabenseifner") {
      return t.logpof2 * t.a + (t.pof2 - 1) / t.pof2 * total * (t.b + t.g) +
             foldCost(t, total, n, true);
    }
  } else if (kind == CollKind::kAllgather) {
    if (algo == "ring") return (t.p - 1) * (t.a + n * t.b);
    if (algo == "recursive_doubling") {
      return t.logpof2 * t.a + (t.p - 1) * n * t.b + foldCost(t, n, total, false);
    }
    if (algo == "bruck") return t.logp * t.a + (t.p - 1) * n * t.b + 2 * total * t.c;
  } else if (kind == CollKind::kAlltoall) {
    if (algo == "pairwise") return (t.p - 1) * (t.a + n * t.b);
    if (algo == "bruck") return t.logp * (t.a + total / 2 * t.b) + 3 * total * t.c;
  }
  return -1;
}

}  // namespace

Result<CostModel> CostModel::fromEnvironment() {
  CostModel m;
  WEFT_ASSIGN_OR_RETURN(double ai, config::getDouble("WEFT_COLL_ALPHA_INTRA_US"));
  WEFT_ASSIGN_OR_RETURN(double bi, config::getDouble("WEFT_COLL_BW_INTRA_GBS"));
  WEFT_ASSIGN_OR_RETURN(double ae, config::getDouble("WEFT_COLL_ALPHA_INTER_US"));
  WEFT_ASSIGN_OR_RETURN(double be, config::getDouble("WEFT_COLL_BW_INTER_GBS"));
  WEFT_ASSIGN_OR_RETURN(double rg, config::getDouble("WEFT_COLL_REDUCE_GBS"));
  m.intra = LinkCost{ai * 1e-6, bi * 1e9};
  m.inter = LinkCost{ae * 1e-6, be * 1e9};
  m.reduce_bytes_per_s = rg * 1e9;
  return m;
}

double predictSeconds(const CostModel& model, std::string_view algorithm, CollKind kind,
                      size_t bytes, const TopologyShape& topo, size_t chunk_bytes) {
  const Terms t = termsFor(model, topo);
  const double n = static_cast<double>(bytes);
  const double chunk = static_cast<double>(chunk_bytes);
  if (topo.size <= 1) {
    return kind == CollKind::kBarrier ? 0 : n * t.c;
  }
  switch (kind) {
    case CollKind::kBarrier:
      if (algorithm == "dissemination") return t.logp * t.a;
      if (algorithm == "token_ring") return (2 * t.p - 1) * t.a;
      return -1;
    case CollKind::kAllreduce: return allreduceCost(algorithm, t, n, chunk);
    case CollKind::kBroadcast:
    case CollKind::kReduce:
    case CollKind::kGather:
    case CollKind::kScatter: return rootedCost(algorithm, kind, t, n, chunk);
    case CollKind::kReduceScatter:
    case CollKind::kAllgather:
    case CollKind::kAlltoall: return blockCost(algorithm, kind, t, n);
  }
  return -1;
}

Result<Tuner> Tuner::fromEnvironment() {
  WEFT_ASSIGN_OR_RETURN(CostModel model, CostModel::fromEnvironment());
  Tuner tuner(model);
  for (const AlgorithmEntry& e : allAlgorithms()) {
    const std::string var = algoVariable(e.kind);
    if (!tuner.overrideFor(e.kind).empty()) continue;
    WEFT_ASSIGN_OR_RETURN(std::string name, config::getString(var));
    tuner.setOverride(e.kind, name);
  }
  return tuner;
}

void Tuner::setLinkCost(LinkClass c, LinkCost cost) {
  (c == LinkClass::kIntraNode ? model_.intra : model_.inter) = cost;
}

void Tuner::setOverride(CollKind kind, std::string name) {
  overrides_[static_cast<size_t>(kind)] = std::move(name);
}

const std::string& Tuner::overrideFor(CollKind kind) const {
  return overrides_[static_cast<size_t>(kind)];
}

std::vector<AlgorithmCost> Tuner::costs(CollKind kind, size_t bytes, const TopologyShape& topo,
                                        size_t chunk_bytes) const {
  std::vector<AlgorithmCost> out;
  for (const AlgorithmEntry* e : algorithmsFor(kind)) {
    out.push_back({e->name, predictSeconds(model_, e->name, kind, bytes, topo, chunk_bytes)});
  }
  return out;
}

Result<Selection> Tuner::select(CollKind kind, size_t bytes, const TopologyShape& topo,
                                size_t chunk_bytes, std::string_view forced) const {
  Selection sel;
  std::string_view name = forced;
  sel.reason = Selection::Reason::kCallOption;
  if (name.empty()) {
    name = overrideFor(kind);
    sel.reason = Selection::Reason::kOverride;
  }
  if (!name.empty()) {
    sel.algorithm = findAlgorithm(name, kind);
    if (sel.algorithm == nullptr) {
      std::string names;
      for (const AlgorithmEntry* e : algorithmsFor(kind))
        names += strCat(names.empty() ? "" : ", ", e->name);
      // Taken before the tuner (collectives.cc): the shared-memory path on one node, and
      // allreduce's hierarchical and in-network variants.
      if (hasShmPath(kind)) names += ", shm";
      if (kind == CollKind::kAllreduce) names += ", hierarchical, innet";
      const bool fromEnv = sel.reason == Selection::Reason::kOverride;
      return WEFT_ERROR(StatusCode::kInvalidArgument, toString(kind), ": ",
                        fromEnv ? algoVariable(kind) + "=" : std::string("algorithm "), "\"", name,
                        "\" is not an algorithm of ", toString(kind), " (valid: ", names, ")");
    }
    sel.predicted_s = predictSeconds(model_, name, kind, bytes, topo, chunk_bytes);
    return sel;
  }
  sel.reason = Selection::Reason::kCheapest;
  for (const AlgorithmEntry& e : allAlgorithms()) {
    if (e.kind != kind) continue;
    const double s = predictSeconds(model_, e.name, kind, bytes, topo, chunk_bytes);
    if (s >= 0 && (sel.algorithm == nullptr || s < sel.predicted_s)) {
      sel.algorithm = &e;
      sel.predicted_s = s;
    }
  }
  if (sel.algorithm == nullptr) {
    return WEFT_ERROR(StatusCode::kInternal, toString(kind), ": no algorithm has a cost model");
  }
  return sel;
}

std::string Tuner::explain(CollKind kind, size_t bytes, const TopologyShape& topo,
                           size_t chunk_bytes) const {
  std::ostringstream os;
  const LinkCost& link = model_.link(topo.linkClass());
  os << toString(kind) << " of " << formatBytes(bytes) << " per rank on " << topo.size
     << (topo.size == 1 ? " rank, " : " ranks, ") << topo.num_nodes
     << (topo.num_nodes == 1 ? " node" : " nodes")
     << "\n  model: " << (topo.linkClass() == LinkClass::kIntraNode ? "intra-node" : "inter-node")
     << " links alpha " << formatSeconds(link.alpha_s) << ", " << link.bytes_per_s / 1e9
     << " GB/s; reduce " << model_.reduce_bytes_per_s / 1e9 << " GB/s; copy "
     << model_.copy_bytes_per_s / 1e9 << " GB/s; chunk " << formatBytes(chunk_bytes) << "\n";
  Result<Selection> sel = select(kind, bytes, topo, chunk_bytes);
  for (const AlgorithmCost& c : costs(kind, bytes, topo, chunk_bytes)) {
    const bool chosen = sel.isOk() && sel->algorithm->name == c.name;
    char line[128];
    std::snprintf(line, sizeof(line), "  %c %-20s %12s", chosen ? '*' : ' ',
                  std::string(c.name).c_str(), formatSeconds(c.seconds).c_str());
    os << line;
    if (chosen) {
      os << (sel->reason == Selection::Reason::kOverride
                 ? "  <- chosen (" + algoVariable(kind) + ")"
                 : std::string("  <- chosen (lowest predicted time)"));
    }
    os << "\n";
  }
  if (!sel.isOk()) os << "  error: " << sel.status().message() << "\n";
  if (hasShmPath(kind) && topo.num_nodes == 1 && topo.size > 1 && overrideFor(kind).empty()) {
    os << "  note: on one node the communicator runs " << toString(kind)
       << " through shared memory instead (algorithm shm; WEFT_COLL_SHM=0 or an override "
          "selects from the list above)\n";
  }
  return os.str();
}

std::string algoVariable(CollKind kind) {
  std::string name = toString(kind);
  for (char& ch : name) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return "WEFT_ALGO_" + name;
}

std::string formatBytes(size_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(kUnits)) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (v == std::floor(v)) {
    std::snprintf(buf, sizeof(buf), "%.0f %s", v, kUnits[u]);
  } else {
    std::snprintf(buf, sizeof(buf), "%.2f %s", v, kUnits[u]);
  }
  return buf;
}

std::string formatSeconds(double s) {
  char buf[32];
  if (s < 0) return "n/a";
  if (s < 1e-3) {
    std::snprintf(buf, sizeof(buf), "%.2f us", s * 1e6);
  } else if (s < 1) {
    std::snprintf(buf, sizeof(buf), "%.3f ms", s * 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%.3f s", s);
  }
  return buf;
}

Result<size_t> parseByteSize(std::string_view text) {
  size_t i = 0;
  uint64_t value = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    value = value * 10 + static_cast<uint64_t>(text[i] - '0');
    if (value > (uint64_t{1} << 50)) break;
    ++i;
  }
  std::string unit(text.substr(i));
  for (char& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  int shift = -1;
  if (unit.empty() || unit == "B") shift = 0;
  if (unit == "K" || unit == "KB" || unit == "KIB") shift = 10;
  if (unit == "M" || unit == "MB" || unit == "MIB") shift = 20;
  if (unit == "G" || unit == "GB" || unit == "GIB") shift = 30;
  if (i == 0 || shift < 0 || value > (uint64_t{1} << 50)) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "\"", text,
                      "\" is not a byte size (examples: 8, 4096, 1K, 64M, 2G)");
  }
  return static_cast<size_t>(value << shift);
}

}  // namespace weft::coll
