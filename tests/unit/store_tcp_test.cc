// TcpStore / TcpStoreServer: many clients, malformed input on raw sockets, connect
// failures and server shutdown. Frames are built by hand from PROTOCOL.md (not with the
// library's encoder) so that the document and the code are checked against each other.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <set>
#include <thread>

#include "common/store/store.h"

namespace weft {
namespace {

using namespace std::chrono_literals;

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

// --- Wire helpers written from PROTOCOL.md.
std::string le32(uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[static_cast<size_t>(i)] = static_cast<char>(v >> (8 * i));
  return s;
}
std::string le64(uint64_t v) { return le32(static_cast<uint32_t>(v)) + le32(v >> 32); }
std::string bytes(std::string_view s) {
  return le32(static_cast<uint32_t>(s.size())) + std::string(s);
}
std::string frame(uint8_t op, std::string_view payload) {
  return le32(static_cast<uint32_t>(payload.size() + 1)) + static_cast<char>(op) +
         std::string(payload);
}
const std::string kHello = le32(0x53544657) + le32(1);
constexpr uint8_t kSet = 0x01, kGet = 0x02;
constexpr uint8_t kHelloOk = 0x80, kOk = 0x81, kValue = 0x82, kTimeoutReply = 0x85,
                  kError = 0x86;

// A raw TCP connection to the server with deadline-bounded reads.
class RawConn {
 public:
  explicit RawConn(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      throw std::runtime_error("raw connect failed");
    }
  }
  ~RawConn() { closeNow(); }
  void closeNow() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  void send(std::string_view data) {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return;  // the server may already have closed: that is allowed
      done += static_cast<size_t>(n);
    }
  }
  // Reads exactly n bytes; returns fewer on EOF, error or after 10 s.
  std::string read(size_t n) {
    std::string out;
    Deadline deadline = Deadline::afterSeconds(10);
    while (out.size() < n && !deadline.expired()) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, deadline.pollTimeoutMs()) <= 0) break;
      char buf[4096];
      ssize_t got = ::recv(fd_, buf, std::min(sizeof(buf), n - out.size()), 0);
      if (got <= 0) break;
      out.append(buf, static_cast<size_t>(got));
    }
    return out;
  }
  // Reads one frame: {opcode, payload}; opcode 0 when none arrived.
  std::pair<uint8_t, std::string> readFrame() {
    std::string len = read(4);
    if (len.size() < 4) return {0, ""};
    uint32_t n = 0;
    for (size_t i = 4; i-- > 0;) n = (n << 8) | static_cast<unsigned char>(len[i]);
    std::string body = read(n);
    if (body.size() < n || n == 0) return {0, ""};
    return {static_cast<uint8_t>(body[0]), body.substr(1)};
  }
  // True when the server closed the connection (EOF or reset) within 10 s.
  bool closedByServer() {
    Deadline deadline = Deadline::afterSeconds(10);
    while (!deadline.expired()) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, deadline.pollTimeoutMs()) <= 0) return false;
      char buf[4096];
      if (::recv(fd_, buf, sizeof(buf), 0) <= 0) return true;
    }
    return false;
  }

 private:
  int fd_ = -1;
};

class TcpStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = startTcpStoreServer("127.0.0.1", 0);
    ASSERT_TRUE(server.isOk()) << server.status();
    server_ = std::move(*server);
    client_ = connect();
    ASSERT_TRUE(client_->set("before", "intact").isOk());
  }

  std::shared_ptr<Store> connect() {
    auto s = connectTcpStore("127.0.0.1", server_->port(), Deadline::afterSeconds(30));
    if (!s.isOk()) throw std::runtime_error(s.status().toString());
    return *s;
  }

  // The server still serves: old and new clients see old data and can write new data.
  void expectServerHealthy() {
    EXPECT_EQ(client_->get("before", Deadline::afterSeconds(10)).valueOr("?"), "intact");
    auto fresh = connect();
    EXPECT_EQ(fresh->get("before", Deadline::afterSeconds(10)).valueOr("?"), "intact");
    EXPECT_EQ(fresh->add("health", 1).valueOr(-1), ++health_);
    EXPECT_EQ(client_->add("health", 0).valueOr(-1), health_);
  }

  // Waits until the server has `n` connections open (bounded).
  bool waitConnections(size_t n) {
    Deadline deadline = Deadline::afterSeconds(20);
    while (server_->numConnections() != n) {
      if (deadline.expired()) return false;
      std::this_thread::sleep_for(5ms);
    }
    return true;
  }

  std::unique_ptr<TcpStoreServer> server_;
  std::shared_ptr<Store> client_;
  int health_ = 0;
};

TEST_F(TcpStoreTest, ServerReportsItsAddressAndConnections) {
  EXPECT_NE(server_->port(), 0);
  EXPECT_EQ(server_->host(), "127.0.0.1");
  EXPECT_TRUE(waitConnections(1));
  {
    RawConn raw(server_->port());
    EXPECT_TRUE(waitConnections(2));
  }
  EXPECT_TRUE(waitConnections(1));
}

TEST_F(TcpStoreTest, SixtyFourClientsTimesAThousandOperations) {
  constexpr int kClients = 64;
  constexpr int kOps = 1000;  // per client: 500 shared adds, 250 own adds, 250 sets
  std::vector<std::shared_ptr<Store>> clients;
  for (int c = 0; c < kClients; ++c) clients.push_back(connect());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      Store& s = *clients[static_cast<size_t>(c)];
      std::string own = "client" + std::to_string(c);
      for (int i = 0; i < kOps; ++i) {
        bool ok = true;
        if (i % 2 == 0) {
          ok = s.add("total", 1).isOk();
        } else if (i % 4 == 1) {
          ok = s.add(own + "/adds", 1).isOk();
        } else {
          ok = s.set(own + "/last", std::to_string(i)).isOk();
        }
        if (!ok) failures++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(client_->add("total", 0).valueOr(-1), kClients * kOps / 2);
  for (int c = 0; c < kClients; ++c) {
    std::string own = "client" + std::to_string(c);
    EXPECT_EQ(client_->add(own + "/adds", 0).valueOr(-1), kOps / 4) << own;
    EXPECT_EQ(client_->get(own + "/last", Deadline::afterSeconds(10)).valueOr(""),
              std::to_string(kOps - 1))
        << own;
  }
}

TEST_F(TcpStoreTest, CompareSetRaceAcrossConnections) {
  constexpr int kClients = 16;
  constexpr int kRounds = 20;
  std::vector<std::shared_ptr<Store>> clients;
  for (int c = 0; c < kClients; ++c) clients.push_back(connect());
  for (int round = 0; round < kRounds; ++round) {
    std::string key = "leader" + std::to_string(round);
    std::vector<std::future<std::string>> results;
    for (int c = 0; c < kClients; ++c) {
      results.push_back(std::async(std::launch::async, [&, c] {
        return clients[static_cast<size_t>(c)]
            ->compareSet(key, "", "c" + std::to_string(c))
            .valueOr("error");
      }));
    }
    std::set<std::string> seen;
    for (auto& r : results) seen.insert(r.get());
    ASSERT_EQ(seen.size(), 1u) << key;
    EXPECT_NE(*seen.begin(), "error");
  }
}

TEST_F(TcpStoreTest, ManyThreadsShareOneClient) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        if (!client_->add("shared", 1).isOk()) failures++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(client_->add("shared", 0).valueOr(-1), 1600);
}

TEST_F(TcpStoreTest, ServerSideTimeoutKeepsTheConnectionInSync) {
  for (int i = 0; i < 3; ++i) {
    auto v = client_->get("never", Deadline::after(50ms));
    EXPECT_EQ(v.status().code(), StatusCode::kTimeout);
    EXPECT_TRUE(contains(v.status().message(), "'never'")) << v.status();
    EXPECT_TRUE(contains(v.status().message(),
                         "tcp://127.0.0.1:" + std::to_string(server_->port())))
        << v.status();
  }
  ASSERT_TRUE(client_->set("after", "x").isOk());
  EXPECT_EQ(client_->get("after", Deadline::afterSeconds(10)).valueOr(""), "x");
  EXPECT_TRUE(waitConnections(1)) << "timeouts must not leak or break connections";
}

TEST_F(TcpStoreTest, RawHelloAndPipelinedRequestsAreAnsweredInOrder) {
  RawConn raw(server_->port());
  // hello, SET, GET with timeout 0 of a missing key, GET of an existing key, in one write.
  raw.send(kHello + frame(kSet, bytes("p") + bytes("q")) +
           frame(kGet, le64(0) + bytes("nope")) + frame(kGet, le64(1000) + bytes("before")));
  auto hello = raw.readFrame();
  EXPECT_EQ(hello.first, kHelloOk);
  EXPECT_EQ(hello.second, le32(1));
  EXPECT_EQ(raw.readFrame().first, kOk);
  auto timeout = raw.readFrame();
  EXPECT_EQ(timeout.first, kTimeoutReply);
  EXPECT_EQ(timeout.second, le32(1) + bytes("nope"));
  auto value = raw.readFrame();
  EXPECT_EQ(value.first, kValue);
  EXPECT_EQ(value.second, bytes("intact"));
  EXPECT_EQ(client_->get("p", Deadline::afterSeconds(10)).valueOr(""), "q");
}

TEST_F(TcpStoreTest, ParkedGetIsAnsweredBeforeTheNextPipelinedRequest) {
  RawConn raw(server_->port());
  raw.send(kHello + frame(kGet, le64(60000) + bytes("later")) +
           frame(kGet, le64(0) + bytes("before")));
  EXPECT_EQ(raw.readFrame().first, kHelloOk);
  ASSERT_TRUE(client_->set("later", "now").isOk());
  auto first = raw.readFrame();
  EXPECT_EQ(first.first, kValue);
  EXPECT_EQ(first.second, bytes("now"));
  auto second = raw.readFrame();
  EXPECT_EQ(second.first, kValue);
  EXPECT_EQ(second.second, bytes("intact"));
}

struct BadInput {
  const char* name;
  std::string bytes;
  const char* error_mentions;  // nullptr: no ERROR reply expected (peer closes first)
};

class TcpStoreBadInputTest : public TcpStoreTest,
                             public ::testing::WithParamInterface<BadInput> {};

TEST_P(TcpStoreBadInputTest, ConnectionIsClosedAndOthersAreUnaffected) {
  const BadInput& bad = GetParam();
  // A client parked in a wait on another connection must not notice.
  std::shared_ptr<Store> waiter_client = connect();
  auto waiter = std::async(std::launch::async, [waiter_client] {
    return waiter_client->get("after-bad-input", Deadline::afterSeconds(60));
  });
  {
    RawConn raw(server_->port());
    raw.send(bad.bytes);
    if (bad.error_mentions != nullptr) {
      auto reply = raw.readFrame();
      if (bad.bytes.starts_with(kHello)) {
        EXPECT_EQ(reply.first, kHelloOk) << bad.name;
        reply = raw.readFrame();
      }
      EXPECT_EQ(reply.first, kError) << bad.name;
      EXPECT_TRUE(contains(reply.second, bad.error_mentions))
          << bad.name << ": " << reply.second;
      EXPECT_TRUE(raw.closedByServer()) << bad.name;
    }
  }
  expectServerHealthy();
  ASSERT_TRUE(client_->set("after-bad-input", "fine").isOk());
  ASSERT_EQ(waiter.wait_for(30s), std::future_status::ready);
  EXPECT_EQ(waiter.get().valueOr(""), "fine");
  // Left open: client_'s and waiter_client's connections.
  EXPECT_TRUE(waitConnections(2)) << "the bad connection must be closed";
}

INSTANTIATE_TEST_SUITE_P(
    Malformed, TcpStoreBadInputTest,
    ::testing::Values(
        BadInput{"Garbage", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "magic"},
        BadInput{"WrongMagic", le32(0xdeadbeef) + le32(1), "magic"},
        BadInput{"WrongVersion", le32(0x53544657) + le32(99), "version 99"},
        BadInput{"HugeLength", kHello + le32(0xffffffff) + "x", "4294967295"},
        BadInput{"JustOverTheCap", kHello + le32((64u << 20) + 1), "67108865"},
        BadInput{"ZeroLength", kHello + le32(0), "frame length 0"},
        BadInput{"UnknownOpcode", kHello + frame(0x7f, ""), "0x7f"},
        BadInput{"ReplyOpcodeAsRequest", kHello + frame(kOk, ""), "OK"},
        BadInput{"KeyLongerThanFrame", kHello + frame(kSet, le32(1000) + "abc"), "SET"},
        BadInput{"TrailingBytes", kHello + frame(kSet, bytes("k") + bytes("v") + "zz"),
                 "trailing"},
        BadInput{"WaitWithHugeKeyCount", kHello + frame(0x03, le64(0) + le32(0xffffff)),
                 "WAIT"},
        BadInput{"TruncatedFrameThenClose", kHello + le32(100) + "short", nullptr},
        BadInput{"TruncatedHelloThenClose", "WFT", nullptr},
        BadInput{"ParkedGetThenClose", kHello + frame(kGet, le64(60000) + bytes("zzz")),
                 nullptr}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST_F(TcpStoreTest, WrongVersionErrorNamesBothVersions) {
  RawConn raw(server_->port());
  raw.send(le32(0x53544657) + le32(7));
  auto reply = raw.readFrame();
  ASSERT_EQ(reply.first, kError);
  // {u8 code, u8 closing, bytes message}; code kNotSupported (2), closing 1.
  ASSERT_GE(reply.second.size(), 6u);
  EXPECT_EQ(static_cast<uint8_t>(reply.second[0]),
            static_cast<uint8_t>(StatusCode::kNotSupported));
  EXPECT_EQ(reply.second[1], 1);
  EXPECT_TRUE(contains(reply.second, "version 7")) << reply.second;
  EXPECT_TRUE(contains(reply.second, "version 1")) << reply.second;
}

TEST_F(TcpStoreTest, OversizedValueIsRejectedByTheClient) {
  std::string huge((64u << 20), 'x');
  Status st = client_->set("huge", huge);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st;
  EXPECT_TRUE(contains(st.message(), "frame limit")) << st;
  expectServerHealthy();
}

TEST_F(TcpStoreTest, LargeValueRoundTrips) {
  std::string big(8u << 20, '\0');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>(i / 4096);
  ASSERT_TRUE(client_->set("big", big).isOk());
  auto v = client_->get("big", Deadline::afterSeconds(30));
  ASSERT_TRUE(v.isOk()) << v.status();
  EXPECT_TRUE(*v == big);
}

TEST(TcpStoreConnect, NoServerFailsWithinTheDeadlineNamingHostPort) {
  uint16_t port = 0;
  {
    auto server = startTcpStoreServer("127.0.0.1", 0);
    ASSERT_TRUE(server.isOk()) << server.status();
    port = (*server)->port();
  }  // the port is now closed
  auto start = Deadline::Clock::now();
  auto s = connectTcpStore("127.0.0.1", port, Deadline::after(300ms));
  auto elapsed = Deadline::Clock::now() - start;
  ASSERT_FALSE(s.isOk());
  EXPECT_EQ(s.status().code(), StatusCode::kUnavailable);
  const std::string& msg = s.status().message();
  EXPECT_TRUE(contains(msg, "127.0.0.1:" + std::to_string(port))) << msg;
  EXPECT_TRUE(contains(msg, "WEFT_STORE_ADDR")) << msg;
  EXPECT_TRUE(contains(msg, "refused")) << msg;
  EXPECT_TRUE(contains(msg, "attempts")) << msg;
  EXPECT_GE(elapsed, 300ms) << "it retries until the deadline";
  EXPECT_LT(elapsed, 30s) << "and then gives up";
}

TEST(TcpStoreConnect, ConnectRetriesUntilTheServerComesUp) {
  // Reserve a port, free it, and start the server on it a little later.
  uint16_t port = 0;
  {
    auto probe = startTcpStoreServer("127.0.0.1", 0);
    ASSERT_TRUE(probe.isOk());
    port = (*probe)->port();
  }
  auto late = std::async(std::launch::async, [port] {
    std::this_thread::sleep_for(200ms);
    return startTcpStoreServer("127.0.0.1", port);
  });
  auto s = connectTcpStore("127.0.0.1", port, Deadline::afterSeconds(30));
  auto server = late.get();
  if (!server.isOk()) GTEST_SKIP() << "port was taken meanwhile: " << server.status();
  ASSERT_TRUE(s.isOk()) << s.status();
  EXPECT_EQ((*s)->add("x", 2).valueOr(0), 2);
}

TEST(TcpStoreConnect, ServerDestroyedWhileAClientWaitsGivesAnErrorNotAHang) {
  auto server = startTcpStoreServer("127.0.0.1", 0);
  ASSERT_TRUE(server.isOk()) << server.status();
  uint16_t port = (*server)->port();
  auto client = connectTcpStore("127.0.0.1", port, Deadline::afterSeconds(30));
  ASSERT_TRUE(client.isOk()) << client.status();
  std::shared_ptr<Store> store = *client;
  auto waiter = std::async(std::launch::async, [store] {
    return store->get("never-set", Deadline::afterSeconds(120));
  });
  std::this_thread::sleep_for(100ms);
  server.value().reset();
  ASSERT_EQ(waiter.wait_for(30s), std::future_status::ready) << "client hangs";
  auto v = waiter.get();
  ASSERT_FALSE(v.isOk());
  EXPECT_NE(v.status().code(), StatusCode::kTimeout) << v.status();
  EXPECT_TRUE(contains(v.status().message(), "127.0.0.1:" + std::to_string(port)))
      << v.status();
  // Later calls fail fast too.
  Status st = store->set("k", "v");
  EXPECT_TRUE(st.code() == StatusCode::kUnavailable || st.code() == StatusCode::kIoError) << st;
  EXPECT_TRUE(contains(st.message(), "127.0.0.1:" + std::to_string(port))) << st;
}

TEST(TcpStoreServer, BindErrorsNameTheAddress) {
  auto first = startTcpStoreServer("127.0.0.1", 0);
  ASSERT_TRUE(first.isOk());
  uint16_t port = (*first)->port();
  auto second = startTcpStoreServer("127.0.0.1", port);
  ASSERT_FALSE(second.isOk());
  EXPECT_TRUE(contains(second.status().message(), "127.0.0.1:" + std::to_string(port)))
      << second.status();
  auto bad = startTcpStoreServer("no-such-host.invalid", 0);
  ASSERT_FALSE(bad.isOk());
  EXPECT_TRUE(contains(bad.status().message(), "no-such-host.invalid")) << bad.status();
}

TEST(TcpStoreServer, AllInterfacesByDefault) {
  auto server = startTcpStoreServer("", 0);
  ASSERT_TRUE(server.isOk()) << server.status();
  EXPECT_EQ((*server)->host(), "0.0.0.0");
  auto s = connectTcpStore("127.0.0.1", (*server)->port(), Deadline::afterSeconds(30));
  ASSERT_TRUE(s.isOk()) << s.status();
  EXPECT_TRUE((*s)->set("k", "v").isOk());
}

}  // namespace
}  // namespace weft
