#include "tests/support/rank_harness.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <mutex>
#include <tuple>

#include "common/config.h"
#include "common/logging.h"
#include "common/status.h"

namespace weft::testing {

// Shared memory where each rank records its current step: one slot per rank, written by the
// rank (a sequence counter makes torn reads detectable), read by the parent after the ranks
// ended. The memfd is inherited by the ranks (WEFT_HARNESS_STEP_FD).
class StepBoard {
 public:
  static constexpr size_t kSlotSize = 512;

  static Result<std::unique_ptr<StepBoard>> create(int n) {
    int fd = ::memfd_create("weft-harness-steps", MFD_CLOEXEC);
    if (fd < 0) return WEFT_ERROR(StatusCode::kNoResource, "memfd_create: ", errnoString(errno));
    size_t size = kSlotSize * static_cast<size_t>(n);
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
      int err = errno;
      ::close(fd);
      return WEFT_ERROR(StatusCode::kNoResource, "ftruncate(step board): ", errnoString(err));
    }
    return map(fd, size);
  }

  static Result<std::unique_ptr<StepBoard>> attach(int fd) {
    struct stat st;
    if (::fstat(fd, &st) != 0 || st.st_size <= 0) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, "step board fd ", fd,
                        " (WEFT_HARNESS_STEP_FD) is not usable: ", errnoString(errno));
    }
    return map(fd, static_cast<size_t>(st.st_size));
  }

  ~StepBoard() {
    ::munmap(base_, size_);
    ::close(fd_);
  }
  StepBoard(const StepBoard&) = delete;
  StepBoard& operator=(const StepBoard&) = delete;

  int fd() const { return fd_; }

  void write(int rank, std::string_view what, std::string_view where) {
    char* slot = slotOf(rank);
    if (!slot) return;
    static std::mutex mu;  // one writer at a time per process
    std::lock_guard<std::mutex> lock(mu);
    std::atomic_ref<uint32_t> seq(*reinterpret_cast<uint32_t*>(slot));
    seq.fetch_add(1, std::memory_order_acq_rel);  // odd: writing
    char* text = slot + sizeof(uint32_t);
    size_t room = kSlotSize - sizeof(uint32_t) - 2;
    size_t a = std::min(what.size(), room / 2);
    size_t b = std::min(where.size(), room - a);
    std::memcpy(text, what.data(), a);
    text[a] = '\0';
    std::memcpy(text + a + 1, where.data(), b);
    text[a + 1 + b] = '\0';
    seq.fetch_add(1, std::memory_order_acq_rel);  // even: done
  }

  // (what, where); a write torn by a crash reads as whatever was there.
  std::pair<std::string, std::string> read(int rank) const {
    char* slot = slotOf(rank);
    if (!slot) return {};
    std::atomic_ref<uint32_t> seq(*reinterpret_cast<uint32_t*>(slot));
    char copy[kSlotSize];
    for (int attempt = 0; attempt < 3; ++attempt) {
      uint32_t before = seq.load(std::memory_order_acquire);
      std::memcpy(copy, slot, kSlotSize);
      if (before % 2 == 0 && seq.load(std::memory_order_acquire) == before) break;
    }
    copy[kSlotSize - 1] = '\0';
    const char* what = copy + sizeof(uint32_t);
    size_t len = ::strnlen(what, kSlotSize - sizeof(uint32_t) - 1);
    const char* where = what + len + 1;
    if (where >= copy + kSlotSize) return {what, ""};
    return {what, where};
  }

 private:
  StepBoard(int fd, char* base, size_t size) : fd_(fd), base_(base), size_(size) {}

  static Result<std::unique_ptr<StepBoard>> map(int fd, size_t size) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      return WEFT_ERROR(StatusCode::kNoResource, "mmap(step board): ", errnoString(err));
    }
    return std::unique_ptr<StepBoard>(new StepBoard(fd, static_cast<char*>(p), size));
  }

  char* slotOf(int rank) const {
    size_t off = kSlotSize * static_cast<size_t>(rank);
    return rank >= 0 && off + kSlotSize <= size_ ? base_ + off : nullptr;
  }

  int fd_;
  char* base_;
  size_t size_;
};

namespace {

// "tests/x.cc:42": the file relative to the source tree, as this file knows it.
std::string shortLocation(const std::source_location& where) {
  std::string_view file = where.file_name();
  std::string_view self = __FILE__;
  std::string_view suffix = "tests/support/rank_harness.cc";
  if (self.size() >= suffix.size() && self.substr(self.size() - suffix.size()) == suffix) {
    std::string_view root = self.substr(0, self.size() - suffix.size());
    if (!root.empty() && file.substr(0, root.size()) == root) file.remove_prefix(root.size());
  }
  return strCat(file, ":", where.line());
}

// Resets the per-test call count at every test start (also with --gtest_repeat).
class CallCounter : public ::testing::EmptyTestEventListener {
 public:
  static int& calls() {
    static int n = 0;
    return n;
  }
  void OnTestStart(const ::testing::TestInfo&) override { calls() = 0; }
};

bool countCall() {
  static bool installed = [] {
    ::testing::UnitTest::GetInstance()->listeners().Append(new CallCounter());
    return true;
  }();
  (void)installed;
  return ++CallCounter::calls() == 1;
}

std::string selfExe() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "/proc/self/exe";
  return std::string(buf, static_cast<size_t>(n));
}

// Forwards a rank's lines to fd, minus the banner gtest_main prints in every process.
LineSink rankSink(int fd) {
  return [out = fdLineSink(fd)](std::string_view line) {
    if (line.find("] Running main() from ") == std::string_view::npos) out(line);
  };
}

void flushAll() {
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
}

}  // namespace

void RankEnv::step(std::string_view what, std::source_location where) {
  if (board_) board_->write(rank, what, shortLocation(where));
}

bool RankEnv::barrier(std::string_view name) {
  std::string key = strCat("harness/barrier/", name);
  step(strCat("waiting in barrier '", name, "'"));
  auto n = store->add(key, 1);
  if (!n.isOk()) {
    ADD_FAILURE() << "rank " << rank << ": barrier '" << name << "': " << n.status();
    return false;
  }
  if (*n == size) {
    Status st = store->set(key + "/done", "1");
    if (!st.isOk()) ADD_FAILURE() << "rank " << rank << ": barrier '" << name << "': " << st;
  }
  Status st = store->wait({key + "/done"}, deadline);
  if (!st.isOk()) {
    ADD_FAILURE() << "rank " << rank << ": barrier '" << name << "': " << st;
    return false;
  }
  step(strCat("passed barrier '", name, "'"));
  return true;
}

std::string RankResult::describe(double timeout_s) const {
  std::string head = strCat("rank ", rank, " (pid ", pid, ") ");
  std::string at = last_step.empty() ? std::string() : strCat("'", last_step, "'");
  if (!last_step_where.empty()) at += strCat(" (", last_step_where, ")");
  if (timed_out) {
    return strCat(head, "did not finish within ", timeout_s, " s; ",
                  at.empty() ? "no step recorded" : "last step " + at);
  }
  if (stopped) {
    return strCat(head, "was stopped after rank ", stopped_after, " failed",
                  at.empty() ? "" : "; last step " + at);
  }
  if (never_ran) {
    return strCat(head, status.toString(), " without reaching runRanks (did the test take ",
                  "another path in the rank process, or does --gtest_filter not match it?)");
  }
  return strCat(head, status.toString(), at.empty() ? "" : " at step " + at);
}

::testing::AssertionResult containsText(std::string_view text, std::string_view part) {
  if (text.find(part) != std::string_view::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << part << "\" not found in:\n" << text;
}

bool isRankProcess() {
  return config::getBool("WEFT_HARNESS_CHILD").valueOr(false);
}

// The two sides of runRanks.
class RankRunner {
 public:
  RankRunner(int n, RankOptions opts) : n_(n), opts_(std::move(opts)) {}
  [[noreturn]] void runChild(const std::function<void(RankEnv&)>& body);
  std::vector<RankResult> runParent();

 private:
  Result<std::unique_ptr<Process>> spawnRank(int rank, const std::string& filter);
  void supervise(Supervisor& sup);
  void stopRunning(Supervisor& sup, bool timed_out, int failed_rank);
  void report() const;

  int n_;
  RankOptions opts_;
  std::unique_ptr<StepBoard> board_;
  std::unique_ptr<GroupGuard> guard_;
  std::unique_ptr<TcpStoreServer> server_;
  std::string job_id_;
  std::vector<RankResult> results_;
};

void RankRunner::runChild(const std::function<void(RankEnv&)>& body) {
  flushAll();
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // keep lines printed before a crash
  RankEnv env;
  env.rank = static_cast<int>(config::getInt("WEFT_RANK").valueOr(-1));
  env.size = static_cast<int>(config::getInt("WEFT_WORLD_SIZE").valueOr(0));
  // A little before the harness kills the ranks: a blocked call then reports its own timeout
  // (which request, which peer) instead of dying silently with the rank.
  env.deadline = Deadline::afterSeconds(opts_.timeout_s - std::min(5.0, opts_.timeout_s / 10));
  log::setRank(env.rank);
  auto run = [&] {
    ASSERT_EQ(env.size, n_) << "WEFT_WORLD_SIZE does not match runRanks(" << n_ << ", ...)";
    ASSERT_TRUE(env.rank >= 0 && env.rank < n_) << "bad WEFT_RANK " << env.rank;
    int fd = static_cast<int>(config::getInt("WEFT_HARNESS_STEP_FD").valueOr(-1));
    auto board = StepBoard::attach(fd);
    ASSERT_TRUE(board.isOk()) << board.status();
    board_ = std::move(board).value();
    env.board_ = board_.get();
    if (static_cast<size_t>(env.rank) < opts_.node_ids.size()) {
      env.node_id = opts_.node_ids[static_cast<size_t>(env.rank)];
    }
    env.step("connecting to the store");
    std::string addr = config::getString("WEFT_STORE_ADDR").valueOr("");
    auto store = connectStore(addr, env.deadline);
    ASSERT_TRUE(store.isOk()) << "rank " << env.rank << ": " << store.status();
    env.store = std::move(store).value();
    env.step("running the test body");
    try {
      body(env);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "rank " << env.rank << ": exception escaped the body: " << e.what();
    } catch (...) {
      ADD_FAILURE() << "rank " << env.rank << ": unknown exception escaped the body";
    }
  };
  run();
  flushAll();
  // _exit: no other test, no teardown, no static destructors racing the store's threads.
  ::_exit(::testing::Test::HasFailure() ? 1 : 0);
}

Result<std::unique_ptr<Process>> RankRunner::spawnRank(int rank, const std::string& filter) {
  SpawnOptions so;
  so.argv = {selfExe(), "--gtest_filter=" + filter, "--gtest_brief=1",
             "--gtest_also_run_disabled_tests"};
  int local_rank = rank, local_size = n_;
  if (!opts_.node_ids.empty()) {
    const std::string& me = opts_.node_ids[static_cast<size_t>(rank)];
    local_rank = 0;
    local_size = 0;
    for (int r = 0; r < n_; ++r) {
      bool same = opts_.node_ids[static_cast<size_t>(r)] == me;
      local_size += same;
      local_rank += same && r < rank;
    }
    so.env.emplace_back("WEFT_NODE_ID", me);
  }
  so.env.insert(so.env.end(), {{"WEFT_RANK", std::to_string(rank)},
                               {"WEFT_WORLD_SIZE", std::to_string(n_)},
                               {"WEFT_LOCAL_RANK", std::to_string(local_rank)},
                               {"WEFT_LOCAL_SIZE", std::to_string(local_size)},
                               {"WEFT_STORE_ADDR", strCat("127.0.0.1:", server_->port())},
                               {"WEFT_JOB_ID", job_id_},
                               {"WEFT_HARNESS_CHILD", "1"},
                               {"WEFT_HARNESS_STEP_FD", std::to_string(board_->fd())}});
  so.env.insert(so.env.end(), opts_.env.begin(), opts_.env.end());
  // A rank runs exactly one test and writes no report files.
  so.unset_env = {"GTEST_OUTPUT",
                  "GTEST_FILTER",
                  "GTEST_SHARD_INDEX",
                  "GTEST_TOTAL_SHARDS",
                  "GTEST_SHARD_STATUS_FILE",
                  "GTEST_REPEAT",
                  "XML_OUTPUT_FILE",
                  "WEFT_STORE_HOST_RANK0"};
  so.keep_fds = {board_->fd()};
  so.guard = guard_.get();
  return Process::spawn(so);
}

void RankRunner::stopRunning(Supervisor& sup, bool timed_out, int failed_rank) {
  for (auto& r : results_) {
    if (!sup.process(static_cast<size_t>(r.rank)).running()) continue;
    r.timed_out = timed_out;
    r.stopped = !timed_out;
    r.stopped_after = timed_out ? -1 : failed_rank;
  }
  for (const auto& e : sup.stopAll(std::chrono::milliseconds(500))) {
    results_[e.index].status = e.status;
  }
}

void RankRunner::supervise(Supervisor& sup) {
  Deadline deadline = Deadline::afterSeconds(opts_.timeout_s);
  Deadline stop_at = Deadline::never();
  int failed_rank = -1;
  while (sup.numRunning() > 0) {
    auto exits = sup.pump(deadline.min(stop_at));
    if (!exits.isOk()) {
      ADD_FAILURE() << "runRanks: " << exits.status();
      stopRunning(sup, false, -1);
      return;
    }
    for (const auto& e : *exits) {
      results_[e.index].status = e.status;
      int rank = static_cast<int>(e.index);
      if (!e.status.success() && !opts_.may_fail.count(rank) && failed_rank < 0) {
        failed_rank = rank;
        stop_at = Deadline::afterSeconds(opts_.failure_grace_s);
      }
    }
    if (sup.numRunning() == 0) return;
    if (deadline.expired()) {
      stopRunning(sup, true, -1);
    } else if (stop_at.expired()) {
      stopRunning(sup, false, failed_rank);
    }
  }
}

void RankRunner::report() const {
  if (!opts_.report_failures) return;
  for (const auto& r : results_) {
    if (!r.ok() && !opts_.may_fail.count(r.rank)) ADD_FAILURE() << r.describe(opts_.timeout_s);
  }
}

std::vector<RankResult> RankRunner::runParent() {
  const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
  if (!test) {
    ADD_FAILURE() << "runRanks must be called from inside a test";
    return {};
  }
  if (!countCall()) {
    ADD_FAILURE() << "runRanks called twice in " << test->test_suite_name() << "." << test->name()
                  << ": ranks re-run the test up to its first call, so one "
                  << "call per test";
    return {};
  }
  if (!opts_.node_ids.empty() && opts_.node_ids.size() != static_cast<size_t>(n_)) {
    ADD_FAILURE() << "runRanks(" << n_ << ", ...): RankOptions::node_ids has "
                  << opts_.node_ids.size() << " entries, need one per rank";
    return {};
  }
  flushAll();
  auto board = StepBoard::create(n_);
  auto guard = board.isOk() ? GroupGuard::start() : board.status();
  auto server = guard.isOk() ? startTcpStoreServer("127.0.0.1", 0) : guard.status();
  if (!server.isOk()) {
    ADD_FAILURE() << "runRanks: " << server.status();
    return {};
  }
  board_ = std::move(board).value();
  guard_ = std::move(guard).value();
  server_ = std::move(server).value();
  static int run_counter = 0;
  job_id_ = strCat("harness-", ::getpid(), "-", ++run_counter);
  std::string filter = strCat(test->test_suite_name(), ".", test->name());
  Supervisor sup;
  for (int r = 0; r < n_; ++r) {
    auto proc = spawnRank(r, filter);
    if (!proc.isOk()) {
      ADD_FAILURE() << "runRanks: starting rank " << r << ": " << proc.status();
      return {};  // ~Supervisor kills the ranks already started
    }
    RankResult res;
    res.rank = r;
    res.pid = proc.value()->pid();
    results_.push_back(res);
    sup.add(std::move(proc).value(), strCat("[rank ", r, "] "), rankSink(1), rankSink(2));
  }
  supervise(sup);
  for (auto& r : results_) {
    std::tie(r.last_step, r.last_step_where) = board_->read(r.rank);
    // Every rank records a step before its body: none means runRanks was never reached.
    r.never_ran = r.status.success() && r.last_step.empty() && !r.timed_out && !r.stopped;
  }
  report();
  return results_;
}

std::vector<RankResult> runRanks(int n, std::function<void(RankEnv&)> body, RankOptions opts) {
  RankRunner runner(n, std::move(opts));
  if (isRankProcess()) runner.runChild(body);
  if (n <= 0) {
    ADD_FAILURE() << "runRanks(" << n << ", ...): need at least one rank";
    return {};
  }
  return runner.runParent();
}

}  // namespace weft::testing
