#include "collectives/api/communicator.h"

#include <algorithm>
#include <charconv>
#include <numeric>

#include "collectives/api/collectives.h"
#include "collectives/comm/comm_core.h"
#include "collectives/executor/tags.h"

namespace weft::coll {

using detail::CommCore;

// ---- Group ----

Result<Group> Group::fromWorldRanks(std::vector<int> world_ranks) {
  std::vector<int> sorted = world_ranks;
  std::sort(sorted.begin(), sorted.end());
  if (!sorted.empty() && sorted.front() < 0) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "group: negative rank ", sorted.front());
  }
  auto dup = std::adjacent_find(sorted.begin(), sorted.end());
  if (dup != sorted.end()) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "group: rank ", *dup, " listed twice");
  }
  return Group(std::move(world_ranks));
}

int Group::indexOf(int world_rank) const {
  auto it = std::find(ranks_.begin(), ranks_.end(), world_rank);
  return it == ranks_.end() ? -1 : static_cast<int>(it - ranks_.begin());
}

Result<Group> Group::include(std::span<const int> indices) const {
  std::vector<int> out;
  for (int i : indices) {
    if (i < 0 || i >= size()) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, "group include: index ", i, " outside [0, ",
                        size(), ")");
    }
    out.push_back(ranks_[static_cast<size_t>(i)]);
  }
  return fromWorldRanks(std::move(out));
}

Result<Group> Group::exclude(std::span<const int> indices) const {
  std::vector<bool> drop(ranks_.size(), false);
  for (int i : indices) {
    if (i < 0 || i >= size()) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, "group exclude: index ", i, " outside [0, ",
                        size(), ")");
    }
    drop[static_cast<size_t>(i)] = true;
  }
  std::vector<int> out;
  for (size_t i = 0; i < ranks_.size(); ++i) {
    if (!drop[i]) out.push_back(ranks_[i]);
  }
  return Group(std::move(out));
}

Group Group::unionWith(const Group& other) const {
  std::vector<int> out = ranks_;
  for (int r : other.ranks_) {
    if (indexOf(r) < 0) out.push_back(r);
  }
  return Group(std::move(out));
}

Group Group::intersection(const Group& other) const {
  std::vector<int> out;
  for (int r : ranks_) {
    if (other.indexOf(r) >= 0) out.push_back(r);
  }
  return Group(std::move(out));
}

// ---- Communicator ----

Communicator::Communicator(std::shared_ptr<CommCore> core) : core_(std::move(core)) {}
Communicator::~Communicator() = default;

Result<std::unique_ptr<Communicator>> Communicator::create(
    const World& world, std::shared_ptr<transport::Context> context, const CommOptions& options) {
  WorldInfo info;
  info.rank = world.info.rank;
  info.size = world.info.size;
  info.node_of_rank = world.node_of_rank;
  info.store = world.store;
  return create(info, std::move(context), options);
}

Result<std::unique_ptr<Communicator>> Communicator::create(
    const WorldInfo& world, std::shared_ptr<transport::Context> context,
    const CommOptions& options) {
  const char* what = "world communicator";
  if (context == nullptr || world.store == nullptr) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what,
                      ": needs a transport Context and a store");
  }
  if (world.size < 1 || world.rank < 0 || world.rank >= world.size) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what, ": rank ", world.rank, " outside [0, ",
                      world.size, ")");
  }
  if (context->rank() != world.rank) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what, ": the transport Context has rank ",
                      context->rank(), " but this is world rank ", world.rank)
        .withHint("open the Context with ContextOptions::rank = the world rank");
  }
  const transport::Capabilities& caps = context->capabilities();
  if (!caps.tagged || caps.tag_bits < detail::kTagBits) {
    return WEFT_ERROR(StatusCode::kNotSupported, what, ": the ", caps.backend, " transport offers ",
                      caps.tag_bits,
                      " tag bits; collectives need tagged "
                      "messages with ",
                      detail::kTagBits);
  }
  std::vector<int> nodes = world.node_of_rank;
  if (nodes.empty()) nodes.assign(static_cast<size_t>(world.size), 0);
  if (nodes.size() != static_cast<size_t>(world.size)) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what, ": node_of_rank has ", nodes.size(),
                      " entries for ", world.size, " ranks");
  }
  WEFT_ASSIGN_OR_RETURN(detail::CommConfig config, detail::CommConfig::fromEnvironment());
  WEFT_ASSIGN_OR_RETURN(Tuner tuner, Tuner::fromEnvironment());
  std::shared_ptr<Store> worldStore = makePrefixStore(options.store_prefix, world.store);
  WEFT_ASSIGN_OR_RETURN(std::shared_ptr<detail::Engine> engine,
                        detail::Engine::create(std::move(context), worldStore, world.rank, nodes));
  std::vector<int> members(static_cast<size_t>(world.size));
  std::iota(members.begin(), members.end(), 0);
  auto core = std::make_shared<CommCore>(engine, 0, std::move(members), world.rank, nodes, config,
                                         std::move(tuner), makePrefixStore("c0", worldStore));
  return std::unique_ptr<Communicator>(new Communicator(std::move(core)));
}

int Communicator::rank() const {
  return core_->rank();
}
int Communicator::size() const {
  return core_->size();
}
uint64_t Communicator::id() const {
  return core_->id();
}
const Topology& Communicator::topology() const {
  return core_->topology();
}
int Communicator::worldRank(int rank) const {
  return core_->worldRanks().at(static_cast<size_t>(rank));
}
Group Communicator::group() const {
  return Group::fromWorldRanks(core_->worldRanks()).value();
}
uint64_t Communicator::nextSeq() const {
  return core_->nextSeq();
}
Status Communicator::health() const {
  return core_->health();
}
transport::Context& Communicator::context() const {
  return core_->engine().context();
}
Tuner& Communicator::tuner() {
  return core_->tuner();
}
const Tuner& Communicator::tuner() const {
  return core_->tuner();
}

namespace {

// The new communicator's id: the lowest-ranked member draws it from the store counter and
// publishes it under the parent's namespace; the other members read it.
Result<uint64_t> agreeOnId(CommCore& parent, bool leader, const std::string& key,
                           Deadline deadline) {
  if (leader) {
    WEFT_ASSIGN_OR_RETURN(uint64_t id, parent.engine().allocateCommId());
    WEFT_RETURN_IF_ERROR(parent.store().set(key, std::to_string(id)));
    return id;
  }
  WEFT_ASSIGN_OR_RETURN(std::string text, parent.store().get(key, deadline));
  uint64_t id = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec != std::errc() || ptr != text.data() + text.size()) {
    return WEFT_ERROR(StatusCode::kInternal, "store key ", key, " holds \"", text,
                      "\", not a communicator id");
  }
  return id;
}

}  // namespace

Result<std::unique_ptr<Communicator>> Communicator::split(int color, int key,
                                                          std::optional<Deadline> deadline) {
  if (color < kUndefinedColor) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "split: color ", color,
                      " (must be >= 0, or kUndefinedColor)");
  }
  const Deadline d = deadline.value_or(Deadline::afterSeconds(core_->config().timeout_s));
  const uint64_t seq = core_->nextSeq();
  const int32_t mine[2] = {color, key};
  std::vector<int32_t> all(2 * static_cast<size_t>(size()));
  CallOptions opts;
  opts.deadline = d;
  Status st = allgather(*this, mine, all.data(), 2, DataType::kI32, opts);
  if (!st.isOk()) return st.withContext(strCat("split of communicator ", id()));
  if (color == kUndefinedColor) return std::unique_ptr<Communicator>();
  std::vector<std::pair<int, int>> members;  // (key, parent rank)
  for (int r = 0; r < size(); ++r) {
    if (all[2 * static_cast<size_t>(r)] == color)
      members.push_back({all[2 * static_cast<size_t>(r) + 1], r});
  }
  std::sort(members.begin(), members.end());
  std::vector<int> worldRanks;
  int newRank = -1;
  int leader = members.front().second;
  for (const auto& [k, r] : members) {
    if (r == rank()) newRank = static_cast<int>(worldRanks.size());
    leader = std::min(leader, r);
    worldRanks.push_back(worldRank(r));
  }
  WEFT_ASSIGN_OR_RETURN(uint64_t newId,
                        agreeOnId(*core_, leader == rank(), strCat("split/", seq, "/", color), d));
  auto core =
      std::make_shared<CommCore>(core_->enginePtr(), newId, std::move(worldRanks), newRank,
                                 core_->engine().worldNodes(), core_->config(), core_->tuner(),
                                 makePrefixStore(strCat("c", newId), core_->engine().storePtr()));
  return std::unique_ptr<Communicator>(new Communicator(std::move(core)));
}

Result<std::unique_ptr<Communicator>> Communicator::createFromGroup(
    const Group& group, std::optional<Deadline> deadline) {
  for (int w : group.worldRanks()) {
    if (core_->commRankOf(w) < 0) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, "createFromGroup: world rank ", w,
                        " is not a member of communicator ", id());
    }
  }
  const int index = group.indexOf(worldRank(rank()));
  return split(index >= 0 ? 0 : kUndefinedColor, index, deadline);
}

}  // namespace weft::coll
