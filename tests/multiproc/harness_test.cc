// Tests of the multi-rank harness (tests/support/rank_harness.h): ranks really run as
// processes, share a store, and failing / crashing / hanging / orphaned ranks are reported
// (or cleaned up) the way the header promises.
//
// Scenarios that must make a test fail are run in a sub-process: this binary re-executed with
// WEFT_HARNESS_SELFTEST=<scenario>, which registers HarnessSelfTest.<scenario> (a test that
// is not registered in a normal run), and the outer test checks its exit status and output.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <thread>

#include "common/process.h"
#include "common/status.h"
#include "tests/support/rank_harness.h"

namespace weft::testing {
namespace {

std::string selfExe() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "/proc/self/exe";
}

// True when pid is gone or a zombie (the ranks of a killed parent are reparented to an init
// that may not reap them).
bool processGone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;
  size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z';
}

// Runs this binary's HarnessSelfTest.<scenario> in a sub-process.
Captured runScenario(const std::string& scenario, CaptureCallback on_line = {}) {
  SpawnOptions so;
  so.argv = {selfExe(), "--gtest_filter=HarnessSelfTest." + scenario};
  so.env = {{"WEFT_HARNESS_SELFTEST", scenario}};
  so.unset_env = {"WEFT_HARNESS_CHILD", "GTEST_OUTPUT", "GTEST_SHARD_INDEX", "GTEST_TOTAL_SHARDS",
                  "GTEST_FILTER"};
  auto result = runCaptured(so, Deadline::afterSeconds(60), std::move(on_line));
  EXPECT_TRUE(result.isOk()) << result.status();
  return result.isOk() ? *result : Captured{};
}

// --- scenarios (registered only in the sub-process) -------------------------------------------

// Rank 1 fails an expectation; rank 2 hangs and is stopped; rank 0 succeeds.
void failingRankScenario() {
  RankOptions opts;
  opts.failure_grace_s = 0.5;
  runRanks(
      3,
      [](RankEnv& env) {
        if (env.rank == 0) {
          ASSERT_TRUE(env.store->set("rank0-done", "1").isOk());
        } else if (env.rank == 1) {
          env.step("waiting for rank 0 to finish");  // so that it is not stopped too
          ASSERT_TRUE(env.store->get("rank0-done", env.deadline).isOk());
          env.step("checking");
          ADD_FAILURE() << "deliberate failure in rank 1";
        } else {
          env.step("hanging");
          ::pause();
        }
      },
      opts);
}

// Ranks print their pid and sleep; the outer test kills this process.
void orphanScenario() {
  runRanks(2, [](RankEnv& env) {
    std::printf("ready pid=%d\n", static_cast<int>(::getpid()));
    std::fflush(stdout);
    env.step("sleeping until the parent is killed");
    for (;;) ::pause();
  });
}

class ScenarioTest : public ::testing::Test {
 public:
  explicit ScenarioTest(void (*fn)()) : fn_(fn) {}
  void TestBody() override { fn_(); }

 private:
  void (*fn_)();
};

// Runs during static initialization (before main), hence getenv and not weft::config.
const bool kScenarioRegistered = [] {
  const char* which = std::getenv("WEFT_HARNESS_SELFTEST");
  if (!which) return false;
  std::string name = which;
  void (*fn)() = name == "FailingRank" ? failingRankScenario
                 : name == "Orphans"   ? orphanScenario
                                       : nullptr;
  if (!fn) return false;
  ::testing::RegisterTest("HarnessSelfTest", which, nullptr, nullptr, __FILE__, __LINE__,
                          [fn]() -> ::testing::Test* { return new ScenarioTest(fn); });
  return true;
}();

// --- tests --------------------------------------------------------------------------------------

TEST(RankHarness, FourRanksExchangeThroughStore) {
  auto results = runRanks(4, [](RankEnv& env) {
    ASSERT_EQ(env.size, 4);
    ASSERT_NE(env.store, nullptr);
    EXPECT_EQ(std::getenv("WEFT_RANK"), std::to_string(env.rank));
    env.step("publishing");
    ASSERT_TRUE(env.store->set(strCat("value/", env.rank), strCat("from-", env.rank)).isOk());
    env.step("reading the others");
    for (int r = 0; r < env.size; ++r) {
      auto v = env.store->get(strCat("value/", r), env.deadline);
      ASSERT_TRUE(v.isOk()) << v.status();
      EXPECT_EQ(*v, strCat("from-", r));
    }
    auto total = env.store->add("count", env.rank + 1);
    ASSERT_TRUE(total.isOk()) << total.status();
    ASSERT_TRUE(env.barrier("counted"));
    auto final_count = env.store->add("count", 0);
    ASSERT_TRUE(final_count.isOk());
    EXPECT_EQ(*final_count, 1 + 2 + 3 + 4);
  });
  ASSERT_EQ(results.size(), 4u);
  std::set<pid_t> pids;
  for (const auto& r : results) {
    EXPECT_TRUE(r.ok()) << r.describe(60);
    EXPECT_EQ(r.last_step, "passed barrier 'counted'") << "the last step of the body";
    pids.insert(r.pid);
  }
  EXPECT_EQ(pids.size(), 4u);
  EXPECT_EQ(pids.count(::getpid()), 0u);
}

TEST(RankHarness, FakeNodesSetNodeIdAndLocalRanks) {
  RankOptions opts;
  opts.node_ids = {"a", "a", "b"};
  auto results = runRanks(
      3,
      [](RankEnv& env) {
        const char* expected_node[] = {"a", "a", "b"};
        const char* expected_local[] = {"0", "1", "0"};
        const char* expected_local_size[] = {"2", "2", "1"};
        EXPECT_EQ(env.node_id, expected_node[env.rank]);
        EXPECT_STREQ(std::getenv("WEFT_NODE_ID"), expected_node[env.rank]);
        EXPECT_STREQ(std::getenv("WEFT_LOCAL_RANK"), expected_local[env.rank]);
        EXPECT_STREQ(std::getenv("WEFT_LOCAL_SIZE"), expected_local_size[env.rank]);
      },
      opts);
  for (const auto& r : results) EXPECT_TRUE(r.ok()) << r.describe(opts.timeout_s);
}

TEST(RankHarness, ExpectedDeathDoesNotFailOrStopTheOthers) {
  RankOptions opts;
  opts.may_fail = {1};
  auto results = runRanks(
      3,
      [](RankEnv& env) {
        ASSERT_TRUE(env.barrier("before the kill"));
        if (env.rank == 1) ::kill(::getpid(), SIGKILL);
        // The survivors keep using the store after rank 1 is gone.
        ASSERT_TRUE(env.store->set(strCat("alive/", env.rank), "1").isOk());
        int other = env.rank == 0 ? 2 : 0;
        EXPECT_TRUE(env.store->get(strCat("alive/", other), env.deadline).isOk());
      },
      opts);
  ASSERT_EQ(results.size(), 3u);
  EXPECT_TRUE(results[1].status.signaled);
  EXPECT_EQ(results[1].status.signal, SIGKILL);
  EXPECT_FALSE(results[1].stopped);
  EXPECT_TRUE(results[0].ok()) << results[0].describe(opts.timeout_s);
  EXPECT_TRUE(results[2].ok()) << results[2].describe(opts.timeout_s);
}

TEST(RankHarness, CrashIsReportedWithItsStepAndStopsTheOthers) {
  RankOptions opts;
  opts.report_failures = false;
  opts.failure_grace_s = 0.2;
  auto results = runRanks(
      3,
      [](RankEnv& env) {
        if (env.rank == 2) {
          rlimit no_core{0, 0};
          ::setrlimit(RLIMIT_CORE, &no_core);
          // Crash only once the others recorded their last step.
          ASSERT_TRUE(env.store->wait({"waiting/0", "waiting/1"}, env.deadline).isOk());
          env.step("about to crash");
          ::signal(SIGSEGV, SIG_DFL);  // sanitizers catch it otherwise
          ::raise(SIGSEGV);
        }
        env.step("waiting for a key nobody sets");
        ASSERT_TRUE(env.store->set(strCat("waiting/", env.rank), "1").isOk());
        (void)env.store->get("never-set", env.deadline);
      },
      opts);
  ASSERT_EQ(results.size(), 3u);
  EXPECT_TRUE(results[2].status.signaled);
  EXPECT_EQ(results[2].status.signal, SIGSEGV);
  std::string crash = results[2].describe(opts.timeout_s);
  EXPECT_TRUE(containsText(crash, strCat("rank 2 (pid ", results[2].pid, ")")));
  EXPECT_TRUE(containsText(crash,
                           "was killed by signal 11 (SIGSEGV) at step 'about to crash' "
                           "(tests/multiproc/harness_test.cc:"));
  for (int r : {0, 1}) {
    EXPECT_TRUE(results[r].stopped);
    EXPECT_EQ(results[r].stopped_after, 2);
    EXPECT_TRUE(containsText(results[r].describe(opts.timeout_s),
                             "was stopped after rank 2 failed; last step 'waiting for a key "
                             "nobody sets'"));
  }
}

TEST(RankHarness, HangIsReportedWithLastStep) {
  RankOptions opts;
  opts.report_failures = false;
  opts.timeout_s = 3;
  auto results = runRanks(
      2,
      [](RankEnv& env) {
        if (env.rank == 1) {
          env.step("waiting for barrier");
          ::pause();
        }
      },
      opts);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_TRUE(results[0].ok()) << results[0].describe(opts.timeout_s);
  EXPECT_TRUE(results[1].timed_out);
  EXPECT_TRUE(containsText(results[1].describe(opts.timeout_s),
                           "did not finish within 3 s; last step 'waiting for barrier' "
                           "(tests/multiproc/harness_test.cc:"));
}

TEST(RankHarness, RankThatNeverReachesRunRanksIsReported) {
  if (isRankProcess()) return;  // a test that takes another path in its rank processes
  RankOptions opts;
  opts.report_failures = false;
  auto results = runRanks(
      2, [](RankEnv&) {}, opts);
  ASSERT_EQ(results.size(), 2u);
  for (const auto& r : results) {
    EXPECT_TRUE(r.never_ran);
    EXPECT_FALSE(r.ok());
    EXPECT_TRUE(
        containsText(r.describe(opts.timeout_s), "exited with status 0 without reaching runRanks"));
  }
}

TEST(RankHarness, FailuresAreGtestFailuresNamingEachRank) {
  Captured run = runScenario("FailingRank");
  std::string all = run.out + run.err;
  EXPECT_EQ(run.status.toString(), "exited with status 1") << all;
  EXPECT_TRUE(containsText(all, "[rank 1] "));
  EXPECT_TRUE(containsText(all, "deliberate failure in rank 1"));
  EXPECT_TRUE(containsText(all,
                           "exited with status 1 at step 'checking' "
                           "(tests/multiproc/harness_test.cc:"));
  EXPECT_TRUE(containsText(all, "was stopped after rank 1 failed; last step 'hanging'"));
  EXPECT_FALSE(containsText(all, "rank 0 (pid")) << "rank 0 succeeded";
  EXPECT_TRUE(containsText(all, "[  FAILED  ] HarnessSelfTest.FailingRank"));
}

TEST(RankHarness, RanksDieWithTheirParent) {
  std::vector<pid_t> ranks;
  Captured run = runScenario("Orphans", [&](Process& p, bool, std::string_view line) {
    size_t at = line.find("ready pid=");
    if (at == std::string_view::npos) return;
    ranks.push_back(std::atoi(std::string(line.substr(at + 10)).c_str()));
    if (ranks.size() == 2) p.signal(SIGKILL).ignore();
  });
  ASSERT_EQ(ranks.size(), 2u) << run.out << run.err;
  EXPECT_TRUE(run.status.signaled);
  Deadline deadline = Deadline::afterSeconds(10);
  for (pid_t pid : ranks) {
    while (!processGone(pid) && !deadline.expired()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_TRUE(processGone(pid)) << "rank pid " << pid << " outlived its parent";
  }
}

class RankHarnessSizes : public ::testing::TestWithParam<int> {};

TEST_P(RankHarnessSizes, EveryRankRunsOnce) {
  const int n = GetParam();
  auto results = runRanks(n, [n](RankEnv& env) {
    EXPECT_EQ(env.size, n);
    ASSERT_TRUE(env.store->add("ran", 1).isOk());
    ASSERT_TRUE(env.barrier("all ran"));
    auto ran = env.store->add("ran", 0);
    ASSERT_TRUE(ran.isOk());
    EXPECT_EQ(*ran, n);
  });
  ASSERT_EQ(results.size(), static_cast<size_t>(n));
  for (const auto& r : results) EXPECT_TRUE(r.ok()) << r.describe(60);
}

INSTANTIATE_TEST_SUITE_P(Sizes, RankHarnessSizes, ::testing::Values(1, 3));

}  // namespace
}  // namespace weft::testing
