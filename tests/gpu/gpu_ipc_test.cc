// CUDA IPC across two real processes: this binary starts itself as the child
// (gpu_test_main.cc: --weft-gpu-ipc-child HANDLE), which opens the parent's allocation,
// checks the value the parent wrote and writes its own.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "gpu/device_buffer.h"
#include "gpu/ipc.h"
#include "tests/gpu/gpu_test_util.h"

extern char** environ;

namespace weft::gpu {
namespace {

constexpr uint64_t kParentValue = 0x5eedf00dcafe0001ull;
constexpr uint64_t kChildValue = 0x5eedf00dcafe0002ull;
constexpr size_t kOffset = 4096 + 64;  // an interior pointer: the handle carries the offset

// Waits up to `seconds` for the child; kills it after that. Returns the wait status or -1.
int waitChild(pid_t pid, int seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  int status = 0;
  while (std::chrono::steady_clock::now() < end) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return -1;
}

TEST(GpuIpc, HandleSerializesAndRejectsGarbage) {
  IpcHandle h;
  h.device = 3;
  h.offset = 4160;
  h.size = 77;
  for (size_t i = 0; i < sizeof h.handle.reserved; ++i)
    h.handle.reserved[i] = static_cast<char>(i * 37);
  Result<IpcHandle> back = IpcHandle::parse(h.serialize());
  ASSERT_TRUE(back.isOk()) << back.status();
  EXPECT_EQ(back.value().device, 3);
  EXPECT_EQ(back.value().offset, 4160u);
  EXPECT_EQ(back.value().size, 77u);
  EXPECT_EQ(std::memcmp(back.value().handle.reserved, h.handle.reserved, sizeof h.handle.reserved),
            0);
  for (const char* bad : {"", "1:2:3", "1:2:3:zz", "x:2:3:00"}) {
    Result<IpcHandle> r = IpcHandle::parse(bad);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(GpuIpc, ValueCrossesTwoProcesses) {
  WEFT_REQUIRE_GPU();
  Result<DeviceBuffer> buf = DeviceBuffer::allocate(1 << 20);
  ASSERT_TRUE(buf.isOk()) << buf.status();
  ASSERT_TRUE(buf.value().fill(0).isOk());
  ASSERT_TRUE(buf.value().copyFromHost(&kParentValue, sizeof kParentValue, kOffset).isOk());
  char* interior = static_cast<char*>(buf.value().data()) + kOffset;
  Result<IpcHandle> h = exportIpc(interior, 4096);
  ASSERT_TRUE(h.isOk()) << h.status();
  EXPECT_EQ(h.value().offset, kOffset);
  const std::string text = h.value().serialize();
  std::cout << "[ ipc      ] handle " << text.substr(0, 40) << "...\n";

  std::vector<std::string> args = {testing::selfPath(), "--weft-gpu-ipc-child", text};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  ASSERT_EQ(posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ), 0);
  const int status = waitChild(pid, 90);
  ASSERT_NE(status, -1) << "IPC child did not finish within 90 s (killed)";
  ASSERT_TRUE(WIFEXITED(status)) << "IPC child died, wait status " << status;
  ASSERT_EQ(WEXITSTATUS(status), 0) << "IPC child failed (its stderr above says why)";

  uint64_t seen = 0;
  ASSERT_TRUE(buf.value().copyToHost(&seen, sizeof seen, kOffset).isOk());
  EXPECT_EQ(seen, kChildValue) << std::hex << seen;
}

}  // namespace

// The child side: exit code 0 when the parent's value was read and ours written.
int runIpcChild(const char* text) {
  Result<IpcHandle> h = IpcHandle::parse(text);
  if (!h.isOk()) {
    std::cerr << "ipc child: " << h.status() << "\n";
    return 2;
  }
  Result<IpcMapping> m = IpcMapping::open(h.value());
  if (!m.isOk()) {
    std::cerr << "ipc child: " << m.status() << "\n";
    return 3;
  }
  uint64_t v = 0;
  if (Status st = copyDeviceToHost(&v, m.value().data(), sizeof v); !st.isOk()) {
    std::cerr << "ipc child: " << st << "\n";
    return 4;
  }
  if (v != kParentValue) {
    std::cerr << "ipc child: read 0x" << std::hex << v << ", expected 0x" << kParentValue << "\n";
    return 5;
  }
  if (Status st = copyHostToDevice(m.value().data(), &kChildValue, sizeof kChildValue);
      !st.isOk()) {
    std::cerr << "ipc child: " << st << "\n";
    return 6;
  }
  std::cerr << "ipc child: read the parent's value and wrote 0x" << std::hex << kChildValue << "\n";
  return 0;
}

}  // namespace weft::gpu
