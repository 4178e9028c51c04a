#include "collectives/schedule/builder.h"

#include <utility>

namespace weft::coll::detail {

PlanBuilder::PlanBuilder(std::string algorithm, const CollSpec& spec) : spec_(spec) {
  plan_.algorithm = std::move(algorithm);
}

void PlanBuilder::add(size_t slot, const Step& step) {
  if (slots_.size() <= slot) slots_.resize(slot + 1);
  slots_[slot].steps.push_back(step);
}

void PlanBuilder::send(size_t slot, int peer, Slice src) {
  if (src.count == 0) return;
  add(slot, Step{StepKind::kSend, peer, src, {}});
}

void PlanBuilder::recv(size_t slot, int peer, Slice dst) {
  if (dst.count == 0) return;
  add(slot, Step{StepKind::kRecv, peer, {}, dst});
}

void PlanBuilder::recvReduce(size_t slot, int peer, Slice src, Slice dst) {
  if (dst.count == 0) return;
  add(slot, Step{StepKind::kRecvReduce, peer, src, dst});
}

void PlanBuilder::copy(size_t slot, Slice src, Slice dst) {
  if (dst.count == 0) return;
  add(slot, Step{StepKind::kCopy, -1, src, dst});
}

void PlanBuilder::reduce(size_t slot, Slice src, Slice dst) {
  if (dst.count == 0) return;
  add(slot, Step{StepKind::kReduce, -1, src, dst});
}

void PlanBuilder::signal(size_t slot, int peer) {
  add(slot, Step{StepKind::kSend, peer, {BufferId::kInput, 0, 0}, {}});
}

void PlanBuilder::wait(size_t slot, int peer) {
  add(slot, Step{StepKind::kRecv, peer, {}, {BufferId::kInput, 0, 0}});
}

Plan PlanBuilder::finish() {
  size_t scratch = 0;
  for (Round& round : slots_) {
    if (round.steps.empty()) continue;
    for (const Step& step : round.steps) {
      for (const Slice* s : {&step.src, &step.dst}) {
        if (s->buffer == BufferId::kScratch && s->count > 0) {
          scratch = std::max(scratch, s->offset + s->count);
        }
      }
    }
    plan_.rounds.push_back(std::move(round));
  }
  slots_.clear();
  plan_.scratch_count = scratch;
  return std::move(plan_);
}

Plan singleRankPlan(std::string algorithm, const CollSpec& spec, bool needsFinalize) {
  PlanBuilder b(std::move(algorithm), spec);
  const size_t in = inputCount(spec);
  const size_t out = outputCount(spec);
  const size_t n = std::min(in, out);  // equal with one rank, for every kind
  b.copy(0, inSlice(0, n), outSlice(0, n));
  if (needsFinalize) b.setNeedsFinalize();
  return b.finish();
}

int pow2Floor(int x) {
  int p = 1;
  while (p * 2 <= x) p *= 2;
  return p;
}

int log2Floor(int x) {
  int k = 0;
  while ((2 << k) <= x) ++k;
  return k;
}

int log2Ceil(int x) {
  int k = 0;
  while ((1 << k) < x) ++k;
  return k;
}

Fold::Fold(int n) : size(n), pof2(pow2Floor(n)), rem(n - pow2Floor(n)), steps(log2Floor(n)) {}

}  // namespace weft::coll::detail
