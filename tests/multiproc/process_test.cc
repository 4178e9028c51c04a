// Tests of common/process.h: spawning, exit descriptions, output pumping, waits with
// deadlines, stopping, and that no process of a child's group outlives it.
#include "common/process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/rank_harness.h"

namespace weft {
namespace {

using testing::containsText;

// True when pid is gone or a zombie.
bool processGone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;
  size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z';
}

bool waitGone(pid_t pid) {
  Deadline deadline = Deadline::afterSeconds(10);
  while (!processGone(pid) && !deadline.expired()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return processGone(pid);
}

Captured run(std::vector<std::string> argv, double timeout_s = 30) {
  SpawnOptions so;
  so.argv = std::move(argv);
  auto r = runCaptured(so, Deadline::afterSeconds(timeout_s));
  EXPECT_TRUE(r.isOk()) << r.status();
  return r.isOk() ? *r : Captured{};
}

TEST(ExitStatus, DescribesExitsAndSignals) {
  EXPECT_EQ(ExitStatus::exited(0).toString(), "exited with status 0");
  EXPECT_EQ(ExitStatus::exited(3).toString(), "exited with status 3");
  EXPECT_EQ(ExitStatus::killed(SIGKILL).toString(), "was killed by signal 9 (SIGKILL)");
  EXPECT_EQ(ExitStatus::killed(SIGSEGV).toString(), "was killed by signal 11 (SIGSEGV)");
  EXPECT_EQ(ExitStatus::killed(SIGKILL).shellCode(), 137);
  EXPECT_EQ(ExitStatus::exited(7).shellCode(), 7);
  EXPECT_TRUE(ExitStatus::exited(0).success());
  EXPECT_FALSE(ExitStatus::killed(SIGTERM).success());
  EXPECT_EQ(signalName(SIGTERM), "SIGTERM");
}

TEST(LineSplitter, WholeLinesWithPrefixAndPartialLastLine) {
  std::vector<std::string> lines;
  LineSplitter split("[1] ", [&](std::string_view l) { lines.emplace_back(l); });
  split.feed("ab");
  split.feed("c\nde");
  EXPECT_EQ(lines, (std::vector<std::string>{"[1] abc\n"}));
  split.feed("\n\nlast");
  split.finish();
  split.finish();  // nothing left: no empty line
  EXPECT_EQ(lines, (std::vector<std::string>{"[1] abc\n", "[1] de\n", "[1] \n", "[1] last\n"}));
}

TEST(LineSplitter, CutsVeryLongLines) {
  std::vector<std::string> lines;
  LineSplitter split("", [&](std::string_view l) { lines.emplace_back(l); });
  split.feed(std::string(100 * 1024, 'x'));
  split.finish();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].size() + lines[1].size(), 100 * 1024 + 2u);
}

TEST(Process, CapturesOutputEnvironmentAndStatus) {
  ::setenv("PROCESS_TEST_DROPPED", "1", 1);
  SpawnOptions so;
  so.argv = {"sh", "-c", "echo \"$1|$EXTRA|${PROCESS_TEST_DROPPED:-unset}\"; echo err >&2; exit 4",
             "sh", "two words"};
  so.env = {{"EXTRA", "x y"}};
  so.unset_env = {"PROCESS_TEST_DROPPED"};
  auto r = runCaptured(so, Deadline::afterSeconds(30));
  ::unsetenv("PROCESS_TEST_DROPPED");
  ASSERT_TRUE(r.isOk()) << r.status();
  EXPECT_EQ(r->out, "two words|x y|unset\n");
  EXPECT_EQ(r->err, "err\n");
  EXPECT_EQ(r->status.toString(), "exited with status 4");
  EXPECT_FALSE(r->timed_out);
}

TEST(Process, StdinIsDevNull) {
  Captured c = run({"sh", "-c", "cat; echo done"});
  EXPECT_EQ(c.out, "done\n");
}

TEST(Process, MissingOrUnexecutableProgramIsAnError) {
  SpawnOptions so;
  so.argv = {"weft-no-such-program"};
  auto missing = Process::spawn(so);
  ASSERT_FALSE(missing.isOk());
  EXPECT_TRUE(containsText(missing.status().message(), "'weft-no-such-program' not found"));
  char path[] = "/tmp/weft-process-test-XXXXXX";  // exists, not executable (mode 0600)
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  so.argv = {path};
  auto denied = Process::spawn(so);
  ::unlink(path);
  ASSERT_FALSE(denied.isOk());
  EXPECT_TRUE(containsText(denied.status().message(), strCat("cannot execute '", path, "'")));
  EXPECT_TRUE(containsText(denied.status().message(), "Permission denied"));
}

TEST(Process, WaitTimesOutThenStopTerminates) {
  SpawnOptions so;
  so.argv = {"sleep", "30"};
  auto p = Process::spawn(so);
  ASSERT_TRUE(p.isOk()) << p.status();
  auto early = (*p)->wait(Deadline::afterSeconds(0.05));
  ASSERT_FALSE(early.isOk());
  EXPECT_EQ(early.status().code(), StatusCode::kTimeout);
  EXPECT_TRUE(containsText(early.status().message(), "still running"));
  auto stopped = (*p)->stop(std::chrono::seconds(5));
  ASSERT_TRUE(stopped.isOk()) << stopped.status();
  EXPECT_EQ(stopped->toString(), "was killed by signal 15 (SIGTERM)");
  EXPECT_FALSE((*p)->running());
}

TEST(Process, StopEscalatesToSigkill) {
  SpawnOptions so;
  so.argv = {"sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"};
  auto p = Process::spawn(so);
  ASSERT_TRUE(p.isOk()) << p.status();
  char buf[16] = {};  // wait for "ready": the trap is in place
  pollfd pfd{(*p)->stdoutFd(), POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 10000), 1);
  ASSERT_GT(::read((*p)->stdoutFd(), buf, sizeof(buf)), 0);
  auto stopped = (*p)->stop(std::chrono::milliseconds(200));
  ASSERT_TRUE(stopped.isOk()) << stopped.status();
  EXPECT_EQ(stopped->toString(), "was killed by signal 9 (SIGKILL)");
}

TEST(Process, LeftoversOfTheGroupDieWithTheLeader) {
  Captured c = run({"sh", "-c", "sleep 30 & echo $!"});
  EXPECT_TRUE(c.status.success());
  pid_t background = std::atoi(c.out.c_str());
  ASSERT_GT(background, 0) << c.out;
  EXPECT_TRUE(waitGone(background)) << "the background sleep outlived its shell";
}

TEST(Process, KeptDescriptorReachesTheChild) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  SpawnOptions so;
  so.argv = {"sh", "-c", "echo through-fd >&" + std::to_string(fds[1])};
  so.keep_fds = {fds[1]};
  auto r = runCaptured(so, Deadline::afterSeconds(30));
  ::close(fds[1]);
  ASSERT_TRUE(r.isOk()) << r.status();
  EXPECT_TRUE(r->status.success()) << r->err;
  char buf[64] = {};
  ASSERT_GT(::read(fds[0], buf, sizeof(buf) - 1), 0);
  ::close(fds[0]);
  EXPECT_STREQ(buf, "through-fd\n");
}

TEST(Process, RunCapturedStopsAtTheDeadline) {
  Captured c = run({"sh", "-c", "echo before; sleep 30; true"}, 0.3);
  EXPECT_TRUE(c.timed_out);
  EXPECT_EQ(c.out, "before\n");
  EXPECT_EQ(c.status.toString(), "was killed by signal 15 (SIGTERM)");
}

TEST(Supervisor, PrefixesOutputAndReportsEachExit) {
  Supervisor sup;
  std::vector<std::string> out, err;
  for (int i = 0; i < 3; ++i) {
    SpawnOptions so;
    so.argv = {"sh", "-c", strCat("echo out", i, "; echo err", i, " >&2; exit ", i)};
    auto p = Process::spawn(so);
    ASSERT_TRUE(p.isOk()) << p.status();
    sup.add(
        std::move(p).value(), strCat("[", i, "] "),
        [&](std::string_view l) { out.emplace_back(l); },
        [&](std::string_view l) { err.emplace_back(l); });
  }
  std::vector<int> codes(3, -1);
  Deadline deadline = Deadline::afterSeconds(30);
  while (sup.numRunning() > 0 && !deadline.expired()) {
    auto exits = sup.pump(deadline);
    ASSERT_TRUE(exits.isOk()) << exits.status();
    for (const auto& e : *exits) codes[e.index] = e.status.code;
  }
  EXPECT_EQ(codes, (std::vector<int>{0, 1, 2}));
  std::sort(out.begin(), out.end());
  std::sort(err.begin(), err.end());
  EXPECT_EQ(out, (std::vector<std::string>{"[0] out0\n", "[1] out1\n", "[2] out2\n"}));
  EXPECT_EQ(err, (std::vector<std::string>{"[0] err0\n", "[1] err1\n", "[2] err2\n"}));
}

TEST(Supervisor, WakeFdInterruptsPumpAndStopAllEndsEveryone) {
  Supervisor sup;
  for (int i = 0; i < 2; ++i) {
    SpawnOptions so;
    so.argv = {"sleep", "30"};
    auto p = Process::spawn(so);
    ASSERT_TRUE(p.isOk()) << p.status();
    sup.add(std::move(p).value(), "", LineSink(), LineSink());
  }
  int wake = ::eventfd(1, EFD_CLOEXEC);  // already readable
  ASSERT_GE(wake, 0);
  auto exits = sup.pump(Deadline::afterSeconds(30), wake);
  ::close(wake);
  ASSERT_TRUE(exits.isOk());
  EXPECT_TRUE(exits->empty());
  EXPECT_EQ(sup.numRunning(), 2u);
  std::vector<pid_t> pids = {sup.process(0).pid(), sup.process(1).pid()};
  auto stopped = sup.stopAll(std::chrono::seconds(5));
  EXPECT_EQ(stopped.size(), 2u);
  EXPECT_EQ(sup.numRunning(), 0u);
  for (const auto& e : stopped) EXPECT_EQ(e.status.signal, SIGTERM);
}

}  // namespace
}  // namespace weft
