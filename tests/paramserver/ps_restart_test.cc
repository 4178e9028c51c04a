// Checkpoint and restart: weft-ps-server (a real process) is checkpointed, updated further,
// killed with SIGKILL; the worker gets an error naming it; a new weft-ps-server restored
// from the checkpoint serves exactly the checkpointed rows (values and optimizer state).
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <numeric>
#include <thread>

#include "common/process.h"
#include "tests/paramserver/ps_test_support.h"

namespace weft::ps::testing {
namespace {

using weft::testing::RankEnv;
using weft::testing::RankOptions;
using weft::testing::runRanks;

constexpr uint32_t kDim = 8;

std::unique_ptr<Process> spawnServer(const std::string& root, int rank, const std::string& restore) {
  SpawnOptions so;
  so.argv = {std::string(WEFT_BIN_DIR) + "/weft-ps-server", "--server-id", "0", "--servers", "1",
             "--rank", std::to_string(rank), "--ns", "ck", "--checkpoint-root", root};
  if (!restore.empty()) {
    so.argv.push_back("--restore");
    so.argv.push_back(restore);
  }
  so.capture_stdout = false;
  so.capture_stderr = false;
  return must(Process::spawn(so), "spawning weft-ps-server");
}

void supervisor(RankEnv& env, const std::string& root) {
  env.step("running the first server");
  auto first = spawnServer(root, 10, "");
  must(env.store->get("checkpointed", env.deadline).status(), "waiting for the checkpoint");
  must(first->signal(SIGKILL), "kill");
  const ExitStatus st = must(first->wait(env.deadline), "reaping the server");
  EXPECT_TRUE(st.signaled);
  must(env.store->set("killed", "1"), "store");
  must(env.store->get("error-seen", env.deadline).status(), "waiting for the worker");
  env.step("running the restored server");
  auto second = spawnServer(root, 12, root + "/ck1/server-0");
  while (must(env.store->get("ck/server/0", env.deadline), "store") != "12") {
    ASSERT_FALSE(env.deadline.expired());
    usleep(10000);
  }
  must(env.store->set("restarted", "1"), "store");
  must(env.store->get("verified", env.deadline).status(), "waiting for the worker");
  must(env.store->set("ck/shutdown", "1"), "store");
  const ExitStatus end = must(second->wait(env.deadline), "stopping the server");
  EXPECT_TRUE(end.success()) << end.toString();
}

void worker(RankEnv& env) {
  net::ClientOptions o;
  o.rank = 11;
  o.ns = "ck";
  auto c = must(net::Client::connect(o, env.store, env.deadline), "Client::connect");
  TableSpec spec = exactTable(1, kDim);
  spec.optimizer.kind = OptimizerKind::kAdagrad;  // rows carry optimizer state too
  spec.optimizer.learning_rate = 0.5f;
  must(c->createTable(spec, env.deadline), "createTable");
  std::vector<uint64_t> keys(500);
  std::iota(keys.begin(), keys.end(), 1000);
  std::vector<float> g(keys.size() * kDim);
  for (size_t i = 0; i < g.size(); ++i) g[i] = static_cast<float>(i % 13) - 6;
  must(c->pushSync(1, keys, g, env.deadline), "push");
  std::vector<float> saved(g.size()), after(g.size());
  must(c->pullSync(1, keys, saved.data(), env.deadline), "pull");
  // One-sided reads cache the server's slab keys, which the restart below makes stale.
  must(c->pullOneSided(1, keys, after.data(), env.deadline), "one-sided pull");
  EXPECT_EQ(after, saved);
  const char* slabs = std::getenv("WEFT_PS_SLAB_MEMORY");
  if (slabs != nullptr && std::string(slabs) == "transport") {
    EXPECT_EQ(c->oneSidedStats().mapped_reads, keys.size()) << "rows not read through mappings";
  }
  must(c->checkpoint("ck1", false, env.deadline), "checkpoint");
  // Not in ck1. From ck1's rows and optimizer state this push gives these rows; after the
  // restore the same push must give them again.
  std::vector<float> expected(g.size());
  must(c->wait(must(c->pushPull(1, keys, g, expected.data()), "pushPull"), env.deadline),
       "push after the checkpoint");
  must(env.store->set("checkpointed", "1"), "store");
  must(env.store->get("killed", env.deadline).status(), "waiting for the kill");
  env.step("pulling from the killed server");
  const Status st = c->pullSync(1, keys, after.data(), Deadline::afterSeconds(20));
  EXPECT_EQ(st.code(), StatusCode::kPeerFailure) << st;
  EXPECT_NE(st.message().find("ps server 0 (rank 10)"), std::string::npos) << st;
  must(env.store->set("error-seen", "1"), "store");
  must(env.store->get("restarted", env.deadline).status(), "waiting for the restart");
  env.step("reconnecting");
  must(c->reconnect(env.deadline), "reconnect");
  must(c->pullSync(1, keys, after.data(), env.deadline), "pull after the restart");
  EXPECT_EQ(after, saved) << "the restored server must serve exactly the checkpointed rows";
  std::fill(after.begin(), after.end(), -1.0f);
  must(c->pullOneSided(1, keys, after.data(), env.deadline), "one-sided pull after the restart");
  EXPECT_EQ(after, saved) << "one-sided reads after a restart (stale slab keys dropped)";
  // The optimizer state came back too: the same push from the same state gives the same rows.
  std::vector<float> again(g.size());
  must(c->wait(must(c->pushPull(1, keys, g, again.data()), "pushPull"), env.deadline), "wait");
  EXPECT_EQ(again, expected);
  must(env.store->set("verified", "1"), "store");
}

// Runs `ranks` ranks with a fresh checkpoint root directory, removed afterwards. The rank
// processes run the test body too (then only their rank): only the parent makes the
// directory; the ranks find it in PS_RESTART_TEST_ROOT.
void runWithRoot(const char* name, int ranks,
                 const std::function<void(RankEnv&, const std::string&)>& body,
                 std::vector<std::pair<std::string, std::string>> extra_env = {}) {
  const std::string root =
      (std::filesystem::temp_directory_path() / strCat(name, "-", ::getpid())).string();
  if (!weft::testing::isRankProcess()) std::filesystem::create_directories(root);
  RankOptions opts;
  opts.timeout_s = 90;
  opts.env = std::move(extra_env);
  opts.env.emplace_back("PS_RESTART_TEST_ROOT", root);
  runRanks(
      ranks,
      [&body](RankEnv& env) {
        const char* r = std::getenv("PS_RESTART_TEST_ROOT");
        ASSERT_NE(r, nullptr);
        body(env, r);
      },
      opts);
  std::filesystem::remove_all(root);
}

TEST(PsRestart, CheckpointKillRestoreServesCheckpointedRows) {
  runWithRoot("weft-ps-restart", 2, [](RankEnv& env, const std::string& root) {
    if (env.rank == 0) {
      supervisor(env, root);
    } else {
      worker(env);
    }
  });
}

// The same with the first server's slabs in UCX shared memory, which the worker maps: the
// killed server's mappings are dropped at the reconnect, and the restored server (its
// restored slabs are private) is read by gets.
TEST(PsRestart, CheckpointKillRestoreWithMappedSlabs) {
  runWithRoot("weft-ps-restart-mapped", 2,
              [](RankEnv& env, const std::string& root) {
                if (env.rank == 0) {
                  supervisor(env, root);
                } else {
                  worker(env);
                }
              },
              {{"WEFT_PS_SLAB_MEMORY", "transport"}});
}

// Two servers, one checkpoint path. A write that fails on server 1 only (a directory where
// its MANIFEST.tmp must go) leaves server 0 with the new snapshot and server 1 with the old
// one: the restore must refuse that path before any server changes (the rows stay as they
// are), naming both servers; after a complete write the same path restores normally.
void mixedCheckpointWorker(RankEnv& env, const std::string& root) {
  auto c = connectClient(env, 0);
  must(c->createTable(exactTable(1, 2), env.deadline), "createTable");
  std::vector<uint64_t> keys(200);
  std::iota(keys.begin(), keys.end(), 0);
  const std::vector<float> one(keys.size() * 2, -1.0f);
  std::vector<float> rows(one.size());
  auto pushAndPull = [&] {
    must(c->pushSync(1, keys, one, env.deadline), "push");
    must(c->pullSync(1, keys, rows.data(), env.deadline), "pull");
    return rows;
  };
  pushAndPull();
  must(c->checkpoint("job", false, env.deadline), "first checkpoint");
  const std::vector<float> second = pushAndPull();  // every row is 2 now
  const std::string obstacle = root + "/job/server-1/MANIFEST.tmp";
  std::filesystem::create_directories(obstacle);
  const Status half = c->checkpoint("job", false, env.deadline);
  EXPECT_FALSE(half.isOk());
  EXPECT_NE(half.message().find("ps server 1"), std::string::npos) << half;
  EXPECT_NE(half.message().find("restoring it is refused"), std::string::npos) << half;
  env.step("restoring the mixed checkpoint");
  const Status mixed = c->checkpoint("job", true, env.deadline);
  EXPECT_EQ(mixed.code(), StatusCode::kIoError) << mixed;
  EXPECT_NE(mixed.message().find("ps server 0"), std::string::npos) << mixed;
  EXPECT_NE(mixed.message().find("ps server 1"), std::string::npos) << mixed;
  EXPECT_NE(mixed.message().find("nothing was restored"), std::string::npos) << mixed;
  must(c->pullSync(1, keys, rows.data(), env.deadline), "pull after the refused restore");
  EXPECT_EQ(rows, second) << "a refused restore changed rows";
  env.step("writing the checkpoint again");
  std::filesystem::remove_all(obstacle);
  must(c->checkpoint("job", false, env.deadline), "complete checkpoint");
  pushAndPull();
  must(c->checkpoint("job", true, env.deadline), "restore");
  must(c->pullSync(1, keys, rows.data(), env.deadline), "pull after the restore");
  EXPECT_EQ(rows, second);
  workerDone(env);
}

TEST(PsRestart, MixedCheckpointAcrossServersIsRefusedBeforeAnyServerChanges) {
  runWithRoot("weft-ps-mixed", 3, [](RankEnv& env, const std::string& root) {
    if (env.rank < 2) {
      serveUntil(env, static_cast<uint32_t>(env.rank), 2, 1, "ps", root);
    } else {
      mixedCheckpointWorker(env, root);
    }
  });
}

// checkpointJob (a collective of the workers): three workers push to two servers, each a
// different number of times and with pushes in flight until just before its call, so that
// some workers are already waiting in the call while others still push. The snapshot must
// hold every push answered before the calls and nothing after, on both servers: after
// more pushes, a job restore brings every row back to minus the pushes before the cut.
// Then the errors, which every worker must see alike: a worker with a push in flight,
// workers that disagree on the path, and a worker that never comes (kTimeout naming it).
constexpr uint32_t kJobWorkers = 3;

void jobCheckpointWorker(RankEnv& env, const std::string& root, uint32_t w) {
  auto c = connectClient(env, w);
  must(c->createTable(exactTable(1, 4), env.deadline), "createTable");
  TableSpec bsp = exactTable(2, 4);
  bsp.consistency = {ConsistencyModel::kBsp, 0, kJobWorkers};
  must(c->createTable(bsp, env.deadline), "createTable bsp");
  std::vector<uint64_t> keys(200);
  std::iota(keys.begin(), keys.end(), 0);
  const std::vector<float> one(keys.size() * 4, 1.0f);
  auto pushTimes = [&](int n) {
    std::vector<net::Ticket> inflight;
    for (int i = 0; i < n; ++i) {
      inflight.push_back(must(c->push(1, keys, one), "push"));
      if (inflight.size() == 4) {
        must(c->wait(inflight.front(), env.deadline), "push");
        inflight.erase(inflight.begin());
      }
    }
    for (net::Ticket t : inflight) must(c->wait(t, env.deadline), "push");
  };
  const int before = 5 + 9 * static_cast<int>(w);  // 5, 14, 23: the workers arrive apart
  pushTimes(before);
  env.step("job checkpoint");
  must(c->checkpointJob("cut", false, kJobWorkers, env.deadline), "checkpointJob");
  pushTimes(3);  // not in the snapshot
  groupBarrier(env, "pushed-after", kJobWorkers);
  env.step("job restore");
  must(c->checkpointJob("cut", true, kJobWorkers, env.deadline), "checkpointJob restore");
  std::vector<float> rows(one.size());
  must(c->pullSync(1, keys, rows.data(), env.deadline), "pull after the restore");
  const float expected = -static_cast<float>(5 + 14 + 23);
  size_t wrong = 0;
  for (float v : rows) wrong += v != expected;
  EXPECT_EQ(wrong, 0u) << "rows not at the cut (" << expected << "): e.g. " << rows[0] << ", "
                       << rows[rows.size() - 1];

  env.step("a worker with a push in flight");
  // Worker 1's request stays unanswered while the others call: a BSP pull of a clock only
  // it reached (the servers park it). Once they refused, the others reach that clock too.
  net::Ticket pending = 0;
  std::vector<float> parked(keys.size() * 4);
  if (w == 1) {
    must(c->clock(2, env.deadline), "clock");  // at clock 1 alone: its BSP pull parks
    pending = must(c->pull(2, keys, parked.data()), "pull");
  }
  const Status busy = c->checkpointJob("bad", false, kJobWorkers, env.deadline);
  EXPECT_EQ(busy.code(), StatusCode::kInvalidArgument) << busy;
  EXPECT_NE(busy.message().find("worker 1: it has 1 request(s) of its own not answered"),
            std::string::npos) << busy;
  groupBarrier(env, "refused-busy", kJobWorkers);
  if (w != 1) must(c->clock(2, env.deadline), "clock");  // releases the parked pull
  if (w == 1) must(c->wait(pending, env.deadline), "parked pull");

  env.step("workers that disagree on the path");
  const Status differ = c->checkpointJob(w == 2 ? "other" : "bad", false, kJobWorkers,
                                         env.deadline);
  EXPECT_EQ(differ.code(), StatusCode::kInvalidArgument) << differ;
  EXPECT_NE(differ.message().find("worker 2 asked for a checkpoint of 'other', worker 0 for a "
                                  "checkpoint of 'bad'"), std::string::npos) << differ;
  EXPECT_NE(differ.message().find("nothing was written"), std::string::npos) << differ;

  env.step("a worker that gives up before worker 0 begins");
  groupBarrier(env, "before-abandon", kJobWorkers);
  if (w == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const Status gaveUp = c->checkpointJob(
      "bad", false, kJobWorkers, w == 1 ? Deadline::afterSeconds(0.5) : env.deadline);
  EXPECT_EQ(gaveUp.code(), StatusCode::kTimeout) << gaveUp;
  if (w == 1) {
    EXPECT_NE(gaveUp.message().find("worker(s) 0 did not call checkpointJob in time"),
              std::string::npos) << gaveUp;
  } else {
    EXPECT_NE(gaveUp.message().find("abandoned by worker 1"), std::string::npos) << gaveUp;
  }
  EXPECT_NE(gaveUp.message().find("nothing was written"), std::string::npos) << gaveUp;

  env.step("a worker that never comes");
  groupBarrier(env, "before-missing", kJobWorkers);
  if (w != 2) {
    const double t0 = monotonicSeconds();
    const Status late = c->checkpointJob("bad", false, kJobWorkers, Deadline::afterSeconds(5));
    EXPECT_EQ(late.code(), StatusCode::kTimeout) << late;
    EXPECT_NE(late.message().find("worker(s) 2 did not call checkpointJob in time"),
              std::string::npos) << late;
    EXPECT_LT(monotonicSeconds() - t0, 20.0);
  }
  EXPECT_FALSE(std::filesystem::exists(root + "/bad")) << "a refused job checkpoint wrote";
  EXPECT_FALSE(std::filesystem::exists(root + "/other")) << "a refused job checkpoint wrote";
  workerDone(env);
}

TEST(PsRestart, JobCheckpointIsOneCutAcrossServersWithPushesInFlight) {
  runWithRoot("weft-ps-jobcut", 2 + kJobWorkers, [](RankEnv& env, const std::string& root) {
    if (env.rank < 2) {
      serveUntil(env, static_cast<uint32_t>(env.rank), 2, kJobWorkers, "ps", root);
    } else {
      jobCheckpointWorker(env, root, static_cast<uint32_t>(env.rank - 2));
    }
  });
}

}  // namespace
}  // namespace weft::ps::testing
