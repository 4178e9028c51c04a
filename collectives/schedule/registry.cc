#include <array>
#include <limits>
#include <string>

#include "collectives/schedule/algorithms.h"

namespace weft::coll {
namespace {

constexpr AlgorithmEntry kAlgorithms[] = {
    {"ring", CollKind::kAllreduce, buildRingAllreduce},
    {"ring", CollKind::kReduceScatter, buildRingReduceScatter},
    {"ring", CollKind::kAllgather, buildRingAllgather},
    {"ring", CollKind::kBroadcast, buildRingBroadcast},
    {"rabenseifner", CollKind::kAllreduce, buildRabenseifnerAllreduce},
    {"rabenseifner", CollKind::kReduceScatter, buildRabenseifnerReduceScatter},
    {"recursive_doubling", CollKind::kAllreduce, buildRecursiveDoublingAllreduce},
    {"recursive_doubling", CollKind::kAllgather, buildRecursiveDoublingAllgather},
    {"double_tree", CollKind::kAllreduce, buildDoubleTreeAllreduce},
    {"binary_tree", CollKind::kReduce, buildBinaryTreeReduce},
    {"binary_tree", CollKind::kBroadcast, buildBinaryTreeBroadcast},
    {"binomial", CollKind::kBroadcast, buildBinomialBroadcast},
    {"binomial", CollKind::kReduce, buildBinomialReduce},
    {"binomial", CollKind::kGather, buildBinomialGather},
    {"binomial", CollKind::kScatter, buildBinomialScatter},
    {"bruck", CollKind::kAllgather, buildBruckAllgather},
    {"bruck", CollKind::kAlltoall, buildBruckAlltoall},
    {"pairwise", CollKind::kAlltoall, buildPairwiseAlltoall},
    {"dissemination", CollKind::kBarrier, buildDisseminationBarrier},
    {"token_ring", CollKind::kBarrier, buildTokenRingBarrier},
};

constexpr std::array<CollKind, 9> kAllKinds = {
    CollKind::kBarrier,   CollKind::kBroadcast,     CollKind::kReduce,
    CollKind::kAllreduce, CollKind::kReduceScatter, CollKind::kAllgather,
    CollKind::kGather,    CollKind::kScatter,       CollKind::kAlltoall};

std::string namesFor(CollKind kind) {
  std::string names;
  for (const AlgorithmEntry* e : algorithmsFor(kind)) {
    if (!names.empty()) names += ", ";
    names += e->name;
  }
  return names;
}

}  // namespace

std::span<const AlgorithmEntry> allAlgorithms() {
  return kAlgorithms;
}

std::vector<const AlgorithmEntry*> algorithmsFor(CollKind kind) {
  std::vector<const AlgorithmEntry*> out;
  for (const AlgorithmEntry& e : allAlgorithms()) {
    if (e.kind == kind) out.push_back(&e);
  }
  return out;
}

const AlgorithmEntry* findAlgorithm(std::string_view name, CollKind kind) {
  for (const AlgorithmEntry& e : allAlgorithms()) {
    if (e.kind == kind && e.name == name) return &e;
  }
  return nullptr;
}

std::vector<std::string_view> algorithmNames() {
  std::vector<std::string_view> names;
  for (const AlgorithmEntry& e : allAlgorithms()) {
    if (names.empty() || names.back() != e.name) names.push_back(e.name);
  }
  return names;
}

Result<CollKind> parseCollKind(std::string_view name) {
  std::string accepted;
  for (CollKind kind : kAllKinds) {
    if (name == toString(kind)) return kind;
    accepted += accepted.empty() ? "" : ", ";
    accepted += toString(kind);
  }
  return WEFT_ERROR(StatusCode::kInvalidArgument, "unknown collective \"", name,
                    "\" (accepted: ", accepted, ")");
}

Status validateSpec(const CollSpec& spec) {
  const char* op = toString(spec.kind);
  if (spec.size < 1) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, op, ": group size ", spec.size,
                      " (must be >= 1)");
  }
  if (spec.rank < 0 || spec.rank >= spec.size) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, op, ": rank ", spec.rank, " outside [0, ",
                      spec.size, ")");
  }
  if (spec.root < 0 || spec.root >= spec.size) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, op, ": root ", spec.root, " outside [0, ",
                      spec.size, ")");
  }
  if (spec.count > std::numeric_limits<size_t>::max() / 2 / static_cast<size_t>(spec.size)) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, op, ": count ", spec.count, " x size ",
                      spec.size, " elements overflows");
  }
  return Status::ok();
}

Result<Plan> buildPlan(std::string_view name, const CollSpec& spec) {
  WEFT_RETURN_IF_ERROR(validateSpec(spec));
  const AlgorithmEntry* e = findAlgorithm(name, spec.kind);
  if (e == nullptr) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, toString(spec.kind), ": no algorithm \"", name,
                      "\" (available: ", namesFor(spec.kind), ")")
        .withHint("check WEFT_ALGO_<OP>; weft-info --explain lists the choices");
  }
  return e->build(spec);
}

}  // namespace weft::coll
