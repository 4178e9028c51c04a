#include "collectives/executor/compiled_plan.h"

#include <algorithm>
#include <array>

#include "collectives/executor/tags.h"
#include "common/status.h"

namespace weft::coll::detail {
namespace {

// A resolved memory range: arena 0 = input (and output when they overlap), 1 = output,
// 2 = scratch; offsets in elements.
struct Region {
  int arena = -1;
  size_t offset = 0;
  size_t count = 0;
  bool write = false;
  size_t end() const { return offset + count; }
};

// A step reads its source and writes its destination (a kReduce also reads it, which the
// write already covers: a write conflicts with every overlapping access).
struct StepRegions {
  std::array<Region, 2> r;
  int n = 0;
  void add(const Region& x) { r[static_cast<size_t>(n++)] = x; }
};

struct Resolver {
  const BufferLayout& layout;
  size_t scratch_count;
  size_t in_base = 0;
  size_t out_base = 0;
  int out_arena = 1;

  Resolver(const BufferLayout& l, size_t scratch) : layout(l), scratch_count(scratch) {
    if (l.overlapping) {
      out_arena = 0;
      if (l.input_minus_output >= 0) {
        in_base = static_cast<size_t>(l.input_minus_output);
      } else {
        out_base = static_cast<size_t>(-l.input_minus_output);
      }
    }
  }

  // false when the slice lies outside its buffer.
  bool resolve(const Slice& s, Region* out) const {
    size_t extent = 0;
    switch (s.buffer) {
      case BufferId::kInput:
        *out = Region{0, in_base + s.offset, s.count, false};
        extent = layout.input_count;
        break;
      case BufferId::kOutput:
        *out = Region{out_arena, out_base + s.offset, s.count, false};
        extent = layout.output_count;
        break;
      case BufferId::kScratch:
        *out = Region{2, s.offset, s.count, false};
        extent = scratch_count;
        break;
      default: return false;
    }
    return s.offset <= extent && s.count <= extent - s.offset;
  }
};

bool overlaps(const Region& a, const Region& b) {
  return a.arena == b.arena && a.count > 0 && b.count > 0 && a.offset < b.end() &&
         b.offset < a.end();
}
bool identical(const Region& a, const Region& b) {
  return a.arena == b.arena && a.offset == b.offset && a.count == b.count;
}

Status stepError(const Plan& plan, size_t round, const Step& step, std::string_view what) {
  return WEFT_ERROR(StatusCode::kInternal, "plan ", plan.algorithm, " round ", round, " step (",
                    toString(step), "): ", what);
}

// Fills the step's flags and regions; checks peers, bounds and aliasing.
Status prepareStep(const Plan& plan, size_t round, const Step& step, int rank, int size,
                   const Resolver& res, CompiledStep* cs, StepRegions* regions) {
  const bool usesSrc = step.kind != StepKind::kRecv;
  const bool usesDst = step.kind != StepKind::kSend;
  cs->kind = step.kind;
  cs->src = step.src;
  cs->dst = step.dst;
  cs->round = static_cast<uint32_t>(round);
  if (cs->isMessage()) {
    if (step.peer < 0 || step.peer >= size || step.peer == rank) {
      return stepError(plan, round, step, strCat("invalid peer for rank ", rank, " of ", size));
    }
    cs->peer = step.peer;
  }
  Region src, dst;
  if (usesSrc && step.src.count > 0 && !res.resolve(step.src, &src)) {
    return stepError(plan, round, step, "source slice out of bounds");
  }
  if (usesDst && step.dst.count > 0 && !res.resolve(step.dst, &dst)) {
    return stepError(plan, round, step, "destination slice out of bounds");
  }
  if (usesDst && step.dst.count > 0 && step.dst.buffer == BufferId::kInput) {
    return stepError(plan, round, step, "writes the input buffer");
  }
  if (usesSrc && usesDst && step.src.count != step.dst.count) {
    return stepError(plan, round, step, "source and destination counts differ");
  }
  if (usesSrc && usesDst && overlaps(src, dst) && !identical(src, dst)) {
    return stepError(plan, round, step, "source and destination partially overlap");
  }
  cs->count = usesDst ? step.dst.count : step.src.count;
  cs->fence = cs->count == 0;
  cs->noop = step.kind == StepKind::kCopy && cs->count > 0 && identical(src, dst);
  cs->staged = step.kind == StepKind::kRecvReduce && cs->count > 0 && identical(src, dst);
  if (cs->fence || cs->noop) return Status::ok();
  if (usesSrc) regions->add(src);
  if (usesDst) {
    dst.write = true;
    regions->add(dst);
  }
  return Status::ok();
}

bool stepsConflict(const StepRegions& a, const StepRegions& b) {
  for (int i = 0; i < a.n; ++i) {
    for (int j = 0; j < b.n; ++j) {
      const Region& x = a.r[static_cast<size_t>(i)];
      const Region& y = b.r[static_cast<size_t>(j)];
      if ((x.write || y.write) && overlaps(x, y)) return true;
    }
  }
  return false;
}

class DependencyBuilder {
 public:
  DependencyBuilder(CompiledPlan& cp, const std::vector<StepRegions>& regions)
      : cp_(cp), regions_(regions), stamp_(cp.numTasks(), UINT32_MAX) {}

  void build();

 private:
  void addEdge(uint32_t from, uint32_t to) {
    if (stamp_[from] == to) return;
    stamp_[from] = to;
    edges_.push_back({from, to});
  }
  void chunkDeps(size_t xs, uint32_t xc, size_t ys);

  CompiledPlan& cp_;
  const std::vector<StepRegions>& regions_;
  std::vector<uint32_t> stamp_;
  std::vector<std::pair<uint32_t, uint32_t>> edges_;  // (dependency, dependent)
};

// Chunk xc of step xs against every chunk of the earlier step ys.
void DependencyBuilder::chunkDeps(size_t xs, uint32_t xc, size_t ys) {
  const CompiledStep& X = cp_.steps[xs];
  const CompiledStep& Y = cp_.steps[ys];
  const uint32_t xt = X.first_task + xc;
  if (X.fence || Y.fence) {
    for (uint32_t c = 0; c < Y.num_chunks; ++c) addEdge(Y.first_task + c, xt);
    return;
  }
  const size_t ce = cp_.chunk_elems;
  const size_t lo = static_cast<size_t>(xc) * ce;
  const size_t hi = lo + cp_.chunkCount(X, xc);
  const StepRegions& rx = regions_[xs];
  const StepRegions& ry = regions_[ys];
  for (int i = 0; i < rx.n; ++i) {
    const Region& a = rx.r[static_cast<size_t>(i)];
    for (int j = 0; j < ry.n; ++j) {
      const Region& b = ry.r[static_cast<size_t>(j)];
      if (!(a.write || b.write) || a.arena != b.arena) continue;
      const size_t from = std::max(a.offset + lo, b.offset);
      const size_t to = std::min(a.offset + hi, b.end());
      if (from >= to) continue;
      const size_t first = (from - b.offset) / ce;
      const size_t last = (to - 1 - b.offset) / ce;
      for (size_t c = first; c <= last; ++c) addEdge(Y.first_task + static_cast<uint32_t>(c), xt);
    }
  }
}

void DependencyBuilder::build() {
  const size_t numSteps = cp_.steps.size();
  for (size_t xs = 0; xs < numSteps; ++xs) {
    const CompiledStep& X = cp_.steps[xs];
    for (size_t ys = 0; ys < xs; ++ys) {
      const CompiledStep& Y = cp_.steps[ys];
      if (Y.round == X.round) continue;
      if (!X.fence && !Y.fence && !stepsConflict(regions_[xs], regions_[ys])) continue;
      for (uint32_t c = 0; c < X.num_chunks; ++c) chunkDeps(xs, c, ys);
    }
  }
  const size_t n = cp_.numTasks();
  cp_.num_deps.assign(n, 0);
  cp_.dependents_begin.assign(n + 1, 0);
  for (const auto& [from, to] : edges_) {
    ++cp_.num_deps[to];
    ++cp_.dependents_begin[from + 1];
  }
  for (size_t i = 0; i < n; ++i) cp_.dependents_begin[i + 1] += cp_.dependents_begin[i];
  cp_.dependents.assign(edges_.size(), 0);
  std::vector<uint32_t> fill(cp_.dependents_begin.begin(), cp_.dependents_begin.end() - 1);
  for (const auto& [from, to] : edges_) cp_.dependents[fill[from]++] = to;
}

// Numbers messages per direction and peer; assigns tasks to chunks.
Status numberSteps(const Plan& plan, int size, CompiledPlan& cp) {
  std::vector<uint32_t> sent(static_cast<size_t>(size), 0);
  std::vector<uint32_t> received(static_cast<size_t>(size), 0);
  uint32_t tasks = 0;
  for (CompiledStep& s : cp.steps) {
    s.first_task = tasks;
    s.num_chunks =
        s.fence ? 1 : static_cast<uint32_t>((s.count + cp.chunk_elems - 1) / cp.chunk_elems);
    tasks += s.num_chunks;
    if (!s.isMessage()) continue;
    uint32_t& counter = (s.kind == StepKind::kSend ? sent : received)[static_cast<size_t>(s.peer)];
    if (counter >= kMaxPairMessages) {
      return WEFT_ERROR(StatusCode::kInternal, "plan ", plan.algorithm, " exchanges more than ",
                        kMaxPairMessages, " messages with rank ", s.peer);
    }
    s.pair_index = counter++;
    if (std::find(cp.peers.begin(), cp.peers.end(), s.peer) == cp.peers.end()) {
      cp.peers.push_back(s.peer);
    }
    cp.has_reductions = cp.has_reductions || s.kind == StepKind::kRecvReduce;
  }
  cp.task_step.resize(tasks);
  for (uint32_t i = 0; i < cp.steps.size(); ++i) {
    for (uint32_t c = 0; c < cp.steps[i].num_chunks; ++c)
      cp.task_step[cp.steps[i].first_task + c] = i;
  }
  std::sort(cp.peers.begin(), cp.peers.end());
  return Status::ok();
}

}  // namespace

Result<std::shared_ptr<const CompiledPlan>> compilePlan(const Plan& plan, int rank, int size,
                                                        size_t chunk_elems,
                                                        const BufferLayout& layout) {
  auto cp = std::make_shared<CompiledPlan>();
  cp->algorithm = plan.algorithm;
  cp->scratch_count = plan.scratch_count;
  cp->needs_finalize = plan.needs_finalize;
  cp->chunk_elems = std::max<size_t>(chunk_elems, 1);
  const Resolver res(layout, plan.scratch_count);
  std::vector<StepRegions> regions;
  for (size_t k = 0; k < plan.rounds.size(); ++k) {
    for (const Step& step : plan.rounds[k].steps) {
      CompiledStep cs;
      StepRegions sr;
      WEFT_RETURN_IF_ERROR(prepareStep(plan, k, step, rank, size, res, &cs, &sr));
      cp->has_reductions = cp->has_reductions || step.kind == StepKind::kReduce;
      cp->steps.push_back(cs);
      regions.push_back(sr);
    }
  }
  WEFT_RETURN_IF_ERROR(numberSteps(plan, size, *cp));
  DependencyBuilder(*cp, regions).build();
  return std::shared_ptr<const CompiledPlan>(std::move(cp));
}

}  // namespace weft::coll::detail
