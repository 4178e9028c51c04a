#include "collectives/comm/signature.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "collectives/comm/comm_core.h"

namespace weft::coll::detail {
namespace {

void appendRanks(std::string& out, const std::vector<int>& ranks, std::span<const int> world) {
  out += ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(ranks[i]);
    const int w = world[static_cast<size_t>(ranks[i])];
    if (w != ranks[i]) out += strCat(" (world ", w, ")");
  }
}

}  // namespace

std::string Signature::describe() const {
  if (magic != kMagic) return strCat("<corrupt signature, magic ", magic, ">");
  std::string s = strCat(opName(static_cast<OpCode>(op)), "(count ", count, ", ",
                         toString(static_cast<DataType>(type)));
  if (reduce_op != kNoReduceOp) s += strCat(", ", toString(static_cast<ReduceOp>(reduce_op)));
  if (root >= 0) s += strCat(", root ", root);
  if (counts_hash != 0) s += strCat(", counts hash ", counts_hash);
  char algo[sizeof(algorithm) + 1] = {};
  std::memcpy(algo, algorithm, sizeof(algorithm));
  s += strCat(", algorithm ", algo, ", chunk ", chunk_elems, " elements)");
  return s;
}

uint64_t hashCounts(std::span<const size_t> a, std::span<const size_t> b) {
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](std::span<const size_t> v) {
    for (size_t x : v) {
      for (int i = 0; i < 8; ++i) {
        h ^= (static_cast<uint64_t>(x) >> (8 * i)) & 0xff;
        h *= 0x100000001b3ull;
      }
    }
  };
  mix(a);
  mix(b);
  return h == 0 ? 1 : h;
}

Status compareSignatures(std::string_view what, std::span<const Signature> all,
                         std::span<const int> world_ranks) {
  bool same = true;
  for (const Signature& s : all) same = same && std::memcmp(&s, &all[0], sizeof(Signature)) == 0;
  if (same) return Status::ok();
  std::vector<size_t> firstOf;            // representative rank of each distinct signature
  std::vector<std::vector<int>> members;  // ranks per distinct signature
  for (size_t r = 0; r < all.size(); ++r) {
    size_t g = 0;
    while (g < firstOf.size() && std::memcmp(&all[firstOf[g]], &all[r], sizeof(Signature)) != 0) {
      ++g;
    }
    if (g == firstOf.size()) {
      firstOf.push_back(r);
      members.emplace_back();
    }
    members[g].push_back(static_cast<int>(r));
  }
  std::string text;
  for (size_t g = 0; g < firstOf.size(); ++g) {
    if (g > 0) text += "; ";
    appendRanks(text, members[g], world_ranks);
    text += strCat(" called ", all[firstOf[g]].describe());
  }
  return WEFT_ERROR(StatusCode::kInvalidArgument, what,
                    ": WEFT_CHECK found mismatched calls: ", text)
      .withHint(
          "every rank must call the same collectives in the same order with the same "
          "count, type, op, root and algorithm");
}

Status checkAllreduceCall(Communicator& comm, std::string_view algorithm, size_t count,
                          DataType type, ReduceOp op, const CallOptions& opts) {
  CommCore& core = comm.core();
  if (!core.config().check) return Status::ok();
  Signature mine;
  mine.op = static_cast<uint8_t>(OpCode::kAllreduce);
  mine.type = static_cast<uint8_t>(type);
  mine.reduce_op = static_cast<uint8_t>(op);
  mine.count = count;
  std::memcpy(mine.algorithm, algorithm.data(),
              std::min(algorithm.size(), sizeof(mine.algorithm) - 1));
  std::vector<Signature> all(static_cast<size_t>(comm.size()));
  CallOptions exchange = opts;
  exchange.algorithm = {};
  const std::string what = strCat("allreduce (algorithm ", algorithm, ")");
  Status st = allgather(comm, &mine, all.data(), sizeof(Signature), DataType::kU8, exchange);
  if (!st.isOk()) return st.withContext(strCat(what, ", WEFT_CHECK exchange"));
  return compareSignatures(what, all, core.worldRanks());
}

}  // namespace weft::coll::detail
