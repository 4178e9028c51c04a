// Multi-rank tests: runs a test body in N real processes ("ranks") that share a TCP store.
//
//   TEST(Allreduce, FourRanks) {
//     weft::testing::runRanks(4, [](weft::testing::RankEnv& env) {
//       env.step("publishing my address");
//       ASSERT_TRUE(env.store->set(weft::strCat("addr/", env.rank), "...").isOk());
//       env.step("waiting for barrier");
//       env.barrier("ready");
//       ...
//     });
//   }
//
// How: the calling test process (the parent) starts a TcpStoreServer on 127.0.0.1, then
// re-executes its own binary (/proc/self/exe) N times with --gtest_filter=<this test's full
// name> and WEFT_RANK, WEFT_WORLD_SIZE, WEFT_LOCAL_RANK, WEFT_LOCAL_SIZE, WEFT_STORE_ADDR,
// WEFT_JOB_ID, WEFT_NODE_ID (when RankOptions::node_ids gives one) and WEFT_HARNESS_CHILD=1.
// In a rank process runRanks() connects to the store, runs `body` for its own rank only, and
// exits 0, or 1 when the test recorded a failure (gtest assertions work as usual in body; an
// exception escaping body is a failure). It never returns there.
//
// The parent prefixes the ranks' output lines with "[rank R] ", waits for them until
// RankOptions::timeout_s, and adds one gtest failure per rank that did not succeed:
//   rank 1 (pid 4242) exited with status 1 at step 'checking result' (tests/x.cc:40)
//   rank 3 (pid 4244) was killed by signal 11 (SIGSEGV) at step 'reduce' (tests/x.cc:42)
//   rank 2 (pid 4243) did not finish within 30 s; last step 'waiting for barrier' (tests/x.cc:44)
// When a rank fails (and is not in RankOptions::may_fail), the others get
// RankOptions::failure_grace_s to finish, and are then killed (reported as "stopped after
// rank 1 failed"). All ranks are killed before runRanks returns; they also die when the
// parent dies (PR_SET_PDEATHSIG, and a GroupGuard for whatever they started).
//
// Rules:
//   - One runRanks() call per test (a rank re-runs the test from its start up to that call,
//     so code before it runs in every rank too: keep it cheap and deterministic). A second
//     call is reported as a failure.
//   - Call it from the test's main thread.
//   - Parameterized and typed tests work: the filter is the full name of the current test.
//
// Thread safety: RankEnv::step may be called from any thread of the rank.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <source_location>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/deadline.h"
#include "common/process.h"
#include "common/store/store.h"

namespace weft::testing {

class StepBoard;

// What a rank's body gets.
class RankEnv {
 public:
  int rank = 0;
  int size = 0;
  std::string node_id;                    // RankOptions::node_ids[rank], or "" when not faked
  std::shared_ptr<Store> store;           // connected to the parent's TcpStoreServer
  // The test's deadline (use it for blocking calls): RankOptions::timeout_s less 10 % (at
  // most 5 s), so that a call blocked until then fails and is reported before the harness
  // kills the ranks.
  Deadline deadline = Deadline::never();

  // Records where this rank is; a failure or hang report quotes the last step and where it
  // was recorded. Cheap (a write to shared memory).
  void step(std::string_view what, std::source_location where = std::source_location::current());
  // Waits until every rank called barrier(name) (through the store); ADD_FAILURE and returns
  // false at the deadline. Records the steps "waiting in barrier 'name'" and, once through,
  // "passed barrier 'name'".
  bool barrier(std::string_view name);

 private:
  friend class RankRunner;
  StepBoard* board_ = nullptr;
};

struct RankOptions {
  // Deadline for the whole run; ranks still running then are killed and reported.
  double timeout_s = 60;
  // Per-rank WEFT_NODE_ID (fakes nodes: {"a","a","b","b"}); empty: all ranks on one node.
  std::vector<std::string> node_ids;
  // Extra environment for every rank.
  std::vector<std::pair<std::string, std::string>> env;
  // Ranks expected to fail or die (kill tests): their end is not reported as a failure and
  // does not stop the others.
  std::set<int> may_fail;
  // false: report nothing, the caller checks the returned results.
  bool report_failures = true;
  // After an unexpected failure, how long the others may keep running before being killed.
  double failure_grace_s = 2;
};

struct RankResult {
  int rank = 0;
  pid_t pid = -1;
  ExitStatus status;            // how the process ended (after a kill: the signal)
  bool timed_out = false;       // still running at the deadline, then killed
  bool stopped = false;         // killed by the harness after another rank failed
  int stopped_after = -1;       // the rank whose failure made the harness stop this one
  std::string last_step;        // "waiting for barrier"; "" if none recorded
  std::string last_step_where;  // "tests/x.cc:42"

  bool never_ran = false;  // exited 0 without reaching runRanks (the test took another path)

  bool ok() const { return !timed_out && !stopped && !never_ran && status.success(); }
  // One line as in the header comment ("rank 2 (pid N) did not finish within 30 s; ...").
  std::string describe(double timeout_s) const;
};

// Runs body in n rank processes (see above) and returns one result per rank, in rank order.
// In a rank process it does not return.
std::vector<RankResult> runRanks(int n, std::function<void(RankEnv&)> body, RankOptions opts = {});

// True in a rank process started by runRanks.
bool isRankProcess();

// For EXPECT_TRUE(containsText(output, "rank 1 (pid")): on failure prints the text searched.
::testing::AssertionResult containsText(std::string_view text, std::string_view part);

}  // namespace weft::testing
