// "No allocation on the hot path of a small send after warm-up", checked by counting the
// calling thread's heap allocations (tools/alloc_count.h: malloc family interposed for this
// test binary; counting only while a test enables it on its own thread). Covers our code and
// UCX's (both allocate through malloc / posix_memalign).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "common/store/store.h"
#include "tools/alloc_count.h"
#include "transport/api/context.h"

namespace weft::transport {
namespace {

#ifdef WEFT_HAVE_UCX
// One round trip of 8-byte messages through a loopback endpoint, waited on.
void roundTrip(Endpoint& ep, uint64_t& out, uint64_t& in) {
  Result<Request> r = ep.recv(&in, sizeof(in), 3);
  Result<Request> s = ep.send(&out, sizeof(out), 3);
  if (!r.isOk() || !s.isOk()) throw std::runtime_error("post failed");
  if (!s->wait(Deadline::never()).isOk() || !r->wait(Deadline::never()).isOk()) {
    throw std::runtime_error("wait failed");
  }
  ++out;
}

TEST(HotPathTest, SmallSendRecvAllocatesNothingAfterWarmUp) {
  if (!alloc::allocCountAvailable()) GTEST_SKIP() << "allocation counting is off under sanitizers";
  auto ctx = openContext("ucx");
  ASSERT_TRUE(ctx.isOk()) << ctx.status();
  auto store = makeHashStore();
  auto ep = (*ctx)->connect(*store, 0, Deadline::afterSeconds(10));
  ASSERT_TRUE(ep.isOk()) << ep.status();
  uint64_t out = 0;
  uint64_t in = 0;
  for (int i = 0; i < 2000; ++i) roundTrip(**ep, out, in);  // warm-up
  alloc::startAllocCount();
  // getppid() marks the measured window for a syscall check by hand:
  //   strace -f -o trace ./weft_transport_tests --gtest_filter='HotPath*'
  // and count the calls between the two getppid lines of this thread.
  ::getppid();
  for (int i = 0; i < 10000; ++i) roundTrip(**ep, out, in);
  ::getppid();
  const alloc::AllocCount hot = alloc::stopAllocCount();
  EXPECT_EQ(hot.total, 0u) << "heap allocations in 10000 small send/recv round trips";
  if (hot.total != 0) alloc::printFirstAllocation(hot);
  // The counter sees allocations made inside UCX too (ucp_mem_map allocates its handle).
  std::vector<char> mem(4096);
  alloc::startAllocCount();
  auto mr = (*ctx)->registerMemory(mem.data(), mem.size());
  const alloc::AllocCount reg = alloc::stopAllocCount();
  ASSERT_TRUE(mr.isOk()) << mr.status();
  EXPECT_GE(reg.total, 1u);
  EXPECT_EQ(in, out - 1);
}
#endif

}  // namespace
}  // namespace weft::transport
