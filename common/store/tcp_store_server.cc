// TcpStoreServer: serves the TCP store protocol (PROTOCOL.md) from one background thread.
//
// The thread polls an eventfd (stop), the listening socket and every connection. All store
// state (data, waiters, connections) belongs to that thread; the public methods only read
// atomics. GET and WAIT that cannot complete are parked server-side until the key appears
// or their timeout (sent by the client) expires, and the server answers TIMEOUT itself, so
// a connection never gets out of sync. A connection that breaks the protocol gets an ERROR
// reply, a warning in the log, and is closed; the others are unaffected.
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <optional>
#include <thread>
#include <unordered_map>

#include "common/logging.h"
#include "common/store/socket_util.h"
#include "common/store/store.h"
#include "common/store/store_util.h"
#include "common/store/tcp_wire.h"

namespace weft {
namespace {

using store_internal::formatHostPort;
using store_internal::formatSockaddr;
using store_internal::UniqueFd;
using store_wire::FrameReader;
using store_wire::FrameWriter;
using store_wire::Op;

constexpr size_t kReadChunk = 256 * 1024;
constexpr size_t kCompactThreshold = 1 << 20;
constexpr auto kDrainGrace = std::chrono::seconds(1);       // after an ERROR reply
constexpr auto kAcceptPause = std::chrono::milliseconds(100);  // after EMFILE and friends
constexpr uint64_t kMaxTimeoutMs = 10ULL * 365 * 24 * 3600 * 1000;  // longer = never

// A GET or WAIT parked until its keys exist or its deadline passes.
struct Pending {
  Op op;
  std::vector<std::string> keys;
  Deadline deadline;
  uint64_t seq;              // identifies this wait in waiters_
  std::optional<std::string> registered;  // the missing key it is registered under
};

struct Conn {
  uint64_t id = 0;
  UniqueFd fd;
  std::string peer;
  std::string in;
  size_t in_pos = 0;
  std::string out;
  size_t out_pos = 0;
  bool hello_done = false;
  bool closing = false;  // an ERROR was queued: flush, shut down writing, drain until EOF
  bool shut_wr = false;
  Deadline close_by = Deadline::never();
  std::optional<Pending> pending;
  std::string broken;  // non-empty: close with this reason (log level in broken_warn)
  bool broken_warn = false;

  bool outPending() const { return out_pos < out.size(); }
  size_t inAvail() const { return in.size() - in_pos; }
};

class TcpStoreServerImpl final : public TcpStoreServer {
 public:
  TcpStoreServerImpl(UniqueFd listen_fd, UniqueFd wake_fd, std::string host, uint16_t port)
      : listen_fd_(std::move(listen_fd)),
        wake_fd_(std::move(wake_fd)),
        host_(std::move(host)),
        port_(port),
        name_(strCat("store server ", formatHostPort(host_, port_))) {}

  ~TcpStoreServerImpl() override {
    uint64_t one = 1;
    if (::write(wake_fd_.get(), &one, sizeof(one)) < 0) {
      WEFT_LOG(kError, "store") << name_ << ": cannot wake the server thread: "
                                << errnoString(errno);
    }
    if (thread_.joinable()) thread_.join();
    WEFT_LOG(kDebug, "store") << name_ << ": stopped (" << conns_.size()
                              << " connections closed)";
  }

  void start() { thread_ = std::thread([this] { run(); }); }

  uint16_t port() const override { return port_; }
  std::string host() const override { return host_; }
  size_t numConnections() const override { return num_conns_.load(); }

 private:
  void run();
  Deadline nextWakeup() const;
  short eventsFor(const Conn& c) const;
  void acceptAll();
  void handleEvents(uint64_t id, short revents);
  void readIn(Conn& c);
  void processInput(Conn& c);
  void handleHello(Conn& c);
  void dispatch(Conn& c, uint8_t op, std::string_view payload);
  bool payloadOk(Conn& c, const FrameReader& r, Op op);
  void doSet(Conn& c, FrameReader& r);
  void doWaitOp(Conn& c, Op op, FrameReader& r);
  void doAdd(Conn& c, FrameReader& r);
  void doCompareSet(Conn& c, FrameReader& r);
  void doEraseOrCheck(Conn& c, Op op, FrameReader& r);
  bool tryComplete(Conn& c);
  void registerWaiter(Conn& c, const std::string& key);
  void unregisterWaiter(Conn& c);
  void notifyKey(const std::string& key);
  void expireDeadlines();
  void runRunnable();
  void reply(Conn& c, std::string frame);
  void flush(Conn& c);
  void fail(Conn& c, StatusCode code, const std::string& why);
  void closeIfBroken(uint64_t id);
  void closeConn(uint64_t id, bool warn, const std::string& reason);
  Conn* find(uint64_t id) {
    auto it = conns_.find(id);
    return it == conns_.end() ? nullptr : it->second.get();
  }

  UniqueFd listen_fd_;
  UniqueFd wake_fd_;
  const std::string host_;
  const uint16_t port_;
  const std::string name_;
  std::thread thread_;
  std::atomic<size_t> num_conns_{0};

  // Owned by the server thread.
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns_;
  uint64_t next_id_ = 1;
  uint64_t next_seq_ = 1;
  std::unordered_map<std::string, std::string> data_;
  // key -> (connection id, pending seq) of the waits registered under it.
  std::unordered_map<std::string, std::vector<std::pair<uint64_t, uint64_t>>> waiters_;
  std::vector<uint64_t> runnable_;  // connections whose pending wait completed
  std::vector<char> read_buf_;
  Deadline accept_paused_until_ = Deadline::afterSeconds(0);
};

void TcpStoreServerImpl::run() {
  std::vector<pollfd> fds;
  std::vector<uint64_t> ids;
  WEFT_LOG(kDebug, "store") << name_ << ": serving";
  while (true) {
    fds.clear();
    ids.clear();
    fds.push_back({wake_fd_.get(), POLLIN, 0});
    bool accepting = accept_paused_until_.expired();
    if (accepting) fds.push_back({listen_fd_.get(), POLLIN, 0});
    size_t first_conn = fds.size();
    for (const auto& [id, c] : conns_) {
      fds.push_back({c->fd.get(), eventsFor(*c), 0});
      ids.push_back(id);
    }
    int n = ::poll(fds.data(), fds.size(), nextWakeup().pollTimeoutMs());
    if (n < 0 && errno != EINTR) {
      WEFT_LOG(kError, "store") << name_ << ": poll failed: " << errnoString(errno);
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    if (n > 0 && fds[0].revents != 0) return;
    if (n > 0 && accepting && fds[1].revents != 0) acceptAll();
    for (size_t i = first_conn; n > 0 && i < fds.size(); ++i) {
      if (fds[i].revents != 0) handleEvents(ids[i - first_conn], fds[i].revents);
    }
    expireDeadlines();
    runRunnable();
  }
}

Deadline TcpStoreServerImpl::nextWakeup() const {
  Deadline next = Deadline::never();
  if (!accept_paused_until_.expired()) next = next.min(accept_paused_until_);
  for (const auto& [id, c] : conns_) {
    if (c->pending) next = next.min(c->pending->deadline);
    if (c->closing) next = next.min(c->close_by);
  }
  return next;
}

short TcpStoreServerImpl::eventsFor(const Conn& c) const {
  short ev = c.outPending() ? POLLOUT : 0;
  if (c.closing) return static_cast<short>(ev | POLLIN);
  // While a wait is parked or replies are backed up, read nothing more (back-pressure),
  // but still notice the peer hanging up.
  ev = static_cast<short>(ev | POLLRDHUP);
  if (!c.pending && !c.outPending()) ev = static_cast<short>(ev | POLLIN);
  return ev;
}

void TcpStoreServerImpl::acceptAll() {
  while (true) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    int fd = ::accept4(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), &len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      if (err == EINTR || err == ECONNABORTED) continue;
      WEFT_LOG(kWarn, "store") << name_ << ": accept failed: " << errnoString(err)
                               << "; pausing accepts for 100 ms"
                               << (err == EMFILE ? " (hint: raise `ulimit -n`)" : "");
      accept_paused_until_ = Deadline::after(kAcceptPause);
      return;
    }
    auto c = std::make_unique<Conn>();
    c->id = next_id_++;
    c->fd = UniqueFd(fd);
    c->peer = formatSockaddr(reinterpret_cast<sockaddr*>(&addr), len);
    Status st = store_internal::setNoDelay(fd);
    if (!st.isOk()) {
      WEFT_LOG(kWarn, "store") << name_ << ": " << c->peer << ": " << st;
    }
    WEFT_LOG(kDebug, "store") << name_ << ": connection from " << c->peer;
    conns_.emplace(c->id, std::move(c));
    num_conns_.store(conns_.size());
  }
}

void TcpStoreServerImpl::handleEvents(uint64_t id, short revents) {
  Conn* c = find(id);
  if (c == nullptr) return;
  if ((revents & POLLOUT) != 0) flush(*c);
  if (c->broken.empty() && (revents & (POLLIN | POLLERR)) != 0 &&
      (c->closing || (!c->pending && !c->outPending()))) {
    readIn(*c);
  } else if (c->broken.empty() && (revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL))) {
    c->broken = c->pending ? "peer hung up while its " + store_wire::opName(
                                 static_cast<uint8_t>(c->pending->op)) + " was waiting"
                           : "peer hung up";
  }
  closeIfBroken(id);
}

void TcpStoreServerImpl::readIn(Conn& c) {
  read_buf_.resize(kReadChunk);
  ssize_t n = ::recv(c.fd.get(), read_buf_.data(), read_buf_.size(), 0);
  int err = errno;
  if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)) return;
  if (c.closing) {  // discarding input after an ERROR reply
    if (n <= 0) c.broken = "closed after error";
    return;
  }
  if (n > 0) {
    c.in.append(read_buf_.data(), static_cast<size_t>(n));
    processInput(c);
    return;
  }
  // EOF or error: run the complete frames that arrived, then close.
  processInput(c);
  if (!c.broken.empty()) return;
  size_t left = c.inAvail();
  std::string how = n == 0 ? "closed the connection" : "reset (" + errnoString(err) + ")";
  if (!c.hello_done && left > 0) {
    c.broken_warn = true;
    c.broken = strCat("peer ", how, " in the middle of the hello (", left, " of ",
                      store_wire::kHelloSize, " bytes)");
  } else if (left > 0 && !c.pending) {
    c.broken_warn = true;
    c.broken = strCat("peer ", how, " in the middle of a frame (", left, " bytes buffered)");
  } else {
    c.broken = "peer " + how;
  }
}

void TcpStoreServerImpl::processInput(Conn& c) {
  while (c.broken.empty() && !c.closing && !c.pending && !c.outPending()) {
    if (!c.hello_done) {
      if (c.inAvail() < store_wire::kHelloSize) break;
      handleHello(c);
      continue;
    }
    if (c.inAvail() < store_wire::kLengthSize) break;
    uint32_t len = store_wire::loadU32(c.in.data() + c.in_pos);
    if (len == 0 || len > store_wire::kMaxFrame) {
      fail(c, StatusCode::kInvalidArgument,
           strCat("frame length ", len, " is outside [1, ", store_wire::kMaxFrame,
                  "] (protocol version ", store_wire::kVersion, ")"));
      break;
    }
    if (c.inAvail() < store_wire::kLengthSize + len) break;
    const char* frame = c.in.data() + c.in_pos + store_wire::kLengthSize;
    c.in_pos += store_wire::kLengthSize + len;
    // c.in is not modified while the request runs, so the payload view stays valid.
    dispatch(c, static_cast<uint8_t>(frame[0]), std::string_view(frame + 1, len - 1));
  }
  if (c.closing || c.in_pos == c.in.size()) {
    c.in.clear();
    c.in_pos = 0;
    if (c.in.capacity() > kCompactThreshold) c.in.shrink_to_fit();
  } else if (c.in_pos > kCompactThreshold) {
    c.in.erase(0, c.in_pos);
    c.in_pos = 0;
  }
}

void TcpStoreServerImpl::handleHello(Conn& c) {
  const char* p = c.in.data() + c.in_pos;
  uint32_t magic = store_wire::loadU32(p);
  uint32_t version = store_wire::loadU32(p + 4);
  c.in_pos += store_wire::kHelloSize;
  if (magic != store_wire::kMagic) {
    fail(c, StatusCode::kInvalidArgument,
         strCat("bad hello: magic 0x", std::hex, magic, ", expected 0x", store_wire::kMagic,
                std::dec, " ('WFTS'): not a Weft store client (server protocol version ",
                store_wire::kVersion, ")"));
    return;
  }
  if (version != store_wire::kVersion) {
    fail(c, StatusCode::kNotSupported,
         strCat("protocol version mismatch: the client speaks version ", version,
                ", this server speaks version ", store_wire::kVersion,
                " (hint: run the same Weft build on every rank and in weft-run)"));
    return;
  }
  c.hello_done = true;
  reply(c, FrameWriter(Op::kHelloOk).u32(store_wire::kVersion).finish());
}

void TcpStoreServerImpl::dispatch(Conn& c, uint8_t op, std::string_view payload) {
  FrameReader r(payload);
  switch (static_cast<Op>(op)) {
    case Op::kSet: return doSet(c, r);
    case Op::kGet: return doWaitOp(c, Op::kGet, r);
    case Op::kWait: return doWaitOp(c, Op::kWait, r);
    case Op::kAdd: return doAdd(c, r);
    case Op::kCompareSet: return doCompareSet(c, r);
    case Op::kErase: return doEraseOrCheck(c, Op::kErase, r);
    case Op::kCheck: return doEraseOrCheck(c, Op::kCheck, r);
    default:
      fail(c, StatusCode::kInvalidArgument,
           strCat("unknown request opcode ", store_wire::opName(op), " (protocol version ",
                  store_wire::kVersion, ")"));
  }
}

// Fails the connection (and returns false) when a request's payload did not parse exactly.
bool TcpStoreServerImpl::payloadOk(Conn& c, const FrameReader& r, Op op) {
  if (r.complete()) return true;
  fail(c, StatusCode::kInvalidArgument,
       strCat("malformed ", store_wire::opName(static_cast<uint8_t>(op)), " request (",
              r.failed() ? "truncated payload" : "trailing bytes", ", protocol version ",
              store_wire::kVersion, ")"));
  return false;
}

void TcpStoreServerImpl::doSet(Conn& c, FrameReader& r) {
  std::string_view key = r.bytes();
  std::string_view value = r.bytes();
  if (!payloadOk(c, r, Op::kSet)) return;
  std::string k(key);
  data_[k] = std::string(value);
  reply(c, FrameWriter(Op::kOk).finish());
  notifyKey(k);
}

void TcpStoreServerImpl::doWaitOp(Conn& c, Op op, FrameReader& r) {
  uint64_t timeout_ms = r.u64();
  std::vector<std::string> keys;
  if (op == Op::kGet) {
    keys.emplace_back(r.bytes());
  } else {
    uint32_t n = r.u32();
    if (n > r.remaining() / 4) {
      fail(c, StatusCode::kInvalidArgument, strCat("malformed WAIT request: ", n, " keys"));
      return;
    }
    keys.reserve(n);
    for (uint32_t i = 0; i < n && !r.failed(); ++i) keys.emplace_back(r.bytes());
  }
  if (!payloadOk(c, r, op)) return;
  Deadline deadline = timeout_ms > kMaxTimeoutMs
                          ? Deadline::never()
                          : Deadline::after(std::chrono::milliseconds(timeout_ms));
  // Not complete now: parked; a zero timeout is answered by the next expireDeadlines().
  c.pending = Pending{op, std::move(keys), deadline, next_seq_++, std::nullopt};
  tryComplete(c);
}

void TcpStoreServerImpl::doAdd(Conn& c, FrameReader& r) {
  std::string_view key = r.bytes();
  int64_t delta = r.i64();
  if (!payloadOk(c, r, Op::kAdd)) return;
  std::string k(key);
  auto it = data_.find(k);
  std::string_view current = it == data_.end() ? std::string_view() : it->second;
  Result<int64_t> value = store_internal::parseCounter(current, key, "store server");
  if (value.isOk()) {
    value = store_internal::addCounter(*value, delta, key, "store server");
  }
  if (!value.isOk()) {
    const Status& st = value.status();
    reply(c, FrameWriter(Op::kError)
                 .u8(static_cast<uint8_t>(st.code()))
                 .u8(0)  // the connection stays open
                 .bytes(st.message())
                 .finish());
    return;
  }
  data_[k] = std::to_string(*value);
  reply(c, FrameWriter(Op::kInt).i64(*value).finish());
  notifyKey(k);
}

void TcpStoreServerImpl::doCompareSet(Conn& c, FrameReader& r) {
  std::string_view key = r.bytes();
  std::string_view expected = r.bytes();
  std::string_view desired = r.bytes();
  if (!payloadOk(c, r, Op::kCompareSet)) return;
  std::string k(key);
  auto it = data_.find(k);
  std::string_view current = it == data_.end() ? std::string_view() : it->second;
  if (current != expected) {
    reply(c, FrameWriter(Op::kValue).bytes(current).finish());
    return;
  }
  data_[k] = std::string(desired);
  reply(c, FrameWriter(Op::kValue).bytes(desired).finish());
  notifyKey(k);
}

void TcpStoreServerImpl::doEraseOrCheck(Conn& c, Op op, FrameReader& r) {
  std::string_view key = r.bytes();
  if (!payloadOk(c, r, op)) return;
  std::string k(key);
  bool existed = op == Op::kErase ? data_.erase(k) > 0 : data_.count(k) > 0;
  reply(c, FrameWriter(Op::kBool).u8(existed ? 1 : 0).finish());
}

// Replies and clears the pending wait when all its keys exist; otherwise (re)registers it
// under its first missing key. Returns whether it completed.
bool TcpStoreServerImpl::tryComplete(Conn& c) {
  Pending& p = *c.pending;
  for (const auto& key : p.keys) {
    if (data_.count(key) == 0) {
      registerWaiter(c, key);
      return false;
    }
  }
  unregisterWaiter(c);
  std::string frame = p.op == Op::kGet
                          ? FrameWriter(Op::kValue).bytes(data_[p.keys[0]]).finish()
                          : FrameWriter(Op::kOk).finish();
  c.pending.reset();
  reply(c, std::move(frame));
  return true;
}

void TcpStoreServerImpl::registerWaiter(Conn& c, const std::string& key) {
  if (c.pending->registered == key) return;
  unregisterWaiter(c);
  c.pending->registered = key;
  waiters_[key].emplace_back(c.id, c.pending->seq);
}

void TcpStoreServerImpl::unregisterWaiter(Conn& c) {
  if (!c.pending || !c.pending->registered) return;
  auto it = waiters_.find(*c.pending->registered);
  c.pending->registered.reset();
  if (it == waiters_.end()) return;
  auto& list = it->second;
  std::erase(list, std::make_pair(c.id, c.pending->seq));
  if (list.empty()) waiters_.erase(it);
}

void TcpStoreServerImpl::notifyKey(const std::string& key) {
  auto it = waiters_.find(key);
  if (it == waiters_.end()) return;
  auto list = std::move(it->second);
  waiters_.erase(it);
  for (const auto& [id, seq] : list) {
    Conn* c = find(id);
    if (c == nullptr || !c->pending || c->pending->seq != seq) continue;
    c->pending->registered.reset();  // no longer in waiters_
    if (tryComplete(*c)) runnable_.push_back(id);
  }
}

void TcpStoreServerImpl::expireDeadlines() {
  std::vector<uint64_t> to_close;
  for (auto& [id, c] : conns_) {
    if (c->closing && c->close_by.expired()) {
      to_close.push_back(id);
      continue;
    }
    if (!c->pending || !c->pending->deadline.expired()) continue;
    FrameWriter w(Op::kTimeout);
    std::vector<std::string_view> missing;
    for (const auto& key : c->pending->keys) {
      if (data_.count(key) == 0) missing.push_back(key);
    }
    w.u32(static_cast<uint32_t>(missing.size()));
    for (auto key : missing) w.bytes(key);
    unregisterWaiter(*c);
    c->pending.reset();
    reply(*c, std::move(w).finish());
    runnable_.push_back(id);
  }
  for (uint64_t id : to_close) closeConn(id, false, "closed after error (drain time over)");
}

void TcpStoreServerImpl::runRunnable() {
  while (!runnable_.empty()) {
    std::vector<uint64_t> ids = std::move(runnable_);
    runnable_.clear();
    for (uint64_t id : ids) {
      Conn* c = find(id);
      if (c == nullptr) continue;
      processInput(*c);
      closeIfBroken(id);
    }
  }
}

void TcpStoreServerImpl::reply(Conn& c, std::string frame) {
  if (c.out_pos == c.out.size()) {
    c.out = std::move(frame);
    c.out_pos = 0;
  } else {
    c.out += frame;
  }
  flush(c);
}

void TcpStoreServerImpl::flush(Conn& c) {
  while (c.outPending() && c.broken.empty()) {
    ssize_t n = ::send(c.fd.get(), c.out.data() + c.out_pos, c.out.size() - c.out_pos,
                       MSG_NOSIGNAL);
    if (n >= 0) {
      c.out_pos += static_cast<size_t>(n);
      continue;
    }
    int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) return;
    c.broken = "send failed: " + errnoString(err);
  }
  if (!c.outPending()) {
    c.out.clear();
    c.out_pos = 0;
    if (c.closing && !c.shut_wr) {
      ::shutdown(c.fd.get(), SHUT_WR);
      c.shut_wr = true;
    }
  }
}

// Protocol violation: log, queue an ERROR reply, then close once it is flushed and the peer
// stops sending (or kDrainGrace passes), so the reply is not lost to a TCP reset.
void TcpStoreServerImpl::fail(Conn& c, StatusCode code, const std::string& why) {
  WEFT_LOG(kWarn, "store") << name_ << ": closing connection from " << c.peer << ": " << why;
  c.closing = true;
  c.close_by = Deadline::after(kDrainGrace);
  if (c.pending) {
    unregisterWaiter(c);
    c.pending.reset();
  }
  reply(c, FrameWriter(Op::kError).u8(static_cast<uint8_t>(code)).u8(1).bytes(why).finish());
}

void TcpStoreServerImpl::closeIfBroken(uint64_t id) {
  Conn* c = find(id);
  if (c != nullptr && !c->broken.empty()) closeConn(id, c->broken_warn, c->broken);
}

void TcpStoreServerImpl::closeConn(uint64_t id, bool warn, const std::string& reason) {
  Conn* c = find(id);
  if (c == nullptr) return;
  if (warn) {
    WEFT_LOG(kWarn, "store") << name_ << ": closing connection from " << c->peer << ": "
                             << reason;
  } else {
    WEFT_LOG(kDebug, "store") << name_ << ": connection from " << c->peer
                              << " closed: " << reason;
  }
  unregisterWaiter(*c);
  conns_.erase(id);
  num_conns_.store(conns_.size());
}

// Binds and listens on the first address of bind_host that works.
Result<UniqueFd> listenOn(const std::string& bind_host, uint16_t port, std::string& bound) {
  bool any4 = bind_host.empty() || bind_host == "0.0.0.0";
  addrinfo hints{};
  hints.ai_family = any4 ? AF_INET : AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port_str = std::to_string(port);
  int rc = ::getaddrinfo(any4 ? nullptr : bind_host.c_str(), port_str.c_str(), &hints, &res);
  std::string where = formatHostPort(any4 ? "0.0.0.0" : bind_host, port);
  if (rc != 0) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "startTcpStoreServer(", where,
                      "): cannot resolve '", bind_host, "': ", ::gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(res, ::freeaddrinfo);
  Status last;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                         ai->ai_protocol));
    int one = 1;
    if (fd.valid()) ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd.valid() && ::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) == 0 &&
        ::listen(fd.get(), SOMAXCONN) == 0) {
      sockaddr_storage addr{};
      socklen_t len = sizeof(addr);
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len);
      bound = formatSockaddr(reinterpret_cast<sockaddr*>(&addr), len);
      return fd;
    }
    int err = errno;
    last = WEFT_ERROR(err == EADDRINUSE ? StatusCode::kUnavailable : StatusCode::kIoError,
                      "startTcpStoreServer: cannot listen on ", where, ": ", errnoString(err));
    if (err == EADDRINUSE) {
      last = last.withHint("another process (an earlier run?) uses this port: pick another "
                           "port in WEFT_STORE_ADDR, or port 0 for any free one");
    }
  }
  return last;
}

}  // namespace

Result<std::unique_ptr<TcpStoreServer>> startTcpStoreServer(const std::string& bind_host,
                                                            uint16_t port) {
  std::string bound;
  WEFT_ASSIGN_OR_RETURN(UniqueFd listen_fd, listenOn(bind_host, port, bound));
  UniqueFd wake_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_fd.valid()) {
    return WEFT_ERROR(StatusCode::kNoResource, "startTcpStoreServer: eventfd failed: ",
                      errnoString(errno));
  }
  // bound is "ip:port" or "[ip]:port": split off the port.
  size_t colon = bound.rfind(':');
  uint16_t actual_port = static_cast<uint16_t>(std::strtoul(bound.c_str() + colon + 1,
                                                            nullptr, 10));
  std::string host = bound.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  auto server = std::make_unique<TcpStoreServerImpl>(std::move(listen_fd), std::move(wake_fd),
                                                     host, actual_port);
  server->start();
  WEFT_LOG(kInfo, "store") << "store server listening on " << formatHostPort(host, actual_port);
  return std::unique_ptr<TcpStoreServer>(std::move(server));
}

}  // namespace weft
