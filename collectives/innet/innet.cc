#include "collectives/api/innet.h"

#include <mutex>

#include "collectives/comm/comm_core.h"
#include "collectives/executor/tags.h"
#include "collectives/innet/innet_link.h"
#include "collectives/innet/innet_roles.h"
#include "collectives/innet/innet_tree.h"
#include "common/config.h"

namespace weft::coll {

using detail::InNetOp;
using detail::InNetTree;
using detail::Link;
using detail::LinkSetup;

namespace {

// Tag layout inside the private communicator's point-to-point space (27 bits):
// kind (2 bits) | operation sequence number mod 16 (4 bits) | child node of the edge (21).
enum LinkKind : uint64_t { kUpData = 0, kUpCredit = 1, kDownData = 2, kDownCredit = 3 };
constexpr int kKindShift = 25;
constexpr int kSeqShift = 21;

// Buffers a failed operation may still have under the transport: kept until exit.
void retire(std::unique_ptr<std::byte[]> buffer) {
  static std::mutex mu;
  static std::vector<std::unique_ptr<std::byte[]>>* kept =
      new std::vector<std::unique_ptr<std::byte[]>>();
  if (buffer == nullptr) return;
  std::lock_guard<std::mutex> lock(mu);
  kept->push_back(std::move(buffer));
}

Result<int64_t> option(int64_t given, const char* env) {
  if (given > 0) return given;
  return config::getInt(env);
}

}  // namespace

struct InNetwork::Impl {
  std::unique_ptr<Communicator> comm;  // private: its own tag space
  InNetTree tree;
  int rank = 0;
  size_t chunk_bytes = 0;
  int credits = 1;
  detail::Engine* engine = nullptr;
  std::vector<std::unique_ptr<Link>> links;
  std::vector<Link*> up_of;  // by child node: the links this rank has
  std::vector<Link*> down_of;
  std::unique_ptr<detail::RankRole> rank_role;
  std::vector<detail::SwitchRole> switches;
  Status broken;
  uint64_t seq = 0;
  InNetOp op;

  ~Impl();
  Status connect(Deadline deadline);
  Result<Link*> linkFor(int child, bool up, Deadline deadline);
  Status run(const Reducer& reducer);
  Result<bool> stepAll(const Reducer& reducer);
  bool allDone() const;
  Status stalled();
  Status timedOut() const;
  std::string waitingFor() const;
};

InNetwork::Impl::~Impl() {
  if (broken.isOk()) return;
  for (auto& l : links) retire(l->takeSlots());
  if (rank_role != nullptr) retire(rank_role->takeBuffers());
  for (auto& s : switches) retire(s.takeBuffers());
}

// The link of the edge between `child` and its parent (up or down), made on first use: an
// edge whose two ends both run here is one local Link shared by them.
Result<Link*> InNetwork::Impl::linkFor(int child, bool up, Deadline deadline) {
  std::vector<Link*>& cache = up ? up_of : down_of;
  if (cache[static_cast<size_t>(child)] != nullptr) return cache[static_cast<size_t>(child)];
  const int parent = tree.ranks + tree.parentOf(child);
  const int from = up ? child : parent;
  const int to = up ? parent : child;
  LinkSetup s;
  s.what = strCat(tree.nodeName(from), " -> ", tree.nodeName(to));
  s.credits = credits;
  s.slot_bytes = sizeof(detail::ChunkHeader) + chunk_bytes;
  s.sends = tree.hostOf(from) == rank;
  s.receives = tree.hostOf(to) == rank;
  const int other = s.sends ? tree.hostOf(to) : tree.hostOf(from);
  if (other != rank) {
    s.peer_world_rank = comm->worldRank(other);
    Result<transport::Endpoint*> ep = engine->endpoint(s.peer_world_rank, deadline);
    if (!ep.isOk()) {
      return ep.status().withContext(strCat("in-network allreduce setup: connecting rank ", rank,
                                            " to rank ", other, " for the edge ", s.what));
    }
    s.endpoint = *ep;
  }
  s.engine = engine;
  const uint32_t tag_id = comm->core().tagId();
  const uint64_t node = static_cast<uint64_t>(child);
  const uint64_t data_kind = up ? kUpData : kDownData;
  const uint64_t credit_kind = up ? kUpCredit : kDownCredit;
  s.data_tag_base = detail::p2pTag(tag_id, static_cast<int64_t>((data_kind << kKindShift) | node));
  s.credit_tag_base =
      detail::p2pTag(tag_id, static_cast<int64_t>((credit_kind << kKindShift) | node));
  s.seq_shift = kSeqShift;
  links.push_back(std::make_unique<Link>(std::move(s)));
  cache[static_cast<size_t>(child)] = links.back().get();
  return links.back().get();
}

// Connects the endpoints of this rank's edges and builds its roles.
Status InNetwork::Impl::connect(Deadline deadline) {
  up_of.assign(static_cast<size_t>(tree.numNodes()), nullptr);
  down_of.assign(static_cast<size_t>(tree.numNodes()), nullptr);
  const size_t slot = sizeof(detail::ChunkHeader) + chunk_bytes;
  const size_t k = static_cast<size_t>(credits);
  WEFT_ASSIGN_OR_RETURN(Link * up, linkFor(rank, true, deadline));
  WEFT_ASSIGN_OR_RETURN(Link * down, linkFor(rank, false, deadline));
  rank_role = std::make_unique<detail::RankRole>(rank, up, down, k, slot);
  for (int s : tree.hostedBy(rank)) {
    const detail::InNetSwitch& sw = tree.switches[static_cast<size_t>(s)];
    std::vector<Link*> up_in, down_out;
    for (int c : sw.children) {
      WEFT_ASSIGN_OR_RETURN(Link * in, linkFor(c, true, deadline));
      WEFT_ASSIGN_OR_RETURN(Link * out, linkFor(c, false, deadline));
      up_in.push_back(in);
      down_out.push_back(out);
    }
    Link* up_out = nullptr;
    Link* down_in = nullptr;
    if (s != tree.root()) {
      WEFT_ASSIGN_OR_RETURN(up_out, linkFor(tree.ranks + s, true, deadline));
      WEFT_ASSIGN_OR_RETURN(down_in, linkFor(tree.ranks + s, false, deadline));
    }
    switches.emplace_back(tree.ranks + s, tree.ranks, std::move(up_in), std::move(down_out), up_out,
                          down_in, k, slot);
  }
  return Status::ok();
}

Result<bool> InNetwork::Impl::stepAll(const Reducer& reducer) {
  bool moved = false;
  for (auto& l : links) {
    WEFT_ASSIGN_OR_RETURN(bool polled, l->poll());
    moved |= polled;
  }
  for (auto& sw : switches) {
    WEFT_ASSIGN_OR_RETURN(bool stepped, sw.step(op, reducer));
    moved |= stepped;
  }
  WEFT_ASSIGN_OR_RETURN(bool mine, rank_role->step(op));
  return moved || mine;
}

bool InNetwork::Impl::allDone() const {
  if (!rank_role->done(op)) return false;
  for (const auto& sw : switches) {
    if (!sw.done(op)) return false;
  }
  for (const auto& l : links) {
    if (!l->idle()) return false;
  }
  return true;
}

std::string InNetwork::Impl::waitingFor() const {
  std::string out;
  for (const auto& l : links) {
    std::string w = l->waitingFor();
    if (!w.empty()) out += (out.empty() ? "" : "; ") + w;
  }
  return out.empty() ? std::string("nothing (finishing)") : out;
}

Status InNetwork::Impl::timedOut() const {
  return WEFT_ERROR(StatusCode::kTimeout, op.name, ": deadline passed; waiting for ", waitingFor())
      .withHint("a rank did not call allreduce, or died, or WEFT_TIMEOUT is too short");
}

// Nothing moved: a dead member (reported through the store) ends the wait, else a nap until
// the transport has news (bounded, so the deadline and failure reports are seen in time).
Status InNetwork::Impl::stalled() {
  engine->pollFailures();
  if (engine->numFailures() > 0) {
    for (int r = 0; r < tree.ranks; ++r) {
      const Status& f = engine->failureOf(comm->worldRank(r));
      if (f.isOk()) continue;
      return Status(StatusCode::kPeerFailure, strCat(op.name, ": rank ", r, " failed (",
                                                     f.message(), "); waiting for ", waitingFor()));
    }
  }
  const Deadline nap = op.deadline.min(Deadline::after(detail::Engine::kMaxNap));
  engine->context().waitForEvent(nap).ignore();
  return Status::ok();
}

Status InNetwork::Impl::run(const Reducer& reducer) {
  for (auto& l : links) WEFT_RETURN_IF_ERROR(l->start(op));
  for (auto& sw : switches) sw.start();
  for (;;) {
    const bool progressed = engine->progressAll();
    WEFT_ASSIGN_OR_RETURN(bool moved, stepAll(reducer));
    if (allDone()) return Status::ok();
    if (op.deadline.expired()) return timedOut();
    if (!progressed && !moved) WEFT_RETURN_IF_ERROR(stalled());
  }
}

InNetwork::InNetwork(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
InNetwork::~InNetwork() = default;

Result<std::unique_ptr<InNetwork>> InNetwork::create(Communicator& parent,
                                                     const InNetOptions& options,
                                                     std::optional<Deadline> deadline) {
  WEFT_ASSIGN_OR_RETURN(int64_t radix, option(options.radix, "WEFT_INNET_RADIX"));
  WEFT_ASSIGN_OR_RETURN(int64_t chunk,
                        option(static_cast<int64_t>(options.chunk_bytes), "WEFT_INNET_CHUNK"));
  WEFT_ASSIGN_OR_RETURN(int64_t credits, option(options.credits, "WEFT_INNET_CREDITS"));
  if (radix < 2 || chunk < 64 || credits < 1 || credits > 1024) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "in-network allreduce: radix ", radix,
                      ", chunk ", chunk, " bytes, credits ", credits,
                      " (need radix >= 2, chunk >= 64, 1 <= credits <= 1024)");
  }
  auto impl = std::make_unique<Impl>();
  WEFT_ASSIGN_OR_RETURN(impl->tree, InNetTree::build(parent.size(), static_cast<int>(radix)));
  const Deadline until =
      deadline ? *deadline : Deadline::afterSeconds(parent.core().config().timeout_s);
  WEFT_ASSIGN_OR_RETURN(impl->comm, parent.split(0, parent.rank(), until));
  impl->rank = impl->comm->rank();
  impl->chunk_bytes = static_cast<size_t>(chunk);
  impl->credits = static_cast<int>(credits);
  impl->engine = &impl->comm->core().engine();
  WEFT_RETURN_IF_ERROR(impl->connect(until));
  return std::unique_ptr<InNetwork>(new InNetwork(std::move(impl)));
}

namespace {

Status checkBuffers(const void* send, void* recv, size_t count, DataType type) {
  const size_t bytes = count * sizeOf(type);
  if (count > 0 && (send == nullptr || recv == nullptr)) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "innet allreduce: null buffer with count ",
                      count);
  }
  const auto* s = static_cast<const std::byte*>(send);
  const auto* r = static_cast<const std::byte*>(recv);
  if (s != r && s < r + bytes && r < s + bytes) {
    return WEFT_ERROR(StatusCode::kInvalidArgument,
                      "innet allreduce: send and recv overlap without being equal (", bytes,
                      " bytes each)");
  }
  return Status::ok();
}

}  // namespace

Status InNetwork::allreduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op,
                            const CallOptions& opts) {
  Impl& m = *impl_;
  if (!m.broken.isOk()) {
    return Status(m.broken.code(), strCat("innet allreduce: unusable after an earlier failure: ",
                                          m.broken.message()));
  }
  WEFT_RETURN_IF_ERROR(validateReduce(type, op));
  WEFT_RETURN_IF_ERROR(checkBuffers(send, recv, count, type));
  WEFT_ASSIGN_OR_RETURN(Reducer reducer, Reducer::create(type, op));
  const size_t chunk_elems = m.chunk_bytes / sizeOf(type);
  const size_t num_chunks = (count + chunk_elems - 1) / chunk_elems;
  if (num_chunks > UINT32_MAX) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "innet allreduce: ", count, " x ", type,
                      " is more than 2^32 chunks of ", m.chunk_bytes, " bytes")
        .withHint("raise WEFT_INNET_CHUNK");
  }
  InNetOp& o = m.op;
  o.seq = m.seq++;
  o.count = count;
  o.tree = &m.tree;
  o.type = type;
  o.op = op;
  o.chunk_elems = chunk_elems;
  o.num_chunks = num_chunks;
  o.deadline =
      opts.deadline ? *opts.deadline : Deadline::afterSeconds(m.comm->core().config().timeout_s);
  o.name = strCat("innet allreduce #", o.seq, " (rank ", m.rank, " of ", m.tree.ranks, ", ", count,
                  " x ", type, " ", op, ")");
  m.rank_role->start(static_cast<const std::byte*>(send), static_cast<std::byte*>(recv));
  Status st = m.run(reducer);
  if (!st.isOk()) m.broken = st;
  return st;
}

int InNetwork::radix() const {
  return impl_->tree.radix;
}
size_t InNetwork::chunkBytes() const {
  return impl_->chunk_bytes;
}
int InNetwork::credits() const {
  return impl_->credits;
}
int InNetwork::levels() const {
  return impl_->tree.levels;
}
std::string InNetwork::describeTree() const {
  return impl_->tree.toString();
}

std::vector<std::string> InNetwork::hostedSwitches() const {
  std::vector<std::string> out;
  for (int s : impl_->tree.hostedBy(impl_->rank)) {
    const detail::InNetSwitch& sw = impl_->tree.switches[static_cast<size_t>(s)];
    out.push_back(strCat("L", sw.level, ".", sw.index));
  }
  return out;
}

}  // namespace weft::coll
