#include "collectives/comm/v_plans.h"

namespace weft::coll::detail {
namespace {

class Rounds {
 public:
  explicit Rounds(const char* algorithm) { plan_.algorithm = algorithm; }
  void add(size_t round, Step step) {
    if (plan_.rounds.size() <= round) plan_.rounds.resize(round + 1);
    plan_.rounds[round].steps.push_back(step);
  }
  void send(size_t round, int peer, Slice src) {
    if (src.count > 0) add(round, Step{StepKind::kSend, peer, src, {}});
  }
  void recv(size_t round, int peer, Slice dst) {
    if (dst.count > 0) add(round, Step{StepKind::kRecv, peer, {}, dst});
  }
  void copy(size_t round, Slice src, Slice dst) {
    if (dst.count > 0) add(round, Step{StepKind::kCopy, -1, src, dst});
  }
  Plan finish() {
    std::erase_if(plan_.rounds, [](const Round& r) { return r.steps.empty(); });
    return std::move(plan_);
  }

 private:
  Plan plan_;
};

Slice in(size_t offset, size_t count) {
  return {BufferId::kInput, offset, count};
}
Slice out(size_t offset, size_t count) {
  return {BufferId::kOutput, offset, count};
}
size_t at(std::span<const size_t> v, int i) {
  return v[static_cast<size_t>(i)];
}
int mod(int x, int n) {
  return ((x % n) + n) % n;
}

}  // namespace

Plan buildGathervPlan(int rank, int size, int root, std::span<const size_t> counts,
                      std::span<const size_t> displs) {
  Rounds b("direct");
  if (rank != root) {
    b.send(0, root, in(0, at(counts, rank)));
    return b.finish();
  }
  b.copy(0, in(0, at(counts, rank)), out(at(displs, rank), at(counts, rank)));
  for (int r = 0; r < size; ++r) {
    if (r != root) b.recv(0, r, out(at(displs, r), at(counts, r)));
  }
  return b.finish();
}

Plan buildScattervPlan(int rank, int size, int root, std::span<const size_t> counts,
                       std::span<const size_t> displs) {
  Rounds b("direct");
  if (rank != root) {
    b.recv(0, root, out(0, at(counts, rank)));
    return b.finish();
  }
  b.copy(0, in(at(displs, rank), at(counts, rank)), out(0, at(counts, rank)));
  for (int r = 0; r < size; ++r) {
    if (r != root) b.send(0, r, in(at(displs, r), at(counts, r)));
  }
  return b.finish();
}

// Step s: send block r-s (the own input at s = 0), receive block r-s-1.
Plan buildAllgathervPlan(int rank, int size, std::span<const size_t> counts,
                         std::span<const size_t> displs) {
  Rounds b("ring");
  const int next = mod(rank + 1, size);
  const int prev = mod(rank - 1, size);
  b.copy(0, in(0, at(counts, rank)), out(at(displs, rank), at(counts, rank)));
  for (int s = 0; s + 1 < size; ++s) {
    const int sendBlock = mod(rank - s, size);
    const int recvBlock = mod(rank - s - 1, size);
    const Slice src =
        s == 0 ? in(0, at(counts, rank)) : out(at(displs, sendBlock), at(counts, sendBlock));
    b.send(static_cast<size_t>(s), next, src);
    b.recv(static_cast<size_t>(s), prev, out(at(displs, recvBlock), at(counts, recvBlock)));
  }
  return b.finish();
}

Plan buildAlltoallvPlan(int rank, int size, std::span<const size_t> send_counts,
                        std::span<const size_t> send_displs, std::span<const size_t> recv_counts,
                        std::span<const size_t> recv_displs) {
  Rounds b("pairwise");
  b.copy(0, in(at(send_displs, rank), at(send_counts, rank)),
         out(at(recv_displs, rank), at(recv_counts, rank)));
  for (int k = 1; k < size; ++k) {
    const int to = mod(rank + k, size);
    const int from = mod(rank - k, size);
    b.send(static_cast<size_t>(k), to, in(at(send_displs, to), at(send_counts, to)));
    b.recv(static_cast<size_t>(k), from, out(at(recv_displs, from), at(recv_counts, from)));
  }
  return b.finish();
}

Plan buildSendPlan(int peer, size_t count) {
  Rounds b("direct");
  b.add(0, Step{StepKind::kSend, peer, in(0, count), {}});
  return b.finish();
}

Plan buildRecvPlan(int peer, size_t count) {
  Rounds b("direct");
  b.add(0, Step{StepKind::kRecv, peer, {}, out(0, count)});
  return b.finish();
}

}  // namespace weft::coll::detail
