// CompiledPlan: a Plan (schedule/plan.h) cut into chunk tasks with the dependencies between
// them, ready for PlanRun to execute. Internal to collectives/.
//
// Model (the rules of plan.h, at chunk granularity)
//  - Every step is cut into chunks of `chunk_elems` elements (the last one shorter); a step
//    with empty slices (a barrier's 0-byte message) is one "fence" chunk. Sender and
//    receiver cut a message the same way because both sides have the same element count
//    and (WEFT_CHECK verifies it) the same chunk size.
//  - Chunk x of step X (round k) depends on chunk y of step Y (round j < k) when the memory
//    they resolve to overlaps and one of them writes it, or when either step is a fence.
//    Memory is resolved through a BufferLayout, so in-place calls (input and output sharing
//    memory) get exactly the dependencies their aliasing needs. Steps of one round never
//    depend on each other (plan.h guarantees they do not conflict).
//  - Messages between this rank and a peer are numbered in plan order, separately for each
//    direction (pair_index); with the operation's tag base this gives every message its own
//    tag (executor/tags.h), so steps may be posted in any order the dependencies allow.
//  - A kRecvReduce whose local operand is the destination itself receives into a staging
//    buffer ("staged"); otherwise it receives straight into the destination and reduces
//    dst = src op dst there (the ops are commutative bit for bit, reduce/reducer.h).
//
// Contract: compilePlan validates the plan against the layout (peers, bounds, partial
// overlaps) and returns kInternal naming the step when the plan breaks a rule. The result is
// immutable and may be shared (communicators cache it by call shape).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "collectives/schedule/plan.h"
#include "common/result.h"

namespace weft::coll::detail {

// How the caller's input and output lie relative to each other.
struct BufferLayout {
  size_t input_count = 0;  // elements the plan may touch
  size_t output_count = 0;
  bool overlapping = false;        // input and output share memory
  int64_t input_minus_output = 0;  // (input - output) in elements when overlapping
};

struct CompiledStep {
  StepKind kind = StepKind::kCopy;
  int peer = -1;  // communicator rank; -1 for local steps
  Slice src;
  Slice dst;
  size_t count = 0;  // elements moved (0 for a fence)
  uint32_t round = 0;
  uint32_t first_task = 0;
  uint32_t num_chunks = 0;
  uint32_t pair_index = 0;  // message index towards / from `peer`, per direction
  bool fence = false;       // 0-element message: orders everything before and after it
  bool noop = false;        // a copy onto itself
  bool staged = false;      // kRecvReduce in place: receive into a staging buffer
  bool isMessage() const {
    return kind == StepKind::kSend || kind == StepKind::kRecv || kind == StepKind::kRecvReduce;
  }
  bool isReceive() const { return kind == StepKind::kRecv || kind == StepKind::kRecvReduce; }
};

struct CompiledPlan {
  std::string algorithm;
  size_t scratch_count = 0;
  bool needs_finalize = false;
  size_t chunk_elems = 1;
  std::vector<CompiledStep> steps;         // plan order
  std::vector<uint32_t> task_step;         // per task: index into steps
  std::vector<uint32_t> num_deps;          // per task
  std::vector<uint32_t> dependents_begin;  // CSR over tasks (size num_tasks() + 1)
  std::vector<uint32_t> dependents;
  std::vector<int> peers;  // distinct peers, ascending
  bool has_reductions = false;

  size_t numTasks() const { return task_step.size(); }
  // Elements of chunk c of step s.
  size_t chunkCount(const CompiledStep& s, uint32_t c) const {
    const size_t off = static_cast<size_t>(c) * chunk_elems;
    return s.count - off < chunk_elems ? s.count - off : chunk_elems;
  }
};

// rank / size: this rank in the communicator the plan runs on. chunk_elems >= 1.
Result<std::shared_ptr<const CompiledPlan>> compilePlan(const Plan& plan, int rank, int size,
                                                        size_t chunk_elems,
                                                        const BufferLayout& layout);

}  // namespace weft::coll::detail
