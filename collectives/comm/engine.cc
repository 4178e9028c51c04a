#include "collectives/comm/engine.h"

#include <algorithm>
#include <charconv>

#include "collectives/comm/comm_core.h"
#include "common/logging.h"

namespace weft::coll::detail {
namespace {
constexpr char kFailureCounter[] = "failures";
constexpr char kCommIdCounter[] = "next_comm_id";
// Store reads of failure reports: the key exists once the counter counts it (a reporter
// sets it right after the add), so a short bound suffices.
constexpr double kFailureReadTimeoutS = 2.0;
}  // namespace

Engine::Engine(std::shared_ptr<transport::Context> context, std::shared_ptr<Store> store,
               int world_rank, std::vector<int> world_nodes)
    : context_(std::move(context)),
      store_(std::move(store)),
      ep_store_(makePrefixStore("ep", store_)),
      world_rank_(world_rank),
      world_size_(static_cast<int>(world_nodes.size())),
      world_nodes_(std::move(world_nodes)),
      endpoints_(static_cast<size_t>(world_size_)),
      failures_(static_cast<size_t>(world_size_)),
      last_poll_(std::chrono::steady_clock::now()) {}

Engine::~Engine() {
  if (!active_.empty()) {
    WEFT_LOG(kWarn, "coll") << "collective engine destroyed with " << active_.size()
                            << " operations still running";
  }
  endpoints_.clear();  // before the Context goes
}

Result<std::shared_ptr<Engine>> Engine::create(std::shared_ptr<transport::Context> context,
                                               std::shared_ptr<Store> world_store, int world_rank,
                                               std::vector<int> world_nodes) {
  std::shared_ptr<Engine> e(
      new Engine(std::move(context), std::move(world_store), world_rank, std::move(world_nodes)));
  Status st = e->context_->publishAddress(*e->ep_store_);
  if (!st.isOk())
    return st.withContext(strCat("collectives: publishing the address of rank ", world_rank));
  return e;
}

Result<transport::Endpoint*> Engine::endpoint(int world_rank, Deadline deadline) {
  auto& slot = endpoints_[static_cast<size_t>(world_rank)];
  if (slot == nullptr) {
    WEFT_ASSIGN_OR_RETURN(slot, context_->connect(*ep_store_, world_rank, deadline));
  }
  return slot.get();
}

void Engine::add(OpState* op) {
  op->in_engine = true;
  active_.push_back(op);
}

void Engine::retire(size_t index) {
  OpState* op = active_[index];
  active_[index] = active_.back();
  active_.pop_back();
  op->in_engine = false;
  if (op->detached) {
    std::shared_ptr<CommCore> keep = std::move(op->keep_alive);
    keep->releaseOp(op);
  }
}

bool Engine::progressAll() {
  bool progressed = context_->progress() > 0;
  for (size_t i = 0; i < active_.size();) {
    OpState* op = active_[i];
    if (op->running) op->core->advance(*op, &progressed);
    if (!op->running) {
      retire(i);
      progressed = true;
    } else {
      ++i;
    }
  }
  return progressed;
}

bool Engine::waitFor(OpState& op, Deadline until) {
  for (;;) {
    const bool progressed = progressAll();
    if (!op.running) return true;
    if (until.expired()) {
      progressAll();  // fails the operation if its own deadline is the one that passed
      return !op.running;
    }
    if (progressed) continue;
    maybePollFailures(op);
    if (!op.running) return true;
    const Deadline nap = until.min(op.deadline).min(Deadline::after(kMaxNap));
    context_->waitForEvent(nap).ignore();
  }
}

const Status& Engine::failureOf(int world_rank) const {
  return failures_[static_cast<size_t>(world_rank)];
}

void Engine::failMembersOf(int world_rank) {
  const Status& why = failures_[static_cast<size_t>(world_rank)];
  for (OpState* op : active_) {
    if (op->running && op->core->commRankOf(world_rank) >= 0) {
      op->core->failForPeer(*op, world_rank, why);
    }
  }
}

void Engine::reportFailure(int world_rank, const Status& why) {
  Status& slot = failures_[static_cast<size_t>(world_rank)];
  if (!slot.isOk()) return;
  slot = Status(StatusCode::kPeerFailure,
                strCat(why.message(), " (detected by world rank ", world_rank_, ")"));
  ++num_failures_;
  WEFT_LOG(kWarn, "coll") << "world rank " << world_rank << " failed: " << why.message();
  Result<int64_t> n = store_->add(kFailureCounter, 1);
  if (n.isOk()) {
    store_->set(strCat("failure/", *n), strCat(world_rank, "\n", world_rank_, "\n", why.message()))
        .ignore();
  }
  failMembersOf(world_rank);
}

void Engine::maybePollFailures(const OpState& op) {
  if (std::chrono::steady_clock::now() - op.issued >= kFailurePollInterval) pollFailures();
}

void Engine::pollFailures(bool force) {
  const auto now = std::chrono::steady_clock::now();
  if (!force && now - last_poll_ < kFailurePollInterval) return;
  last_poll_ = now;
  Result<int64_t> n = store_->add(kFailureCounter, 0);
  if (!n.isOk()) return;
  for (; failure_reports_seen_ < *n; ++failure_reports_seen_) {
    Result<std::string> rec = store_->get(strCat("failure/", failure_reports_seen_ + 1),
                                          Deadline::afterSeconds(kFailureReadTimeoutS));
    if (!rec.isOk()) break;
    const std::string& text = *rec;
    int dead = -1;
    std::from_chars(text.data(), text.data() + text.size(), dead);
    const size_t nl = text.find('\n');
    const size_t nl2 = text.find('\n', nl == std::string::npos ? text.size() : nl + 1);
    if (dead < 0 || dead >= world_size_ || nl == std::string::npos || nl2 == std::string::npos) {
      continue;
    }
    Status& slot = failures_[static_cast<size_t>(dead)];
    if (!slot.isOk()) continue;
    slot =
        Status(StatusCode::kPeerFailure, strCat(text.substr(nl2 + 1), " (reported by world rank ",
                                                text.substr(nl + 1, nl2 - nl - 1), ")"));
    ++num_failures_;
    failMembersOf(dead);
  }
}

Result<uint64_t> Engine::allocateCommId() {
  WEFT_ASSIGN_OR_RETURN(int64_t n, store_->add(kCommIdCounter, 1));
  return static_cast<uint64_t>(n);
}

}  // namespace weft::coll::detail
