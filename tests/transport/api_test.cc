// Single-process tests of the transport API: RemoteKey wire format, backend selection,
// request pool back-pressure, progress thread, and argument checks that need no peer.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "common/store/store.h"
#include "tests/support/rank_harness.h"
#include "transport/api/context.h"

namespace weft::transport {
namespace {

RemoteKey sampleKey() {
  RemoteKey k;
  k.backend = "ucx";
  k.owner_rank = 3;
  k.region_id = 17;
  k.address = 0x7f0012345678;
  k.length = 4096;
  k.memory_type = MemoryType::kHost;
  k.packed = std::string("\x01\x02\x00\xff packed", 12);
  k.seal();
  return k;
}

TEST(RemoteKeyTest, SerializeRoundTrip) {
  const RemoteKey k = sampleKey();
  auto back = RemoteKey::deserialize(k.serialize());
  ASSERT_TRUE(back.isOk()) << back.status();
  EXPECT_EQ(back->backend, k.backend);
  EXPECT_EQ(back->owner_rank, 3);
  EXPECT_EQ(back->region_id, 17u);
  EXPECT_EQ(back->address, k.address);
  EXPECT_EQ(back->length, 4096u);
  EXPECT_EQ(back->packed, k.packed);
  EXPECT_EQ(back->checksum, k.checksum);
  EXPECT_TRUE(weft::testing::containsText(k.describe(), "rank 3 region 17"));
}

TEST(RemoteKeyTest, MalformedInputIsAClearError) {
  const std::string good = sampleKey().serialize();
  auto expectError = [](std::string_view bytes, std::string_view part) {
    auto r = RemoteKey::deserialize(bytes);
    ASSERT_FALSE(r.isOk());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(weft::testing::containsText(r.status().message(), part));
  };
  expectError("", "bad magic");
  expectError(good.substr(0, good.size() - 1), "truncated");
  expectError(good + "x", "trailing");
  std::string flipped = good;
  flipped[good.size() - 20] ^= 1;  // inside the packed key
  expectError(flipped, "checksum mismatch");
  std::string version = good;
  version[4] = 9;
  expectError(version, "unsupported version");
}

TEST(TransportApiTest, UnknownBackendNamesTheBuiltOnes) {
  auto ctx = openContext("carrier-pigeon");
  ASSERT_FALSE(ctx.isOk());
  EXPECT_EQ(ctx.status().code(), StatusCode::kNotSupported);
  EXPECT_TRUE(weft::testing::containsText(ctx.status().message(), "carrier-pigeon"));
#ifdef WEFT_HAVE_UCX
  EXPECT_TRUE(weft::testing::containsText(ctx.status().message(), "ucx"));
#endif
}

TEST(TransportApiTest, EmptyRequestHandle) {
  Request r;
  EXPECT_FALSE(r.valid());
  EXPECT_TRUE(r.done());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

#ifdef WEFT_HAVE_UCX

struct Loopback {
  std::unique_ptr<Context> ctx;
  std::unique_ptr<Endpoint> ep;
};

Loopback openLoopback(ContextOptions options = {}) {
  Loopback l;
  auto ctx = openContext("ucx", options);
  EXPECT_TRUE(ctx.isOk()) << ctx.status();
  if (!ctx.isOk()) return l;
  l.ctx = std::move(ctx).value();
  auto store = makeHashStore();
  auto ep = l.ctx->connect(*store, options.rank, Deadline::afterSeconds(10));
  EXPECT_TRUE(ep.isOk()) << ep.status();
  if (ep.isOk()) l.ep = std::move(ep).value();
  return l;
}

TEST(UcxApiTest, RankAndBackendSettingsAreValidated) {
  ContextOptions bad_rank;
  bad_rank.rank = -2;
  EXPECT_EQ(openContext("ucx", bad_rank).status().code(), StatusCode::kInvalidArgument);
  ContextOptions bad_setting;
  bad_setting.backend_config = {{"KEEPALIVE_INTERVAL", "banana"}};
  auto ctx = openContext("ucx", bad_setting);
  ASSERT_FALSE(ctx.isOk());
  EXPECT_TRUE(weft::testing::containsText(ctx.status().message(), "KEEPALIVE_INTERVAL=banana"));
}

TEST(UcxApiTest, CapabilitiesDescribeTheBackend) {
  auto ctx = openContext("ucx");
  ASSERT_TRUE(ctx.isOk()) << ctx.status();
  const Capabilities& c = (*ctx)->capabilities();
  EXPECT_EQ(c.backend, "ucx");
  EXPECT_EQ(c.tag_bits, 40);
  EXPECT_TRUE(c.tagged && c.rdma_write && c.rdma_read && c.atomics64 && c.put_notify);
  EXPECT_TRUE(weft::testing::containsText(c.transports, "UCX 1."));
  EXPECT_GT(c.max_outstanding, 0u);
}

TEST(UcxApiTest, CudaMemoryWithoutCudaSupportIsNotSupported) {
  auto ctx = openContext("ucx");
  ASSERT_TRUE(ctx.isOk()) << ctx.status();
  if ((*ctx)->capabilities().cuda_memory) GTEST_SKIP() << "this UCX supports CUDA memory";
  static char fake[256];
  auto mr = (*ctx)->registerMemory(fake, sizeof(fake), MemoryType::kCuda);
  ASSERT_FALSE(mr.isOk());
  EXPECT_EQ(mr.status().code(), StatusCode::kNotSupported);
  EXPECT_TRUE(weft::testing::containsText(mr.status().message(), "CUDA"));
}

TEST(UcxApiTest, LoopbackSendRecvAndOneEndpointPerPeer) {
  Loopback l = openLoopback();
  ASSERT_TRUE(l.ep);
  uint64_t out = 42;
  uint64_t in = 0;
  auto r = l.ep->recv(&in, 8, 5);
  auto s = l.ep->send(&out, 8, 5);
  ASSERT_TRUE(r.isOk() && s.isOk());
  ASSERT_TRUE(r->wait(Deadline::afterSeconds(10)).isOk());
  ASSERT_TRUE(s->wait(Deadline::afterSeconds(10)).isOk());
  EXPECT_EQ(in, 42u);
  EXPECT_EQ(r->op(), OpKind::kRecv);
  auto store = makeHashStore();
  auto second = l.ctx->connect(*store, 0, Deadline::afterSeconds(10));
  EXPECT_EQ(second.status().code(), StatusCode::kInvalidArgument) << second.status();
}

// Queue exhaustion is back-pressure: kNoResource, nothing posted, and a retry after some
// requests complete succeeds.
TEST(UcxApiTest, FullRequestPoolIsBackPressure) {
  ContextOptions o;
  o.max_requests = 1024;  // the smallest pool: one chunk
  Loopback l = openLoopback(o);
  ASSERT_TRUE(l.ep);
  std::vector<uint64_t> in(1024);
  std::vector<Request> rs;
  for (size_t i = 0; i < in.size(); ++i) {
    auto r = l.ep->recv(&in[i], 8, 9);
    ASSERT_TRUE(r.isOk()) << r.status();
    rs.push_back(std::move(r).value());
  }
  uint64_t v = 7;
  auto full = l.ep->recv(&v, 8, 9);
  ASSERT_FALSE(full.isOk());
  EXPECT_EQ(full.status().code(), StatusCode::kNoResource) << full.status();
  EXPECT_TRUE(weft::testing::containsText(full.status().message(), "back-pressure"));
  // Free one slot: close cancels every pending receive (exactly once, kCanceled).
  ASSERT_TRUE(l.ep->close(Deadline::afterSeconds(10)).isOk());
  for (auto& r : rs) EXPECT_EQ(r.wait(Deadline::afterSeconds(10)).code(), StatusCode::kCanceled);
  rs.clear();
  auto store = makeHashStore();
  auto ep = l.ctx->connect(*store, 0, Deadline::afterSeconds(10));
  ASSERT_TRUE(ep.isOk()) << ep.status();
  auto retry = (*ep)->recv(&v, 8, 9);
  EXPECT_TRUE(retry.isOk()) << retry.status();
  // A small send that completes while posted needs no slot at all.
  Request sent = std::move((*ep)->send(&v, 8, 9)).value();
  EXPECT_TRUE(sent.wait(Deadline::afterSeconds(10)).isOk());
  EXPECT_TRUE(retry->wait(Deadline::afterSeconds(10)).isOk());
}

TEST(UcxApiTest, ProgressThreadCompletesWithoutCallerProgress) {
  ContextOptions o;
  o.progress_thread = true;
  Loopback l = openLoopback(o);
  ASSERT_TRUE(l.ep);
  std::vector<unsigned char> big(4 << 20, 5);
  std::vector<unsigned char> got(big.size());
  auto r = l.ep->recv(got.data(), got.size(), 1);
  auto s = l.ep->send(big.data(), big.size(), 1);
  ASSERT_TRUE(r.isOk() && s.isOk());
  // Only the progress thread drives the engine here: poll done() without progressing.
  const Deadline d = Deadline::afterSeconds(20);
  while (!(r->done() && s->done()) && !d.expired()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_TRUE(r->done() && s->done());
  EXPECT_TRUE(r->status().isOk()) << r->status();
  EXPECT_EQ(got, big);
  // Several threads may use a thread-safe Context concurrently.
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        uint64_t out = static_cast<uint64_t>(t * 1000 + i);
        uint64_t in = 0;
        auto rr = l.ep->recv(&in, 8, 100 + static_cast<Tag>(t));
        auto ss = l.ep->send(&out, 8, 100 + static_cast<Tag>(t));
        if (rr.isOk() && ss.isOk() && rr->wait(d).isOk() && ss->wait(d).isOk() && in == out) {
          ok.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 200);
}

TEST(UcxApiTest, ZeroLengthRegionAndPutNotifyOnLoopback) {
  Loopback l = openLoopback();
  ASSERT_TRUE(l.ep);
  auto empty = l.ctx->registerMemory(nullptr, 0);
  ASSERT_TRUE(empty.isOk()) << empty.status();
  char c = 0;
  auto z = l.ep->put(&c, 0, (*empty)->remoteKey(), 0);
  ASSERT_TRUE(z.isOk()) << z.status();
  EXPECT_TRUE(z->wait(Deadline::afterSeconds(10)).isOk());
  auto one = l.ep->put(&c, 1, (*empty)->remoteKey(), 0);
  EXPECT_EQ(one.status().code(), StatusCode::kInvalidArgument);
  std::vector<unsigned char> mem(8192);
  auto mr = l.ctx->registerMemory(mem.data(), mem.size());
  ASSERT_TRUE(mr.isOk()) << mr.status();
  std::vector<unsigned char> src(1000, 0xab);
  auto n = l.ep->recvNotify();
  auto p = l.ep->putNotify(src.data(), src.size(), (*mr)->remoteKey(), 100, 0x1234567890abcdefULL);
  ASSERT_TRUE(n.isOk() && p.isOk());
  ASSERT_TRUE(p->wait(Deadline::afterSeconds(10)).isOk());
  ASSERT_TRUE(n->wait(Deadline::afterSeconds(10)).isOk());
  EXPECT_EQ(n->value(), 0x1234567890abcdefULL);
  EXPECT_EQ(mem[100], 0xab);
  EXPECT_EQ(mem[1099], 0xab);
  EXPECT_EQ(mem[1100], 0);
}

#endif  // WEFT_HAVE_UCX

}  // namespace
}  // namespace weft::transport
