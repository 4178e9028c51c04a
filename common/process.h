// Child processes for launchers and test harnesses (weft-run, tests/support/rank_harness).
//
//   Process      one child: fork/exec with argv and extra environment, in its own process
//                group, stdin from /dev/null, stdout/stderr through pipes. wait(deadline),
//                signal(), stop() (SIGTERM, then SIGKILL after a grace).
//   ExitStatus   how a child ended: "exited with status 3", "was killed by signal 9 (SIGKILL)".
//   LineSplitter turns a byte stream into whole lines with a prefix ("[1] "); a partial last
//                line is completed with '\n' at EOF.
//   Supervisor   several children at once: pumps their output line by line into sinks and
//                reports exits, sleeping in poll(2) (pidfds + pipes + an optional wake fd).
//
// No orphans:
//   - a child is spawned with PR_SET_PDEATHSIG(SIGKILL): it dies when the *thread* that spawned
//     it ends (so spawn from a long-lived thread, e.g. main). The signal reaches the child
//     itself, not its own children: those die when we kill the group (below).
//   - when a child is reaped, whatever else remains in its process group is SIGKILLed first
//     (while the leader is still a zombie, so the group id cannot be reused);
//   - ~Process and ~Supervisor SIGKILL the groups of children still running and reap them;
//   - a GroupGuard (optional, SpawnOptions::guard) is a tiny helper process that SIGKILLs the
//     process groups of our children when this process dies without releasing them, even by
//     SIGKILL: that catches grandchildren (`sh -c 'prog'` ranks) which PDEATHSIG misses.
//
// Threads: spawn() may be called while other threads run (nothing allocates between fork and
// exec). A Process or Supervisor is used by one thread at a time. Nothing here installs signal
// handlers; children start with an empty signal mask and default dispositions.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/deadline.h"
#include "common/result.h"

namespace weft {

// "SIGKILL", "SIGSEGV", ... or "signal 77" when the number has no name.
std::string signalName(int sig);

// Fields of /proc/<pid>/stat: the state letter (field 3) and the start time in clock ticks
// since boot (field 22; with the pid it names one process, a reused pid has another).
struct ProcStat {
  char state = '?';
  uint64_t start_time = 0;
};
// nullopt when there is no such process (or its entry cannot be read).
std::optional<ProcStat> readProcStat(uint32_t pid);
// True when the process is gone: no /proc entry, a zombie / dead state, or another start
// time (the pid was reused).
bool processGone(uint32_t pid, uint64_t start_time);

struct ExitStatus {
  bool signaled = false;
  int code = 0;    // exit status when !signaled
  int signal = 0;  // terminating signal when signaled
  bool core_dumped = false;

  static ExitStatus exited(int code);
  static ExitStatus killed(int sig);
  // From a waitpid(2) status word.
  static ExitStatus fromWaitStatus(int wstatus);

  bool success() const { return !signaled && code == 0; }
  // What a shell reports: the exit status, or 128 + signal.
  int shellCode() const { return signaled ? 128 + signal : code; }
  // "exited with status 3" / "was killed by signal 9 (SIGKILL)" (+ " (core dumped)").
  std::string toString() const;
};

class GroupGuard;

struct SpawnOptions {
  // argv[0] is looked up in PATH (the child's PATH when env sets one) unless it has a '/'.
  std::vector<std::string> argv;
  // Variables set (or overridden) in the child, on top of this process's environment.
  std::vector<std::pair<std::string, std::string>> env;
  // Variables removed from the child's environment.
  std::vector<std::string> unset_env;
  bool capture_stdout = true;  // false: the child inherits our stdout
  bool capture_stderr = true;  // false: the child inherits our stderr
  bool stdin_null = true;      // false: the child inherits our stdin
  // Descriptors of this process the child keeps open under the same numbers (all others
  // are closed on exec).
  std::vector<int> keep_fds;
  std::string cwd;  // "" = ours
  // When set (it must outlive the Process), the child's process group is registered there
  // until the child is reaped.
  GroupGuard* guard = nullptr;
};

// Kills the registered process groups (SIGKILL) when this process dies or exits while they
// are registered. A helper process, forked by start(), reads registrations from a pipe and
// acts when the pipe reaches EOF; ~GroupGuard tells it to exit without killing anything.
// The helper leaves our process group (so a terminal's Ctrl-C does not reach it), ignores
// SIGINT/SIGTERM/SIGHUP/SIGQUIT and holds no descriptor but its pipe.
// Threads: add/remove may be called from any thread (each is one atomic pipe write).
class GroupGuard {
 public:
  static constexpr size_t kMaxGroups = 1 << 16;
  static Result<std::unique_ptr<GroupGuard>> start();
  ~GroupGuard();
  GroupGuard(const GroupGuard&) = delete;
  GroupGuard& operator=(const GroupGuard&) = delete;

  void add(pid_t pgid);
  void remove(pid_t pgid);
  pid_t helperPid() const { return helper_; }

 private:
  GroupGuard() = default;
  void send(int32_t message);
  int fd_ = -1;
  pid_t helper_ = -1;
};

class Process {
 public:
  // Starts the child. Fails (no child left) when argv is empty, the program is not found or
  // cannot be executed: the message names the program and the errno text.
  static Result<std::unique_ptr<Process>> spawn(const SpawnOptions& options);

  // Kills the child's process group (SIGKILL) if it was not reaped yet, reaps it, closes the
  // pipes. Never throws.
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // argv[0] as given, for messages.
  const std::string& program() const { return program_; }
  // Read ends of the pipes (non-blocking, owned by this object); -1 when not captured or
  // after closeStdout()/closeStderr().
  int stdoutFd() const { return out_fd_; }
  int stderrFd() const { return err_fd_; }
  void closeStdout();
  void closeStderr();
  // A pidfd that becomes readable when the child exits; -1 when the kernel has no pidfds
  // (then waits poll waitpid every few milliseconds).
  int exitFd() const { return pidfd_; }

  bool running() const { return !status_.has_value(); }
  // Set once the child was reaped.
  const std::optional<ExitStatus>& exitStatus() const { return status_; }

  // Reaps the child if it has exited (never blocks): nullopt while it runs.
  Result<std::optional<ExitStatus>> tryWait();
  // Waits until the child exits; kTimeout naming the program and pid when the deadline passes.
  Result<ExitStatus> wait(Deadline deadline);
  // Sends sig to the child's process group (no-op once reaped).
  Status signal(int sig);
  // SIGTERM to the group, waits up to `grace`, then SIGKILL and waits for the exit.
  Result<ExitStatus> stop(std::chrono::nanoseconds grace);

 private:
  Process() = default;
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::string program_;
  std::optional<ExitStatus> status_;
  GroupGuard* guard_ = nullptr;
};

// Receives one output line including its trailing '\n'.
using LineSink = std::function<void(std::string_view line)>;
// Writes each line to fd with one write(2) (retrying short writes), so lines from several
// children never mix. Write errors (EPIPE, ...) are ignored.
LineSink fdLineSink(int fd);

// Splits a byte stream into lines and hands each to a sink with a prefix. Lines longer than
// 64 KiB are cut into several lines.
class LineSplitter {
 public:
  LineSplitter(std::string prefix, LineSink sink)
      : prefix_(std::move(prefix)), sink_(std::move(sink)) {}
  void feed(std::string_view bytes);
  // Emits a partial last line (completed with '\n').
  void finish();

 private:
  void emit(std::string_view line_without_newline);
  std::string prefix_;
  LineSink sink_;
  std::string partial_;
};

// Runs several children, forwarding their output and reporting their exits.
class Supervisor {
 public:
  struct Exit {
    size_t index;
    ExitStatus status;
  };

  Supervisor() = default;
  // Kills (SIGKILL) the groups of running children, reaps them and flushes their output.
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Takes the child; its stdout lines go to `out`, stderr lines to `err`, each prefixed.
  // Returns the child's index (0, 1, ... in order of addition).
  size_t add(std::unique_ptr<Process> process, const std::string& prefix, LineSink out,
             LineSink err);

  size_t size() const { return children_.size(); }
  size_t numRunning() const;
  Process& process(size_t index) { return *children_[index].process; }

  // Pumps output until at least one child exits, `wake_fd` becomes readable (it is not read),
  // or the deadline passes. Returns the children reaped during this call (their output
  // drained), in index order; empty on deadline or wake-up.
  Result<std::vector<Exit>> pump(Deadline deadline, int wake_fd = -1);
  // Signals the process group of every running child.
  void signalAll(int sig);
  // SIGTERM to every running child, pumps until they exit or `term_grace` passes, then
  // SIGKILL and reap. Returns the exits of the children it stopped.
  std::vector<Exit> stopAll(std::chrono::nanoseconds term_grace);

 private:
  struct Child {
    std::unique_ptr<Process> process;
    LineSplitter out;
    LineSplitter err;
  };
  bool readPipe(Child& child, bool is_err);  // false at EOF / error (pipe closed)
  void drain(Child& child);
  Result<std::vector<Exit>> collectExits();
  std::vector<Child> children_;
};

// Output of a process run to completion by runCaptured().
struct Captured {
  ExitStatus status;
  std::string out;
  std::string err;
  bool timed_out = false;  // the deadline passed and the process was killed
};

// Called for each complete line (without prefix, with '\n'); may signal the process.
using CaptureCallback = std::function<void(Process& process, bool is_err, std::string_view line)>;

// Spawns options.argv (stdout and stderr captured) and collects its output until it exits.
// At the deadline the process is stopped (SIGTERM, then SIGKILL after 1 s) and timed_out set.
Result<Captured> runCaptured(const SpawnOptions& options, Deadline deadline,
                             CaptureCallback on_line = {});

}  // namespace weft
