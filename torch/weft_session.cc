#include "torch/weft_session.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>
#include <vector>

#include "common/bootstrap.h"
#include "common/config.h"
#include "common/logging.h"
#include "common/status.h"

namespace weft::torchpg {

namespace {

constexpr const char* kExitKey = "weft/torch/exit";
// The store host waits at most this long at exit for the other ranks to count out (torch's
// default group timeout is 30 minutes).
constexpr double kMaxExitWaitS = 60;

std::string hostName() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) return "localhost";
  return host;
}

// Splits "host:port"; a host equal to this machine's name becomes 127.0.0.1.
Result<std::pair<std::string, uint16_t>> parseAddress(const std::string& addr) {
  size_t colon = addr.rfind(':');
  int port = colon == std::string::npos ? -1 : std::atoi(addr.c_str() + colon + 1);
  if (colon == std::string::npos || colon == 0 || port <= 0 || port > 65535) {
    return WEFT_ERROR(StatusCode::kInvalidArgument,
                      "torch backend: malformed Weft store address \"", addr,
                      "\" (expected host:port)");
  }
  std::string host = addr.substr(0, colon);
  if (host == hostName()) host = "127.0.0.1";
  return std::make_pair(host, static_cast<uint16_t>(port));
}

}  // namespace

Result<std::unique_ptr<TcpStoreServer>> Session::hostStore() {
  return startTcpStoreServer("", 0);
}

std::string Session::storeAddress(const TcpStoreServer& server) {
  return strCat(hostName(), ":", server.port());
}

Result<std::unique_ptr<Session>> Session::join(int rank, int size, const std::string& store_addr,
                                               std::unique_ptr<TcpStoreServer> server,
                                               double timeout_s) {
  Deadline deadline = Deadline::afterSeconds(timeout_s);
  WEFT_ASSIGN_OR_RETURN(auto hp, parseAddress(store_addr));
  std::unique_ptr<Session> s(new Session());
  s->size_ = size;
  s->timeout_s_ = timeout_s;
  s->server_ = std::move(server);
  WEFT_ASSIGN_OR_RETURN(s->store_, connectTcpStore(hp.first, hp.second, deadline, timeout_s));

  BootInfo info;
  info.rank = rank;
  info.size = size;
  info.node_id = config::getString("WEFT_NODE_ID").valueOr("");
  if (info.node_id.empty()) info.node_id = hostName();
  coll::WorldInfo world;
  WEFT_RETURN_IF_ERROR(deriveTopology(*s->store_, info, world.node_of_rank, deadline));
  world.rank = rank;
  world.size = size;
  world.store = s->store_;

  transport::ContextOptions options;
  options.rank = rank;
  WEFT_ASSIGN_OR_RETURN(s->context_, transport::openContext("ucx", options));
  WEFT_ASSIGN_OR_RETURN(s->comm_, coll::Communicator::create(world, s->context_));
  return s;
}

Session::~Session() {
  // A broken group (a peer died or timed out) does not wait for the others to count out.
  const bool broken = comm_ != nullptr && !comm_->health().isOk();
  comm_.reset();
  context_.reset();
  if (!store_) return;
  Result<int64_t> n = store_->add(kExitKey, 1);
  if (!server_ || broken) return;
  Deadline deadline = Deadline::afterSeconds(std::min(timeout_s_, kMaxExitWaitS));
  while (n.isOk() && *n < size_ && !deadline.expired()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    n = store_->add(kExitKey, 0);
  }
  if (!n.isOk() || *n < size_) {
    WEFT_LOG(kWarn, "coll") << "torch backend: rank 0 stops the Weft store server while "
                            << (n.isOk() ? size_ - *n : size_)
                            << " rank(s) have not finished: they lose the store";
  }
}

}  // namespace weft::torchpg
