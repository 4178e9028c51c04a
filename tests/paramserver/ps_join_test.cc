// Adding a server to a running group: servers 0 and 1 serve two tables (exact SGD, and
// Adagrad whose per-row state must move with the rows), a worker fills them, then server 2
// joins; while the rows move the worker keeps pushing. Afterwards every key reads back its
// exact value (no update lost or applied twice), the map has version 2, and server 2 holds
// exactly the rows the new map gives it. The same with `weft-ps-server --join` as a process
// and large (announced) messages.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <thread>

#include "common/process.h"
#include "paramserver/net/membership.h"
#include "paramserver/server/table.h"
#include "tests/paramserver/ps_test_support.h"

namespace weft::ps::testing {
namespace {

using weft::testing::RankEnv;
using weft::testing::RankOptions;
using weft::testing::runRanks;

constexpr uint32_t kDim = 4;
constexpr uint64_t kKeys = 3000;
constexpr uint32_t kJoiner = 2;

TableSpec adagradTable() {
  TableSpec spec;
  spec.id = 2;
  spec.name = "adagrad";
  spec.dim = 2;
  spec.optimizer.kind = OptimizerKind::kAdagrad;
  spec.optimizer.learning_rate = 0.5f;
  return spec;
}

std::vector<uint64_t> allKeys() {
  std::vector<uint64_t> keys(kKeys);
  std::iota(keys.begin(), keys.end(), 1000);
  return keys;
}

float base(uint64_t k, uint32_t j) {
  return static_cast<float>(k % 7 + j + 1);
}

// The joining server: joins once the worker asks, serves until the worker is done, then
// checks it holds exactly the rows the new map gives it.
void joinAndServe(RankEnv& env) {
  must(env.store->get("join", env.deadline).status(), "waiting for the join signal");
  env.step("joining");
  net::ServerOptions o;
  o.server_id = kJoiner;
  o.rank = env.rank;
  o.join = true;
  auto server = must(net::Server::start(o, env.store, env.deadline), "Server::start (join)");
  while (must(env.store->add("done", 0), "store add") < 1) {
    ASSERT_TRUE(server->health().isOk()) << server->health();
    ASSERT_FALSE(env.deadline.expired());
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(server->mapVersion(), 2u);
  const net::Membership members(env.store, "ps");
  const ShardMap map = must(members.readMap(env.deadline), "readMap");
  const std::vector<uint64_t> keys = allKeys();
  const auto owned = static_cast<uint64_t>(std::count_if(
      keys.begin(), keys.end(), [&](uint64_t k) { return map.ownerOf(k) == kJoiner; }));
  EXPECT_GT(owned, 0u);
  const auto tables = server->tableStats();
  ASSERT_EQ(tables.size(), 3u);
  for (const auto& t : tables) EXPECT_EQ(t.stats.rows, owned) << "table " << t.name;
  EXPECT_EQ(server->stats().rows_imported, 3 * owned);  // every table's rows, once each
  must(server->stop(Deadline::afterSeconds(10)), "Server::stop");
}

// Pushes -1 to every key of table 1 (one request per 500 keys); returns when all landed.
// patient == false: each push is waited in 3 ms slices, waiting again on every kTimeout (a
// wait that times out keeps its ticket; waiting again must neither lose nor repeat keys,
// also while a request refused by a moved shard is being re-sent).
void pushRound(RankEnv& env, net::Client& c, const std::vector<uint64_t>& keys,
               bool patient = true) {
  const std::vector<float> minus_one(500 * kDim, -1.0f);
  for (size_t begin = 0; begin < keys.size(); begin += 500) {
    const size_t n = std::min<size_t>(500, keys.size() - begin);
    const auto part = std::span(keys).subspan(begin, n);
    const auto grads = std::span(minus_one).first(n * kDim);
    if (patient) {
      must(c.pushSync(1, part, grads, env.deadline), "push round");
      continue;
    }
    const net::Ticket t = must(c.push(1, part, grads), "push");
    Status st;
    do {
      st = c.wait(t, Deadline::after(std::chrono::milliseconds(3)));
    } while (st.code() == StatusCode::kTimeout && !env.deadline.expired());
    must(st, "push round (3 ms waits)");
  }
}

void work(RankEnv& env) {
  auto c = connectClient(env, 0);
  const std::vector<uint64_t> keys = allKeys();
  must(c->createTable(exactTable(1, kDim), env.deadline), "createTable 1");
  must(c->createTable(adagradTable(), env.deadline), "createTable 2");
  // A BSP table (this worker alone): pulls re-routed to the joiner must not wait for clocks
  // the joiner never heard (they come with the rows; later reports reach it too).
  TableSpec bsp = exactTable(3, 1);
  bsp.consistency = {ConsistencyModel::kBsp, 0, 1};
  must(c->createTable(bsp, env.deadline), "createTable 3 (BSP)");
  must(c->pushSync(3, keys, std::vector<float>(keys.size(), 0.0f), env.deadline), "push bsp");
  std::vector<float> bsp_out(keys.size());
  // The pull comes before the round's report: a pull re-routed to the joiner then needs
  // the clock reported to the old owner, which only the hand-over carries.
  must(c->clock(3, env.deadline), "clock bsp");
  auto bspRound = [&](const char* what) {
    must(c->pullSync(3, keys, bsp_out.data(), Deadline::afterSeconds(20)), what);
    must(c->clock(3, env.deadline), "clock bsp");
  };
  auto reference = must(Table::create(adagradTable()), "reference table");
  std::vector<float> g1(keys.size() * kDim), g2(keys.size() * 2);
  for (size_t i = 0; i < keys.size(); ++i) {
    for (uint32_t j = 0; j < kDim; ++j) g1[i * kDim + j] = -base(keys[i], j);
    for (uint32_t j = 0; j < 2; ++j) g2[i * 2 + j] = 0.25f * base(keys[i], j) - 1.0f;
  }
  auto pushAdagrad = [&] {
    must(c->pushSync(2, keys, g2, env.deadline), "push adagrad");
    must(reference->push(KeySpan::of(std::span<const uint64_t>(keys)),
                         FloatSpan::of(std::span<const float>(g2))),
         "reference push");
  };
  must(c->pushSync(1, keys, g1, env.deadline), "push sgd");
  pushAdagrad();
  EXPECT_EQ(c->shardMap().version(), 1u);

  env.step("pushing while server 2 joins");
  must(env.store->set("join", "1"), "store set");
  const net::Membership members(env.store, "ps");
  int rounds = 0;
  size_t wrong_during = 0;
  std::vector<float> out(keys.size() * kDim, -1);
  do {
    pushRound(env, *c, keys, /*patient=*/(rounds % 2) == 1);
    ++rounds;
    // Pulls during the move are re-routed too, and land at their positions.
    must(c->pullSync(1, keys, out.data(), env.deadline), "pull during the move");
    bspRound("BSP pull during the move");
    for (size_t i = 0; i < keys.size(); ++i) {
      for (uint32_t j = 0; j < kDim; ++j)
        wrong_during += out[i * kDim + j] != base(keys[i], j) + rounds;
    }
  } while (!members.waitServed(2, Deadline::after(std::chrono::milliseconds(1))).isOk() &&
           !env.deadline.expired());
  must(members.waitServed(2, env.deadline), "waitServed");
  bspRound("BSP pull after the move");
  pushRound(env, *c, keys);  // after the move: lands once, on the new owners
  ++rounds;
  pushAdagrad();  // uses the moved optimizer state

  EXPECT_EQ(wrong_during, 0u);
  env.step("checking every row");
  must(c->pullSync(1, keys, out.data(), env.deadline), "pull sgd");
  size_t wrong = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    for (uint32_t j = 0; j < kDim; ++j) wrong += out[i * kDim + j] != base(keys[i], j) + rounds;
  }
  EXPECT_EQ(wrong, 0u) << "after " << rounds << " rounds; key " << keys[0] << " reads " << out[0];
  std::vector<float> got(keys.size() * 2), want(keys.size() * 2);
  must(c->pullSync(2, keys, got.data(), env.deadline), "pull adagrad");
  reference->pull(KeySpan::of(std::span<const uint64_t>(keys)), want.data());
  size_t differ = 0;
  for (size_t i = 0; i < got.size(); ++i) differ += std::fabs(got[i] - want[i]) > 1e-6f;
  EXPECT_EQ(differ, 0u) << "first: " << got[0] << " vs " << want[0];
  EXPECT_EQ(c->shardMap().version(), 2u);
  EXPECT_TRUE(std::any_of(keys.begin(), keys.end(),
                          [&](uint64_t k) { return c->shardMap().ownerOf(k) == kJoiner; }));
  workerDone(env);
}

TEST(PsJoin, AddedServerTakesOverRowsWithoutLosingUpdates) {
  RankOptions opts;
  opts.timeout_s = 90;
  runRanks(
      4,
      [](RankEnv& env) {
        if (env.rank < 2) return serveUntil(env, static_cast<uint32_t>(env.rank), 2, 1);
        if (env.rank == 2) return joinAndServe(env);
        work(env);
      },
      opts);
}

void workWithJoiningProcess(RankEnv& env) {
  auto c = connectClient(env, 0);
  const std::vector<uint64_t> keys = allKeys();
  must(c->createTable(exactTable(1, kDim), env.deadline), "createTable");
  pushRound(env, *c, keys);
  env.step("running weft-ps-server --join");
  SpawnOptions so;
  so.argv = {std::string(WEFT_BIN_DIR) + "/weft-ps-server",
             "--join",
             "--server-id",
             "2",
             "--rank",
             "9",
             "--ns",
             "ps"};
  so.capture_stdout = false;
  so.capture_stderr = false;
  auto joiner = must(Process::spawn(so), "spawning weft-ps-server --join");
  must(net::Membership(env.store, "ps").waitServed(2, env.deadline), "waitServed");
  pushRound(env, *c, keys);
  std::vector<float> out(keys.size() * kDim, 0);
  must(c->pullSync(1, keys, out.data(), env.deadline), "pull");
  EXPECT_EQ(std::count(out.begin(), out.end(), 2.0f), static_cast<long>(out.size()));
  EXPECT_EQ(c->shardMap().version(), 2u);
  EXPECT_TRUE(std::any_of(keys.begin(), keys.end(),
                          [&](uint64_t k) { return c->shardMap().ownerOf(k) == kJoiner; }));
  must(env.store->set("ps/shutdown", "1"), "store set");
  const ExitStatus end = must(joiner->wait(env.deadline), "stopping weft-ps-server");
  EXPECT_TRUE(end.success()) << end.toString();
  workerDone(env);
}

// Small eager messages: the ImportRows (and the pushes) take the announced, rendezvous path.
TEST(PsJoin, WeftPsServerJoinFlag) {
  RankOptions opts;
  opts.timeout_s = 90;
  opts.env = {{"WEFT_PS_EAGER_BYTES", "8192"}};
  runRanks(
      3,
      [](RankEnv& env) {
        if (env.rank < 2) return serveUntil(env, static_cast<uint32_t>(env.rank), 2, 1);
        workWithJoiningProcess(env);
      },
      opts);
}

}  // namespace
}  // namespace weft::ps::testing
