// Communicator: a group of ranks that run collectives together over one transport Context.
//
//   WEFT_ASSIGN_OR_RETURN(weft::World world, weft::bootstrap(deadline));
//   transport::ContextOptions o;
//   o.rank = world.info.rank;
//   WEFT_ASSIGN_OR_RETURN(std::shared_ptr<transport::Context> ctx, transport::openContext("ucx",
//   o)); WEFT_ASSIGN_OR_RETURN(auto comm, coll::Communicator::create(world, ctx));
//   WEFT_RETURN_IF_ERROR(coll::allreduce(*comm, in, out, n, DataType::kF32, ReduceOp::kSum));
//   WEFT_ASSIGN_OR_RETURN(auto half, comm->split(comm->rank() % 2, comm->rank()));
//
// Contract
//  - The world communicator is created once per process from the bootstrap World (or a
//    WorldInfo) and a transport Context whose rank is the world rank. Creating it only
//    publishes this rank's transport address in the store; endpoints are connected lazily,
//    the first time an operation needs a peer (under "<store_prefix>/ep/" in the store).
//    All communicators derived from one world share its Context and endpoints (the
//    transport allows one Endpoint per peer per Context); tags keep them apart. Hence one
//    world communicator per Context at a time. The backend must offer tagged messages
//    with 40 tag bits (executor/tags.h lays them out); kNotSupported otherwise.
//  - split() and createFromGroup() are collective over the parent: every parent rank calls
//    them in the same order. Each new communicator gets its own id (from a counter in the
//    store), its own store namespace "<store_prefix>/c<id>", its own tag space and its own
//    operation sequence numbers. Ranks that are not members get nullptr.
//  - Every collective call takes the next sequence number of its communicator (calls that
//    fail argument validation take none), so every rank must call the communicator's
//    collectives in the same order. Point-to-point send / recv take no sequence number.
//  - Errors are sticky: after an operation failed with a timeout, a peer failure or a
//    protocol error, every later operation of the communicator fails at once with that
//    error (a WEFT_CHECK mismatch is not sticky: every rank saw it and nothing was sent).
//  - Threads: a communicator, every communicator derived from the same world, their
//    requests and the Context are used by one thread at a time.
//  - Lifetime: communicators (and their Requests) keep the shared internals and the Context
//    alive through shared ownership; destroy them before the process tears down the store.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "collectives/tuner/tuner.h"
#include "common/bootstrap.h"
#include "common/deadline.h"
#include "common/result.h"
#include "common/store/store.h"
#include "transport/api/context.h"

namespace weft::coll {

namespace detail {
class CommCore;
}  // namespace detail

// Where the ranks of a communicator live.
struct Topology {
  int node = 0;        // this rank's node, numbered densely within the communicator
  int local_rank = 0;  // rank among the communicator's ranks on this node (in rank order)
  int local_size = 1;  // communicator ranks on this node
  int num_nodes = 1;
  std::vector<int> node_of_rank;  // node of every communicator rank
};

// An ordered set of world ranks (MPI-style groups). Plain value.
class Group {
 public:
  Group() = default;
  // Ranks must be distinct and >= 0 (kInvalidArgument otherwise).
  static Result<Group> fromWorldRanks(std::vector<int> world_ranks);

  int size() const { return static_cast<int>(ranks_.size()); }
  const std::vector<int>& worldRanks() const { return ranks_; }
  int worldRank(int i) const { return ranks_.at(static_cast<size_t>(i)); }
  // Position of a world rank in the group; -1 when absent.
  int indexOf(int world_rank) const;

  // The members at `indices` (positions in this group), in that order.
  Result<Group> include(std::span<const int> indices) const;
  // This group without the members at `indices`, order kept.
  Result<Group> exclude(std::span<const int> indices) const;
  // This group's members, then the other's that are not in this one.
  Group unionWith(const Group& other) const;
  // This group's members that are also in `other`, in this group's order.
  Group intersection(const Group& other) const;

  bool operator==(const Group& other) const = default;

 private:
  explicit Group(std::vector<int> ranks) : ranks_(std::move(ranks)) {}
  std::vector<int> ranks_;
};

// The world as the communicator needs it (Communicator::create(World) fills it from the
// bootstrap).
struct WorldInfo {
  int rank = 0;
  int size = 1;
  std::vector<int> node_of_rank;  // node index per rank; empty: every rank on one node
  std::shared_ptr<Store> store;
};

struct CommOptions {
  // Store namespace of this world's communicators (two independent worlds in one job, each
  // with its own Context, need different prefixes).
  std::string store_prefix = "coll";
};

class Communicator {
 public:
  static constexpr int kUndefinedColor = -1;

  // The world communicator (id 0). Reads WEFT_TIMEOUT, WEFT_CHECK, WEFT_COLL_CHUNK,
  // WEFT_COLL_PIPELINE_DEPTH, the cost model and the WEFT_ALGO_<OP> overrides once, here;
  // derived communicators inherit them. kInvalidArgument when the Context's rank is not the
  // world rank or a value is malformed.
  static Result<std::unique_ptr<Communicator>> create(const World& world,
                                                      std::shared_ptr<transport::Context> context,
                                                      const CommOptions& options = {});
  static Result<std::unique_ptr<Communicator>> create(const WorldInfo& world,
                                                      std::shared_ptr<transport::Context> context,
                                                      const CommOptions& options = {});
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const;
  int size() const;
  uint64_t id() const;  // 0 for the world; derived communicators count up through the store
  const Topology& topology() const;
  int worldRank(int rank) const;
  // The members as world ranks, in communicator rank order.
  Group group() const;
  // The sequence number the next collective call will get.
  uint64_t nextSeq() const;
  // OK, or the sticky error that broke the communicator.
  Status health() const;
  transport::Context& context() const;
  // The selection model and overrides (read from the environment at creation).
  Tuner& tuner();
  const Tuner& tuner() const;

  // Collective over this communicator. Ranks with equal color form a new communicator,
  // ordered by (key, rank); kUndefinedColor gives nullptr. Uses one sequence number (an
  // allgather of the colors and keys). Deadline: WEFT_TIMEOUT when not given.
  Result<std::unique_ptr<Communicator>> split(int color, int key,
                                              std::optional<Deadline> deadline = std::nullopt);
  // Collective over this communicator, every rank passing the same group (a subset of
  // this communicator's members); members get a communicator ranked in group order,
  // the others nullptr.
  Result<std::unique_ptr<Communicator>> createFromGroup(
      const Group& group, std::optional<Deadline> deadline = std::nullopt);

  // Internal (collectives.cc, tests): the shared state.
  detail::CommCore& core() { return *core_; }

 private:
  explicit Communicator(std::shared_ptr<detail::CommCore> core);
  std::shared_ptr<detail::CommCore> core_;
};

}  // namespace weft::coll
