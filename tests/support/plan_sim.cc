#include "tests/support/plan_sim.h"

#include <algorithm>
#include <array>
#include <deque>
#include <limits>
#include <map>
#include <sstream>
#include <utility>

#include "common/status.h"

namespace weft::testing {
namespace {

using coll::BufferId;
using coll::CollKind;
using coll::CollSpec;
using coll::Plan;
using coll::Slice;
using coll::Step;
using coll::StepKind;

constexpr size_t kNone = std::numeric_limits<size_t>::max();

// A resolved memory range: arena (rank * 3 + k) and element range. arena < 0: empty.
struct Region {
  int arena = -1;
  size_t offset = 0;
  size_t count = 0;
};

bool overlaps(const Region& a, const Region& b) {
  return a.arena >= 0 && a.arena == b.arena && a.count > 0 && b.count > 0 &&
         a.offset < b.offset + b.count && b.offset < a.offset + a.count;
}
bool identical(const Region& a, const Region& b) {
  return a.arena == b.arena && a.offset == b.offset && a.count == b.count;
}

// Where a rank's buffer lives: arena, offset of element 0, extent.
struct BufferMap {
  int arena = -1;
  size_t base = 0;
  size_t extent = 0;
};

struct SimStep {
  int rank = 0;
  size_t round = 0;
  size_t index = 0;  // within the round
  const Step* step = nullptr;
  Region src, dst;
  std::vector<Region> reads, writes;
  bool fence = false;
  bool noop = false;  // a copy onto itself
  size_t match = kNone;
  std::vector<size_t> deps, dependents;
  size_t pending = 0;
  bool ready = false;
  bool done = false;
  std::vector<uint64_t> heard;  // bit set of ranks whose start this step follows
};

bool isMessage(StepKind k) {
  return k == StepKind::kSend || k == StepKind::kRecv || k == StepKind::kRecvReduce;
}

template <typename T>
class Simulator {
 public:
  Simulator(const CollSpec& spec, const std::vector<Plan>& plans,
            const std::vector<std::vector<T>>& inputs, const SimOptions& options)
      : spec_(spec), plans_(plans), inputs_(inputs), options_(options) {}

  SimResult<T> run();

 private:
  CollSpec rankSpec(int r) const {
    CollSpec s = spec_;
    s.rank = r;
    return s;
  }
  std::string where(const SimStep& s) const {
    return strCat("rank ", s.rank, " round ", s.round, " step ", s.index, " (",
                  coll::toString(*s.step), ")");
  }
  bool fail(std::string message) {
    if (result_.error.empty()) result_.error = std::move(message);
    return false;
  }
  bool layout();
  bool resolve(SimStep& s, const Slice& slice, Region* out);
  bool prepareStep(SimStep& s);
  bool collectSteps();
  bool checkRounds();
  bool matchMessages();
  void addDependencies();
  void execute();
  void perform(SimStep& s);
  void transfer(SimStep& send, SimStep& recv);
  void complete(size_t id, std::deque<size_t>& queue);
  void reportDeadlock();
  void collectResults();

  T* at(const Region& r) { return arenas_[static_cast<size_t>(r.arena)].data() + r.offset; }

  CollSpec spec_;
  const std::vector<Plan>& plans_;
  const std::vector<std::vector<T>>& inputs_;
  SimOptions options_;
  SimResult<T> result_;
  std::vector<std::vector<T>> arenas_;          // rank * 3 + {0: input/io, 1: output, 2: scratch}
  std::vector<std::array<BufferMap, 3>> maps_;  // per rank, by BufferId
  std::vector<SimStep> steps_;
  std::vector<std::vector<std::vector<size_t>>> rounds_;  // rank -> round -> step ids
  size_t words_ = 1;
};

// Offsets of input and output inside a shared arena for an in-place call (plan.h).
template <typename T>
bool Simulator<T>::layout() {
  const int p = spec_.size;
  arenas_.assign(static_cast<size_t>(p) * 3, {});
  maps_.assign(static_cast<size_t>(p), {});
  for (int r = 0; r < p; ++r) {
    const CollSpec s = rankSpec(r);
    const size_t in = coll::inputCount(s);
    const size_t out = coll::outputCount(s);
    const auto ur = static_cast<size_t>(r);
    if (inputs_[ur].size() != in) {
      return fail(
          strCat("rank ", r, ": input has ", inputs_[ur].size(), " elements, expected ", in));
    }
    auto& m = maps_[ur];
    const int a = r * 3;
    m[0] = {a, 0, in};
    m[1] = {a + 1, 0, out};
    m[2] = {a + 2, 0, plans_[ur].scratch_count};
    if (options_.in_place && in > 0 && out > 0) {
      size_t inOff = 0, outOff = 0;
      if (s.kind == CollKind::kReduceScatter) outOff = ur * s.count;
      if (s.kind == CollKind::kAllgather || s.kind == CollKind::kGather) inOff = ur * s.count;
      if (s.kind == CollKind::kScatter) outOff = static_cast<size_t>(s.root) * s.count;
      m[0] = {a, inOff, in};
      m[1] = {a, outOff, out};
    }
    for (int k = 0; k < 3; ++k) {
      auto& arena = arenas_[static_cast<size_t>(a + k)];
      for (const BufferMap& b : m) {
        if (b.arena == a + k)
          arena.resize(std::max(arena.size(), b.base + b.extent), simSentinel<T>());
      }
    }
    std::copy(inputs_[ur].begin(), inputs_[ur].end(),
              arenas_[static_cast<size_t>(a)].begin() + static_cast<std::ptrdiff_t>(m[0].base));
  }
  return true;
}

template <typename T>
bool Simulator<T>::resolve(SimStep& s, const Slice& slice, Region* out) {
  *out = Region{};
  if (slice.count == 0) return true;
  const auto b = static_cast<size_t>(slice.buffer);
  if (b > 2) return fail(strCat(where(s), ": invalid buffer id ", b));
  const BufferMap& m = maps_[static_cast<size_t>(s.rank)][b];
  if (slice.offset > m.extent || slice.count > m.extent - slice.offset) {
    static const char* const kNames[] = {"input", "output", "scratch"};
    return fail(
        strCat(where(s), ": slice out of bounds: ", kNames[b], " has ", m.extent, " elements"));
  }
  *out = Region{m.arena, m.base + slice.offset, slice.count};
  if (slice.buffer == BufferId::kScratch) {
    auto& used = result_.scratch_used[static_cast<size_t>(s.rank)];
    used = std::max(used, slice.offset + slice.count);
  }
  return true;
}

template <typename T>
bool Simulator<T>::prepareStep(SimStep& s) {
  const Step& st = *s.step;
  const bool usesSrc = st.kind != StepKind::kRecv;
  const bool usesDst = st.kind != StepKind::kSend;
  if (isMessage(st.kind) && (st.peer < 0 || st.peer >= spec_.size || st.peer == s.rank)) {
    return fail(strCat(where(s), ": invalid peer ", st.peer));
  }
  if (usesSrc && !resolve(s, st.src, &s.src)) return false;
  if (usesDst && !resolve(s, st.dst, &s.dst)) return false;
  if (usesSrc && usesDst) {
    if (st.src.count != st.dst.count) {
      return fail(
          strCat(where(s), ": source has ", st.src.count, " elements, destination ", st.dst.count));
    }
    if (overlaps(s.src, s.dst) && !identical(s.src, s.dst)) {
      return fail(strCat(where(s), ": source and destination partially overlap"));
    }
  }
  s.fence = (!usesSrc || st.src.count == 0) && (!usesDst || st.dst.count == 0);
  s.noop = st.kind == StepKind::kCopy && identical(s.src, s.dst) && s.src.count > 0;
  if (s.noop) return true;
  if (usesSrc && s.src.count > 0) s.reads.push_back(s.src);
  if (usesDst && s.dst.count > 0) s.writes.push_back(s.dst);
  if (st.kind == StepKind::kReduce && s.dst.count > 0) s.reads.push_back(s.dst);
  return true;
}

template <typename T>
bool Simulator<T>::collectSteps() {
  rounds_.assign(static_cast<size_t>(spec_.size), {});
  for (int r = 0; r < spec_.size; ++r) {
    const Plan& plan = plans_[static_cast<size_t>(r)];
    for (size_t k = 0; k < plan.rounds.size(); ++k) {
      rounds_[static_cast<size_t>(r)].emplace_back();
      for (size_t i = 0; i < plan.rounds[k].steps.size(); ++i) {
        SimStep s;
        s.rank = r;
        s.round = k;
        s.index = i;
        s.step = &plan.rounds[k].steps[i];
        s.heard.assign(words_, 0);
        if (!prepareStep(s)) return false;
        if (s.step->kind == StepKind::kSend) ++result_.sends[static_cast<size_t>(r)];
        rounds_[static_cast<size_t>(r)][k].push_back(steps_.size());
        steps_.push_back(std::move(s));
      }
    }
  }
  return true;
}

bool conflict(const SimStep& a, const SimStep& b) {
  for (const Region& w : a.writes) {
    for (const Region& x : b.writes)
      if (overlaps(w, x)) return true;
    for (const Region& x : b.reads)
      if (overlaps(w, x)) return true;
  }
  for (const Region& w : b.writes) {
    for (const Region& x : a.reads)
      if (overlaps(w, x)) return true;
  }
  return false;
}

// Steps of one round may run concurrently: none may write memory another one touches.
template <typename T>
bool Simulator<T>::checkRounds() {
  for (const auto& rankRounds : rounds_) {
    for (const auto& round : rankRounds) {
      for (size_t i = 0; i < round.size(); ++i) {
        for (size_t j = i + 1; j < round.size(); ++j) {
          const SimStep& a = steps_[round[i]];
          const SimStep& b = steps_[round[j]];
          if (conflict(a, b)) {
            return fail(strCat(where(a), " and step ", b.index, " (", coll::toString(*b.step),
                               ") touch the same memory in one round, one of them writing"));
          }
        }
      }
    }
  }
  return true;
}

// The i-th send from a to b pairs with the i-th receive from a on b.
template <typename T>
bool Simulator<T>::matchMessages() {
  std::map<std::pair<int, int>, std::vector<size_t>> sends, recvs;
  for (size_t id = 0; id < steps_.size(); ++id) {
    const SimStep& s = steps_[id];
    if (s.step->kind == StepKind::kSend) sends[{s.rank, s.step->peer}].push_back(id);
    if (s.step->kind == StepKind::kRecv || s.step->kind == StepKind::kRecvReduce) {
      recvs[{s.step->peer, s.rank}].push_back(id);
    }
  }
  for (auto& [pair, ids] : sends) {
    const auto& rv = recvs[pair];
    for (size_t i = 0; i < std::min(ids.size(), rv.size()); ++i) {
      SimStep& s = steps_[ids[i]];
      SimStep& r = steps_[rv[i]];
      if (s.step->src.count != r.step->dst.count) {
        return fail(strCat("message #", i, " from rank ", pair.first, " to rank ", pair.second,
                           ": ", where(s), " sends ", s.step->src.count, " elements but ", where(r),
                           " expects ", r.step->dst.count));
      }
      s.match = rv[i];
      r.match = ids[i];
    }
  }
  for (const auto& [pair, rv] : recvs) {
    const auto& sv = sends[pair];
    if (sv.size() == rv.size()) continue;
    const size_t first = std::min(sv.size(), rv.size());
    const SimStep& extra = steps_[sv.size() > rv.size() ? sv[first] : rv[first]];
    return fail(strCat("rank ", pair.first, " sends ", sv.size(), " messages to rank ", pair.second,
                       " but rank ", pair.second, " receives ", rv.size(), " from rank ",
                       pair.first, "; first unmatched: ", where(extra)));
  }
  return true;
}

template <typename T>
void Simulator<T>::addDependencies() {
  for (const auto& rankRounds : rounds_) {
    for (size_t k = 1; k < rankRounds.size(); ++k) {
      // Strict order: every step of the closest earlier non-empty round.
      size_t prev = k - 1;
      while (prev > 0 && rankRounds[prev].empty()) --prev;
      for (size_t id : rankRounds[k]) {
        SimStep& x = steps_[id];
        for (size_t j = 0; j < k; ++j) {
          for (size_t dep : rankRounds[j]) {
            const SimStep& y = steps_[dep];
            const bool depends = options_.order == SimOrder::kStrict
                                     ? j == prev
                                     : (x.fence || y.fence || conflict(x, y));
            if (depends) x.deps.push_back(dep);
          }
        }
        for (size_t dep : x.deps) steps_[dep].dependents.push_back(id);
        x.pending = x.deps.size();
      }
    }
  }
}

template <typename T>
void Simulator<T>::perform(SimStep& s) {
  if (s.noop || s.dst.count == 0) return;
  std::vector<T> src(at(s.src), at(s.src) + s.src.count);
  T* dst = at(s.dst);
  for (size_t i = 0; i < src.size(); ++i) {
    dst[i] = s.step->kind == StepKind::kReduce ? static_cast<T>(dst[i] + src[i]) : src[i];
  }
}

template <typename T>
void Simulator<T>::transfer(SimStep& send, SimStep& recv) {
  for (size_t w = 0; w < words_; ++w) recv.heard[w] |= send.heard[w];
  if (recv.dst.count == 0) return;
  std::vector<T> msg(at(send.src), at(send.src) + send.src.count);
  T* dst = at(recv.dst);
  if (recv.step->kind == StepKind::kRecv) {
    std::copy(msg.begin(), msg.end(), dst);
    return;
  }
  std::vector<T> local(at(recv.src), at(recv.src) + recv.src.count);
  for (size_t i = 0; i < msg.size(); ++i) dst[i] = static_cast<T>(local[i] + msg[i]);
}

template <typename T>
void Simulator<T>::complete(size_t id, std::deque<size_t>& queue) {
  steps_[id].done = true;
  for (size_t d : steps_[id].dependents) {
    if (--steps_[d].pending == 0) queue.push_back(d);
  }
}

// Steps become ready when their dependencies are done; a message moves once both of its
// ends are ready (rendezvous).
template <typename T>
void Simulator<T>::execute() {
  std::deque<size_t> queue;
  for (size_t id = 0; id < steps_.size(); ++id) {
    if (steps_[id].pending == 0) queue.push_back(id);
  }
  while (!queue.empty()) {
    const size_t id = queue.front();
    queue.pop_front();
    SimStep& s = steps_[id];
    s.ready = true;
    s.heard[static_cast<size_t>(s.rank) / 64] |= uint64_t{1} << (s.rank % 64);
    for (size_t d : s.deps) {
      for (size_t w = 0; w < words_; ++w) s.heard[w] |= steps_[d].heard[w];
    }
    if (!isMessage(s.step->kind)) {
      perform(s);
      complete(id, queue);
      continue;
    }
    SimStep& other = steps_[s.match];
    if (!other.ready) continue;
    SimStep& send = s.step->kind == StepKind::kSend ? s : other;
    SimStep& recv = s.step->kind == StepKind::kSend ? other : s;
    transfer(send, recv);
    complete(id, queue);
    complete(s.match, queue);
  }
}

template <typename T>
void Simulator<T>::reportDeadlock() {
  std::ostringstream os;
  os << "deadlock (" << (options_.order == SimOrder::kStrict ? "strict" : "dependency")
     << " round order):";
  for (const auto& rankRounds : rounds_) {
    for (const auto& round : rankRounds) {
      const auto it =
          std::find_if(round.begin(), round.end(), [this](size_t id) { return !steps_[id].done; });
      if (it == round.end()) continue;
      const SimStep& s = steps_[*it];
      os << "\n  " << where(s) << ": ";
      if (!s.ready) {
        os << "waits for an earlier step of its rank";
      } else {
        const SimStep& m = steps_[s.match];
        os << "waits for rank " << m.rank << " to reach round " << m.round << " step " << m.index
           << " (" << coll::toString(*m.step) << ")";
      }
      break;
    }
  }
  fail(os.str());
}

template <typename T>
void Simulator<T>::collectResults() {
  const auto p = static_cast<size_t>(spec_.size);
  result_.outputs.assign(p, {});
  result_.heard_from_all.assign(p, false);
  for (size_t r = 0; r < p; ++r) {
    const BufferMap& m = maps_[r][1];
    const auto& arena = arenas_[static_cast<size_t>(m.arena)];
    result_.outputs[r].assign(arena.begin() + static_cast<std::ptrdiff_t>(m.base),
                              arena.begin() + static_cast<std::ptrdiff_t>(m.base + m.extent));
    result_.rounds[r] = plans_[r].rounds.size();
    std::vector<uint64_t> heard(words_, 0);
    heard[r / 64] |= uint64_t{1} << (r % 64);
    for (const auto& round : rounds_[r]) {
      for (size_t id : round) {
        for (size_t w = 0; w < words_; ++w) heard[w] |= steps_[id].heard[w];
      }
    }
    bool all = true;
    for (size_t q = 0; q < p; ++q) all = all && ((heard[q / 64] >> (q % 64)) & 1);
    result_.heard_from_all[r] = all;
  }
}

template <typename T>
SimResult<T> Simulator<T>::run() {
  const auto p = static_cast<size_t>(spec_.size);
  result_.scratch_used.assign(p, 0);
  result_.sends.assign(p, 0);
  result_.rounds.assign(p, 0);
  words_ = (p + 63) / 64;
  if (plans_.size() != p || inputs_.size() != p) {
    fail(strCat("simulatePlans: ", plans_.size(), " plans and ", inputs_.size(), " inputs for ", p,
                " ranks"));
    return result_;
  }
  if (!layout() || !collectSteps() || !checkRounds() || !matchMessages()) return result_;
  addDependencies();
  execute();
  collectResults();
  if (std::any_of(steps_.begin(), steps_.end(), [](const SimStep& s) { return !s.done; })) {
    reportDeadlock();
  }
  return std::move(result_);
}

}  // namespace

template <>
int64_t simSentinel<int64_t>() {
  return int64_t{-0x5EED5EED5EED};
}
template <>
double simSentinel<double>() {
  return -7.77e77;
}

template <typename T>
SimResult<T> simulatePlans(const CollSpec& spec, const std::vector<Plan>& plans,
                           const std::vector<std::vector<T>>& inputs, const SimOptions& options) {
  return Simulator<T>(spec, plans, inputs, options).run();
}

template <typename T>
SimResult<T> simulateAlgorithm(Plan (*build)(const CollSpec&), const CollSpec& spec,
                               const std::vector<std::vector<T>>& inputs,
                               const SimOptions& options) {
  std::vector<Plan> plans;
  for (int r = 0; r < spec.size; ++r) {
    CollSpec s = spec;
    s.rank = r;
    plans.push_back(build(s));
  }
  return simulatePlans(spec, plans, inputs, options);
}

template SimResult<int64_t> simulatePlans(const CollSpec&, const std::vector<Plan>&,
                                          const std::vector<std::vector<int64_t>>&,
                                          const SimOptions&);
template SimResult<double> simulatePlans(const CollSpec&, const std::vector<Plan>&,
                                         const std::vector<std::vector<double>>&,
                                         const SimOptions&);
template SimResult<int64_t> simulateAlgorithm(Plan (*)(const CollSpec&), const CollSpec&,
                                              const std::vector<std::vector<int64_t>>&,
                                              const SimOptions&);
template SimResult<double> simulateAlgorithm(Plan (*)(const CollSpec&), const CollSpec&,
                                             const std::vector<std::vector<double>>&,
                                             const SimOptions&);

}  // namespace weft::testing
