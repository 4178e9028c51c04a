// Device (GPU) buffers on the verbs data path, on soft-RoCE without a GPU: a stand-in device
// whose buffers the CPU cannot touch (see TestDevice), installed with
// verbs::setDeviceMemoryForTesting. Both paths of verbs_device_memory.h run: staging through
// host memory (the device has no GPUDirect) and GPUDirect (the device registers its memory
// for the NIC the way a dma-buf MR does: the pages, at the device addresses as iova).
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "tests/support/test_env.h"
#include "tests/transport/conformance.h"
#include "tests/transport/verbs_test_util.h"
#include "transport/ibverbs/verbs_device_memory.h"
#include "transport/ibverbs/verbs_internal.h"

namespace weft::transport::testing {
namespace {

using weft::testing::containsText;
using weft::testing::RankEnv;
using weft::testing::RankOptions;
using weft::testing::runRanks;

constexpr size_t kMiB = size_t{1} << 20;

// A GPU stand-in: one memfd mapped twice. The "device" addresses are a PROT_NONE mapping,
// so a CPU access by the transport faults and a plain ibv_reg_mr of them fails, as for
// cudaMalloc'ed memory. The test and the device's copies use the read-write view.
class TestDevice final : public verbs::DeviceMemory {
 public:
  TestDevice(size_t bytes, bool gpudirect) : size_(bytes), gpudirect_(gpudirect) {
    fd_ = ::memfd_create("weft-test-device", MFD_CLOEXEC);
    if (fd_ < 0 || ::ftruncate(fd_, static_cast<off_t>(bytes)) != 0) {
      throw std::runtime_error("memfd for the test device failed");
    }
    void* d = ::mmap(nullptr, bytes, PROT_NONE, MAP_SHARED, fd_, 0);
    void* v = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (d == MAP_FAILED || v == MAP_FAILED) throw std::runtime_error("mmap for the test device");
    dev_ = static_cast<char*>(d);
    view_ = static_cast<char*>(v);
  }
  ~TestDevice() override {
    ::munmap(dev_, size_);
    ::munmap(view_, size_);
    ::close(fd_);
  }
  char* device(size_t offset) const { return dev_ + offset; }
  char* view(size_t offset) const { return view_ + offset; }

  std::string_view name() const override { return "test-device"; }
  bool contains(const void* p) const override {
    const auto* c = static_cast<const char*>(p);
    return c >= dev_ && c < dev_ + size_;
  }
  Status toHost(void* dst, const void* src, size_t n) override {
    WEFT_RETURN_IF_ERROR(check(src, n, "toHost"));
    std::memcpy(dst, translate(src), n);
    ++to_host;
    return Status::ok();
  }
  Status toDevice(void* dst, const void* src, size_t n) override {
    WEFT_RETURN_IF_ERROR(check(dst, n, "toDevice"));
    std::memcpy(translate(dst), src, n);
    ++to_device;
    return Status::ok();
  }
  Status flushNicWrites(void* p) override {
    WEFT_RETURN_IF_ERROR(check(p, 1, "flushNicWrites"));
    ++flushes;
    return Status::ok();
  }
  Result<ibv_mr*> registerForNic(const verbs::VerbsState& st, std::string_view what, void* p,
                                 size_t n, int access) override {
    ++nic_attempts;
    WEFT_RETURN_IF_ERROR(check(p, n, "registerForNic"));
    if (!gpudirect_) {
      return WEFT_ERROR(StatusCode::kNotSupported, what, ": the test device has no GPUDirect");
    }
    ibv_mr* mr = ibv_reg_mr_iova2(st.pd(), translate(p), n, reinterpret_cast<uintptr_t>(p),
                                  static_cast<unsigned>(access));
    if (mr == nullptr) {
      return WEFT_ERROR(StatusCode::kIoError, what, ": ibv_reg_mr_iova2: ", errnoString(errno));
    }
    ++nic_registrations;
    return mr;
  }

  int to_host = 0;
  int to_device = 0;
  int nic_attempts = 0;
  int nic_registrations = 0;
  int flushes = 0;

 private:
  Status check(const void* p, size_t n, const char* what) const {
    const auto* c = static_cast<const char*>(p);
    if (!contains(p) || n > size_ || c + n > dev_ + size_) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, "test device ", what, ": [", p, "+", n,
                        ") is outside its memory");
    }
    return Status::ok();
  }
  char* translate(const void* p) const { return view_ + (static_cast<const char*>(p) - dev_); }

  size_t size_;
  bool gpudirect_;
  int fd_ = -1;
  char* dev_ = nullptr;
  char* view_ = nullptr;
};

// Installs a device for the rank's lifetime (ranks are processes: nothing leaks across).
struct InstalledDevice {
  TestDevice device;
  InstalledDevice(size_t bytes, bool gpudirect) : device(bytes, gpudirect) {
    verbs::setDeviceMemoryForTesting(&device);
  }
  ~InstalledDevice() { verbs::setDeviceMemoryForTesting(nullptr); }
};

Mesh verbsMesh(RankEnv& env) {
  BackendConfig cfg{"verbs", "verbs", {}};
  return openMesh(env, cfg);
}

RankOptions deviceRanks(std::vector<std::pair<std::string, std::string>> env = {}) {
  RankOptions o;
  o.timeout_s = 120;
  o.env = {{"WEFT_IB_DEVICE", verbsTestDevice()}};
  for (auto& e : env) o.env.push_back(std::move(e));
  return o;
}

// The peer's RemoteKey published under `name`.
RemoteKey fetchKey(RankEnv& env, const char* name) {
  return must(RemoteKey::deserialize(must(env.store->get(name, env.deadline), name)), name);
}

// Sizes across the paths: inline, eager copy, zero-copy eager, rendezvous.
const std::vector<size_t> kSizes = {8, 1000, 4096, 64 * 1024, 3 * kMiB + 5};

// Every size moves device -> device by send / recv, device -> host memory by put and
// host memory -> device by get (rank 1 owns the host region), then a putNotify from the
// device and a receive too small for its message; the bytes arrive, the counters of both
// ranks show which path each operation took.
// (One rank of moveEveryWay; its Context closes at the end.)
void moveEveryWayIn(RankEnv& env, TestDevice& dev, bool gpudirect) {
  Mesh m = verbsMesh(env);
  Endpoint& ep = m.to(1 - env.rank);
  std::vector<char> host(8 * kMiB);
  std::unique_ptr<MemoryRegion> region;
  if (env.rank == 1) {
    fillPattern(host.data() + 4 * kMiB, 4 * kMiB, 99);  // what the gets read
    region = must(m.ctx->registerMemory(host.data(), host.size()), "register host");
    must(env.store->set("device/key", region->remoteKey().serialize()), "publish key");
  }
  const int n_sizes = static_cast<int>(kSizes.size());
  int eager_sends = 0;
  for (size_t i = 0; i < kSizes.size(); ++i) {
    const size_t n = kSizes[i];
    eager_sends += n <= 8000;  // under the default eager size with any header
    env.step(strCat("send/recv of ", n, " bytes"));
    if (env.rank == 0) {
      fillPattern(dev.view(0), n, 10 + i);
      Request s = must(ep.send(dev.device(0), n, i), "send");
      must(s.wait(env.deadline), "send");
    } else {
      std::memset(dev.view(kMiB * 8), 0, n);
      // Room for a rendezvous: with GPUDirect the buffer is registered, and small
      // messages arrive into it eagerly (copied to the device by the CPU path).
      Request r = must(ep.recv(dev.device(kMiB * 8), n + 64 * 1024, i), "recv");
      must(r.wait(env.deadline), "recv");
      EXPECT_EQ(r.bytes(), n);
      ASSERT_EQ(checkPattern(dev.view(kMiB * 8), n, 10 + i), n) << n << " bytes";
    }
  }
  int inline_puts = 0;
  if (env.rank == 0) {
    RemoteKey key = fetchKey(env, "device/key");
    for (size_t i = 0; i < kSizes.size(); ++i) {
      const size_t n = kSizes[i];
      inline_puts += n <= m.ctx->capabilities().max_inline;
      env.step(strCat("put / get of ", n, " bytes"));
      fillPattern(dev.view(0), n, 30 + i);
      Request p = must(ep.put(dev.device(0), n, key, 0), "put");
      must(p.wait(env.deadline), "put");
      must(must(ep.flush(), "flush").wait(env.deadline), "flush");
      std::memset(dev.view(kMiB * 4), 0, n);
      Request g = must(ep.get(dev.device(kMiB * 4), n, key, 4 * kMiB), "get");
      must(g.wait(env.deadline), "get");
      ASSERT_EQ(checkPattern(dev.view(kMiB * 4), n, 99), n) << n << " bytes read";
    }
    env.step("putNotify");
    fillPattern(dev.view(0), 100000, 55);
    must(must(ep.putNotify(dev.device(0), 100000, key, 0, 0x5eed), "putNotify").wait(env.deadline),
         "putNotify");
  } else {
    env.step("waiting for the notification");
    Request nt = must(ep.recvNotify(), "recvNotify");
    must(nt.wait(env.deadline), "recvNotify");
    EXPECT_EQ(nt.value(), 0x5eedu);
    EXPECT_EQ(checkPattern(host.data(), 100000, 55), 100000u) << "the putNotify's bytes";
  }
  // A device receive too small for its message fails and leaves the buffer alone.
  env.step("truncated receive");
  if (env.rank == 0) {
    fillPattern(dev.view(0), 200000, 66);
    Result<Request> s = ep.send(dev.device(0), 200000, 77);
    ASSERT_TRUE(s.isOk()) << s.status();
    EXPECT_FALSE(s->wait(env.deadline).isOk()) << "the receiver's buffer is too small";
  } else {
    std::memset(dev.view(kMiB * 8), 0x11, 100000);
    Request r = must(ep.recv(dev.device(kMiB * 8), 100000, 77), "recv");
    const Status st = r.wait(env.deadline);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st;
    EXPECT_TRUE(containsText(st.message(), "truncated")) << st;
    EXPECT_EQ(static_cast<unsigned char>(*dev.view(kMiB * 8)), 0x11);
  }
  std::cout << "rank " << env.rank << " (GPUDirect " << (gpudirect ? "on" : "off") << "): to host "
            << dev.to_host << ", to device " << dev.to_device << ", NIC registrations "
            << dev.nic_registrations << " of " << dev.nic_attempts << " tries, flushes "
            << dev.flushes << "\n";
  if (gpudirect) {
    EXPECT_EQ(dev.nic_registrations, dev.nic_attempts);
    if (env.rank == 0) {  // copied: the eager sends and inline puts, nothing else
      EXPECT_EQ(dev.to_host, eager_sends + inline_puts);
      EXPECT_EQ(dev.to_device, 0);
      EXPECT_EQ(dev.flushes, n_sizes) << "one per get";
      // registered: rendezvous sends, other puts, every get, the putNotify, the
      // truncated send
      EXPECT_EQ(dev.nic_registrations,
                (n_sizes - eager_sends) + (n_sizes - inline_puts) + n_sizes + 2);
    } else {  // every receive had room for a rendezvous: registered
      EXPECT_EQ(dev.nic_registrations, n_sizes + 1);
      EXPECT_EQ(dev.to_device, eager_sends) << "eager messages are copied in";
      EXPECT_EQ(dev.flushes, n_sizes);
    }
  } else {
    EXPECT_EQ(dev.nic_attempts, 1) << "auto gives up on GPUDirect after one failure";
    EXPECT_EQ(dev.nic_registrations, 0);
    EXPECT_EQ(dev.flushes, 0);
    if (env.rank == 0) {  // sends, puts, the putNotify and the truncated send; gets
      EXPECT_EQ(dev.to_host, 2 * n_sizes + 2);
      EXPECT_EQ(dev.to_device, n_sizes);
    } else {  // receives (not the truncated one)
      EXPECT_EQ(dev.to_device, n_sizes);
    }
  }
  env.barrier("done");
}

void moveEveryWay(bool gpudirect, std::vector<std::pair<std::string, std::string>> env_vars = {}) {
  runRanks(
      2,
      [gpudirect](RankEnv& env) {
        InstalledDevice inst(16 * kMiB, gpudirect);
        TestDevice& dev = inst.device;
        moveEveryWayIn(env, dev, gpudirect);
        // Every registration of a device buffer (per operation) was released.
        const verbs::LiveObjects live = verbs::liveObjects();
        EXPECT_EQ(live.mrs, 0) << "memory registrations left after the Context closed";
        EXPECT_EQ(live.qps, 0);
      },
      deviceRanks(std::move(env_vars)));
}

TEST(VerbsDeviceMemory, StagedThroughHostMemoryWithoutGpuDirect) {
  WEFT_REQUIRE_VERBS_DEVICE();
  moveEveryWay(false);
}

TEST(VerbsDeviceMemory, ZeroCopyWithGpuDirect) {
  WEFT_REQUIRE_VERBS_DEVICE();
  moveEveryWay(true);
}

// The RDMA WRITE rendezvous: the receiver's clear-to-send names the device address.
TEST(VerbsDeviceMemory, ZeroCopyWithGpuDirectAndWriteRendezvous) {
  WEFT_REQUIRE_VERBS_DEVICE();
  moveEveryWay(true, {{"WEFT_IB_RNDV", "write"}});
}

// A registered device region is a one-sided target with GPUDirect (peers put into device
// memory), and refused without it (a staged copy would go stale behind the peer's back).
TEST(VerbsDeviceMemory, RegisteredRegionNeedsGpuDirect) {
  WEFT_REQUIRE_VERBS_DEVICE();
  runRanks(
      2,
      [](RankEnv& env) {
        InstalledDevice inst(4 * kMiB, env.rank == 1);
        TestDevice& dev = inst.device;
        Mesh m = verbsMesh(env);
        Endpoint& ep = m.to(1 - env.rank);
        constexpr size_t n = 256 * 1024;
        if (env.rank == 0) {
          auto refused = m.ctx->registerMemory(dev.device(0), n, MemoryType::kCuda);
          EXPECT_EQ(refused.status().code(), StatusCode::kNotSupported) << refused.status();
          EXPECT_TRUE(containsText(refused.status().message(), "no GPUDirect")) << refused.status();
          RemoteKey key = fetchKey(env, "device/region");
          std::vector<char> src(n);
          fillPattern(src.data(), n, 77);
          must(must(ep.put(src.data(), n, key, 0), "put").wait(env.deadline), "put");
          must(must(ep.flush(), "flush").wait(env.deadline), "flush");
          uint64_t token = 1;
          must(must(ep.send(&token, sizeof(token), 5), "send").wait(env.deadline), "send");
        } else {
          auto region = must(m.ctx->registerMemory(dev.device(0), n, MemoryType::kCuda),
                             "register device memory");
          must(env.store->set("device/region", region->remoteKey().serialize()), "publish");
          uint64_t token = 0;
          must(must(ep.recv(&token, sizeof(token), 5), "recv").wait(env.deadline), "recv");
          EXPECT_EQ(checkPattern(dev.view(0), n, 77), n) << "the peer's put reached the device";
        }
        env.barrier("done");
      },
      deviceRanks());
}

// WEFT_GPUDIRECT=off refuses device buffers; on refuses to stage what would be zero-copy
// (eager sizes are copies for any memory, so they still go); errors name the operation.
void gpuDirectMode(const std::string& mode) {
  runRanks(
      2,
      [mode](RankEnv& env) {
        InstalledDevice inst(4 * kMiB, false);
        TestDevice& dev = inst.device;
        Mesh m = verbsMesh(env);
        Endpoint& ep = m.to(1 - env.rank);
        if (env.rank == 0) {
          auto big = ep.send(dev.device(0), 2 * kMiB, 1);
          ASSERT_FALSE(big.isOk()) << mode;
          EXPECT_EQ(big.status().code(), StatusCode::kNotSupported) << big.status();
          EXPECT_TRUE(containsText(big.status().message(), "send on")) << big.status();
          if (mode == "off") {
            EXPECT_TRUE(containsText(big.status().message(), "WEFT_GPUDIRECT=off")) << big.status();
            EXPECT_FALSE(ep.send(dev.device(0), 64, 2).isOk());
            EXPECT_EQ(dev.nic_attempts, 0);
          } else {
            EXPECT_TRUE(containsText(big.status().message(), "no GPUDirect")) << big.status();
            fillPattern(dev.view(0), 64, 3);
            must(must(ep.send(dev.device(0), 64, 2), "small send").wait(env.deadline),
                 "small send");
          }
        } else if (mode == "on") {
          std::vector<char> in(64);
          must(must(ep.recv(in.data(), in.size(), 2), "recv").wait(env.deadline), "recv");
          EXPECT_EQ(checkPattern(in.data(), 64, 3), 64u);
        }
        env.barrier("done");
      },
      deviceRanks({{"WEFT_GPUDIRECT", mode}}));
}

TEST(VerbsDeviceMemory, GpuDirectOffRefusesDeviceBuffers) {
  WEFT_REQUIRE_VERBS_DEVICE();
  gpuDirectMode("off");
}

TEST(VerbsDeviceMemory, GpuDirectOnRefusesToStageLargeBuffers) {
  WEFT_REQUIRE_VERBS_DEVICE();
  gpuDirectMode("on");
}

}  // namespace
}  // namespace weft::transport::testing
