// Tests of weft-run (tools/weft_run.cc), run as a real program: rank environment and output
// prefixes, failure detection and clean-up (no process left behind), exit statuses, signals,
// --timeout, configuration errors, remote-shell commands, and a two-host job in network
// namespaces (skipped unless root with `ip netns`).
//
// Processes of one weft-run invocation are found through a marker variable
// (LAUNCHER_TEST_MARKER=<unique>) that every rank and its children inherit.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/process.h"
#include "common/status.h"
#include "tests/support/rank_harness.h"

namespace weft::testing {
namespace {

using Env = std::vector<std::pair<std::string, std::string>>;

const std::string kWeftRun = std::string(WEFT_BIN_DIR) + "/weft-run";
const std::string kWeftInfo = std::string(WEFT_BIN_DIR) + "/weft-info";

std::string newMarker() {
  static std::atomic<int> counter{0};
  return strCat("launcher-test-", ::getpid(), "-", ++counter);
}

// Runs weft-run with args; the marker variable is set for every run.
Captured weftRun(const std::vector<std::string>& args, const std::string& marker, Env env = {},
                 CaptureCallback on_line = {}, double timeout_s = 60) {
  SpawnOptions so;
  so.argv = {kWeftRun};
  so.argv.insert(so.argv.end(), args.begin(), args.end());
  so.env = std::move(env);
  so.env.emplace_back("LAUNCHER_TEST_MARKER", marker);
  // The defaults matter here, not the caller's environment.
  so.unset_env = {"WEFT_RUN_GRACE",  "WEFT_TIMEOUT",    "WEFT_RANK",
                  "WEFT_WORLD_SIZE", "WEFT_STORE_ADDR", "WEFT_HARNESS_CHILD"};
  auto result = runCaptured(so, Deadline::afterSeconds(timeout_s), std::move(on_line));
  EXPECT_TRUE(result.isOk()) << result.status();
  Captured c = result.isOk() ? *result : Captured{};
  EXPECT_FALSE(c.timed_out) << "weft-run did not finish within " << timeout_s << " s\n"
                            << c.out << c.err;
  return c;
}

// Live (non-zombie) processes whose environment holds the marker.
std::vector<pid_t> processesWithMarker(const std::string& marker) {
  std::vector<pid_t> found;
  std::string needle = "LAUNCHER_TEST_MARKER=" + marker;
  DIR* proc = ::opendir("/proc");
  if (!proc) return found;
  while (dirent* e = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    std::ifstream environ_file(strCat("/proc/", pid, "/environ"), std::ios::binary);
    std::string env((std::istreambuf_iterator<char>(environ_file)),
                    std::istreambuf_iterator<char>());
    // Match a whole entry: entries are NUL-separated.
    size_t at = env.find(needle);
    if (at != std::string::npos && (at == 0 || env[at - 1] == '\0') &&
        (at + needle.size() == env.size() || env[at + needle.size()] == '\0')) {
      found.push_back(static_cast<pid_t>(pid));
    }
  }
  ::closedir(proc);
  return found;
}

// Waits (bounded) until no process of the run is left; killed processes take a moment.
void expectNoProcessLeft(const std::string& marker) {
  Deadline deadline = Deadline::afterSeconds(5);
  std::vector<pid_t> left = processesWithMarker(marker);
  while (!left.empty() && !deadline.expired()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    left = processesWithMarker(marker);
  }
  std::string pids;
  for (pid_t p : left) pids += strCat(" ", p);
  EXPECT_TRUE(left.empty()) << "processes of the run still alive:" << pids;
}

// "[3] text" lines of stdout -> rank -> text.
std::map<int, std::vector<std::string>> linesByRank(const std::string& out) {
  std::map<int, std::vector<std::string>> by_rank;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() < 4 || line[0] != '[') continue;
    size_t close = line.find("] ");
    if (close == std::string::npos) continue;
    by_rank[std::atoi(line.substr(1, close - 1).c_str())].push_back(line.substr(close + 2));
  }
  return by_rank;
}

// weft-info --doctor on this host: the checks that must hold here pass, the UCX transport
// exchanges messages for real; a bad variable and an unreachable store are failures.
Captured doctor(Env env) {
  SpawnOptions so;
  so.argv = {kWeftInfo, "--doctor"};
  so.env = std::move(env);
  so.unset_env = {"WEFT_STORE_ADDR", "WEFT_TIMEOUT"};
  auto result = runCaptured(so, Deadline::afterSeconds(60));
  EXPECT_TRUE(result.isOk()) << result.status();
  return result.isOk() ? *result : Captured{};
}

TEST(Doctor, HealthyHostPassesAndTransportsExchangeMessages) {
  Captured c = doctor({});
  EXPECT_EQ(c.status.toString(), "exited with status 0") << c.out << c.err;
  EXPECT_TRUE(containsText(c.out, "[ ok ] WEFT_* variables")) << c.out;
  EXPECT_TRUE(containsText(c.out, "[ ok ] /dev/shm")) << c.out;
  EXPECT_TRUE(containsText(c.out, "locked memory")) << c.out;
#ifdef WEFT_HAVE_UCX
  EXPECT_TRUE(containsText(c.out, "[ ok ] transport ucx: 8 B and 1 MiB exchanged")) << c.out;
#endif
  EXPECT_FALSE(containsText(c.out, "[FAIL]")) << c.out;
}

TEST(Doctor, BadVariableAndUnreachableStoreFail) {
  Captured c = doctor(
      {{"WEFT_COLL_SHM", "maybe"}, {"WEFT_STORE_ADDR", "127.0.0.1:1"}, {"WEFT_TIMEOUT", "1"}});
  EXPECT_EQ(c.status.toString(), "exited with status 1") << c.out << c.err;
  EXPECT_TRUE(containsText(c.out, "[FAIL] WEFT_* variables: WEFT_COLL_SHM")) << c.out;
  EXPECT_TRUE(containsText(c.out, "[FAIL] store: ")) << c.out;
  EXPECT_TRUE(containsText(c.out, "127.0.0.1:1")) << c.out;
}

TEST(Launcher, EightRanksWhoami) {
  std::string marker = newMarker();
  Captured c = weftRun({"-n", "8", "--", kWeftInfo, "--whoami"}, marker);
  EXPECT_EQ(c.status.toString(), "exited with status 0") << c.out << c.err;
  auto by_rank = linesByRank(c.out);
  ASSERT_EQ(by_rank.size(), 8u) << c.out << c.err;
  for (const auto& [rank, lines] : by_rank) {
    ASSERT_EQ(lines.size(), 1u) << c.out;
    // The prefix and the rank the process bootstrapped as agree.
    EXPECT_EQ(lines[0].rfind(strCat("rank ", rank, "/8 "), 0), 0u) << lines[0];
  }
  EXPECT_EQ(by_rank.begin()->first, 0);
  EXPECT_EQ(by_rank.rbegin()->first, 7);
  expectNoProcessLeft(marker);
}

TEST(Launcher, EnvironmentOfRanks) {
  std::string marker = newMarker();
  Captured c = weftRun({"-n", "3", "--", "sh", "-c",
                        "echo $WEFT_RANK $WEFT_WORLD_SIZE $WEFT_LOCAL_RANK $WEFT_LOCAL_SIZE "
                        "${WEFT_STORE_ADDR%:*} ${WEFT_JOB_ID:+job}; printf 'no newline'"},
                       marker);
  EXPECT_TRUE(c.status.success()) << c.status.toString() << c.err;
  auto by_rank = linesByRank(c.out);
  ASSERT_EQ(by_rank.size(), 3u) << c.out;
  for (int r = 0; r < 3; ++r) {
    std::vector<std::string> expected = {strCat(r, " 3 ", r, " 3 127.0.0.1 job"), "no newline"};
    EXPECT_EQ(by_rank[r], expected) << c.out;
  }
}

TEST(Launcher, KilledRankIsNamedAndEveryProcessStops) {
  std::string marker = newMarker();
  auto start = Deadline::Clock::now();
  Captured c = weftRun({"-n", "4", "--", "sh", "-c",
                        "if [ $WEFT_RANK = 1 ]; then kill -9 $$; else sleep 30; fi; true"},
                       marker);
  double elapsed = std::chrono::duration<double>(Deadline::Clock::now() - start).count();
  EXPECT_EQ(c.status.toString(), "exited with status 137") << c.err;
  EXPECT_TRUE(containsText(c.err, "weft-run: rank 1 (pid "));
  EXPECT_TRUE(containsText(c.err, "was killed by signal 9 (SIGKILL)"));
  EXPECT_LT(elapsed, 5.0) << "weft-run must stop the job within 5 s of a rank's death";
  expectNoProcessLeft(marker);
}

TEST(Launcher, ExitStatusOfTheFailedRankPropagates) {
  std::string marker = newMarker();
  Captured c = weftRun(
      {"-n", "3", "--", "sh", "-c", "if [ $WEFT_RANK = 2 ]; then exit 7; fi; sleep 30; true"},
      marker, {{"WEFT_RUN_GRACE", "0.2"}});
  EXPECT_EQ(c.status.toString(), "exited with status 7") << c.err;
  EXPECT_TRUE(containsText(c.err, "rank 2 (pid "));
  EXPECT_TRUE(containsText(c.err, "exited with status 7"));
  EXPECT_TRUE(containsText(c.err, "stopping ranks still running: 0, 1"));
  expectNoProcessLeft(marker);
}

TEST(Launcher, SigtermIsForwardedToEveryRank) {
  std::string marker = newMarker();
  int ready = 0;
  Captured c = weftRun(
      {"-n", "3", "--", "sh", "-c", "trap 'echo term; exit 5' TERM; echo ready; sleep 30 & wait"},
      marker, {}, [&](Process& p, bool, std::string_view line) {
        if (line.find("] ready") != std::string_view::npos && ++ready == 3) {
          p.signal(SIGTERM).ignore();  // weft-run's own group: the ranks have theirs
        }
      });
  EXPECT_EQ(ready, 3) << c.out << c.err;
  EXPECT_EQ(c.status.toString(), "exited with status 143") << c.err;
  EXPECT_TRUE(containsText(c.err, "got SIGTERM: forwarding it to the 3 running ranks"));
  auto by_rank = linesByRank(c.out);
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(by_rank[r], (std::vector<std::string>{"ready", "term"})) << c.out;
  }
  expectNoProcessLeft(marker);
}

// weft-run blocks SIGTERM (it reads it from a signalfd): one that comes while thousands of
// ranks are still being started must stop the start, not wait for its end.
TEST(Launcher, SigtermWhileStartingStopsTheStart) {
  std::string marker = newMarker();
  // Rank 0 signals weft-run (its parent) as soon as it runs: long before rank 3999 starts.
  Captured c = weftRun({"-n", "4000", "--", "sh", "-c",
                        "if [ $WEFT_RANK = 0 ]; then kill -TERM $PPID; fi; sleep 30; true"},
                       marker);
  EXPECT_EQ(c.status.toString(), "exited with status 143") << c.err;
  EXPECT_TRUE(containsText(c.err, "got SIGTERM while starting the ranks (")) << c.err;
  expectNoProcessLeft(marker);
}

TEST(Launcher, NoRankOutlivesAKilledLauncher) {
  std::string marker = newMarker();
  int ready = 0;
  Captured c = weftRun({"-n", "3", "--", "sh", "-c", "echo ready; sleep 30; true"}, marker, {},
                       [&](Process& p, bool, std::string_view line) {
                         if (line.find("] ready") != std::string_view::npos && ++ready == 3) {
                           p.signal(SIGKILL).ignore();
                         }
                       });
  EXPECT_EQ(ready, 3) << c.out << c.err;
  EXPECT_EQ(c.status.toString(), "was killed by signal 9 (SIGKILL)");
  // The ranks (PR_SET_PDEATHSIG) and their sleeps (the group guard) die too.
  expectNoProcessLeft(marker);
}

TEST(Launcher, TimeoutStopsTheJob) {
  std::string marker = newMarker();
  Captured c = weftRun({"-n", "2", "--timeout", "0.5", "--", "sh", "-c", "sleep 30; true"}, marker);
  EXPECT_EQ(c.status.toString(), "exited with status 124") << c.err;
  EXPECT_TRUE(containsText(c.err, "timeout: 2 of 2 ranks still running after --timeout 0.5 s"));
  expectNoProcessLeft(marker);
}

TEST(Launcher, MalformedVariableIsAnErrorNamingIt) {
  std::string marker = newMarker();
  Captured c =
      weftRun({"-n", "2", "--", "sh", "-c", "echo started"}, marker, {{"WEFT_TIMEOUT", "-3"}});
  EXPECT_EQ(c.status.toString(), "exited with status 2") << c.err;
  EXPECT_TRUE(containsText(c.err, "WEFT_TIMEOUT"));
  EXPECT_TRUE(containsText(c.err, "-3"));
  EXPECT_FALSE(containsText(c.out, "started")) << "no rank may start";
}

TEST(Launcher, UsageErrorsAndHelp) {
  std::string marker = newMarker();
  Captured no_n = weftRun({"--", "true"}, marker);
  EXPECT_EQ(no_n.status.code, 2);
  EXPECT_TRUE(containsText(no_n.err, "-n N"));
  Captured bad_n = weftRun({"-n", "zero", "true"}, marker);
  EXPECT_EQ(bad_n.status.code, 2);
  EXPECT_TRUE(containsText(bad_n.err, "'zero'"));
  Captured missing = weftRun({"-n", "1", "--", "/nonexistent/program"}, marker);
  EXPECT_EQ(missing.status.code, 127);
  EXPECT_TRUE(containsText(missing.err, "/nonexistent/program"));
  Captured huge_n = weftRun({"-n", "100000000", "--", "true"}, marker);
  EXPECT_EQ(huge_n.status.code, 2);
  EXPECT_TRUE(containsText(huge_n.err, "at most 65536 ranks")) << huge_n.err;
  for (const char* addr : {"no-such-host.invalid", "127.0.0.1:5"}) {
    Captured bad_addr = weftRun({"-n", "2", "--store-addr", addr, "--", "sh", "-c",
                                 "echo started"}, marker);
    EXPECT_EQ(bad_addr.status.code, 2) << bad_addr.err;
    EXPECT_TRUE(containsText(bad_addr.err, strCat("--store-addr ", addr, " is not an address")))
        << bad_addr.err;
    EXPECT_FALSE(containsText(bad_addr.out, "started")) << "no rank may start";
  }
  Captured help = weftRun({"--help"}, marker);
  EXPECT_TRUE(help.status.success());
  for (const char* topic : {"--hosts", "--rsh", "{host}", "--store-addr", "--timeout", "--node-ids",
                            "WEFT_RUN_GRACE", "WEFT_NODE_ID", "SIGTERM"}) {
    EXPECT_TRUE(containsText(help.out, topic));
  }
}

TEST(Launcher, HostsRunThroughTheRemoteShellTemplate) {
  std::string marker = newMarker();
  const std::string show =
      "echo host=$FAKE_RSH_HOST node=$WEFT_NODE_ID local=$WEFT_LOCAL_RANK/$WEFT_LOCAL_SIZE "
      "store=${WEFT_STORE_ADDR%:*} \"$1\"";
  // {host} in the template.
  Captured a = weftRun({"--hosts", "nodeA:2,nodeB:1", "--rsh", "env FAKE_RSH_HOST={host}",
                        "--store-addr", "127.0.0.1", "--", "sh", "-c", show, "sh", "two words"},
                       marker);
  EXPECT_TRUE(a.status.success()) << a.status.toString() << a.err;
  auto by_rank = linesByRank(a.out);
  ASSERT_EQ(by_rank.size(), 3u) << a.out << a.err;
  EXPECT_EQ(by_rank[0][0], "host=nodeA node=nodeA local=0/2 store=127.0.0.1 two words");
  EXPECT_EQ(by_rank[1][0], "host=nodeA node=nodeA local=1/2 store=127.0.0.1 two words");
  EXPECT_EQ(by_rank[2][0], "host=nodeB node=nodeB local=0/1 store=127.0.0.1 two words");
  // Without {host}: the host is appended to the template.
  Captured b = weftRun(
      {"-n", "1", "--hosts", "nodeC", "--rsh", R"(sh -c 'export FAKE_RSH_HOST=$0; exec "$@"')",
       "--store-addr", "127.0.0.1", "--", "sh", "-c", show, "sh", "x"},
      marker);
  EXPECT_TRUE(b.status.success()) << b.status.toString() << b.err;
  EXPECT_TRUE(containsText(b.out, "[0] host=nodeC node=nodeC local=0/1 store=127.0.0.1 x"));
}

TEST(Launcher, LocalHostNamesRunWithoutTheRemoteShell) {
  std::string marker = newMarker();
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  Captured c = weftRun({"--hosts", strCat("localhost:1,", host, ":2"), "--rsh", "false", "--", "sh",
                        "-c", "echo node=$WEFT_NODE_ID local=$WEFT_LOCAL_RANK"},
                       marker);
  EXPECT_TRUE(c.status.success()) << c.status.toString() << c.err;
  auto by_rank = linesByRank(c.out);
  ASSERT_EQ(by_rank.size(), 3u) << c.out << c.err;
  EXPECT_EQ(by_rank[0][0], "node=localhost local=0");
  EXPECT_EQ(by_rank[2][0], strCat("node=", host, " local=1"));
}

TEST(Launcher, NodeIdsFakeNodesLocally) {
  std::string marker = newMarker();
  Captured c = weftRun({"-n", "4", "--node-ids", "n0:2,n1:2", "--", kWeftInfo, "--whoami"}, marker);
  EXPECT_TRUE(c.status.success()) << c.status.toString() << c.err;
  auto by_rank = linesByRank(c.out);
  ASSERT_EQ(by_rank.size(), 4u) << c.out << c.err;
  EXPECT_TRUE(containsText(by_rank[1][0], "local_rank 1/2 node n0 (index 0 of 2)"));
  EXPECT_TRUE(containsText(by_rank[2][0], "local_rank 0/2 node n1 (index 1 of 2)"));
}

// --- two hosts in network namespaces ----------------------------------------------------------

std::string sourceDir() {
  std::string file = __FILE__;
  return file.substr(0, file.rfind("/tests/multiproc/"));
}

// Serializes the namespace tests of concurrent test runs on this machine, and tears the
// namespaces down whatever happens.
class NetnsHosts {
 public:
  ~NetnsHosts() {
    if (up_) script("down").status().ignore();
    if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
  }

  // "" when the namespaces are up, else why not.
  std::string start() {
    lock_fd_ = ::open("/tmp/weft-netns-hosts.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    Deadline deadline = Deadline::afterSeconds(60);
    while (lock_fd_ >= 0 && ::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0 && !deadline.expired()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    up_ = true;
    auto r = script("up");
    if (!r.isOk()) return r.status().toString();
    if (!r->status.success()) return strCat("netns-hosts.sh up failed: ", r->err);
    return "";
  }

 private:
  static Result<Captured> script(const std::string& action) {
    SpawnOptions so;
    so.argv = {sourceDir() + "/scripts/netns-hosts.sh", action};
    return runCaptured(so, Deadline::afterSeconds(30));
  }
  int lock_fd_ = -1;
  bool up_ = false;
};

TEST(LauncherNetns, TwoHostsInNamespaces) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to create network namespaces";
  SpawnOptions probe;
  probe.argv = {"ip", "netns", "list"};
  auto ip = runCaptured(probe, Deadline::afterSeconds(10));
  if (!ip.isOk() || !ip->status.success()) {
    GTEST_SKIP() << "`ip netns` is unavailable: " << (ip.isOk() ? ip->err : ip.status().toString());
  }
  NetnsHosts hosts;
  std::string why = hosts.start();
  if (!why.empty()) GTEST_SKIP() << "cannot create the namespaces: " << why;
  std::string marker = newMarker();
  Captured c = weftRun({"-n", "4", "--hosts", "weftA:2,weftB:2", "--rsh", "ip netns exec {host}",
                        "--store-addr", "10.201.0.1", "--", kWeftInfo, "--whoami"},
                       marker);
  EXPECT_TRUE(c.status.success()) << c.status.toString() << c.out << c.err;
  auto by_rank = linesByRank(c.out);
  ASSERT_EQ(by_rank.size(), 4u) << c.out << c.err;
  EXPECT_TRUE(containsText(by_rank[0][0], "rank 0/4 local_rank 0/2 node weftA (index 0 of 2)"));
  EXPECT_TRUE(containsText(by_rank[1][0], "rank 1/4 local_rank 1/2 node weftA (index 0 of 2)"));
  EXPECT_TRUE(containsText(by_rank[2][0], "rank 2/4 local_rank 0/2 node weftB (index 1 of 2)"));
  EXPECT_TRUE(containsText(by_rank[3][0], "rank 3/4 local_rank 1/2 node weftB (index 1 of 2)"));
  expectNoProcessLeft(marker);
}

}  // namespace
}  // namespace weft::testing
