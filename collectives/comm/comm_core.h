// CommCore: the state behind a Communicator, and OpState: one running operation. Internal
// to collectives/.
//
// An operation's life: the API validates the call (collectives.cc) and hands a CallSpec to
// issue*(); that selects the algorithm (tuner), finds or compiles the plan (a small LRU
// cache keyed by the call's shape, so repeated calls allocate nothing), takes the next
// sequence number, connects the plan's peers, and starts the run: first the WEFT_CHECK
// signature exchange when enabled, then the plan, then the avg finalize. advance() moves
// those phases along; the Engine calls it for every running operation.
//
// Threads: one thread at a time per world (see communicator.h).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "collectives/api/communicator.h"
#include "collectives/api/request.h"
#include "collectives/api/types.h"
#include "collectives/comm/engine.h"
#include "collectives/comm/op_code.h"
#include "collectives/comm/signature.h"
#include "collectives/executor/buffer_pool.h"
#include "collectives/executor/compiled_plan.h"
#include "collectives/executor/plan_run.h"
#include "collectives/reduce/reducer.h"
#include "collectives/shm/shm_comm.h"
#include "collectives/tuner/tuner.h"

namespace weft::coll {
struct CallOptions;
class Hierarchy;
class InNetwork;
}  // namespace weft::coll

namespace weft::coll::detail {

// Settings read once for the world and inherited by derived communicators.
struct CommConfig {
  double timeout_s = 300;
  bool check = false;
  size_t chunk_bytes = 262144;
  uint32_t depth = 4;
  bool shm = true;            // WEFT_COLL_SHM: one-node communicators use shm/ (ShmComm)
  size_t shm_chunk = 524288;  // WEFT_COLL_SHM_CHUNK
  static Result<CommConfig> fromEnvironment();
};

// One call, validated by the API layer.
struct CallSpec {
  OpCode op = OpCode::kBarrier;
  DataType type = DataType::kU8;
  std::optional<ReduceOp> reduce_op;
  size_t count = 0;
  int root = -1;    // rooted collectives; the peer of send / recv
  int64_t tag = 0;  // send / recv
  const void* input = nullptr;
  void* output = nullptr;
  size_t input_count = 0;  // elements of the input / output this rank uses
  size_t output_count = 0;
  uint64_t counts_hash = 0;  // v-variants (WEFT_CHECK)
  // gatherv / scatterv / allgatherv: the per-rank counts and displacements (one entry per
  // rank, valid during the issuing call; the shared-memory path reads them).
  const size_t* v_counts = nullptr;
  const size_t* v_displs = nullptr;
  // In-place layout the operation allows: input - output in elements when they overlap.
  std::optional<int64_t> in_place_delta;
};

struct OpState {
  CommCore* core = nullptr;
  std::shared_ptr<CommCore> keep_alive;  // set while detached from its handle and running
  uint32_t generation = 0;
  bool in_use = false;
  bool running = false;
  bool in_engine = false;
  bool detached = false;
  Status status;

  OpCode op = OpCode::kBarrier;
  std::string_view algorithm;
  uint64_t seq = 0;
  Deadline deadline = Deadline::never();
  DataType type = DataType::kU8;
  size_t count = 0;
  int root = -1;
  int64_t tag = 0;
  std::chrono::steady_clock::time_point issued;
  std::shared_ptr<const CompiledPlan> plan;
  std::optional<Reducer> reducer;
  std::byte* input = nullptr;
  std::byte* output = nullptr;
  size_t output_count = 0;
  transport::Tag tag_base = 0;
  BufferPool::Lease scratch;
  PlanRun run;

  bool checking = false;
  Signature signature;
  std::vector<Signature> signatures;
  std::shared_ptr<const CompiledPlan> check_plan;
  std::vector<std::byte> check_scratch;
};

class CommCore : public std::enable_shared_from_this<CommCore> {
 public:
  // id: unique within the world (0 for the world communicator); its tags use it modulo 4095.
  CommCore(std::shared_ptr<Engine> engine, uint64_t id, std::vector<int> world_ranks, int rank,
           const std::vector<int>& world_nodes, CommConfig config, Tuner tuner,
           std::shared_ptr<Store> store);
  ~CommCore();
  CommCore(const CommCore&) = delete;
  CommCore& operator=(const CommCore&) = delete;

  int rank() const { return rank_; }
  int size() const { return static_cast<int>(world_ranks_.size()); }
  uint64_t id() const { return id_; }
  // The in-network allreduce behind algorithm "innet" (innet/innet_select.cc), created by
  // the first such call.
  std::shared_ptr<InNetwork>& inNetwork() { return innet_; }
  // The hierarchy behind algorithm "hierarchical" (hier/hierarchical.cc), created by the
  // first such call.
  std::shared_ptr<Hierarchy>& hierarchy() { return hier_; }
  // The communicator's 12-bit id in transport tags (executor/tags.h).
  uint32_t tagId() const { return tag_id_; }
  const std::vector<int>& worldRanks() const { return world_ranks_; }
  int commRankOf(int world_rank) const;
  const Topology& topology() const { return topology_; }
  uint64_t nextSeq() const { return seq_; }
  const Status& health() const { return broken_; }
  Engine& engine() { return *engine_; }
  const std::shared_ptr<Engine>& enginePtr() const { return engine_; }
  Store& store() { return *store_; }
  const CommConfig& config() const { return config_; }
  Tuner& tuner() { return tuner_; }

  // Registry collectives (barrier ... alltoall): selection, cached plan, launch.
  Result<Request> issueCollective(std::shared_ptr<CommCore> self, const CallSpec& call,
                                  const CallOptions& opts);
  // A per-call plan (v-variants; algorithm is its name).
  Result<Request> issuePlan(std::shared_ptr<CommCore> self, const CallSpec& call, const Plan& plan,
                            const CallOptions& opts);
  Result<Request> issuePointToPoint(std::shared_ptr<CommCore> self, const CallSpec& call,
                                    const CallOptions& opts);
  // Shared-memory path (shm_ops.cc): whether the call takes it, and running it to completion.
  bool wantsShm(const CallSpec& call, const CallOptions& opts) const;
  Result<Request> issueShm(std::shared_ptr<CommCore> self, const CallSpec& call,
                           const CallOptions& opts);
  // The blocking form of issueShm: runs the call without a Request or an OpState (the
  // sequence number, deadline and errors are the same).
  Status runShmBlocking(const CallSpec& call, const CallOptions& opts);

  // Engine side.
  void advance(OpState& op, bool* progressed);
  void failForPeer(OpState& op, int world_rank, const Status& why);
  void releaseOp(OpState* op);
  // Request side: the handle goes away.
  void dropHandle(OpState* op, std::shared_ptr<CommCore> self);

  // "allreduce #5 on communicator 0 (rank 1 of 4, algorithm ring, 1024 x f32)".
  std::string describe(const OpState& op) const;
  // "rank 2" or "rank 2 (world 5)".
  std::string rankName(int rank) const;

 private:
  struct PlanKey {
    OpCode op = OpCode::kBarrier;
    const void* algorithm = nullptr;
    size_t count = 0;
    int root = -1;
    size_t chunk_elems = 0;
    bool overlapping = false;
    int64_t delta = 0;
    bool operator==(const PlanKey&) const = default;
  };
  struct CacheEntry {
    PlanKey key;
    std::shared_ptr<const CompiledPlan> plan;
    uint64_t last_use = 0;
  };

  Result<BufferLayout> layoutOf(const CallSpec& call) const;
  Result<std::shared_ptr<const CompiledPlan>> cachedPlan(const PlanKey& key, const CollSpec& spec,
                                                         PlanBuildFn build,
                                                         const BufferLayout& layout);
  Result<Request> launch(std::shared_ptr<CommCore> self, const CallSpec& call,
                         std::shared_ptr<const CompiledPlan> plan, std::string_view algorithm,
                         const CallOptions& opts);
  Status usable(OpCode op);
  Status runShm(ShmDeadline deadline, const CallSpec& call);
  // Why a call cannot take the shared-memory path here (OK when it can).
  Status shmUsable(const CallSpec& call);
  // A failed shared-memory call: the error with the call's description; breaks the
  // communicator and reports a dead peer to the engine.
  Status shmFailure(const OpState& op, const Status& st);
  // Sets up a pooled OpState for a call (takes the next sequence number).
  void fillOp(OpState& op, const CallSpec& call, std::shared_ptr<const CompiledPlan> plan,
              std::shared_ptr<const CompiledPlan> check_plan, std::string_view algorithm,
              const CallOptions& opts);
  Status connectPeers(const CompiledPlan& plan, Deadline deadline);
  Result<std::shared_ptr<const CompiledPlan>> checkPlan();
  void startCheck(OpState& op);
  void startMain(OpState& op);
  void fillSignature(OpState& op, const CallSpec& call);
  void finish(OpState& op, Status status, bool breaks);
  void failFromRun(OpState& op, const Status& st);
  Status timeoutError(const OpState& op) const;
  std::string joinPeers(const std::vector<int>& ranks, const char* what) const;
  OpState* acquireOp();

  std::shared_ptr<Engine> engine_;
  uint64_t id_;
  uint32_t tag_id_;
  std::vector<int> world_ranks_;
  std::vector<int> comm_rank_of_world_;
  int rank_;
  Topology topology_;
  CommConfig config_;
  Tuner tuner_;
  std::shared_ptr<Store> store_;
  uint64_t seq_ = 0;
  uint32_t outstanding_ = 0;
  Status broken_;
  BufferPool scratch_pool_;
  BufferPool staging_pool_;
  std::vector<transport::Endpoint*> endpoints_;  // by communicator rank
  std::vector<CacheEntry> cache_;
  uint64_t cache_clock_ = 0;
  std::vector<std::unique_ptr<OpState>> ops_;
  std::vector<OpState*> free_ops_;
  std::unique_ptr<ShmComm> shm_;  // created by the first shared-memory call
  std::shared_ptr<InNetwork> innet_;
  std::shared_ptr<Hierarchy> hier_;
};

// Dense node numbering, local rank and size of `rank` among the members.
Topology computeTopology(const std::vector<int>& world_ranks, int rank,
                         const std::vector<int>& world_nodes);

}  // namespace weft::coll::detail
