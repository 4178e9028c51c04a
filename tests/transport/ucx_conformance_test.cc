// The conformance suite over UCX: shared memory (posix; sysv + cma), TCP loopback, the
// default transport selection, and tcp + posix.
#include <algorithm>

#include "tests/transport/conformance.h"
#include "transport/api/endpoint.h"

namespace weft::transport::testing {

#ifdef WEFT_HAVE_UCX
INSTANTIATE_TEST_SUITE_P(
    Ucx, TransportConformance,
    ::testing::Values(BackendConfig{"ucx_posix", "ucx", {{"UCX_TLS", "posix"}}},
                      BackendConfig{"ucx_sysv_cma", "ucx", {{"UCX_TLS", "sysv,cma"}}},
                      // UCX_TLS unset, as users run it: same-host peers over shared memory
                      // and cma without UCX's error mode (UcxState::ucxPeerErrors).
                      BackendConfig{"ucx_default", "ucx", {}},
                      // Rendezvous by put: UCX adds a tcp rma_bw lane next to cma, so the
                      // endpoint is made again in UCX's error mode (UcxEndpoint::create).
                      BackendConfig{"ucx_default_put", "ucx", {{"UCX_RNDV_SCHEME", "put_zcopy"}}},
                      // tcp + posix: no cma, so UCX would add tcp lanes for a same-host
                      // peer and the context keeps UCX's error mode for it.
                      BackendConfig{"ucx_tcp_posix", "ucx", {{"UCX_TLS", "tcp,posix"}}},
                      // A killed peer's sockets reset at once over tcp; UCX's 1 s keepalive
                      // (WEFT_UCX_KEEPALIVE) only added spurious "Endpoint timeout"
                      // failures when a loaded 2-core host starved a rank for a second.
                      BackendConfig{"ucx_tcp",
                                    "ucx",
                                    {{"UCX_TLS", "tcp"}, {"UCX_KEEPALIVE_INTERVAL", "20s"}}}),
    backendConfigName);

// allocateMemory over UCX's shared memory: the owner does not progress at all (it blocks on
// the store) while its peer gets, puts and updates its memory: UCX maps the segment in the
// peer, so nothing is emulated with messages (on registerMemory'd memory these operations
// would wait for the owner and run into the deadline).
class UcxAllocatedMemory : public ::testing::TestWithParam<const char*> {};

TEST_P(UcxAllocatedMemory, PeersReachItWithoutTheOwnersProgress) {
  weft::testing::RankOptions o;
  o.timeout_s = 60;
  o.env = {{"UCX_TLS", GetParam()}};
  weft::testing::runRanks(
      2,
      [&](weft::testing::RankEnv& env) {
        Mesh m = openMesh(env, BackendConfig{GetParam(), "ucx", o.env});
        Endpoint& ep = m.to(1 - env.rank);
        constexpr size_t kBytes = 1 << 20;
        std::unique_ptr<MemoryRegion> mr;
        if (env.rank == 1) {
          auto r = m.ctx->allocateMemory(kBytes);
          ASSERT_TRUE(r.isOk()) << r.status();
          mr = std::move(r).value();
          std::fill_n(static_cast<unsigned char*>(mr->address()) + 64, kBytes - 64, 0x5a);
          ASSERT_TRUE(env.store->set("key", mr->remoteKey().serialize()).isOk());
        }
        // Both progress until the endpoints' wireup is done and a first get went through.
        auto bytes = env.store->get("key", env.deadline);
        ASSERT_TRUE(bytes.isOk()) << bytes.status();
        auto key = RemoteKey::deserialize(*bytes);
        ASSERT_TRUE(key.isOk()) << key.status();
        if (env.rank == 0) {
          uint64_t word = 0;
          auto g = ep.get(&word, 8, *key, 64);
          ASSERT_TRUE(g.isOk()) << g.status();
          ASSERT_TRUE(g->wait(env.deadline).isOk());
        }
        progressBarrier(env, *m.ctx, "warm");
        if (env.rank == 1) {
          env.step("blocked on the store, not progressing");
          auto done = env.store->get("done", env.deadline);
          ASSERT_TRUE(done.isOk()) << done.status();
          const auto* mem = static_cast<const unsigned char*>(mr->address());
          EXPECT_EQ(__atomic_load_n(reinterpret_cast<const uint64_t*>(mem), __ATOMIC_SEQ_CST),
                    3000u);
          EXPECT_EQ(std::count(mem + 4096, mem + 8192, 0xa5), 4096);
          EXPECT_EQ(mem[kBytes - 1], 0x77) << "a store through mappedAddress did not arrive";
        } else {
          env.step("1000 gets, 1000 fetchAdds and a put while the owner sleeps");
          const Deadline soon = Deadline::after(std::chrono::seconds(10));
          std::vector<unsigned char> got(4096);
          for (int i = 0; i < 1000; ++i) {
            auto g = ep.get(got.data(), got.size(), *key, 64 + 4096 * (i % 200));
            ASSERT_TRUE(g.isOk()) << g.status();
            Status st = g->wait(soon);
            ASSERT_TRUE(st.isOk()) << "get " << i << ": " << st;
            auto a = ep.fetchAdd(*key, 0, 3);
            ASSERT_TRUE(a.isOk()) << a.status();
            st = a->wait(soon);
            ASSERT_TRUE(st.isOk()) << "fetchAdd " << i << ": " << st;
          }
          EXPECT_EQ(std::count(got.begin(), got.end(), 0x5a), 4096);
          // The same memory mapped here: loads see it, and a store reaches the owner.
          auto view = ep.mappedAddress(*key, 0, kBytes);
          ASSERT_TRUE(view.isOk()) << view.status();
          ASSERT_NE(*view, nullptr) << "UCX did not map a segment of a same-node peer";
          auto* mapped = static_cast<unsigned char*>(*view);
          EXPECT_EQ(std::count(mapped + 64, mapped + 4096, 0x5a), 4096 - 64);
          EXPECT_EQ(__atomic_load_n(reinterpret_cast<uint64_t*>(mapped), __ATOMIC_SEQ_CST), 3000u);
          mapped[kBytes - 1] = 0x77;
          ASSERT_TRUE(ep.releaseMapping(*key).isOk());
          ASSERT_TRUE(ep.releaseMapping(*key).isOk()) << "releasing twice is not an error";
          // A key whose address does not match its segment (corrupt, or forged with a valid
          // checksum) would map outside it: refused, no pointer into this process's memory.
          transport::RemoteKey bent = *key;
          bent.address += uint64_t{1} << 45;
          bent.region_id += 1000;  // not the cached key
          bent.seal();
          auto wild = ep.mappedAddress(bent, 0, 64);
          ASSERT_FALSE(wild.isOk()) << "mapped to " << *wild;
          EXPECT_EQ(wild.status().code(), StatusCode::kInvalidArgument);
          EXPECT_NE(wild.status().message().find("not inside one shared-memory mapping"),
                    std::string::npos)
              << wild.status();
          std::vector<unsigned char> src(4096, 0xa5);
          auto p = ep.put(src.data(), src.size(), *key, 4096);
          ASSERT_TRUE(p.isOk()) << p.status();
          ASSERT_TRUE(p->wait(soon).isOk());
          auto f = ep.flush();
          ASSERT_TRUE(f.isOk()) << f.status();
          ASSERT_TRUE(f->wait(soon).isOk());
          ASSERT_TRUE(env.store->set("done", "1").isOk());
        }
        progressBarrier(env, *m.ctx, "done");
      },
      o);
}

// posix: shm_open'ed segments, mapped by the peer through /proc/<pid>/fd; sysv: shmget.
INSTANTIATE_TEST_SUITE_P(Ucx, UcxAllocatedMemory, ::testing::Values("posix", "sysv"));

#else
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(TransportConformance);
#endif

}  // namespace weft::transport::testing
