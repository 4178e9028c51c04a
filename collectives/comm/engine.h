// Engine: what all communicators of one world share. Internal to collectives/.
//
//  - The transport Context and one Endpoint per peer world rank, connected lazily through
//    the store ("<prefix>/ep/transport/<backend>/addr/<rank>").
//  - The running operations of every communicator of the world. progressAll() drives the
//    Context once and advances each of them, so that waiting on any one operation keeps
//    all the others moving (two ranks waiting on different outstanding operations never
//    deadlock).
//  - Peer failures: when an operation sees the transport report a dead peer, the engine
//    records it and publishes it in the store ("<prefix>/failures" counter and
//    "<prefix>/failure/<n>" = "<world rank>\n<reporter>\n<message>"). Ranks whose operation
//    has run for kFailurePollInterval poll that counter (at most once per interval) while
//    they wait, so ranks that never talked to the dead rank fail with kPeerFailure naming it
//    too, instead of waiting for their deadline.
//  - Communicator ids: a counter in the store ("<prefix>/next_comm_id").
//
// Threads: one thread at a time (the world's thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/deadline.h"
#include "common/result.h"
#include "common/store/store.h"
#include "transport/api/context.h"

namespace weft::coll::detail {

struct OpState;

class Engine {
 public:
  // How often waiting ranks look for failure reports of other ranks in the store: short
  // enough that a rank that never talked to a dead peer still fails well within any
  // reasonable WEFT_TIMEOUT, long enough that the store sees a negligible load.
  static constexpr std::chrono::milliseconds kFailurePollInterval{500};
  // Longest nap of a blocking wait before it re-checks deadlines and failure reports (the
  // transport wakes it earlier on every event): bounds how late a deadline is noticed.
  static constexpr std::chrono::milliseconds kMaxNap{10};

  // Publishes this rank's transport address. world_nodes: node index per world rank.
  static Result<std::shared_ptr<Engine>> create(std::shared_ptr<transport::Context> context,
                                                std::shared_ptr<Store> world_store, int world_rank,
                                                std::vector<int> world_nodes);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  transport::Context& context() { return *context_; }
  Store& store() { return *store_; }
  const std::shared_ptr<Store>& storePtr() const { return store_; }
  int worldRank() const { return world_rank_; }
  int worldSize() const { return world_size_; }
  const std::vector<int>& worldNodes() const { return world_nodes_; }

  // The connected endpoint to a world rank (connects on first use; blocks on the store up to
  // the deadline while the peer has not published its address yet).
  Result<transport::Endpoint*> endpoint(int world_rank, Deadline deadline);

  void add(OpState* op);
  // Drives the Context once and advances every running operation (failing the ones whose
  // deadline passed or whose communicator lost a rank). True when anything progressed.
  bool progressAll();
  // Blocks until `op` completes or `until` passes (false then).
  bool waitFor(OpState& op, Deadline until);

  // A dead world rank: records it and tells the other ranks through the store.
  void reportFailure(int world_rank, const Status& why);
  // The recorded failure of a world rank (OK when none is known).
  const Status& failureOf(int world_rank) const;
  int numFailures() const { return num_failures_; }
  // Reads new failure reports from the store (rate-limited unless `force`).
  void pollFailures(bool force = false);
  // pollFailures() once `op` has been running for kFailurePollInterval: operations that
  // complete quickly never touch the store (no store round trip, no allocation).
  void maybePollFailures(const OpState& op);

  // A new communicator id (1, 2, ...: a counter in the store, unique within the world).
  Result<uint64_t> allocateCommId();

 private:
  Engine(std::shared_ptr<transport::Context> context, std::shared_ptr<Store> store, int world_rank,
         std::vector<int> world_nodes);
  void failMembersOf(int world_rank);
  void retire(size_t index);

  std::shared_ptr<transport::Context> context_;
  std::shared_ptr<Store> store_;     // the world's namespace
  std::shared_ptr<Store> ep_store_;  // "<prefix>/ep": transport addresses
  int world_rank_;
  int world_size_;
  std::vector<int> world_nodes_;
  std::vector<std::unique_ptr<transport::Endpoint>> endpoints_;  // by world rank
  std::vector<OpState*> active_;
  std::vector<Status> failures_;  // by world rank
  int num_failures_ = 0;
  int64_t failure_reports_seen_ = 0;
  std::chrono::steady_clock::time_point last_poll_{};
};

}  // namespace weft::coll::detail
