#include "collectives/schedule/plan.h"

#include <sstream>

namespace weft::coll {
namespace {

const char* bufferName(BufferId id) {
  switch (id) {
    case BufferId::kInput: return "in";
    case BufferId::kOutput: return "out";
    case BufferId::kScratch: return "scr";
  }
  return "?";
}

void printSlice(std::ostream& os, const Slice& s) {
  if (s.count == 0) {
    os << '-';
    return;
  }
  os << bufferName(s.buffer) << '[' << s.offset << '+' << s.count << ']';
}

bool sameSlice(const Slice& a, const Slice& b) {
  return a.buffer == b.buffer && a.offset == b.offset && a.count == b.count;
}

void printStep(std::ostream& os, const Step& step) {
  os << toString(step.kind);
  switch (step.kind) {
    case StepKind::kSend:
      os << "->" << step.peer << ' ';
      printSlice(os, step.src);
      break;
    case StepKind::kRecv:
      os << "<-" << step.peer << ' ';
      printSlice(os, step.dst);
      break;
    case StepKind::kRecvReduce:
      os << "<-" << step.peer << ' ';
      if (!sameSlice(step.src, step.dst)) {
        printSlice(os, step.src);
        os << '>';
      }
      printSlice(os, step.dst);
      break;
    case StepKind::kCopy:
    case StepKind::kReduce:
      os << ' ';
      printSlice(os, step.src);
      os << '>';
      printSlice(os, step.dst);
      break;
  }
}

}  // namespace

std::string Plan::toString() const {
  std::ostringstream os;
  os << algorithm << " scratch=" << scratch_count << (needs_finalize ? " finalize" : "") << '\n';
  for (size_t r = 0; r < rounds.size(); ++r) {
    for (const Step& step : rounds[r].steps) {
      os << 'r' << r << ' ';
      printStep(os, step);
      os << '\n';
    }
  }
  return os.str();
}

std::string toString(const Step& step) {
  std::ostringstream os;
  printStep(os, step);
  return os.str();
}

size_t Plan::numSteps() const {
  size_t n = 0;
  for (const Round& round : rounds) n += round.steps.size();
  return n;
}

const char* toString(CollKind kind) {
  switch (kind) {
    case CollKind::kBarrier: return "barrier";
    case CollKind::kBroadcast: return "broadcast";
    case CollKind::kReduce: return "reduce";
    case CollKind::kAllreduce: return "allreduce";
    case CollKind::kReduceScatter: return "reduce_scatter";
    case CollKind::kAllgather: return "allgather";
    case CollKind::kGather: return "gather";
    case CollKind::kScatter: return "scatter";
    case CollKind::kAlltoall: return "alltoall";
  }
  return "invalid";
}

const char* toString(StepKind kind) {
  switch (kind) {
    case StepKind::kSend: return "send";
    case StepKind::kRecv: return "recv";
    case StepKind::kRecvReduce: return "recvred";
    case StepKind::kCopy: return "copy";
    case StepKind::kReduce: return "reduce";
  }
  return "invalid";
}

size_t inputCount(const CollSpec& spec) {
  const size_t all = spec.count * static_cast<size_t>(spec.size);
  const bool isRoot = spec.rank == spec.root;
  switch (spec.kind) {
    case CollKind::kBarrier: return 0;
    case CollKind::kBroadcast: return isRoot ? spec.count : 0;
    case CollKind::kReduce:
    case CollKind::kAllreduce:
    case CollKind::kAllgather:
    case CollKind::kGather: return spec.count;
    case CollKind::kReduceScatter:
    case CollKind::kAlltoall: return all;
    case CollKind::kScatter: return isRoot ? all : 0;
  }
  return 0;
}

size_t outputCount(const CollSpec& spec) {
  const size_t all = spec.count * static_cast<size_t>(spec.size);
  const bool isRoot = spec.rank == spec.root;
  switch (spec.kind) {
    case CollKind::kBarrier: return 0;
    case CollKind::kReduce: return isRoot ? spec.count : 0;
    case CollKind::kGather: return isRoot ? all : 0;
    case CollKind::kBroadcast:
    case CollKind::kAllreduce:
    case CollKind::kReduceScatter:
    case CollKind::kScatter: return spec.count;
    case CollKind::kAllgather:
    case CollKind::kAlltoall: return all;
  }
  return 0;
}

}  // namespace weft::coll
