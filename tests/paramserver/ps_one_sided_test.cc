// One-sided pulls: a reader gets rows straight from the server's registered slabs while a
// writer keeps updating them; every row the reader accepts must be one a writer produced
// (all elements equal, an integer, never going backwards), never a torn mix.
#include <cstdlib>
#include <map>
#include <numeric>
#include <string>
#include <utility>

#include "tests/paramserver/ps_test_support.h"

namespace weft::ps::testing {
namespace {

using weft::testing::RankEnv;
using weft::testing::RankOptions;
using weft::testing::runRanks;

constexpr uint32_t kDim = 512;  // rows of 2 KiB of values: a writer holds each a while
constexpr uint64_t kRows = 64;

void writer(RankEnv& env, net::Client& c) {
  std::vector<uint64_t> keys(kRows);
  std::iota(keys.begin(), keys.end(), 0);
  const std::vector<float> minus_one(kRows * kDim, -1.0f);  // every element +1 per push
  must(c.pushSync(1, keys, minus_one, env.deadline), "first push");
  must(env.store->set("table-ready", "1"), "store");
  env.step("pushing while the reader reads");
  uint64_t pushes = 1;
  while (true) {
    // A window of 8 pushes in flight keeps the server writing rows most of the time.
    std::vector<net::Ticket> t;
    for (int i = 0; i < 8; ++i) t.push_back(must(c.push(1, keys, minus_one), "push"));
    for (net::Ticket x : t) must(c.wait(x, env.deadline), "wait push");
    pushes += 8;
    if (must(env.store->check("reader-done"), "store check")) break;
    ASSERT_FALSE(env.deadline.expired());
  }
  std::printf("writer: %llu pushes of %llu rows\n", static_cast<unsigned long long>(pushes),
              static_cast<unsigned long long>(kRows));
}

void reader(RankEnv& env, net::Client& c) {
  must(env.store->get("table-ready", env.deadline).status(), "waiting for the writer");
  c.useTable(1, kDim);
  std::vector<uint64_t> keys(kRows);
  std::iota(keys.begin(), keys.end(), 0);
  std::vector<float> out(kRows * kDim);
  std::vector<float> last(kRows, 0);
  uint64_t changes = 0, rows = 0, bad = 0;
  env.step("reading rows one-sided");
  // 600 rounds, and on until the values moved 200 times (so reads really overlapped
  // writes), bounded by the test deadline.
  for (int round = 0; (round < 600 || changes < 200) && !env.deadline.expired(); ++round) {
    must(c.pullOneSided(1, keys, out.data(), env.deadline), "pullOneSided");
    for (uint64_t k = 0; k < kRows; ++k) {
      const float v = out[k * kDim];
      bool ok = v >= last[k] && v == static_cast<float>(static_cast<int64_t>(v));
      for (uint32_t j = 1; j < kDim; ++j) ok = ok && out[k * kDim + j] == v;
      if (!ok && bad++ < 5) ADD_FAILURE() << "inconsistent row " << k << ": first " << v;
      changes += v != last[k];
      last[k] = v;
      ++rows;
    }
  }
  must(env.store->set("reader-done", "1"), "store");
  const net::OneSidedStats s = c.oneSidedStats();
  std::printf("reader: %llu rows checked, %llu value changes; one-sided rows %llu, gets %llu, "
              "torn copies retried %llu, rows by RPC %llu, locates %llu\n",
              static_cast<unsigned long long>(rows), static_cast<unsigned long long>(changes),
              static_cast<unsigned long long>(s.rows_one_sided),
              static_cast<unsigned long long>(s.gets),
              static_cast<unsigned long long>(s.torn_retries),
              static_cast<unsigned long long>(s.rows_rpc),
              static_cast<unsigned long long>(s.locates));
  EXPECT_EQ(bad, 0u);
  EXPECT_GE(changes, 200u);
  EXPECT_GT(s.rows_one_sided, 0u) << "no row came through the one-sided path";
  const char* slabs = std::getenv("WEFT_PS_SLAB_MEMORY");
  if (slabs != nullptr && std::string(slabs) == "transport") {
    // Slabs in UCX shared memory: every row is copied from the reader's own mapping.
    EXPECT_GT(s.mapped_reads, 0u) << "no row was read through a mapped slab";
    EXPECT_EQ(s.gets, 0u) << "rows of mapped slabs went through gets";
    std::printf("reader: rows copied from mapped slabs %llu\n",
                static_cast<unsigned long long>(s.mapped_reads));
  }
}

struct OneSidedCase {
  const char* name;
  const char* tls;
  const char* slab_memory;  // WEFT_PS_SLAB_MEMORY
};

class PsOneSided : public ::testing::TestWithParam<OneSidedCase> {};

TEST_P(PsOneSided, ReadersNeverSeeTornRows) {
  RankOptions opts;
  opts.timeout_s = 90;
  opts.env = {{"UCX_TLS", GetParam().tls}, {"WEFT_PS_SLAB_MEMORY", GetParam().slab_memory}};
  runRanks(
      3,
      [](RankEnv& env) {
        if (env.rank == 0) return serveUntil(env, 0, 1, 2);
        auto c = connectClient(env, static_cast<uint32_t>(env.rank - 1));
        if (env.rank == 1) {
          must(c->createTable(exactTable(1, kDim), env.deadline), "createTable");
          writer(env, *c);
        } else {
          reader(env, *c);
        }
        workerDone(env);
      },
      opts);
}

// sysv,cma: gets are process_vm_readv by the reader, truly concurrent with the server's
// writes. posix: UCX emulates gets with messages the server's loop answers. posix with
// slabs in transport memory: the reader copies rows from its own mapping of the server's
// shared-memory slabs while the server writes them.
INSTANTIATE_TEST_SUITE_P(Ucx, PsOneSided,
                         ::testing::Values(OneSidedCase{"sysv_cma", "sysv,cma", "private"},
                                           OneSidedCase{"posix", "posix", "private"},
                                           OneSidedCase{"posix_mapped", "posix", "transport"}),
                         [](const auto& p) { return std::string(p.param.name); });

// With WEFT_PS_LOCATION_CACHE, row locations of an ASP table this client created are cached:
// the second one-sided pull
// of the same keys needs no Locate and still sees the newest values. A location gone stale
// (rows evicted after a clock) fails validation: those rows come by RPC (the initializer's
// value), the entries are dropped, and the next pull Locates again. A BSP table's pulls
// always Locate (the server holds a Locate to the clock bound).
TEST(PsOneSidedCache, LocationsOfAspTablesAreCachedAndStaleOnesDropped) {
  RankOptions opts;
  opts.timeout_s = 60;
  // (65536 slots: the 64 keys do not share one; the cache is direct-mapped)
  opts.env = {{"WEFT_PS_LOCATION_CACHE", "65536"}, {"WEFT_PS_LOCATION_LEASE_MS", "600000"}};
  runRanks(
      2,
      [](RankEnv& env) {
        if (env.rank == 0) return serveUntil(env, 0, 1, 1);
        auto c = connectClient(env, 0);
        constexpr uint32_t kWide = 8;
        TableSpec asp = exactTable(1, kWide);
        asp.evict_after_clocks = 1;
        TableSpec bsp = exactTable(2, kWide);
        bsp.consistency = {ConsistencyModel::kBsp, 0, 1};
        must(c->createTable(asp, env.deadline), "createTable asp");
        must(c->createTable(bsp, env.deadline), "createTable bsp");
        std::vector<uint64_t> keys(kRows);
        std::iota(keys.begin(), keys.end(), 1000);
        const std::vector<float> minus_one(kRows * kWide, -1.0f);
        std::vector<float> out(kRows * kWide);
        auto pullAll = [&](uint32_t table, float expect) {
          std::fill(out.begin(), out.end(), -7.0f);
          must(c->pullOneSided(table, keys, out.data(), env.deadline), "pullOneSided");
          EXPECT_EQ(std::count(out.begin(), out.end(), expect), static_cast<long>(out.size()))
              << "table " << table << ", expected " << expect;
        };
        must(c->pushSync(1, keys, minus_one, env.deadline), "push");
        pullAll(1, 1.0f);
        net::OneSidedStats s = c->oneSidedStats();
        EXPECT_EQ(s.locates, 1u);
        EXPECT_EQ(s.locations_cached, 0u);
        must(c->pushSync(1, keys, minus_one, env.deadline), "push");
        pullAll(1, 2.0f);  // the rows' new values, read at the cached locations
        s = c->oneSidedStats();
        EXPECT_EQ(s.locates, 1u) << "the second pull needed no Locate";
        EXPECT_EQ(s.locations_cached, kRows);
        EXPECT_EQ(s.rows_one_sided, 2 * kRows);

        must(c->clock(1, env.deadline), "clock");  // untouched for a clock: evicted
        pullAll(1, 0.0f);                          // by RPC: the initializer's zeros
        s = c->oneSidedStats();
        EXPECT_EQ(s.locations_stale, kRows);
        EXPECT_EQ(s.rows_rpc, kRows);
        EXPECT_EQ(s.locates, 1u);
        pullAll(1, 0.0f);  // located again: no rows (none was pushed since)
        s = c->oneSidedStats();
        EXPECT_EQ(s.locates, 2u);
        EXPECT_EQ(s.locations_cached, 2 * kRows);

        must(c->pushSync(2, keys, minus_one, env.deadline), "push bsp");
        pullAll(2, 1.0f);
        pullAll(2, 1.0f);
        EXPECT_EQ(c->oneSidedStats().locates, 4u) << "BSP pulls Locate every time";
        workerDone(env);
      },
      opts);
}

// 1 server + 1 worker under `cache_env` (WEFT_PS_LOCATION_*): the worker pushes 64 rows of
// 2.0, pulls them one-sided `rounds` times (every value exact each time), and returns its
// OneSidedStats to `check`.
void pullSameRowsRepeatedly(std::vector<std::pair<std::string, std::string>> cache_env, int rounds,
                            void (*check)(const net::OneSidedStats&)) {
  RankOptions opts;
  opts.timeout_s = 60;
  opts.env = std::move(cache_env);
  runRanks(
      2,
      [rounds, check](RankEnv& env) {
        if (env.rank == 0) return serveUntil(env, 0, 1, 1);
        auto c = connectClient(env, 0);
        must(c->createTable(exactTable(1, 4), env.deadline), "createTable");
        std::vector<uint64_t> keys(kRows);
        std::iota(keys.begin(), keys.end(), 5);
        must(c->pushSync(1, keys, std::vector<float>(kRows * 4, -2.0f), env.deadline), "push");
        std::vector<float> out(kRows * 4);
        for (int round = 0; round < rounds; ++round) {
          std::fill(out.begin(), out.end(), -1.0f);
          must(c->pullOneSided(1, keys, out.data(), env.deadline), "pullOneSided");
          EXPECT_EQ(std::count(out.begin(), out.end(), 2.0f), static_cast<long>(out.size()));
        }
        check(c->oneSidedStats());
        workerDone(env);
      },
      opts);
}

// The cache is direct-mapped: with 16 slots, a key's location replaces the one in its slot,
// so the second pull of 64 keys reads at most 16 at cached locations; every value is exact.
TEST(PsOneSidedCache, SmallCacheHoldsAtMostItsSlots) {
  pullSameRowsRepeatedly(
      {{"WEFT_PS_LOCATION_CACHE", "16"}, {"WEFT_PS_LOCATION_LEASE_MS", "600000"}}, 2,
      [](const net::OneSidedStats& s) {
        EXPECT_GT(s.locations_cached, 0u);
        EXPECT_LE(s.locations_cached, 16u);
        EXPECT_EQ(s.locates, 2u);
        EXPECT_EQ(s.rows_one_sided, 2 * kRows);
      });
}

// Cached locations of a server are read only within WEFT_PS_LOCATION_LEASE_MS of a Locate to
// it (a dead or restored server's stale rows would pass validation): with a lease of 0,
// every pull Locates all its keys again, and the entries keep their places.
TEST(PsOneSidedCache, ExpiredLeaseLocatesAgain) {
  pullSameRowsRepeatedly({{"WEFT_PS_LOCATION_CACHE", "1024"}, {"WEFT_PS_LOCATION_LEASE_MS", "0"}},
                         3, [](const net::OneSidedStats& s) {
                           EXPECT_EQ(s.locates, 3u);
                           EXPECT_EQ(s.locations_cached, 0u);
                         });
}

}  // namespace
}  // namespace weft::ps::testing
