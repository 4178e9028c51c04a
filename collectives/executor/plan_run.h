// PlanRun: executes one CompiledPlan over transport Endpoints. Internal to collectives/.
//
// How it runs
//  - advance() completes finished transport requests (reducing received chunks, returning
//    staging buffers) and then starts every task whose dependencies are done, in plan order.
//    Local tasks (copies, reductions) run inline. It never blocks and never drives the
//    transport's progress engine: the caller progresses the Context, then advances every
//    running operation (see comm/engine.h).
//  - Pipelining: a step's chunks start in order, at most `depth` of them in flight at a
//    time; chunk k of a step can start as soon as the chunks of earlier steps it depends on
//    are done, so a ring or a tree streams chunks through its rounds.
//  - Each message is tagged tag_base | phase_bits | pair_index (executor/tags.h). Chunks of a
//    message share its tag and match in posting order.
//  - kNoResource from the transport (its request pool is full) is back-pressure: the task
//    is retried on the next advance().
//
// Contract
//  - Buffers (input, output, scratch) and endpoints must stay valid until finished() or
//    abandon(). A PlanRun object is reused: start() resets it without freeing its memory.
//  - After an error the run is dead: call abandon(), which detaches in-flight requests and
//    keeps (never reuses) their staging buffers, since the transport may still write them.
//  - Not thread-safe (one thread per communicator family at a time).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "collectives/executor/buffer_pool.h"
#include "collectives/executor/compiled_plan.h"
#include "collectives/reduce/reducer.h"
#include "common/status.h"
#include "transport/api/endpoint.h"

namespace weft::coll::detail {

struct RunArgs {
  const CompiledPlan* plan = nullptr;
  std::byte* input = nullptr;
  std::byte* output = nullptr;
  std::byte* scratch = nullptr;
  size_t elem_size = 1;
  const Reducer* reducer = nullptr;  // required when plan->has_reductions
  transport::Tag tag_base = 0;
  std::span<transport::Endpoint* const> endpoints;  // by communicator rank
  BufferPool* staging = nullptr;
  uint32_t depth = 4;  // chunks of one step in flight at most (>= 1)
};

// Peers a run still waits for (communicator ranks, ascending, no duplicates).
struct WaitingFor {
  std::vector<int> receive_from;  // a receive from them has not completed
  std::vector<int> send_to;       // a send to them has not completed
};

class PlanRun {
 public:
  PlanRun() = default;
  PlanRun(const PlanRun&) = delete;
  PlanRun& operator=(const PlanRun&) = delete;
  ~PlanRun() { abandon(); }

  void start(const RunArgs& args);
  // Sets *progressed when anything completed or started. An error names the step, the peer
  // and the chunk; the run is then dead.
  Status advance(bool* progressed);
  bool finished() const { return remaining_ == 0; }
  bool started() const { return args_.plan != nullptr; }
  // The peer (communicator rank) of the step whose message failed; -1 if none.
  int failedPeer() const { return failed_peer_; }
  void waitingFor(WaitingFor* out) const;
  void abandon();

 private:
  struct Flight {
    uint32_t task = 0;
    transport::Request request;
    BufferPool::Lease staging;
  };

  std::byte* base(BufferId id) const;
  std::byte* addressOf(const Slice& s, size_t elem_offset) const;
  Status completeFlights(bool* progressed);
  Status startReady(bool* progressed);
  // Starts the next chunk of step s; *started false on back-pressure.
  Status startTask(uint32_t s, bool* started);
  Status postMessage(const CompiledStep& st, uint32_t task, uint32_t chunk);
  Status finishMessage(Flight& f);
  void runLocal(const CompiledStep& st, uint32_t chunk);
  void completeTask(uint32_t task);

  RunArgs args_;
  size_t remaining_ = 0;
  int failed_peer_ = -1;
  std::vector<uint32_t> pending_;    // per task: unfinished dependencies
  std::vector<uint32_t> next_;       // per step: next chunk to start
  std::vector<uint32_t> in_flight_;  // per step: chunks started, not finished
  std::vector<uint32_t> done_;       // per step: chunks finished
  std::vector<uint32_t> open_;       // steps with chunks left to start, plan order
  std::vector<Flight> flights_;
};

}  // namespace weft::coll::detail
