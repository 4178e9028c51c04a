// Algorithm selection for the collectives: an alpha-beta cost model per link class, the
// WEFT_ALGO_<OP> overrides, and an explanation of the choice (weft-info --explain).
//
// Model. A message of m bytes over a link costs alpha + m / bandwidth; reducing m bytes
// costs m / reduce_bandwidth; local copies m / copy_bandwidth. Two link classes: ranks on the
// same node (shared memory) and ranks on different nodes. A communicator that spans nodes is
// costed with the inter-node class throughout (the flat algorithms here cross nodes on their
// critical path). Each algorithm has the textbook closed form (Thakur, Rabenseifner & Gropp
// 2005; pipelined chains and trees for chunked broadcast / reduce / double tree), see
// tuner.cc. Link costs come from WEFT_COLL_ALPHA_* / WEFT_COLL_BW_* (defaults measured on a
// 2-core VM with UCX over posix shared memory); setLinkCost() lets a caller install measured
// values (a measuring pass at init, or a tuning file, can feed it later).
//
// Determinism. Selection is a pure function of (kind, bytes, size, nodes, chunk, model,
// overrides): ranks that agree on those (WEFT_CHECK verifies the chosen algorithm) pick the
// same algorithm. Ties go to the earlier algorithm in registry order.
//
// Contract: plain value, thread-compatible; select() does not allocate.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "collectives/schedule/algorithms.h"
#include "common/result.h"

namespace weft::coll {

enum class LinkClass : uint8_t { kIntraNode, kInterNode };

struct LinkCost {
  double alpha_s = 1e-6;     // latency per message
  double bytes_per_s = 5e9;  // bandwidth
};

struct CostModel {
  LinkCost intra{1e-6, 5e9};
  LinkCost inter{10e-6, 1.2e9};
  double reduce_bytes_per_s = 8e9;  // reduction kernel throughput (bytes of one operand)
  double copy_bytes_per_s = 10e9;   // local memcpy

  // WEFT_COLL_ALPHA_INTRA_US, WEFT_COLL_BW_INTRA_GBS, WEFT_COLL_ALPHA_INTER_US,
  // WEFT_COLL_BW_INTER_GBS, WEFT_COLL_REDUCE_GBS (malformed values are errors naming them).
  static Result<CostModel> fromEnvironment();
  const LinkCost& link(LinkClass c) const { return c == LinkClass::kIntraNode ? intra : inter; }
};

// What the model needs to know about a communicator.
struct TopologyShape {
  int size = 1;
  int num_nodes = 1;
  LinkClass linkClass() const {
    return num_nodes > 1 ? LinkClass::kInterNode : LinkClass::kIntraNode;
  }
};

// `bytes` everywhere below: the per-rank size of the call, CollSpec::count x element size
// (allreduce / reduce / broadcast: the vector; reduce_scatter / allgather / gather / scatter:
// one rank's block; alltoall: one block of the size blocks).
double predictSeconds(const CostModel& model, std::string_view algorithm, CollKind kind,
                      size_t bytes, const TopologyShape& topo, size_t chunk_bytes);

struct AlgorithmCost {
  std::string_view name;
  double seconds = 0;
};

struct Selection {
  const AlgorithmEntry* algorithm = nullptr;
  double predicted_s = 0;
  enum class Reason : uint8_t { kCheapest, kOverride, kCallOption } reason = Reason::kCheapest;
};

class Tuner {
 public:
  explicit Tuner(CostModel model = {}) : model_(model) {}
  // The model from the environment plus every WEFT_ALGO_<OP> that is set.
  static Result<Tuner> fromEnvironment();

  const CostModel& model() const { return model_; }
  void setLinkCost(LinkClass c, LinkCost cost);
  // "" clears. The name is checked when the collective is selected, so that the error
  // (listing the valid names) reaches the call that uses it.
  void setOverride(CollKind kind, std::string name);
  const std::string& overrideFor(CollKind kind) const;

  // Every algorithm of `kind`, registry order.
  std::vector<AlgorithmCost> costs(CollKind kind, size_t bytes, const TopologyShape& topo,
                                   size_t chunk_bytes) const;
  // `forced` (a per-call choice) wins over WEFT_ALGO_<OP>, which wins over the model. A name
  // that does not implement `kind` is kInvalidArgument listing the ones that do.
  Result<Selection> select(CollKind kind, size_t bytes, const TopologyShape& topo,
                           size_t chunk_bytes, std::string_view forced = {}) const;
  // Multi-line text: the inputs, every alternative with its predicted time, the choice and
  // why (weft-info --explain).
  std::string explain(CollKind kind, size_t bytes, const TopologyShape& topo,
                      size_t chunk_bytes) const;

 private:
  CostModel model_;
  std::array<std::string, 9> overrides_;  // by CollKind
};

// "WEFT_ALGO_ALLREDUCE" for kAllreduce, ...
std::string algoVariable(CollKind kind);
// "64 MiB", "8 B", "1.5 KiB" for messages.
std::string formatBytes(size_t bytes);
// "12.3 us", "4.56 ms", "1.20 s".
std::string formatSeconds(double s);
// Parses "64M", "1K", "8", "2G", "4096B", "1MiB" (powers of 1024); kInvalidArgument otherwise.
Result<size_t> parseByteSize(std::string_view text);

}  // namespace weft::coll
