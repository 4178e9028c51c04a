// Tests of the native verbs backend beyond the conformance suite.
//
// Without an RDMA device (a CI host): GID choice, wire records, work-completion errors, the
// registration cache (fake registrar / events) and the userfaultfd memory monitor run; the
// device tests skip with the reason (WEFT_TEST_STRICT=1 fails them). On soft-RoCE
// (scripts/softroce/run-tests.sh) everything runs, including freed-and-reused memory, the
// memlock limit and a peer dying in the middle of a rendezvous.
#include <gtest/gtest.h>

#ifdef WEFT_HAVE_VERBS

#include <linux/capability.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/test_env.h"
#include "tests/transport/conformance.h"
#include "tests/transport/verbs_test_util.h"
#include "transport/ibverbs/verbs_cache_board.h"
#include "transport/ibverbs/verbs_info.h"
#include "transport/ibverbs/verbs_internal.h"
#include "transport/ibverbs/verbs_mem_monitor.h"
#include "transport/ibverbs/verbs_reg_cache.h"

namespace weft::transport::testing {
namespace {

using verbs::AddressRange;
using verbs::GidCandidate;
constexpr auto kRead = verbs::LocalAccess::kRead;
constexpr auto kWrite = verbs::LocalAccess::kWrite;
using weft::testing::containsText;
using weft::testing::RankEnv;
using weft::testing::RankOptions;
using weft::testing::runRanks;
using weft::testing::ScopedEnv;

constexpr size_t kMiB = size_t{1} << 20;

// ---- GID choice ---------------------------------------------------------------------------

GidCandidate gid(int index, uint32_t type, std::vector<uint8_t> tail) {
  GidCandidate c;
  c.index = index;
  c.type = type;
  c.netdev = "eth0";
  std::memcpy(c.gid.raw + 16 - tail.size(), tail.data(), tail.size());
  return c;
}
GidCandidate linkLocal(int index, uint32_t type) {
  GidCandidate c = gid(index, type, {0x12, 0x34});
  c.gid.raw[0] = 0xfe;
  c.gid.raw[1] = 0x80;
  return c;
}
GidCandidate ipv4(int index, uint32_t type) {
  return gid(index, type, {0xff, 0xff, 10, 77, 0, 1});
}

TEST(VerbsGid, PrefersRoceV2WithAnIpv4Address) {
  std::vector<GidCandidate> t = {linkLocal(0, IBV_GID_TYPE_ROCE_V1),
                                 linkLocal(1, IBV_GID_TYPE_ROCE_V2), ipv4(2, IBV_GID_TYPE_ROCE_V1),
                                 ipv4(3, IBV_GID_TYPE_ROCE_V2)};
  auto c = verbs::chooseGid(t, -1, false, "dev:1");
  ASSERT_TRUE(c.isOk()) << c.status();
  EXPECT_EQ(c->index, 3);
  EXPECT_TRUE(containsText(c->why, "RoCE v2"));
  EXPECT_TRUE(containsText(c->why, "10.77.0.1"));
  EXPECT_TRUE(containsText(c->why, "routable"));
}

TEST(VerbsGid, FallsBackInOrderAndExplains) {
  auto c = verbs::chooseGid({linkLocal(0, IBV_GID_TYPE_ROCE_V1), linkLocal(1, IBV_GID_TYPE_ROCE_V2)},
                            -1, false, "dev:1");
  ASSERT_TRUE(c.isOk()) << c.status();
  EXPECT_EQ(c->index, 1);
  EXPECT_TRUE(containsText(c->why, "link-local"));
  c = verbs::chooseGid({ipv4(4, IBV_GID_TYPE_ROCE_V1)}, -1, false, "dev:1");
  ASSERT_TRUE(c.isOk()) << c.status();
  EXPECT_EQ(c->index, 4);
  EXPECT_TRUE(containsText(c->why, "not routable"));
  c = verbs::chooseGid({}, -1, false, "dev:1");
  EXPECT_EQ(c.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(containsText(c.status().message(), "dev:1"));
}

TEST(VerbsGid, OverrideMustExistAndInfiniBandUsesIndexZero) {
  std::vector<GidCandidate> t = {linkLocal(0, IBV_GID_TYPE_ROCE_V2), ipv4(1, IBV_GID_TYPE_ROCE_V2)};
  auto c = verbs::chooseGid(t, 0, false, "dev:1");
  ASSERT_TRUE(c.isOk()) << c.status();
  EXPECT_EQ(c->index, 0);
  EXPECT_TRUE(containsText(c->why, "WEFT_IB_GID_INDEX"));
  c = verbs::chooseGid(t, 7, false, "dev:1");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(containsText(c.status().message(), "WEFT_IB_GID_INDEX=7"));
  EXPECT_TRUE(containsText(c.status().message(), "1 (RoCE v2 10.77.0.1"));
  c = verbs::chooseGid(t, -1, true, "ib:1");
  ASSERT_TRUE(c.isOk());
  EXPECT_EQ(c->index, 0);
}

// ---- wire records and completion errors ---------------------------------------------------

TEST(VerbsWire, RecordsRoundTripAndGarbageIsAClearError) {
  verbs::QpRecord q;
  q.from = 3;
  q.to = 1;
  q.seq = 2;
  q.from_nonce = 0x1122334455667788ULL;
  q.qpn = 0x1234;
  q.psn = 0xabcdef;
  q.gid = ipv4(0, 0).gid;
  q.recv_buffers = 64;
  q.scratch_addr = 0x7f0000001000ULL;
  auto back = verbs::decodeQp(verbs::encodeQp(q));
  ASSERT_TRUE(back.isOk()) << back.status();
  EXPECT_EQ(back->from, 3);
  EXPECT_EQ(back->qpn, 0x1234u);
  EXPECT_EQ(back->psn, 0xabcdefu);
  EXPECT_EQ(back->from_nonce, q.from_nonce);
  EXPECT_EQ(back->scratch_addr, q.scratch_addr);
  EXPECT_EQ(verbs::gidIpv4(back->gid), "10.77.0.1");
  std::string bytes = verbs::encodeQp(q);
  bytes.pop_back();
  EXPECT_EQ(verbs::decodeQp(bytes).status().code(), StatusCode::kPeerFailure);
  verbs::AddressRecord a;
  a.rank = 5;
  a.device = "rxe0";
  auto ab = verbs::decodeAddress(verbs::encodeAddress(a));
  ASSERT_TRUE(ab.isOk()) << ab.status();
  EXPECT_EQ(ab->device, "rxe0");
  EXPECT_FALSE(verbs::decodeAddress("garbage").isOk());
  // A peer of another wire version (bytes 4-5, after the magic) is named as such.
  auto oldVersion = [](std::string rec) {
    rec[4] = 1;
    rec[5] = 0;
    return rec;
  };
  for (const Status& st : {verbs::decodeAddress(oldVersion(verbs::encodeAddress(a))).status(),
                           verbs::decodeQp(oldVersion(verbs::encodeQp(q))).status()}) {
    EXPECT_EQ(st.code(), StatusCode::kPeerFailure);
    EXPECT_NE(st.toString().find("wire version 1; this build speaks version 2"),
              std::string::npos)
        << st;
  }
}

TEST(VerbsCompletion, FailedWorkCompletionNamesEverything) {
  ibv_wc wc{};
  wc.status = IBV_WC_RETRY_EXC_ERR;
  wc.vendor_err = 0x81;
  Status s = verbs::wcError(wc, "send (SEND)", "verbs rank 0 -> rank 3", 0x11, 0x22, 3,
                            "GID 1 (RoCE v2 10.77.0.1)");
  EXPECT_EQ(s.code(), StatusCode::kPeerFailure);
  for (const char* part : {"IBV_WC_RETRY_EXC_ERR", "status 12", "vendor error 0x81",
                           "local QP 0x11", "remote QP 0x22", "peer rank 3", "send (SEND)",
                           "GID index", "MTU", "GID 1 (RoCE v2"}) {
    EXPECT_TRUE(containsText(s.message(), part));
  }
  wc.status = IBV_WC_REM_ACCESS_ERR;
  s = verbs::wcError(wc, "put (RDMA_WRITE)", "ep", 1, 2, 1, "");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(containsText(s.message(), "remote key or the bounds"));
}

// ---- registration cache -------------------------------------------------------------------

class FakeRegistrar : public verbs::Registrar {
 public:
  Result<verbs::Registration> registerRange(void* address, size_t length, MemoryType,
                                            verbs::LocalAccess access) override {
    if (fail_next) {
      fail_next = false;
      return WEFT_ERROR(StatusCode::kNoResource, "fake memlock failure");
    }
    const auto a = reinterpret_cast<uintptr_t>(address);
    const bool read_only = a < read_only_end && a + length > read_only_start;
    if (read_only && access == verbs::LocalAccess::kWrite) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, "fake: read-only memory");
    }
    ++live;
    ranges[address] = length;
    return verbs::Registration{address, static_cast<uint32_t>(++serial), 0, !read_only};
  }
  void deregister(const verbs::Registration& r) override {
    --live;
    ranges.erase(r.handle);
  }
  int live = 0;
  int serial = 0;
  bool fail_next = false;
  uintptr_t read_only_start = 0;  // [start, end): memory that registers for reading only
  uintptr_t read_only_end = 0;
  std::map<void*, size_t> ranges;
};

class FakeEvents : public verbs::MemoryEvents {
 public:
  Status watch(uintptr_t, uintptr_t) override { return Status::ok(); }
  uint64_t published() const override { return events.size(); }
  bool read(uint64_t seq, AddressRange& r) const override {
    if (seq <= dropped) return false;
    r = events[seq - 1];
    return true;
  }
  void settle() const override {}
  std::vector<AddressRange> events;
  uint64_t dropped = 0;
};

verbs::RegistrationCache::Options cacheOptions(size_t max_bytes, size_t max_entries) {
  verbs::RegistrationCache::Options o;
  o.max_bytes = max_bytes;
  o.max_entries = max_entries;
  o.page_size = 4096;
  return o;
}

void* at(uintptr_t a) {
  return reinterpret_cast<void*>(a);
}

TEST(VerbsRegCache, HitsMissesAndLruEviction) {
  FakeRegistrar reg;
  FakeEvents ev;
  verbs::RegistrationCache cache(&reg, &ev, cacheOptions(3 * 8192, 100));
  auto a = cache.acquire(at(0x10000), 8192, MemoryType::kHost, kWrite);
  ASSERT_TRUE(a.isOk());
  cache.release(*a);
  auto inside = cache.acquire(at(0x10010), 100, MemoryType::kHost, kWrite);  // covered: a hit
  ASSERT_TRUE(inside.isOk());
  EXPECT_EQ(*inside, *a);
  cache.release(*inside);
  auto cuda = cache.acquire(at(0x10000), 8192, MemoryType::kCuda, kWrite);  // other type: a miss
  ASSERT_TRUE(cuda.isOk());
  EXPECT_NE(*cuda, *a);
  cache.release(*cuda);
  auto b = cache.acquire(at(0x20000), 8192, MemoryType::kHost, kWrite);
  ASSERT_TRUE(b.isOk());
  cache.release(*b);
  // A fourth 8 KiB region exceeds the 24 KiB bound: the least recently used one goes.
  auto c = cache.acquire(at(0x30000), 8192, MemoryType::kHost, kWrite);
  ASSERT_TRUE(c.isOk());
  cache.release(*c);
  verbs::RegCacheStats s = cache.stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 4u);
  EXPECT_EQ(s.evictions, 1u);
  EXPECT_EQ(s.entries, 3u);
  EXPECT_EQ(reg.live, 3);
  auto again = cache.acquire(at(0x10000), 8192, MemoryType::kHost, kWrite);  // was evicted: a miss
  ASSERT_TRUE(again.isOk());
  cache.release(*again);
  EXPECT_EQ(cache.stats().misses, 5u);
}

TEST(VerbsRegCache, UnmapEventsDropEntriesAndInUseOnesLiveUntilReleased) {
  FakeRegistrar reg;
  FakeEvents ev;
  verbs::RegistrationCache cache(&reg, &ev, cacheOptions(1 << 30, 100));
  auto a = cache.acquire(at(0x100000), 4 * 4096, MemoryType::kHost, kWrite);
  auto b = cache.acquire(at(0x200000), 4096, MemoryType::kHost, kWrite);
  ASSERT_TRUE(a.isOk() && b.isOk());
  cache.release(*b);
  ev.events.push_back({0x101000, 0x102000});  // one page inside a (in use)
  ev.events.push_back({0x200000, 0x201000});  // all of b (idle)
  auto a2 = cache.acquire(at(0x100000), 4096, MemoryType::kHost, kWrite);  // drains: both dropped
  ASSERT_TRUE(a2.isOk());
  EXPECT_NE(*a2, *a) << "a stale registration was handed out again";
  EXPECT_EQ(cache.stats().invalidations, 2u);
  EXPECT_EQ(reg.live, 2) << "b is deregistered; a stays registered while in use";
  cache.release(*a);
  EXPECT_EQ(reg.live, 1);
  cache.release(*a2);
  // Falling behind the event ring: everything is dropped.
  ev.events.push_back({0x900000, 0x901000});
  ev.dropped = ev.events.size();
  auto c = cache.acquire(at(0x500000), 4096, MemoryType::kHost, kWrite);
  ASSERT_TRUE(c.isOk());
  cache.release(*c);
  EXPECT_EQ(cache.stats().entries, 1u);
  EXPECT_EQ(reg.live, 1);
}

TEST(VerbsRegCache, WithoutEventsNothingIsCached) {
  FakeRegistrar reg;
  auto o = cacheOptions(1 << 30, 100);
  o.off_reason = "test";
  verbs::RegistrationCache cache(&reg, nullptr, o);
  for (int i = 0; i < 3; ++i) {
    auto a = cache.acquire(at(0x10000), 4096, MemoryType::kHost, kWrite);
    ASSERT_TRUE(a.isOk());
    EXPECT_EQ(reg.live, 1);
    cache.release(*a);
    EXPECT_EQ(reg.live, 0);
  }
  EXPECT_EQ(cache.stats().hits, 0u);
  EXPECT_EQ(cache.stats().misses, 3u);
  EXPECT_TRUE(containsText(cache.stats().monitor, "off (test)"));
}

TEST(VerbsRegCache, RegistrationFailureEvictsIdleEntriesAndRetries) {
  FakeRegistrar reg;
  FakeEvents ev;
  verbs::RegistrationCache cache(&reg, &ev, cacheOptions(1 << 30, 100));
  auto a = cache.acquire(at(0x10000), 4096, MemoryType::kHost, kWrite);
  ASSERT_TRUE(a.isOk());
  cache.release(*a);
  reg.fail_next = true;
  auto b = cache.acquire(at(0x80000), 4096, MemoryType::kHost, kWrite);
  ASSERT_TRUE(b.isOk()) << b.status();
  EXPECT_EQ(cache.stats().evictions, 1u);
  cache.release(*b);
  reg.fail_next = true;
  FakeRegistrar lone;
  lone.fail_next = true;
  verbs::RegistrationCache empty(&lone, &ev, cacheOptions(1 << 30, 100));
  auto c = empty.acquire(at(0x90000), 4096, MemoryType::kHost, kWrite);
  EXPECT_EQ(c.status().code(), StatusCode::kNoResource);
}

// A buffer in read-only memory (sent from) gets a read-only registration, used once and never
// cached (the monitor does not see mprotect); a writing use of it fails; writable entries
// are cached and serve reads too.
TEST(VerbsRegCache, ReadOnlyRegistrationsServeOnlyReadsAndAreNotCached) {
  FakeRegistrar reg;
  reg.read_only_start = 0x40000;
  reg.read_only_end = 0x42000;
  FakeEvents ev;
  verbs::RegistrationCache cache(&reg, &ev, cacheOptions(1 << 30, 100));
  auto r = cache.acquire(at(0x40000), 8192, MemoryType::kHost, kRead);
  ASSERT_TRUE(r.isOk()) << r.status();
  EXPECT_FALSE((*r)->reg.writable);
  cache.release(*r);
  EXPECT_EQ(reg.live, 0) << "a read-only registration outlived its operation";
  EXPECT_EQ(cache.stats().entries, 0u);
  auto w = cache.acquire(at(0x40100), 100, MemoryType::kHost, kWrite);
  EXPECT_EQ(w.status().code(), StatusCode::kInvalidArgument);
  auto rw = cache.acquire(at(0x50000), 4096, MemoryType::kHost, kWrite);  // writable memory
  ASSERT_TRUE(rw.isOk());
  EXPECT_TRUE((*rw)->reg.writable);
  cache.release(*rw);
  auto read = cache.acquire(at(0x50000), 4096, MemoryType::kHost, kRead);
  ASSERT_TRUE(read.isOk());
  EXPECT_EQ(*read, *rw) << "a writable entry serves reads too";
  cache.release(*read);
  EXPECT_EQ(cache.stats().hits, 1u);
  EXPECT_EQ(cache.stats().misses, 3u);
  EXPECT_EQ(reg.live, 1);
}

// The published counters (weft-info --devices): a live board is listed with its values; the
// board of a process that died without closing its Context is skipped and removed; a
// closed board is gone. No RDMA device needed.
TEST(VerbsCacheBoard, RunningProcessesAreListedAndDeadOnesRemoved) {
  auto mine = [](int pid, int rank) -> const verbs::RunningCacheStats* {
    static std::vector<verbs::RunningCacheStats> all;
    all = verbs::runningRegCacheStats();
    for (const auto& r : all) {
      if (r.pid == pid && r.rank == rank) return &r;
    }
    return nullptr;
  };
  const std::string name = [&] {
    verbs::CacheBoard board(true, 3, "dev9", "userfaultfd", 1 << 20);
    if (board.name().empty()) return std::string();
    board.data()->hits.store(5);
    board.data()->misses.store(2);
    const verbs::RunningCacheStats* r = mine(::getpid(), 3);
    EXPECT_NE(r, nullptr) << "the board of this process is not listed";
    if (r != nullptr) {
      EXPECT_EQ(r->device, "dev9");
      EXPECT_EQ(r->stats.hits, 5u);
      EXPECT_EQ(r->stats.misses, 2u);
      EXPECT_EQ(r->stats.bound_bytes, 1u << 20);
      EXPECT_EQ(r->stats.monitor, "userfaultfd");
      EXPECT_TRUE(containsText(verbs::formatRunningRegCacheStats({*r}), "5 hits, 2 misses"));
    }
    return board.name();
  }();
  if (name.empty()) GTEST_SKIP() << "no /dev/shm segment could be created here";
  EXPECT_EQ(mine(::getpid(), 3), nullptr) << "a closed board is still listed";
  EXPECT_FALSE(std::filesystem::exists("/dev/shm" + name)) << name;

  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // dies with its board published (as a SIGKILLed job would)
    new verbs::CacheBoard(true, 4, "dev9", "userfaultfd", 0);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  auto boardsOf = [](pid_t pid) {
    int n = 0;
    const std::string prefix = strCat(verbs::CacheBoard::kPrefix, pid, ".");
    for (const auto& e : std::filesystem::directory_iterator("/dev/shm")) {
      n += e.path().filename().string().rfind(prefix, 0) == 0 ? 1 : 0;
    }
    return n;
  };
  ASSERT_EQ(boardsOf(child), 1) << "the child left no board behind";
  EXPECT_EQ(mine(child, 4), nullptr) << "a dead process's board is listed";
  EXPECT_EQ(boardsOf(child), 0) << "a dead process's board was not removed";
  {
    // Written from another pid namespace (a container sharing /dev/shm): its pid means
    // nothing here, so it is listed and never removed, even when that pid is unused here.
    verbs::CacheBoard foreign(true, 6, "dev9", "userfaultfd", 0);
    foreign.data()->pid_ns ^= 1;
    foreign.data()->pid = child;
    const verbs::RunningCacheStats* r = mine(child, 6);
    ASSERT_NE(r, nullptr) << "a board of another pid namespace was dropped";
    EXPECT_TRUE(r->other_pid_namespace);
    EXPECT_TRUE(std::filesystem::exists("/dev/shm" + foreign.name()));
  }

  verbs::CacheBoard quiet(false, 5, "dev9", "userfaultfd", 0);  // WEFT_IB_CACHE_BOARD=0
  EXPECT_TRUE(quiet.name().empty());
  EXPECT_NE(quiet.data(), nullptr);
  EXPECT_EQ(mine(::getpid(), 5), nullptr);
}

// The real userfaultfd monitor (no RDMA device needed).
TEST(VerbsMemoryMonitor, ReportsMunmapAndMadviseOfWatchedMemory) {
  verbs::MemoryMonitor* m = verbs::MemoryMonitor::instance();
  if (m == nullptr) GTEST_SKIP() << "no userfaultfd here: " << verbs::MemoryMonitor::unavailableReason();
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  auto* p = static_cast<char*>(
      ::mmap(nullptr, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(p, MAP_FAILED);
  std::memset(p, 1, 4 * page);
  const auto start = reinterpret_cast<uintptr_t>(p);
  ASSERT_TRUE(m->watch(start, start + 4 * page).isOk());
  auto seen = [&](uint64_t from, uintptr_t s, uintptr_t e) {
    m->settle();
    for (uint64_t seq = from + 1; seq <= m->published(); ++seq) {
      AddressRange r;
      if (m->read(seq, r) && r.start <= s && r.end >= e) return true;
    }
    return false;
  };
  uint64_t before = m->published();
  ASSERT_EQ(::madvise(p, page, MADV_DONTNEED), 0);
  EXPECT_TRUE(seen(before, start, start + page)) << "madvise(DONTNEED) not reported";
  EXPECT_EQ(p[page], 1) << "other pages untouched";
  p[0] = 2;  // the page is usable again (nothing write-protected)
  before = m->published();
  ASSERT_EQ(::munmap(p + 2 * page, 2 * page), 0);
  EXPECT_TRUE(seen(before, start + 2 * page, start + 4 * page)) << "munmap not reported";
  ::munmap(p, 2 * page);
}

TEST(VerbsContext, BackendSettingsAreValidatedBeforeTheDeviceIsOpened) {
  ContextOptions o;
  o.backend_config = {{"RNDV", "sideways"}};
  auto ctx = openContext("verbs", o);
  EXPECT_EQ(ctx.status().code(), StatusCode::kInvalidArgument) << ctx.status();
  EXPECT_TRUE(containsText(ctx.status().message(), "WEFT_IB_RNDV"));
  EXPECT_TRUE(containsText(ctx.status().message(), "read|write"));
  o.backend_config = {{"NO_SUCH_KNOB", "1"}};
  ctx = openContext("verbs", o);
  EXPECT_EQ(ctx.status().code(), StatusCode::kInvalidArgument) << ctx.status();
  EXPECT_TRUE(containsText(ctx.status().message(), "unknown backend setting NO_SUCH_KNOB"));
}

TEST(VerbsContext, NoDeviceIsAClearError) {
  if (!verbsTestDevice().empty()) GTEST_SKIP() << "this machine has " << verbsTestDevice();
  auto ctx = openContext("verbs");
  EXPECT_EQ(ctx.status().code(), StatusCode::kUnavailable) << ctx.status();
  EXPECT_TRUE(containsText(ctx.status().message(), "no RDMA device"));
  EXPECT_TRUE(containsText(ctx.status().message(), "rdma link add"));
}

// ---- with a device ----------------------------------------------------------------------

TEST(VerbsDevice, Present) {
  WEFT_REQUIRE_VERBS_DEVICE();
  auto devices = verbs::listDevices();
  ASSERT_TRUE(devices.isOk()) << devices.status();
  ASSERT_FALSE(devices->empty());
  const std::string text = verbs::formatDevices(*devices);
  std::cout << text;
  EXPECT_TRUE(containsText(text, "<- chosen"));
  for (const auto& d : *devices) {
    if (d.name.rfind("rxe", 0) == 0) {  // soft-RoCE: no dma-buf, no peer memory
      EXPECT_TRUE(containsText(d.gpudirect, "dmabuf: not supported")) << d.gpudirect;
    }
  }
}

std::unique_ptr<Context> openVerbs(ContextOptions o = {}) {
  return must(openContext("verbs", o), "openContext(verbs)");
}

void expectNoLiveObjects(const char* when) {
  verbs::LiveObjects l = verbs::liveObjects();
  EXPECT_EQ(l.qps, 0) << when;
  EXPECT_EQ(l.cqs, 0) << when;
  EXPECT_EQ(l.mrs, 0) << when;
  EXPECT_EQ(l.pds, 0) << when;
  EXPECT_EQ(l.contexts, 0) << when;
  EXPECT_EQ(l.channels, 0) << when;
}

TEST(VerbsDevice, BadDevicePortAndGidIndexAreClearErrors) {
  WEFT_REQUIRE_VERBS_DEVICE();
  const std::string dev = verbsTestDevice();
  const std::string name = dev.substr(0, dev.find(':'));
  auto expect = [&](const char* var, const std::string& value, StatusCode code,
                    std::vector<std::string> parts) {
    ScopedEnv e(var, value);
    auto ctx = openContext("verbs");
    EXPECT_EQ(ctx.status().code(), code) << var << "=" << value << ": " << ctx.status();
    for (const auto& p : parts) EXPECT_TRUE(containsText(ctx.status().message(), p));
    expectNoLiveObjects(value.c_str());
  };
  expect("WEFT_IB_DEVICE", "nosuchdev9", StatusCode::kInvalidArgument, {"nosuchdev9", name});
  expect("WEFT_IB_DEVICE", name + ":9", StatusCode::kInvalidArgument, {"port"});
  expect("WEFT_IB_DEVICE", name + ":x", StatusCode::kInvalidArgument, {"port"});
  ScopedEnv d("WEFT_IB_DEVICE", dev);
  expect("WEFT_IB_GID_INDEX", "200", StatusCode::kInvalidArgument, {"200", "valid:"});
  expect("WEFT_IB_MTU", "1000", StatusCode::kInvalidArgument, {"WEFT_IB_MTU"});
}

TEST(VerbsDevice, CapabilitiesCacheStatsAndCudaMemory) {
  WEFT_REQUIRE_VERBS_DEVICE();
  ScopedEnv d("WEFT_IB_DEVICE", verbsTestDevice());
  auto ctx = openVerbs();
  const Capabilities& c = ctx->capabilities();
  EXPECT_EQ(c.backend, "verbs");
  EXPECT_FALSE(c.rma_needs_target_progress);
  EXPECT_TRUE(c.blocking_wait);
  EXPECT_EQ(c.immediate_bits, 64);
  EXPECT_TRUE(containsText(c.transports, "gid"));
  auto stats = verbs::registrationCacheStats(*ctx);
  ASSERT_TRUE(stats.isOk()) << stats.status();
  EXPECT_GT(stats->bound_bytes, 0u);
  std::cout << verbs::formatRegCacheStats(*stats) << "\n";
  std::vector<char> mem(4096);
  auto cuda = ctx->registerMemory(mem.data(), mem.size(), MemoryType::kCuda);
  EXPECT_EQ(cuda.status().code(), StatusCode::kNotSupported) << cuda.status();
  EXPECT_TRUE(containsText(cuda.status().message(), "not supported"));
  ctx.reset();
  expectNoLiveObjects("after the Context is gone");
}

Mesh verbsMesh(RankEnv& env) {
  BackendConfig cfg{"verbs", "verbs", {}};
  return openMesh(env, cfg);
}

// `env`: extra settings of every rank (WEFT_IB_*).
RankOptions verbsRanks(double timeout_s,
                       std::vector<std::pair<std::string, std::string>> env = {}) {
  RankOptions o;
  o.timeout_s = timeout_s;
  o.env = std::move(env);
  o.env.push_back({"WEFT_IB_DEVICE", verbsTestDevice()});
  return o;
}

// Free, re-allocate at the same address, send again: the bytes must be the new ones (the
// registration cache must not hand out the MR of the old pages). Run at a rendezvous size
// (the receiver reads the sender's pages) and at a zero-copy eager size (the SEND gathers
// straight from the sender's pages; see verbs::kEagerZcopyMin).
void sendFreedAndReusedMemory(size_t n) {
  runRanks(
      2,
      [n](RankEnv& env) {
        Mesh m = verbsMesh(env);
        Endpoint& ep = m.to(1 - env.rank);
        constexpr int kRounds = 6;
        if (env.rank == 1) {
          std::vector<unsigned char> in(n);
          for (int k = 0; k < kRounds; ++k) {
            env.step(strCat("receiving round ", k));
            Request r = must(ep.recv(in.data(), n, k), "recv");
            must(r.wait(env.deadline), "recv");
            ASSERT_EQ(checkPattern(in.data(), n, 100 + k), n) << "round " << k << " has stale bytes";
          }
          if (n > 64 * 1024) {  // rendezvous: the receiver registers its buffer too
            EXPECT_GT(must(verbs::registrationCacheStats(*m.ctx), "stats").hits, 0u)
                << "the receive buffer is reused: its registration should be cached";
          }
          return;
        }
        void* fixed = nullptr;
        int reused = 0;
        for (int k = 0; k < kRounds; ++k) {
          env.step(strCat("sending round ", k));
          unsigned char* p = nullptr;
          switch (k % 3) {
            case 0: p = static_cast<unsigned char*>(std::malloc(n)); break;
            case 1: {
              // At the address unmapped two rounds ago when nobody took it meanwhile
              // (a sanitizer's allocator may have).
              const int prot = PROT_READ | PROT_WRITE;
              const int flags = MAP_PRIVATE | MAP_ANONYMOUS;
              void* q = fixed != nullptr
                            ? ::mmap(fixed, n, prot, flags | MAP_FIXED_NOREPLACE, -1, 0)
                            : MAP_FAILED;
              if (q == MAP_FAILED) q = ::mmap(nullptr, n, prot, flags, -1, 0);
              ASSERT_NE(q, MAP_FAILED);
              reused += q == fixed;
              p = static_cast<unsigned char*>(q);
              fixed = p;
              break;
            }
            default: p = static_cast<unsigned char*>(fixed); break;  // after madvise(DONTNEED)
          }
          ASSERT_NE(p, nullptr);
          fillPattern(p, n, 100 + k);
          Request s = must(ep.send(p, n, k), "send");
          must(s.wait(env.deadline), "send");
          if (k % 3 == 0) std::free(p);
          if (k % 3 == 1) ::madvise(p, n, MADV_DONTNEED);  // round k+1 refills fresh pages
          if (k % 3 == 2) ::munmap(p, n);                  // round k+2 maps it again
        }
        auto stats = must(verbs::registrationCacheStats(*m.ctx), "stats");
        // Rounds 2 and 5 always reuse the address with new pages (after madvise); round 4
        // does when the munmapped range was still free.
        std::cout << "rank 0, " << n << " bytes: " << verbs::formatRegCacheStats(stats)
                  << "; mmap at the unmapped address " << reused << " time(s)\n";
        if (stats.monitor == "userfaultfd") {
          EXPECT_GE(stats.invalidations, 3u) << "madvise and munmap must invalidate";
        }
      },
      verbsRanks(120));
}

TEST(VerbsRanks, FreedAndReusedMemoryIsSentCorrectly) {
  WEFT_REQUIRE_VERBS_DEVICE();
  sendFreedAndReusedMemory(4 * kMiB);
}

TEST(VerbsRanks, FreedAndReusedMemoryIsSentCorrectlyByZeroCopyEagerSends) {
  WEFT_REQUIRE_VERBS_DEVICE();
  static_assert(verbs::kEagerZcopyMin <= 4096, "4 KiB must be a zero-copy eager size");
  sendFreedAndReusedMemory(4096);
}

// Zero-copy eager sends (from the caller's buffer) mixed with copied ones, more than the
// receive buffers, bounce buffers and send queue hold at once: every message arrives in
// order with its bytes, and every send completes once, after which its buffer is free.
TEST(VerbsRanks, ZeroCopyEagerSendsUnderPressureKeepOrderAndBytes) {
  WEFT_REQUIRE_VERBS_DEVICE();
  RankOptions o = verbsRanks(120, {{"WEFT_IB_RECV_BUFFERS", "4"}, {"WEFT_IB_SQ_DEPTH", "32"}});
  runRanks(
      2,
      [](RankEnv& env) {
        Mesh m = verbsMesh(env);
        Endpoint& ep = m.to(1 - env.rank);
        constexpr int kN = 300;
        constexpr size_t kMax = 8000;  // under the default eager size (8 KiB with the header)
        auto sizeOf = [](int k) { return k % 3 == 0 ? size_t{5} + k : kMax - 13 * k % 4000; };
        std::vector<unsigned char> mem(kN * (kMax + 1));
        auto at = [&](int k) { return mem.data() + k * (kMax + 1) + (k & 1); };  // unaligned
        std::vector<Request> rs;
        env.step(env.rank == 0 ? "sending" : "receiving");
        for (int k = 0; k < kN; ++k) {
          if (env.rank == 0) {
            fillPattern(at(k), sizeOf(k), 500 + k);
            rs.push_back(must(ep.send(at(k), sizeOf(k), 7), "send"));
          } else {
            rs.push_back(must(ep.recv(at(k), kMax, 7), "recv"));
          }
        }
        for (int k = 0; k < kN; ++k) {
          must(rs[k].wait(env.deadline), env.rank == 0 ? "send" : "recv");
          EXPECT_EQ(rs[k].bytes(), sizeOf(k)) << "message " << k;
          if (env.rank == 0) std::memset(at(k), 0xee, sizeOf(k));  // free once complete
        }
        if (env.rank == 1) {
          for (int k = 0; k < kN; ++k) {
            ASSERT_EQ(checkPattern(at(k), sizeOf(k), 500 + k), sizeOf(k)) << "message " << k;
          }
        }
        // Both sides done before either closes (the sender's last completions came back).
        uint64_t token = 0;
        Request r = must(ep.recv(&token, sizeof(token), 99), "recv token");
        Request s = must(ep.send(&token, sizeof(token), 99), "send token");
        must(s.wait(env.deadline), "send token");
        must(r.wait(env.deadline), "recv token");
      },
      o);
}

// With few receive buffers (credit threshold 1) a credit-only message must not be answered
// by one (each takes a buffer that the other then owes): before the fix two polling ranks
// kept them going for as long as both polled (~150 per connection in the 50-message ring
// of EightRanksOversubscribedWithProgressThreads, which needs none). Here: 60 messages one
// way (eager and rendezvous), then both ranks poll for 300 ms. Each credit-only message
// must return a buffer of another message or two of credit-only ones (maybeReturnCredits),
// so a rank sends at most one per message received plus one per two credit-only messages
// received; an exchange that never ends breaks that bound. Then the sender can still send
// (its credits came back).
TEST(VerbsRanks, CreditOnlyMessagesDieOutWhenBothRanksPoll) {
  WEFT_REQUIRE_VERBS_DEVICE();
  RankOptions o = verbsRanks(
      60,
      {{"WEFT_IB_RECV_BUFFERS", "4"}, {"WEFT_IB_EAGER_SIZE", "256"}, {"WEFT_IB_SQ_DEPTH", "32"}});
  runRanks(
      2,
      [](RankEnv& env) {
        Mesh m = verbsMesh(env);
        Endpoint& ep = m.to(1 - env.rank);
        auto* vep = dynamic_cast<verbs::VerbsEndpoint*>(&ep);
        ASSERT_NE(vep, nullptr) << ep.describe();
        constexpr int kN = 60;
        auto sizeOf = [](int k) { return k % 2 == 0 ? size_t{64} : size_t{1024}; };
        std::vector<unsigned char> buf(1024);
        env.step(env.rank == 0 ? "sending" : "receiving");
        for (int k = 0; k < kN; ++k) {
          if (env.rank == 0) {
            fillPattern(buf.data(), sizeOf(k), 700 + k);
            must(must(ep.send(buf.data(), sizeOf(k), 3), "send").wait(env.deadline), "send");
          } else {
            Request r = must(ep.recv(buf.data(), buf.size(), 3), "recv");
            must(r.wait(env.deadline), "recv");
            ASSERT_EQ(checkPattern(buf.data(), sizeOf(k), 700 + k), sizeOf(k)) << "message " << k;
          }
        }
        env.step("polling");
        const Deadline until = Deadline::afterSeconds(0.3);
        while (!until.expired()) {
          m.ctx->progress();
          std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
        const verbs::VerbsEndpoint::Counters c = vep->counters();
        std::cout << "rank " << env.rank << ": sent " << c.messages_sent << " messages ("
                  << c.credit_messages_sent << " credit-only), received " << c.messages_received
                  << " (" << c.credit_messages_received << " credit-only)\n";
        const uint64_t others = c.messages_received - c.credit_messages_received;
        EXPECT_LE(c.credit_messages_sent, others + c.credit_messages_received / 2)
            << "rank " << env.rank << ": credit-only messages answer each other";
        // The sender can still send (its credits came back); the receiver gets it.
        uint64_t token = 42;
        if (env.rank == 0) {
          must(must(ep.send(&token, sizeof(token), 9), "send token").wait(env.deadline),
               "send token");
        } else {
          token = 0;
          must(must(ep.recv(&token, sizeof(token), 9), "recv token").wait(env.deadline),
               "recv token");
          EXPECT_EQ(token, 42u);
        }
        progressBarrier(env, *m.ctx, "done");
      },
      o);
}

// A rendezvous (RDMA READ) recv completes only once its FIN is posted. Here the receiver
// has no credit left for the FIN when its READ finishes (it sent 3 eager messages into the
// sender's 4 receive buffers, which the sender does not poll yet), and after its recv it
// stops driving progress (a caller-driven Context, as when a rank goes into an out-of-band
// barrier). Were its recv complete with the FIN still queued, the sender would wait for the
// FIN forever: the EightRanks ring on rxe0 with 4 buffers hung in CI that way.
TEST(VerbsRanks, RendezvousRecvCompletesOnlyWithItsFinOnTheWire) {
  WEFT_REQUIRE_VERBS_DEVICE();
  RankOptions o = verbsRanks(60, {{"WEFT_IB_RECV_BUFFERS", "4"}, {"WEFT_IB_EAGER_SIZE", "256"}});
  runRanks(
      2,
      [](RankEnv& env) {
        Mesh m = verbsMesh(env);
        Endpoint& ep = m.to(1 - env.rank);
        std::vector<unsigned char> big(1024);
        uint64_t small[3] = {11, 12, 13};
        if (env.rank == 1) {
          env.step("sending 3 eager messages");
          for (int k = 0; k < 3; ++k) {
            must(must(ep.send(&small[k], sizeof(small[k]), 50 + k), "send").wait(env.deadline),
                 "send");
          }
        }
        ASSERT_TRUE(env.barrier("eager sent"));
        if (env.rank == 0) {
          fillPattern(big.data(), big.size(), 77);
          Request s = must(ep.send(big.data(), big.size(), 7), "send");  // the RTS goes out
          env.step("not polling for 300 ms");
          std::this_thread::sleep_for(std::chrono::milliseconds(300));
          env.step("waiting for the FIN");
          must(s.wait(Deadline::afterSeconds(3)), "rendezvous send (its FIN)");
          for (int k = 0; k < 3; ++k) {
            uint64_t v = 0;
            must(must(ep.recv(&v, sizeof(v), 50 + k), "recv").wait(env.deadline), "recv");
            EXPECT_EQ(v, small[k]);
          }
        } else {
          env.step("receiving the rendezvous");
          must(must(ep.recv(big.data(), big.size(), 7), "recv").wait(env.deadline), "recv");
          EXPECT_EQ(checkPattern(big.data(), big.size(), 77), big.size());
          env.step("not polling for 4 s");
          std::this_thread::sleep_for(std::chrono::seconds(4));
        }
        progressBarrier(env, *m.ctx, "done");
      },
      o);
}

// WEFT_IB_MTU set on one rank only: each side offers its capped MTU and both connect with
// the smaller one (when only the capping side applied its cap, the other sent frames above
// it: sends failed with retry-exceeded, puts with remote-invalid-request, gets hung).
TEST(VerbsRanks, MtuCapOnOneRankAppliesToBothEnds) {
  WEFT_REQUIRE_VERBS_DEVICE();
  runRanks(
      2,
      [](RankEnv& env) {
        if (env.rank == 0) ::setenv("WEFT_IB_MTU", "256", 1);
        Mesh m = verbsMesh(env);
        Endpoint& ep = m.to(1 - env.rank);
        constexpr size_t kBytes = 96 * 1024;  // rendezvous (RDMA READ) in both directions
        std::vector<unsigned char> out(kBytes), in(kBytes);
        fillPattern(out.data(), kBytes, 40 + env.rank);
        env.step("exchanging");
        Request r = must(ep.recv(in.data(), kBytes, 5), "recv");
        Request s = must(ep.send(out.data(), kBytes, 5), "send");
        must(s.wait(env.deadline), "send");
        must(r.wait(env.deadline), "recv");
        EXPECT_EQ(checkPattern(in.data(), kBytes, 40 + (1 - env.rank)), kBytes);
        uint64_t token = 0;
        Request rt = must(ep.recv(&token, sizeof(token), 99), "recv token");
        Request st = must(ep.send(&token, sizeof(token), 99), "send token");
        must(st.wait(env.deadline), "send token");
        must(rt.wait(env.deadline), "recv token");
      },
      verbsRanks(60));
}

// Read-only memory (here a PROT_READ mapping; a const table in .rodata is the same) can be
// sent (eager and rendezvous), put from and registered for remote reads; receiving or
// getting into it, or a peer's put into it, fails with an error that says "read-only"
// (ibv_reg_mr with write access fails with EFAULT there; that used to be reported as
// "not mapped" and failed every send from such memory).
void readOnlyMemory(const char* rndv) {
  runRanks(
      2,
      [rndv](RankEnv& env) {
        ::setenv("WEFT_IB_RNDV", rndv, 1);
        Mesh m = verbsMesh(env);
        Endpoint& ep = m.to(1 - env.rank);
        constexpr size_t kBytes = 256 * 1024;  // rendezvous
        auto* ro = static_cast<unsigned char*>(
            ::mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        ASSERT_NE(ro, MAP_FAILED);
        fillPattern(ro, kBytes, 70 + env.rank);
        ASSERT_EQ(::mprotect(ro, kBytes, PROT_READ), 0);
        std::vector<unsigned char> in(kBytes);
        auto fetch = [&](const char* name) {
          return must(RemoteKey::deserialize(must(
                          env.store->get(strCat("key/", 1 - env.rank, "/", name), env.deadline),
                          "reading a key")),
                      "RemoteKey::deserialize");
        };
        const size_t sizes[] = {64, 16 * 1024, kBytes};
        env.step("sending from read-only memory");
        for (size_t n : sizes) {
          if (env.rank == 0) {
            Request s = must(ep.send(ro, n, 1), "send from read-only memory");
            must(s.wait(env.deadline), "send from read-only memory");
          } else {
            std::fill(in.begin(), in.end(), 0);
            Request r = must(ep.recv(in.data(), n, 1), "recv");
            must(r.wait(env.deadline), "recv");
            EXPECT_EQ(checkPattern(in.data(), n, 70), n) << n << " bytes";
          }
        }
        env.step("receiving into read-only memory");
        if (env.rank == 1) {
          Request r = must(ep.recv(ro, kBytes, 2), "recv into read-only memory");
          Status st = r.wait(env.deadline);
          EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st;
          EXPECT_TRUE(containsText(st.message(), "read-only")) << st;
          EXPECT_EQ(checkPattern(ro, kBytes, 71), kBytes) << "the read-only buffer changed";
        } else {
          Request s = must(ep.send(in.data(), kBytes, 2), "send");
          EXPECT_FALSE(s.wait(env.deadline).isOk()) << "the receiver could not take it";
        }
        EXPECT_TRUE(ep.health().isOk()) << ep.health();
        env.step("putting from read-only memory, reading it remotely");
        std::vector<unsigned char> target(kBytes);
        auto target_mr = must(m.ctx->registerMemory(target.data(), kBytes), "register target");
        auto ro_mr = must(m.ctx->registerMemory(ro, kBytes), "register read-only memory");
        must(env.store->set(strCat("key/", env.rank, "/target"),
                            target_mr->remoteKey().serialize()),
             "publish");
        must(env.store->set(strCat("key/", env.rank, "/ro"), ro_mr->remoteKey().serialize()),
             "publish");
        const RemoteKey peer_target = fetch("target");
        const RemoteKey peer_ro = fetch("ro");
        if (env.rank == 0) {
          Request p = must(ep.put(ro, kBytes, peer_target, 0), "put from read-only memory");
          must(p.wait(env.deadline), "put from read-only memory");
          Request f = must(ep.flush(), "flush");
          must(f.wait(env.deadline), "flush");
        }
        ASSERT_TRUE(env.barrier("put"));
        if (env.rank == 1) {
          EXPECT_EQ(checkPattern(target.data(), kBytes, 70), kBytes);
          std::fill(in.begin(), in.end(), 0);
          Request g = must(ep.get(in.data(), kBytes, peer_ro, 0), "get from read-only memory");
          must(g.wait(env.deadline), "get from read-only memory");
          EXPECT_EQ(checkPattern(in.data(), kBytes, 70), kBytes);
          Request bad = must(ep.get(ro, 4096, peer_target, 0), "get into read-only memory");
          Status st = bad.wait(env.deadline);
          EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st;
          EXPECT_TRUE(containsText(st.message(), "read-only")) << st;
          EXPECT_TRUE(ep.health().isOk()) << ep.health();
          env.step("a remote put into a read-only region");
          Request p = must(ep.put(in.data(), kBytes, peer_ro, 0), "put into read-only region");
          st = p.wait(env.deadline);
          EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st;
          EXPECT_TRUE(containsText(st.message(), "read-only")) << st;
        }
        ASSERT_TRUE(env.barrier("done"));
        EXPECT_EQ(checkPattern(ro, kBytes, 70 + env.rank), kBytes);
        ro_mr.reset();
        ::munmap(ro, kBytes);
      },
      verbsRanks(60));
}

TEST(VerbsRanks, ReadOnlyMemoryIsSentAndReadButNeverWrittenRndvRead) {
  WEFT_REQUIRE_VERBS_DEVICE();
  readOnlyMemory("read");
}

TEST(VerbsRanks, ReadOnlyMemoryIsSentAndReadButNeverWrittenRndvWrite) {
  WEFT_REQUIRE_VERBS_DEVICE();
  readOnlyMemory("write");
}

// weft-info --devices shows a running job's registration-cache counters: the values this
// Context reports are the ones published for it, and closing the Context withdraws them.
TEST(VerbsRanks, RegistrationCacheCountersAreVisibleWhileTheJobRuns) {
  WEFT_REQUIRE_VERBS_DEVICE();
  runRanks(
      2,
      [](RankEnv& env) {
        auto published = [&]() -> std::optional<verbs::RegCacheStats> {
          for (const auto& r : verbs::runningRegCacheStats()) {
            if (r.pid == ::getpid() && r.rank == env.rank) return r.stats;
          }
          return std::nullopt;
        };
        {
          Mesh m = verbsMesh(env);
          Endpoint& ep = m.to(1 - env.rank);
          constexpr size_t kBytes = 256 * 1024;  // rendezvous: both ends use the cache
          std::vector<unsigned char> out(kBytes, 1), in(kBytes);
          for (int i = 0; i < 3; ++i) {
            Request r = must(ep.recv(in.data(), kBytes, 4), "recv");
            Request s = must(ep.send(out.data(), kBytes, 4), "send");
            must(s.wait(env.deadline), "send");
            must(r.wait(env.deadline), "recv");
          }
          const verbs::RegCacheStats own = must(verbs::registrationCacheStats(*m.ctx), "stats");
          std::optional<verbs::RegCacheStats> seen = published();
          ASSERT_TRUE(seen.has_value()) << "this rank's counters are not published";
          EXPECT_EQ(seen->hits, own.hits);
          EXPECT_EQ(seen->misses, own.misses);
          EXPECT_EQ(seen->entries, own.entries);
          EXPECT_EQ(seen->bytes, own.bytes);
          EXPECT_EQ(seen->bound_bytes, own.bound_bytes);
          EXPECT_EQ(seen->monitor, own.monitor);
          EXPECT_GE(own.misses, 2u) << verbs::formatRegCacheStats(own);
          if (own.monitor == "userfaultfd") {
            EXPECT_GE(own.hits, 4u);
          }
          ASSERT_TRUE(env.barrier("checked"));
        }
        EXPECT_FALSE(published().has_value()) << "a closed Context's counters are still listed";
      },
      verbsRanks(60));
}

// WEFT_IB_TIMEOUT / WEFT_IB_RETRY_COUNT / WEFT_IB_RNR_RETRY / WEFT_IB_MTU reach the QPs of
// both ends (read back with ibv_query_qp).
TEST(VerbsRanks, QpAttributesComeFromTheSettings) {
  WEFT_REQUIRE_VERBS_DEVICE();
  RankOptions o = verbsRanks(60);
  o.env.push_back({"WEFT_IB_TIMEOUT", "9"});
  o.env.push_back({"WEFT_IB_RETRY_COUNT", "3"});
  o.env.push_back({"WEFT_IB_RNR_RETRY", "5"});
  o.env.push_back({"WEFT_IB_MTU", "1024"});
  runRanks(
      2,
      [](RankEnv& env) {
        Mesh m = verbsMesh(env);
        auto* ep = dynamic_cast<verbs::VerbsEndpoint*>(&m.to(1 - env.rank));
        ASSERT_NE(ep, nullptr);
        ibv_qp_attr a{};
        ibv_qp_init_attr init{};
        ASSERT_EQ(ibv_query_qp(ep->qp(), &a,
                               IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
                                   IBV_QP_RNR_RETRY | IBV_QP_PATH_MTU,
                               &init),
                  0);
        EXPECT_EQ(a.qp_state, IBV_QPS_RTS);
        EXPECT_EQ(a.timeout, 9);
        EXPECT_EQ(a.retry_cnt, 3);
        EXPECT_EQ(a.rnr_retry, 5);
        EXPECT_EQ(a.path_mtu, IBV_MTU_1024);
        ASSERT_TRUE(env.barrier("checked"));
      },
      o);
}

// fork() after registration: the child exits without touching the Context, and the parent's
// registered buffers (cached rendezvous buffers and a region) still move the parent's current
// bytes (ibv_fork_init where the kernel needs it; kernels >= 5.13 copy pinned pages for the
// child at fork, which ibv_is_fork_initialized reports as "unneeded").
TEST(VerbsRanks, ForkAfterRegistrationKeepsTransfersRight) {
  WEFT_REQUIRE_VERBS_DEVICE();
  runRanks(
      2,
      [](RankEnv& env) {
        Mesh m = verbsMesh(env);
        Endpoint& ep = m.to(1 - env.rank);
        constexpr size_t kBytes = 256 * 1024;  // rendezvous: the cache registers the buffer
        std::vector<unsigned char> buf(kBytes), in(kBytes);
        auto exchange = [&](uint64_t seed) {
          fillPattern(buf.data(), kBytes, seed + env.rank);
          Request r = must(ep.recv(in.data(), kBytes, 6), "recv");
          Request s = must(ep.send(buf.data(), kBytes, 6), "send");
          must(s.wait(env.deadline), "send");
          must(r.wait(env.deadline), "recv");
          EXPECT_EQ(checkPattern(in.data(), kBytes, seed + 1 - env.rank), kBytes) << seed;
        };
        exchange(80);
        env.step("forking");
        const pid_t child = ::fork();
        ASSERT_GE(child, 0);
        if (child == 0) {  // writes the shared pages (copy-on-write) and leaves
          // With ibv_fork_init in force (kernels before 5.13) registered pages are
          // MADV_DONTFORK: not mapped in the child at all.
          if (ibv_is_fork_initialized() != IBV_FORK_ENABLED) {
            std::memset(buf.data(), 0xee, kBytes);
            std::memset(in.data(), 0xee, kBytes);
          }
          ::_exit(0);
        }
        int status = 0;
        ASSERT_EQ(::waitpid(child, &status, 0), child);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
        env.step("sending again after the fork");
        for (uint64_t seed = 90; seed < 96; seed += 2) exchange(seed);
        ASSERT_TRUE(env.barrier("done"));
      },
      verbsRanks(60));
}

// Drops CAP_IPC_LOCK from the effective set (root ignores RLIMIT_MEMLOCK otherwise).
void dropIpcLock() {
  __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct d[2] = {};
  if (::syscall(SYS_capget, &h, d) != 0) return;
  d[0].effective &= ~(1u << CAP_IPC_LOCK);
  ::syscall(SYS_capset, &h, d);
}


TEST(VerbsRanks, MemlockLimitGivesAClearErrorAndTheEndpointStaysUsable) {
  WEFT_REQUIRE_VERBS_DEVICE();
  runRanks(
      2,
      [](RankEnv& env) {
        if (env.rank == 0) {
          // Before the device is opened: uverbs refuses commands from a process whose
          // credentials changed after it opened the device.
          dropIpcLock();
          rlimit lim{};
          ::getrlimit(RLIMIT_MEMLOCK, &lim);
          lim.rlim_cur = 8 * kMiB;  // the eager buffers fit, a 16 MiB buffer does not
          ASSERT_EQ(::setrlimit(RLIMIT_MEMLOCK, &lim), 0);
        }
        Mesh m = verbsMesh(env);
        Endpoint& ep = m.to(1 - env.rank);
        if (env.rank == 0) {
          std::vector<unsigned char> big(16 * kMiB, 7);
          auto mr = m.ctx->registerMemory(big.data(), big.size());
          EXPECT_EQ(mr.status().code(), StatusCode::kNoResource) << mr.status();
          EXPECT_TRUE(containsText(mr.status().message(), "ulimit -l"));
          EXPECT_TRUE(containsText(mr.status().message(), "RLIMIT_MEMLOCK"));
          Request s = must(ep.send(big.data(), big.size(), 1), "send 16 MiB");
          Status st = s.wait(env.deadline);
          EXPECT_EQ(st.code(), StatusCode::kNoResource) << st;
          EXPECT_TRUE(containsText(st.message(), "ulimit -l"));
        }
        env.step("a small message still goes through");
        uint64_t v = 42;
        uint64_t w = 0;
        Request s = must(ep.send(&v, 8, 2), "send");
        Request r = must(ep.recv(&w, 8, 2), "recv");
        must(s.wait(env.deadline), "send");
        must(r.wait(env.deadline), "recv");
        EXPECT_EQ(w, 42u);
        ASSERT_TRUE(env.barrier("done"));
      },
      verbsRanks(60));
}

// One end of a 128 MiB rendezvous dies in the middle of it (rank `victim`: 0 sends, 1
// receives; WEFT_IB_RNDV read: the receiver READs, write: the sender WRITEs): the survivor's
// request fails with kPeerFailure naming the peer within the deadline (the RDMA operation
// fails, or the keepalive probe finds the peer gone), and nothing leaks when everything is
// torn down.
void peerDyingMidRendezvous(const char* rndv, int victim) {
  RankOptions o = verbsRanks(120);
  o.may_fail = {victim};
  o.env.push_back({"WEFT_IB_RNDV", rndv});
  runRanks(
      2,
      [victim](RankEnv& env) {
        const size_t n = 128 * kMiB;
        std::vector<unsigned char> buf(n, 3);
        {
          Mesh m = verbsMesh(env);
          Endpoint& ep = m.to(1 - env.rank);
          const uint64_t misses = must(verbs::registrationCacheStats(*m.ctx), "stats").misses;
          Request r = env.rank == 0 ? must(ep.send(buf.data(), n, 9), "send 128 MiB")
                                    : must(ep.recv(buf.data(), n, 9), "recv 128 MiB");
          if (env.rank == 1) {  // the receiver: once its buffer is registered, it is moving
            env.step("waiting for the rendezvous to start");
            while (must(verbs::registrationCacheStats(*m.ctx), "stats").misses == misses) {
              ASSERT_FALSE(env.deadline.expired());
              m.ctx->waitForEvent(Deadline::after(std::chrono::milliseconds(5))).ignore();
            }
            must(env.store->set("moving", "1"), "store set");
          }
          if (env.rank == victim) {
            must(env.store->get("moving", env.deadline).status(), "waiting for the transfer");
            env.step("killing myself in the middle of the transfer");
            ::kill(::getpid(), SIGKILL);
          }
          env.step("waiting for the failure");
          const Deadline d = Deadline::afterSeconds(30);
          Status st = r.wait(d);
          if (st.isOk()) {  // a fast device finished before the kill: nothing to check
            std::cout << "note: the 128 MiB transfer finished before rank " << victim
                      << " died\n";
          } else {
            EXPECT_EQ(st.code(), StatusCode::kPeerFailure) << st;
            EXPECT_TRUE(containsText(st.message(), strCat("rank ", victim))) << st;
            EXPECT_FALSE(d.expired());
            EXPECT_EQ(ep.health().code(), StatusCode::kPeerFailure);
          }
          m.eps[static_cast<size_t>(1 - env.rank)].reset();
          EXPECT_EQ(verbs::liveObjects().qps, 0) << "the failed endpoint's QP outlived it";
        }
        expectNoLiveObjects("after the failed endpoint and its Context are gone");
      },
      o);
}

TEST(VerbsRanks, PeerDyingMidRendezvousFailsTheReaderAndLeaksNothing) {
  WEFT_REQUIRE_VERBS_DEVICE();
  peerDyingMidRendezvous("read", 0);
}

TEST(VerbsRanks, ReaderDyingMidRendezvousFailsTheSenderAndLeaksNothing) {
  WEFT_REQUIRE_VERBS_DEVICE();
  peerDyingMidRendezvous("read", 1);
}

TEST(VerbsRanks, PeerDyingMidWriteRendezvousFailsTheReceiverAndLeaksNothing) {
  WEFT_REQUIRE_VERBS_DEVICE();
  peerDyingMidRendezvous("write", 0);
}

TEST(VerbsRanks, ReceiverDyingMidWriteRendezvousFailsTheWriterAndLeaksNothing) {
  WEFT_REQUIRE_VERBS_DEVICE();
  peerDyingMidRendezvous("write", 1);
}

}  // namespace
}  // namespace weft::transport::testing

#else  // !WEFT_HAVE_VERBS

TEST(VerbsDevice, Present) {
  GTEST_SKIP() << "the verbs backend is not built into this binary (WEFT_WITH_VERBS)";
}

#endif
