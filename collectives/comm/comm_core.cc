#include "collectives/comm/comm_core.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "collectives/api/collectives.h"
#include "collectives/comm/v_plans.h"
#include "collectives/executor/tags.h"
#include "common/config.h"

namespace weft::coll::detail {
namespace {

// Compiled plans kept per communicator: enough for the shapes a training step or a
// benchmark sweep repeats, small enough that a linear lookup is cheaper than hashing.
constexpr size_t kPlanCacheSize = 32;

}  // namespace

Result<CommConfig> CommConfig::fromEnvironment() {
  CommConfig c;
  WEFT_ASSIGN_OR_RETURN(c.timeout_s, config::getDouble("WEFT_TIMEOUT"));
  WEFT_ASSIGN_OR_RETURN(c.check, config::getBool("WEFT_CHECK"));
  WEFT_ASSIGN_OR_RETURN(int64_t chunk, config::getInt("WEFT_COLL_CHUNK"));
  WEFT_ASSIGN_OR_RETURN(int64_t depth, config::getInt("WEFT_COLL_PIPELINE_DEPTH"));
  c.chunk_bytes = static_cast<size_t>(chunk);
  c.depth = static_cast<uint32_t>(depth);
  WEFT_ASSIGN_OR_RETURN(c.shm, config::getBool("WEFT_COLL_SHM"));
  WEFT_ASSIGN_OR_RETURN(int64_t shmChunk, config::getInt("WEFT_COLL_SHM_CHUNK"));
  c.shm_chunk = static_cast<size_t>(shmChunk);
  return c;
}

Topology computeTopology(const std::vector<int>& world_ranks, int rank,
                         const std::vector<int>& world_nodes) {
  Topology t;
  std::map<int, int> dense;
  for (int w : world_ranks) {
    const int node = world_nodes[static_cast<size_t>(w)];
    auto it = dense.try_emplace(node, static_cast<int>(dense.size())).first;
    t.node_of_rank.push_back(it->second);
  }
  t.num_nodes = static_cast<int>(dense.size());
  t.node = t.node_of_rank[static_cast<size_t>(rank)];
  t.local_rank = 0;
  t.local_size = 0;
  for (size_t i = 0; i < t.node_of_rank.size(); ++i) {
    if (t.node_of_rank[i] != t.node) continue;
    ++t.local_size;
    if (static_cast<int>(i) < rank) ++t.local_rank;
  }
  return t;
}

CommCore::CommCore(std::shared_ptr<Engine> engine, uint64_t id, std::vector<int> world_ranks,
                   int rank, const std::vector<int>& world_nodes, CommConfig config, Tuner tuner,
                   std::shared_ptr<Store> store)
    : engine_(std::move(engine)),
      id_(id),
      tag_id_(id == 0 ? 0 : static_cast<uint32_t>(1 + (id - 1) % kCommIdMask)),
      world_ranks_(std::move(world_ranks)),
      comm_rank_of_world_(static_cast<size_t>(engine_->worldSize()), -1),
      rank_(rank),
      topology_(computeTopology(world_ranks_, rank, world_nodes)),
      config_(config),
      tuner_(std::move(tuner)),
      store_(std::move(store)),
      endpoints_(world_ranks_.size(), nullptr) {
  for (size_t i = 0; i < world_ranks_.size(); ++i) {
    comm_rank_of_world_[static_cast<size_t>(world_ranks_[i])] = static_cast<int>(i);
  }
}

CommCore::~CommCore() = default;

int CommCore::commRankOf(int world_rank) const {
  if (world_rank < 0 || static_cast<size_t>(world_rank) >= comm_rank_of_world_.size()) return -1;
  return comm_rank_of_world_[static_cast<size_t>(world_rank)];
}

std::string CommCore::rankName(int rank) const {
  if (rank < 0 || rank >= size()) return strCat("rank ", rank);
  const int w = world_ranks_[static_cast<size_t>(rank)];
  return w == rank ? strCat("rank ", rank) : strCat("rank ", rank, " (world ", w, ")");
}

std::string CommCore::describe(const OpState& op) const {
  const std::string who = strCat(" on communicator ", id_, " (rank ", rank_, " of ", size());
  if (isPointToPoint(op.op)) {
    return strCat(opName(op.op), op.op == OpCode::kSend ? " to " : " from ", rankName(op.root),
                  " tag ", op.tag, who, ", ", op.count, " x ", op.type, ")");
  }
  return strCat(opName(op.op), " #", op.seq, who, ", algorithm ", op.algorithm, ", ", op.count,
                " x ", op.type, op.root >= 0 ? strCat(", root ", op.root) : std::string(), ")");
}

Result<BufferLayout> CommCore::layoutOf(const CallSpec& call) const {
  BufferLayout l;
  l.input_count = call.input_count;
  l.output_count = call.output_count;
  const size_t es = sizeOf(call.type);
  const auto a = reinterpret_cast<uintptr_t>(call.input);
  const auto b = reinterpret_cast<uintptr_t>(call.output);
  const size_t inBytes = call.input_count * es;
  const size_t outBytes = call.output_count * es;
  if (a == 0 || b == 0 || inBytes == 0 || outBytes == 0 || a >= b + outBytes || b >= a + inBytes) {
    return l;
  }
  const auto diff = static_cast<int64_t>(a - b);
  const bool whole = diff % static_cast<int64_t>(es) == 0;
  if (!whole || !call.in_place_delta || diff / static_cast<int64_t>(es) != *call.in_place_delta) {
    std::string allowed = call.in_place_delta
                              ? strCat("in place, the input must start ", *call.in_place_delta,
                                       " elements after the output")
                              : std::string("this operation has no in-place form");
    return WEFT_ERROR(StatusCode::kInvalidArgument, opName(call.op),
                      ": input and output buffers overlap (input - output = ", diff, " bytes); ",
                      allowed);
  }
  l.overlapping = true;
  l.input_minus_output = diff / static_cast<int64_t>(es);
  return l;
}

Result<std::shared_ptr<const CompiledPlan>> CommCore::cachedPlan(const PlanKey& key,
                                                                 const CollSpec& spec,
                                                                 PlanBuildFn build,
                                                                 const BufferLayout& layout) {
  ++cache_clock_;
  for (CacheEntry& e : cache_) {
    if (e.key == key) {
      e.last_use = cache_clock_;
      return e.plan;
    }
  }
  const Plan plan = build(spec);
  WEFT_ASSIGN_OR_RETURN(std::shared_ptr<const CompiledPlan> compiled,
                        compilePlan(plan, rank_, size(), key.chunk_elems, layout));
  if (cache_.size() < kPlanCacheSize) {
    cache_.push_back({key, compiled, cache_clock_});
  } else {
    auto oldest = std::min_element(cache_.begin(), cache_.end(), [](const auto& x, const auto& y) {
      return x.last_use < y.last_use;
    });
    *oldest = CacheEntry{key, compiled, cache_clock_};
  }
  return compiled;
}

Result<Request> CommCore::issueCollective(std::shared_ptr<CommCore> self, const CallSpec& call,
                                          const CallOptions& opts) {
  if (wantsShm(call, opts)) return issueShm(std::move(self), call, opts);
  const auto kind = static_cast<CollKind>(call.op);
  const size_t es = sizeOf(call.type);
  const size_t chunkBytes = opts.chunk_bytes != 0 ? opts.chunk_bytes : config_.chunk_bytes;
  const CollSpec spec{kind, rank_, size(), call.count, std::max(call.root, 0)};
  WEFT_RETURN_IF_ERROR(validateSpec(spec));
  const TopologyShape shape{size(), topology_.num_nodes};
  WEFT_ASSIGN_OR_RETURN(Selection sel,
                        tuner_.select(kind, call.count * es, shape, chunkBytes, opts.algorithm));
  WEFT_ASSIGN_OR_RETURN(BufferLayout layout, layoutOf(call));
  const PlanKey key{call.op,
                    sel.algorithm,
                    call.count,
                    spec.root,
                    std::max<size_t>(1, chunkBytes / es),
                    layout.overlapping,
                    layout.input_minus_output};
  WEFT_ASSIGN_OR_RETURN(auto plan, cachedPlan(key, spec, sel.algorithm->build, layout));
  return launch(std::move(self), call, std::move(plan), sel.algorithm->name, opts);
}

Result<Request> CommCore::issuePlan(std::shared_ptr<CommCore> self, const CallSpec& call,
                                    const Plan& plan, const CallOptions& opts) {
  const size_t chunkBytes = opts.chunk_bytes != 0 ? opts.chunk_bytes : config_.chunk_bytes;
  const size_t chunkElems = std::max<size_t>(1, chunkBytes / sizeOf(call.type));
  WEFT_ASSIGN_OR_RETURN(BufferLayout layout, layoutOf(call));
  WEFT_ASSIGN_OR_RETURN(std::shared_ptr<const CompiledPlan> compiled,
                        compilePlan(plan, rank_, size(), chunkElems, layout));
  const std::string_view name = compiled->algorithm;
  return launch(std::move(self), call, std::move(compiled), name, opts);
}

Result<Request> CommCore::issuePointToPoint(std::shared_ptr<CommCore> self, const CallSpec& call,
                                            const CallOptions& opts) {
  WEFT_ASSIGN_OR_RETURN(BufferLayout layout, layoutOf(call));
  const PlanKey key{call.op, nullptr, call.count, call.root, std::max<size_t>(call.count, 1),
                    false,   0};
  const CollSpec spec{CollKind::kBarrier, rank_, size(), call.count, call.root};
  const PlanBuildFn build = call.op == OpCode::kSend
                                ? +[](const CollSpec& s) { return buildSendPlan(s.root, s.count); }
                                : +[](const CollSpec& s) { return buildRecvPlan(s.root, s.count); };
  WEFT_ASSIGN_OR_RETURN(auto plan, cachedPlan(key, spec, build, layout));
  return launch(std::move(self), call, std::move(plan), "direct", opts);
}

Status CommCore::usable(OpCode op) {
  if (!broken_.isOk()) {
    return Status(broken_.code(),
                  strCat(opName(op), " on communicator ", id_,
                         ": unusable after an earlier failure: ", broken_.message()));
  }
  if (engine_->numFailures() == 0) return Status::ok();
  for (int r = 0; r < size(); ++r) {
    const Status& f = engine_->failureOf(world_ranks_[static_cast<size_t>(r)]);
    if (f.isOk()) continue;
    broken_ = Status(StatusCode::kPeerFailure,
                     strCat("communicator ", id_, ": ", rankName(r), " failed: ", f.message()));
    return Status(StatusCode::kPeerFailure, strCat(opName(op), " on ", broken_.message()));
  }
  return Status::ok();
}

Status CommCore::connectPeers(const CompiledPlan& plan, Deadline deadline) {
  for (int peer : plan.peers) {
    auto& slot = endpoints_[static_cast<size_t>(peer)];
    if (slot != nullptr) continue;
    Result<transport::Endpoint*> ep =
        engine_->endpoint(world_ranks_[static_cast<size_t>(peer)], deadline);
    if (!ep.isOk()) return ep.status().withContext(strCat("connecting to ", rankName(peer)));
    slot = *ep;
  }
  return Status::ok();
}

Result<std::shared_ptr<const CompiledPlan>> CommCore::checkPlan() {
  const AlgorithmEntry* bruck = findAlgorithm("bruck", CollKind::kAllgather);
  const CollSpec spec{CollKind::kAllgather, rank_, size(), sizeof(Signature), 0};
  BufferLayout layout;
  layout.input_count = sizeof(Signature);
  layout.output_count = sizeof(Signature) * static_cast<size_t>(size());
  // One chunk per message: the exchange is latency-bound.
  const PlanKey key{OpCode::kAllgather, bruck, spec.count, 0, layout.output_count, false, 0};
  return cachedPlan(key, spec, bruck->build, layout);
}

OpState* CommCore::acquireOp() {
  if (free_ops_.empty()) {
    ops_.push_back(std::make_unique<OpState>());
    ops_.back()->core = this;
    free_ops_.push_back(ops_.back().get());
  }
  OpState* op = free_ops_.back();
  free_ops_.pop_back();
  op->in_use = true;
  ++op->generation;
  return op;
}

void CommCore::releaseOp(OpState* op) {
  op->in_use = false;
  op->detached = false;
  op->plan.reset();
  op->check_plan.reset();
  op->reducer.reset();
  free_ops_.push_back(op);
}

void CommCore::dropHandle(OpState* op, std::shared_ptr<CommCore> self) {
  if (op->in_engine) {
    op->detached = true;
    op->keep_alive = std::move(self);
  } else {
    releaseOp(op);
  }
}

void CommCore::fillSignature(OpState& op, const CallSpec& call) {
  Signature& s = op.signature;
  s = Signature{};
  s.op = static_cast<uint8_t>(call.op);
  s.type = static_cast<uint8_t>(call.type);
  if (call.reduce_op) s.reduce_op = static_cast<uint8_t>(*call.reduce_op);
  s.root = call.root;
  s.chunk_elems = static_cast<uint32_t>(std::min<size_t>(op.plan->chunk_elems, UINT32_MAX));
  s.count = call.count;
  s.counts_hash = call.counts_hash;
  std::memcpy(s.algorithm, op.algorithm.data(),
              std::min(op.algorithm.size(), sizeof(s.algorithm) - 1));
}

}  // namespace weft::coll::detail
