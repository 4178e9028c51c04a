// Store semantics, run on every store kind (hash, file, tcp, prefix over hash), plus
// FileStore across processes and store address parsing.
#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
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

// The message quotes the key, possibly behind a PrefixStore's "ns/".
bool namesKey(const std::string& message, const std::string& key) {
  return contains(message, "'" + key + "'") || contains(message, "'ns/" + key + "'");
}

// A fresh temporary directory, removed at the end of the scope.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "weft_store_XXXXXX").string();
    char* made = ::mkdtemp(tmpl.data());
    if (made == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// One store of a given kind plus whatever keeps it alive (server, directory).
struct StoreEnv {
  std::unique_ptr<TcpStoreServer> server;
  std::unique_ptr<TempDir> dir;
  std::shared_ptr<Store> base;
  std::shared_ptr<Store> store;
};

StoreEnv makeStore(const std::string& kind) {
  StoreEnv env;
  if (kind == "hash") {
    env.store = makeHashStore();
  } else if (kind == "file") {
    env.dir = std::make_unique<TempDir>();
    auto s = makeFileStore(env.dir->path() + "/store");
    if (!s.isOk()) throw std::runtime_error(s.status().toString());
    env.store = *s;
  } else if (kind == "tcp") {
    auto server = startTcpStoreServer("127.0.0.1", 0);
    if (!server.isOk()) throw std::runtime_error(server.status().toString());
    env.server = std::move(*server);
    auto s = connectTcpStore("127.0.0.1", env.server->port(), Deadline::afterSeconds(30));
    if (!s.isOk()) throw std::runtime_error(s.status().toString());
    env.store = *s;
  } else {
    env.base = makeHashStore();
    env.store = makePrefixStore("ns", env.base);
  }
  return env;
}

class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { env_ = makeStore(GetParam()); }
  Store& store() { return *env_.store; }
  StoreEnv env_;
};

TEST_P(StoreTest, SetThenGetReturnsTheValueBinarySafe) {
  std::string binary("a\0b\xff\n", 5);
  ASSERT_TRUE(store().set("k", binary).isOk());
  ASSERT_TRUE(store().set("empty", "").isOk());
  auto v = store().get("k", Deadline::afterSeconds(10));
  ASSERT_TRUE(v.isOk()) << v.status();
  EXPECT_EQ(*v, binary);
  auto e = store().get("empty", Deadline::afterSeconds(10));
  ASSERT_TRUE(e.isOk()) << e.status();
  EXPECT_EQ(*e, "");
}

TEST_P(StoreTest, SetOverwrites) {
  ASSERT_TRUE(store().set("k", "one").isOk());
  ASSERT_TRUE(store().set("k", "two").isOk());
  EXPECT_EQ(store().get("k", Deadline::afterSeconds(10)).valueOr(""), "two");
}

TEST_P(StoreTest, GetWaitsForALaterSet) {
  auto setter = std::async(std::launch::async, [this] {
    std::this_thread::sleep_for(50ms);
    return store().set("late", "here");
  });
  auto v = store().get("late", Deadline::afterSeconds(30));
  ASSERT_TRUE(v.isOk()) << v.status();
  EXPECT_EQ(*v, "here");
  EXPECT_TRUE(setter.get().isOk());
}

TEST_P(StoreTest, GetTimesOutNamingTheKeyAndTheStore) {
  auto v = store().get("missing-key", Deadline::after(100ms));
  ASSERT_FALSE(v.isOk());
  EXPECT_EQ(v.status().code(), StatusCode::kTimeout);
  EXPECT_TRUE(namesKey(v.status().message(), "missing-key")) << v.status();
  EXPECT_TRUE(contains(v.status().message(), store().describe())) << v.status();
  // The store is still usable after a timeout.
  ASSERT_TRUE(store().set("missing-key", "now").isOk());
  EXPECT_EQ(store().get("missing-key", Deadline::afterSeconds(10)).valueOr(""), "now");
}

TEST_P(StoreTest, GetWithAnExpiredDeadlineStillReturnsAnExistingKey) {
  ASSERT_TRUE(store().set("k", "v").isOk());
  EXPECT_EQ(store().get("k", Deadline::afterSeconds(0)).valueOr("?"), "v");
}

TEST_P(StoreTest, WaitReturnsWhenEveryKeyExistsAndNamesOnlyTheMissingOnes) {
  ASSERT_TRUE(store().set("a", "1").isOk());
  ASSERT_TRUE(store().set("b", "2").isOk());
  EXPECT_TRUE(store().wait({"a", "b"}, Deadline::afterSeconds(10)).isOk());
  EXPECT_TRUE(store().wait({}, Deadline::afterSeconds(0)).isOk());
  Status st = store().wait({"a", "c", "b", "d"}, Deadline::after(100ms));
  ASSERT_EQ(st.code(), StatusCode::kTimeout) << st;
  EXPECT_TRUE(namesKey(st.message(), "c")) << st;
  EXPECT_TRUE(namesKey(st.message(), "d")) << st;
  EXPECT_FALSE(namesKey(st.message(), "a")) << st;
  EXPECT_FALSE(namesKey(st.message(), "b")) << st;
  EXPECT_TRUE(contains(st.message(), store().describe())) << st;
}

TEST_P(StoreTest, WaitWakesWhenTheLastKeyArrives) {
  auto setter = std::async(std::launch::async, [this] {
    Status st = store().set("w1", "x");
    std::this_thread::sleep_for(30ms);
    if (st.isOk()) st = store().set("w2", "y");
    return st;
  });
  EXPECT_TRUE(store().wait({"w1", "w2"}, Deadline::afterSeconds(30)).isOk());
  EXPECT_TRUE(setter.get().isOk());
}

TEST_P(StoreTest, AddCountsFromZeroAndReturnsTheNewValue) {
  EXPECT_EQ(store().add("n", 5).valueOr(-1), 5);
  EXPECT_EQ(store().add("n", -7).valueOr(-1), -2);
  EXPECT_EQ(store().add("n", 0).valueOr(-1), -2);
  EXPECT_EQ(store().get("n", Deadline::afterSeconds(10)).valueOr(""), "-2");
  ASSERT_TRUE(store().set("m", "40").isOk());
  EXPECT_EQ(store().add("m", 2).valueOr(-1), 42);
  // add makes the key exist, so it wakes waiters.
  EXPECT_TRUE(store().wait({"n", "m"}, Deadline::afterSeconds(10)).isOk());
}

TEST_P(StoreTest, AddOnANonIntegerValueIsInvalidArgumentAndTheStoreGoesOn) {
  ASSERT_TRUE(store().set("s", "hello").isOk());
  auto r = store().add("s", 1);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(namesKey(r.status().message(), "s")) << r.status();
  EXPECT_EQ(store().get("s", Deadline::afterSeconds(10)).valueOr(""), "hello");
  for (const char* bad : {"1.5", " 1", "+1", "0x10", "99999999999999999999"}) {
    ASSERT_TRUE(store().set("s", bad).isOk());
    EXPECT_EQ(store().add("s", 1).status().code(), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(store().add("ok", 1).valueOr(-1), 1);
}

TEST_P(StoreTest, AddOverflowIsInvalidArgument) {
  ASSERT_TRUE(store().set("big", "9223372036854775807").isOk());
  EXPECT_EQ(store().add("big", 1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store().add("big", -1).valueOr(0), 9223372036854775806);
}

TEST_P(StoreTest, CompareSetSemantics) {
  // Missing key equals "": sets.
  EXPECT_EQ(store().compareSet("c", "", "first").valueOr("?"), "first");
  // Mismatch: returns the current value, changes nothing.
  EXPECT_EQ(store().compareSet("c", "wrong", "second").valueOr("?"), "first");
  EXPECT_EQ(store().get("c", Deadline::afterSeconds(10)).valueOr(""), "first");
  // Match: sets.
  EXPECT_EQ(store().compareSet("c", "first", "second").valueOr("?"), "second");
  EXPECT_EQ(store().get("c", Deadline::afterSeconds(10)).valueOr(""), "second");
  // Missing key with a non-empty expectation: returns "" and the key stays missing.
  EXPECT_EQ(store().compareSet("absent", "x", "y").valueOr("?"), "");
  EXPECT_FALSE(store().check("absent").valueOr(true));
}

TEST_P(StoreTest, EraseAndCheck) {
  EXPECT_FALSE(store().check("e").valueOr(true));
  EXPECT_FALSE(store().erase("e").valueOr(true));
  ASSERT_TRUE(store().set("e", "v").isOk());
  EXPECT_TRUE(store().check("e").valueOr(false));
  EXPECT_TRUE(store().erase("e").valueOr(false));
  EXPECT_FALSE(store().check("e").valueOr(true));
  EXPECT_FALSE(store().erase("e").valueOr(true));
  EXPECT_EQ(store().get("e", Deadline::after(50ms)).status().code(), StatusCode::kTimeout);
}

TEST_P(StoreTest, KeysWithAnyBytesAreDistinct) {
  std::vector<std::string> keys = {"plain", "a/b", "a%2Fb", "a_b", "..", ".", "", "../escape",
                                   std::string("nul\0x", 5), "\xff\xfe", "sp ace",
                                   std::string(1000, 'L'), std::string(1000, 'L') + "x"};
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_TRUE(store().set(keys[i], "value" + std::to_string(i)).isOk()) << i;
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(store().get(keys[i], Deadline::afterSeconds(10)).valueOr("?"),
              "value" + std::to_string(i))
        << i;
    EXPECT_TRUE(store().check(keys[i]).valueOr(false)) << i;
  }
}

TEST_P(StoreTest, ConcurrentAddsAreExact) {
  constexpr int kThreads = 8;
  constexpr int kAdds = 200;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kAdds; ++i) {
        if (!store().add("counter", 1).isOk()) failures++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(store().add("counter", 0).valueOr(-1), kThreads * kAdds);
}

TEST_P(StoreTest, CompareSetRaceHasExactlyOneWinner) {
  constexpr int kThreads = 8;
  std::vector<std::future<std::string>> results;
  for (int t = 0; t < kThreads; ++t) {
    results.push_back(std::async(std::launch::async, [this, t] {
      return store().compareSet("leader", "", "rank" + std::to_string(t)).valueOr("error");
    }));
  }
  std::set<std::string> seen;
  for (auto& r : results) seen.insert(r.get());
  ASSERT_EQ(seen.size(), 1u) << "every caller must see the single winner";
  std::string winner = *seen.begin();
  EXPECT_TRUE(winner.starts_with("rank")) << winner;
  EXPECT_EQ(store().get("leader", Deadline::afterSeconds(10)).valueOr(""), winner);
}

// A thread blocked in get() must not block the set() that wakes it, even through the same
// Store object.
TEST_P(StoreTest, GetBlockedInOneThreadIsWokenBySetFromAnother) {
  auto getter = std::async(std::launch::async, [this] {
    return store().get("wake", Deadline::afterSeconds(30));
  });
  std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(store().set("wake", "up").isOk());
  ASSERT_EQ(getter.wait_for(30s), std::future_status::ready);
  EXPECT_EQ(getter.get().valueOr(""), "up");
}

TEST_P(StoreTest, DescribeNamesTheKind) {
  std::string d = store().describe();
  const std::string& kind = GetParam();
  if (kind == "hash") {
    EXPECT_EQ(d, "hash");
  } else if (kind == "file") {
    EXPECT_TRUE(d.starts_with("file:/")) << d;
  } else if (kind == "tcp") {
    EXPECT_EQ(d, "tcp://127.0.0.1:" + std::to_string(env_.server->port()));
  } else {
    EXPECT_EQ(d, "prefix/ns/hash");
  }
}

INSTANTIATE_TEST_SUITE_P(AllKinds, StoreTest,
                         ::testing::Values("hash", "file", "tcp", "prefix"),
                         [](const auto& param_info) { return param_info.param; });

TEST(PrefixStore, NamespacesKeysInTheBaseStore) {
  auto base = makeHashStore();
  auto a = makePrefixStore("a", base);
  auto b = makePrefixStore("b", base);
  ASSERT_TRUE(a->set("k", "in-a").isOk());
  ASSERT_TRUE(b->set("k", "in-b").isOk());
  EXPECT_EQ(base->get("a/k", Deadline::afterSeconds(1)).valueOr(""), "in-a");
  EXPECT_EQ(base->get("b/k", Deadline::afterSeconds(1)).valueOr(""), "in-b");
  EXPECT_FALSE(base->check("k").valueOr(true));
  EXPECT_EQ(a->add("n", 3).valueOr(0), 3);
  EXPECT_EQ(base->add("a/n", 1).valueOr(0), 4);
  auto nested = makePrefixStore("inner", a);
  ASSERT_TRUE(nested->set("x", "1").isOk());
  EXPECT_TRUE(base->check("a/inner/x").valueOr(false));
  EXPECT_EQ(nested->describe(), "prefix/inner/prefix/a/hash");
  Status st = a->wait({"k", "nope"}, Deadline::after(20ms));
  EXPECT_EQ(st.code(), StatusCode::kTimeout);
  EXPECT_TRUE(contains(st.message(), "'a/nope'")) << st;
}

TEST(FileStore, FileNamesStayInsideTheDirectory) {
  TempDir dir;
  std::string path = dir.path() + "/s";
  auto store = makeFileStore(path);
  ASSERT_TRUE(store.isOk()) << store.status();
  for (const std::string& key :
       std::vector<std::string>{"../up", "/abs", "a/b/c", "..", std::string(300, '%')}) {
    ASSERT_TRUE((*store)->set(key, "v").isOk()) << key;
  }
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    EXPECT_EQ(entry.path().filename(), "s");
    files++;
  }
  EXPECT_EQ(files, 1u);
  size_t keys = 0;
  for (const auto& entry : std::filesystem::directory_iterator(path)) {
    std::string name = entry.path().filename().string();
    EXPECT_TRUE(entry.is_regular_file()) << name;
    EXPECT_LE(name.size(), 255u);
    if (name != ".lock") keys++;
  }
  EXPECT_EQ(keys, 5u);
}

TEST(FileStore, UnwritableDirectoryFailsWithAnIoError) {
  auto store = makeFileStore("/proc/weft-cannot-create-this");
  ASSERT_FALSE(store.isOk());
  EXPECT_TRUE(contains(store.status().message(), "/proc/weft-cannot-create-this"))
      << store.status();
  EXPECT_EQ(makeFileStore("").status().code(), StatusCode::kInvalidArgument);
}

TEST(FileStore, TwoProcessesAddingToOneCounterGiveExactTotals) {
  TempDir dir;
  std::string path = dir.path() + "/s";
  constexpr int kAdds = 300;
  auto parent_store = makeFileStore(path);
  ASSERT_TRUE(parent_store.isOk()) << parent_store.status();
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Child: its own store object on the same directory; exit code reports failures.
    auto s = makeFileStore(path);
    int bad = s.isOk() ? 0 : 1;
    for (int i = 0; s.isOk() && i < kAdds; ++i) {
      if (!(*s)->add("counter", 1).isOk()) bad = 1;
      if (!(*s)->compareSet("owner", "", "child").isOk()) bad = 1;
    }
    if (s.isOk() && !(*s)->set("child-done", "1").isOk()) bad = 1;
    ::_exit(bad);
  }
  Store& s = **parent_store;
  for (int i = 0; i < kAdds; ++i) {
    ASSERT_TRUE(s.add("counter", 1).isOk());
    ASSERT_TRUE(s.compareSet("owner", "", "parent").isOk());
  }
  EXPECT_TRUE(s.get("child-done", Deadline::afterSeconds(60)).isOk());
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(s.add("counter", 0).valueOr(-1), 2 * kAdds);
  std::string owner = s.get("owner", Deadline::afterSeconds(1)).valueOr("");
  EXPECT_TRUE(owner == "parent" || owner == "child") << owner;
}

TEST(ConnectStore, MalformedAddressesAreInvalidArgumentNamingTheAddress) {
  for (std::string bad : std::vector<std::string>{"", "nohost", "host:", "host:abc", "host:70000", "host:0", ":123",
                          "[::1", "[::1]123", "[]:5", "::1:5", "file:", "http://x:1",
                          "host:12x"}) {
    auto s = connectStore(bad, Deadline::afterSeconds(1));
    ASSERT_FALSE(s.isOk()) << bad;
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument) << bad << ": " << s.status();
    EXPECT_TRUE(contains(s.status().message(), "'" + bad + "'")) << s.status();
    EXPECT_TRUE(contains(s.status().message(), "host:port")) << s.status();
  }
}

TEST(ConnectStore, OpensFileAndTcpStores) {
  TempDir dir;
  auto f = connectStore("file:" + dir.path() + "/fs", Deadline::afterSeconds(5));
  ASSERT_TRUE(f.isOk()) << f.status();
  EXPECT_EQ((*f)->describe(), "file:" + dir.path() + "/fs");

  auto server = startTcpStoreServer("127.0.0.1", 0);
  ASSERT_TRUE(server.isOk()) << server.status();
  std::string port = std::to_string((*server)->port());
  auto t1 = connectStore("127.0.0.1:" + port, Deadline::afterSeconds(10));
  ASSERT_TRUE(t1.isOk()) << t1.status();
  auto t2 = connectStore("tcp://localhost:" + port, Deadline::afterSeconds(10));
  ASSERT_TRUE(t2.isOk()) << t2.status();
  ASSERT_TRUE((*t1)->set("shared", "yes").isOk());
  EXPECT_EQ((*t2)->get("shared", Deadline::afterSeconds(10)).valueOr(""), "yes");
}

TEST(ConnectStore, Ipv6LiteralInBrackets) {
  auto server = startTcpStoreServer("::1", 0);
  if (!server.isOk()) GTEST_SKIP() << "no IPv6 loopback here: " << server.status();
  EXPECT_EQ((*server)->host(), "::1");
  auto s = connectStore("[::1]:" + std::to_string((*server)->port()), Deadline::afterSeconds(10));
  ASSERT_TRUE(s.isOk()) << s.status();
  EXPECT_EQ((*s)->describe(), "tcp://[::1]:" + std::to_string((*server)->port()));
  ASSERT_TRUE((*s)->set("v6", "ok").isOk());
  EXPECT_EQ((*s)->get("v6", Deadline::afterSeconds(10)).valueOr(""), "ok");
}

}  // namespace
}  // namespace weft
