// TcpStore: the client of a TcpStoreServer (wire format in PROTOCOL.md).
//
// Each call takes a connection from a small pool (or opens one), sends one request and
// reads its reply, so concurrent calls from several threads never wait on each other (a
// thread blocked in get() does not block the set() that would wake it). A connection that
// fails or times out is dropped; the next call opens a fresh one, and fails fast with
// kUnavailable when the server is gone.
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <thread>

#include "common/logging.h"
#include "common/store/socket_util.h"
#include "common/store/store.h"
#include "common/store/store_util.h"
#include "common/store/tcp_wire.h"

namespace weft {
namespace {

using store_internal::formatHostPort;
using store_internal::quoteKey;
using store_internal::UniqueFd;
using store_wire::FrameReader;
using store_wire::FrameWriter;
using store_wire::Op;
using Clock = Deadline::Clock;

constexpr auto kMinBackoff = std::chrono::milliseconds(10);
constexpr auto kMaxBackoff = std::chrono::milliseconds(500);
// Time one connect or hello exchange gets even when the caller's deadline has passed.
constexpr auto kMinAttempt = std::chrono::milliseconds(200);
// How long after a get/wait deadline the client still waits for the server's TIMEOUT.
constexpr auto kReplyGrace = std::chrono::seconds(10);
constexpr size_t kMaxIdleConnections = 16;
constexpr const char* kServerHint =
    "is the store server (rank 0 / weft-run) running? check WEFT_STORE_ADDR";

struct Reply {
  Op op;
  std::string payload;
};

// Waits for fd to become ready for `events` until the deadline.
Status waitFd(int fd, short events, Deadline deadline, const std::string& what) {
  while (true) {
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, deadline.pollTimeoutMs());
    if (n > 0) return Status::ok();
    if (n == 0) return WEFT_ERROR(StatusCode::kTimeout, what, ": no progress before the deadline");
    if (errno != EINTR) return WEFT_ERROR(StatusCode::kIoError, what, ": poll failed: ",
                                          errnoString(errno));
  }
}

// One connected, hello'd socket. Used by one thread at a time.
class Connection {
 public:
  Connection(UniqueFd fd, std::string name) : fd_(std::move(fd)), name_(std::move(name)) {}

  Status sendAll(std::string_view data, Deadline deadline) {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::send(fd_.get(), data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (n >= 0) {
        done += static_cast<size_t>(n);
        continue;
      }
      int err = errno;
      if (err == EINTR) continue;
      if (err != EAGAIN && err != EWOULDBLOCK) {
        return WEFT_ERROR(StatusCode::kIoError, "send to ", name_, " failed: ",
                          errnoString(err));
      }
      WEFT_RETURN_IF_ERROR(waitFd(fd_.get(), POLLOUT, deadline, "send to " + name_));
    }
    return Status::ok();
  }

  Result<Reply> receive(Deadline deadline) {
    char len_buf[store_wire::kLengthSize];
    WEFT_RETURN_IF_ERROR(recvExact(len_buf, sizeof(len_buf), deadline));
    uint32_t len = store_wire::loadU32(len_buf);
    if (len == 0 || len > store_wire::kMaxFrame) {
      return WEFT_ERROR(StatusCode::kPeerFailure, name_, " sent a frame of length ", len,
                        " (allowed: 1..", store_wire::kMaxFrame, "): not a Weft store server?");
    }
    std::string frame(len, '\0');
    WEFT_RETURN_IF_ERROR(recvExact(frame.data(), len, deadline));
    return Reply{static_cast<Op>(frame[0]), frame.substr(1)};
  }

 private:
  Status recvExact(char* buf, size_t len, Deadline deadline) {
    size_t done = 0;
    while (done < len) {
      ssize_t n = ::recv(fd_.get(), buf + done, len - done, 0);
      if (n > 0) {
        done += static_cast<size_t>(n);
        continue;
      }
      int err = errno;
      if (n == 0) {
        return WEFT_ERROR(StatusCode::kIoError, "the connection to ", name_,
                          " was closed by the server");
      }
      if (err == EINTR) continue;
      if (err != EAGAIN && err != EWOULDBLOCK) {
        return WEFT_ERROR(StatusCode::kIoError, "recv from ", name_, " failed: ",
                          errnoString(err));
      }
      WEFT_RETURN_IF_ERROR(waitFd(fd_.get(), POLLIN, deadline, "waiting for a reply from " +
                                                                   name_));
    }
    return Status::ok();
  }

  UniqueFd fd_;
  std::string name_;
};

// Status of an ERROR reply, or of a malformed one.
Status errorFromReply(const Reply& reply, bool* server_closes) {
  FrameReader r(reply.payload);
  uint8_t code = r.u8();
  *server_closes = r.u8() != 0;
  std::string_view message = r.bytes();
  if (!r.complete() || code == 0 || code > static_cast<uint8_t>(StatusCode::kInternal)) {
    *server_closes = true;
    return WEFT_ERROR(StatusCode::kPeerFailure, "malformed ERROR reply from the server");
  }
  return Status(static_cast<StatusCode>(code), strCat("server replied: ", message));
}

// Connects to one address of host:port and exchanges the hello. *fatal is set when
// retrying cannot help (the server rejected us).
Result<std::unique_ptr<Connection>> connectAddr(const addrinfo& ai, const std::string& name,
                                                Deadline deadline, bool* fatal) {
  UniqueFd fd(::socket(ai.ai_family, ai.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                       ai.ai_protocol));
  if (!fd.valid()) {
    return WEFT_ERROR(StatusCode::kIoError, "socket() for ", name, " failed: ",
                      errnoString(errno));
  }
  if (::connect(fd.get(), ai.ai_addr, ai.ai_addrlen) != 0) {
    int err = errno;
    if (err != EINPROGRESS) {
      return WEFT_ERROR(StatusCode::kUnavailable, "connect(", name, "): ", errnoString(err));
    }
    WEFT_RETURN_IF_ERROR(waitFd(fd.get(), POLLOUT, deadline, "connect(" + name + ")"));
    socklen_t len = sizeof(err);
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      return WEFT_ERROR(StatusCode::kUnavailable, "connect(", name, "): ", errnoString(err));
    }
  }
  WEFT_RETURN_IF_ERROR(store_internal::setNoDelay(fd.get()));
  auto conn = std::make_unique<Connection>(std::move(fd), name);
  WEFT_RETURN_IF_ERROR(conn->sendAll(store_wire::encodeHello(), deadline));
  WEFT_ASSIGN_OR_RETURN(Reply reply, conn->receive(deadline));
  if (reply.op == Op::kError) {
    *fatal = true;
    bool closes = true;
    return errorFromReply(reply, &closes).withContext(strCat("hello to ", name));
  }
  FrameReader r(reply.payload);
  uint32_t version = r.u32();
  if (reply.op != Op::kHelloOk || !r.complete() || version != store_wire::kVersion) {
    *fatal = true;
    return WEFT_ERROR(StatusCode::kPeerFailure, name, " answered the hello with ",
                      store_wire::opName(static_cast<uint8_t>(reply.op)), " (version ",
                      version, "), expected HELLO_OK version ", store_wire::kVersion,
                      ": not a Weft store server, or another Weft version");
  }
  return conn;
}

// One connection attempt over every address host resolves to.
Result<std::unique_ptr<Connection>> connectOnce(const std::string& host, uint16_t port,
                                                Deadline deadline, bool* fatal) {
  std::string name = formatHostPort(host, port);
  if (!deadline.isNever() && deadline.remaining() < kMinAttempt) {
    deadline = Deadline::after(kMinAttempt);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port_str = std::to_string(port);
  int rc = ::getaddrinfo(host.c_str(), port_str.c_str(), &hints, &res);
  if (rc != 0) {
    return WEFT_ERROR(StatusCode::kUnavailable, "cannot resolve '", host, "': ",
                      rc == EAI_SYSTEM ? errnoString(errno) : ::gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(res, ::freeaddrinfo);
  Status last;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    auto conn = connectAddr(*ai, name, deadline, fatal);
    if (conn.isOk() || *fatal) return conn;
    last = conn.status();
  }
  return last;
}

class TcpStore final : public Store {
 public:
  TcpStore(std::string host, uint16_t port, double op_timeout_s)
      : host_(std::move(host)),
        port_(port),
        op_timeout_s_(op_timeout_s),
        name_("tcp://" + formatHostPort(host_, port_)) {}

  void addIdle(std::unique_ptr<Connection> conn) {
    std::lock_guard<std::mutex> lock(mu_);
    if (idle_.size() < kMaxIdleConnections) idle_.push_back(std::move(conn));
  }

  Status set(std::string_view key, std::string_view value) override {
    std::string op = strCat("set(", quoteKey(key), ")");
    WEFT_ASSIGN_OR_RETURN(
        Reply reply, call(FrameWriter(Op::kSet).bytes(key).bytes(value), op, opDeadline()));
    WEFT_RETURN_IF_ERROR(expect(reply, Op::kOk, op));
    return parsed(FrameReader(reply.payload), op);
  }

  Result<std::string> get(std::string_view key, Deadline deadline) override {
    std::string op = strCat("get(", quoteKey(key), ")");
    auto start = Clock::now();
    WEFT_ASSIGN_OR_RETURN(Reply reply,
                          call(FrameWriter(Op::kGet).u64(wireTimeout(deadline)).bytes(key), op,
                               replyDeadline(deadline)));
    if (reply.op == Op::kTimeout) return timeoutReply(reply, "get", op, start);
    WEFT_RETURN_IF_ERROR(expect(reply, Op::kValue, op));
    FrameReader r(reply.payload);
    std::string value(r.bytes());
    WEFT_RETURN_IF_ERROR(parsed(r, op));
    return value;
  }

  Status wait(const std::vector<std::string>& keys, Deadline deadline) override {
    std::string op = strCat("wait(", keys.size(), " keys)");
    auto start = Clock::now();
    FrameWriter w(Op::kWait);
    w.u64(wireTimeout(deadline)).u32(static_cast<uint32_t>(keys.size()));
    for (const auto& k : keys) w.bytes(k);
    WEFT_ASSIGN_OR_RETURN(Reply reply, call(w, op, replyDeadline(deadline)));
    if (reply.op == Op::kTimeout) return timeoutReply(reply, "wait", op, start);
    WEFT_RETURN_IF_ERROR(expect(reply, Op::kOk, op));
    return parsed(FrameReader(reply.payload), op);
  }

  Result<int64_t> add(std::string_view key, int64_t delta) override {
    std::string op = strCat("add(", quoteKey(key), ", ", delta, ")");
    WEFT_ASSIGN_OR_RETURN(
        Reply reply, call(FrameWriter(Op::kAdd).bytes(key).i64(delta), op, opDeadline()));
    WEFT_RETURN_IF_ERROR(expect(reply, Op::kInt, op));
    FrameReader r(reply.payload);
    int64_t value = r.i64();
    WEFT_RETURN_IF_ERROR(parsed(r, op));
    return value;
  }

  Result<std::string> compareSet(std::string_view key, std::string_view expected,
                                 std::string_view desired) override {
    std::string op = strCat("compareSet(", quoteKey(key), ")");
    FrameWriter w(Op::kCompareSet);
    w.bytes(key).bytes(expected).bytes(desired);
    WEFT_ASSIGN_OR_RETURN(Reply reply, call(w, op, opDeadline()));
    WEFT_RETURN_IF_ERROR(expect(reply, Op::kValue, op));
    FrameReader r(reply.payload);
    std::string value(r.bytes());
    WEFT_RETURN_IF_ERROR(parsed(r, op));
    return value;
  }

  Result<bool> erase(std::string_view key) override { return boolOp(Op::kErase, "erase", key); }
  Result<bool> check(std::string_view key) override { return boolOp(Op::kCheck, "check", key); }

  std::string describe() const override { return name_; }

 private:
  Deadline opDeadline() const { return Deadline::afterSeconds(op_timeout_s_); }

  static uint64_t wireTimeout(Deadline deadline) {
    if (deadline.isNever()) return store_wire::kNoTimeout;
    auto ns = deadline.remaining().count();
    return static_cast<uint64_t>((ns + 999999) / 1000000);
  }

  static Deadline replyDeadline(Deadline deadline) {
    if (deadline.isNever()) return deadline;
    return Deadline::at(std::max(deadline.when(), Clock::now()) + kReplyGrace);
  }

  Result<bool> boolOp(Op code, std::string_view verb, std::string_view key) {
    std::string op = strCat(verb, "(", quoteKey(key), ")");
    WEFT_ASSIGN_OR_RETURN(Reply reply, call(FrameWriter(code).bytes(key), op, opDeadline()));
    WEFT_RETURN_IF_ERROR(expect(reply, Op::kBool, op));
    FrameReader r(reply.payload);
    uint8_t v = r.u8();
    WEFT_RETURN_IF_ERROR(parsed(r, op));
    return v != 0;
  }

  Status timeoutReply(const Reply& reply, std::string_view verb, const std::string& op,
                      Clock::time_point start) const {
    FrameReader r(reply.payload);
    uint32_t n = r.u32();
    std::vector<std::string> missing;
    for (uint32_t i = 0; i < n && !r.failed(); ++i) missing.emplace_back(r.bytes());
    WEFT_RETURN_IF_ERROR(parsed(r, op));
    return store_internal::timeoutError(name_, verb, missing, Clock::now() - start);
  }

  Status expect(const Reply& reply, Op want, const std::string& op) const {
    if (reply.op == want) return Status::ok();
    return WEFT_ERROR(StatusCode::kPeerFailure, name_, ": ", op, ": unexpected reply ",
                      store_wire::opName(static_cast<uint8_t>(reply.op)), " (expected ",
                      store_wire::opName(static_cast<uint8_t>(want)), ", protocol version ",
                      store_wire::kVersion, ")");
  }

  Status parsed(const FrameReader& r, const std::string& op) const {
    if (r.complete()) return Status::ok();
    return WEFT_ERROR(StatusCode::kPeerFailure, name_, ": ", op,
                      ": malformed reply from the server (protocol version ",
                      store_wire::kVersion, ")");
  }

  Result<std::unique_ptr<Connection>> acquire(Deadline deadline) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!idle_.empty()) {
        auto conn = std::move(idle_.back());
        idle_.pop_back();
        return conn;
      }
    }
    bool fatal = false;
    auto conn = connectOnce(host_, port_, deadline, &fatal);
    if (!conn.isOk() && !fatal) return conn.status().withHint(kServerHint);
    return conn;
  }

  // Sends one request and returns its reply; an ERROR reply becomes the returned Status.
  Result<Reply> call(FrameWriter& request, const std::string& op, Deadline deadline);

  const std::string host_;
  const uint16_t port_;
  const double op_timeout_s_;
  const std::string name_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_;
};

Result<Reply> TcpStore::call(FrameWriter& request, const std::string& op, Deadline deadline) {
  if (request.size() > store_wire::kMaxFrame) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, name_, ": ", op, ": request of ",
                      request.size(), " bytes exceeds the store's frame limit of ",
                      store_wire::kMaxFrame, " bytes");
  }
  std::string frame = std::move(request).finish();
  auto conn = acquire(deadline);
  if (!conn.isOk()) return conn.status().withContext(strCat(name_, ": ", op));
  Status st = (*conn)->sendAll(frame, deadline);
  Result<Reply> reply = st.isOk() ? (*conn)->receive(deadline) : Result<Reply>(st);
  if (!reply.isOk()) {
    // The connection may be out of sync: drop it.
    Status err = reply.status().withContext(strCat(name_, ": ", op));
    if (err.code() == StatusCode::kIoError) {
      err = err.withHint(
          "the store server (rank 0 / weft-run) exited or crashed; look at its log");
    }
    return err;
  }
  if (reply->op != Op::kError) {
    addIdle(std::move(*conn));
    return reply;
  }
  bool server_closes = true;
  Status err = errorFromReply(*reply, &server_closes);
  if (!server_closes) addIdle(std::move(*conn));
  return err.withContext(strCat(name_, ": ", op));
}

}  // namespace

Result<std::shared_ptr<Store>> connectTcpStore(const std::string& host, uint16_t port,
                                               Deadline deadline, double op_timeout_s) {
  std::string name = formatHostPort(host, port);
  if (host.empty() || port == 0) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "connectTcpStore(", name,
                      "): need a host and a non-zero port");
  }
  auto start = Clock::now();
  auto backoff = std::chrono::duration_cast<std::chrono::nanoseconds>(kMinBackoff);
  Status last;
  bool warned = false;
  constexpr auto kWarnAfter = std::chrono::seconds(5);
  for (int attempt = 1;; ++attempt) {
    bool fatal = false;
    auto conn = connectOnce(host, port, deadline, &fatal);
    if (conn.isOk()) {
      auto store = std::make_shared<TcpStore>(host, port, op_timeout_s);
      store->addIdle(std::move(*conn));
      WEFT_LOG(kDebug, "store") << "connected to store server " << name << " after "
                                << attempt << " attempt(s)";
      return std::shared_ptr<Store>(std::move(store));
    }
    if (fatal) return conn.status().withContext(strCat("connectTcpStore(", name, ")"));
    last = conn.status();
    if (deadline.expired()) {
      return WEFT_ERROR(StatusCode::kUnavailable, "connectTcpStore: cannot reach the store ",
                        "server at ", name, " after trying for ",
                        formatDuration(Clock::now() - start), " (", attempt,
                        " attempts); last error: ", last.message())
          .withHint(kServerHint);
    }
    // Silence for the whole deadline (300 s by default) looks like a hang: say once, after
    // a few seconds of failures, what is being tried and until when.
    if (!warned && Clock::now() - start >= kWarnAfter) {
      warned = true;
      WEFT_LOG(kWarn, "store") << "still cannot reach the store server at " << name
                               << " after " << formatDuration(Clock::now() - start) << " ("
                               << last.message() << "); retrying"
                               << (deadline.isNever()
                                       ? std::string(" without a deadline")
                                       : strCat(" for ", formatDuration(deadline.remaining()),
                                                " more (WEFT_TIMEOUT)"));
    }
    std::this_thread::sleep_for(std::min(backoff, deadline.remaining()));
    backoff = std::min<std::chrono::nanoseconds>(backoff * 2, kMaxBackoff);
  }
}

}  // namespace weft
