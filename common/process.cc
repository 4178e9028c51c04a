#include "common/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>

extern char** environ;

namespace weft {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;

// How often waits poll waitpid when the kernel has no pidfds.
constexpr int kNoPidfdPollMs = 10;
constexpr size_t kMaxLine = 64 * 1024;
constexpr size_t kReadChunk = 64 * 1024;

void closeFd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// Owns both ends of a pipe until they are handed over.
struct Pipe {
  int read = -1;
  int write = -1;
  ~Pipe() {
    closeFd(read);
    closeFd(write);
  }
  Status open(const char* what) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      return WEFT_ERROR(StatusCode::kNoResource, "spawn: pipe for ", what, ": ",
                        errnoString(errno));
    }
    read = fds[0];
    write = fds[1];
    return Status::ok();
  }
};

// glibc 2.36's <sys/pidfd.h> lacks extern "C", so call the system call directly.
int pidfdOpen(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}

bool isExecutableFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// Resolves argv[0] against PATH the way execvp would, before fork (no allocation after).
Result<std::string> resolveProgram(const std::string& program, const std::string& path_var) {
  if (program.empty()) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "spawn: empty program name");
  }
  if (program.find('/') != std::string::npos) return program;
  std::string_view rest = path_var;
  if (rest.empty()) rest = "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    size_t colon = rest.find(':');
    std::string dir(rest.substr(0, colon));
    std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (isExecutableFile(candidate)) return candidate;
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  return WEFT_ERROR(StatusCode::kInvalidArgument, "spawn: program '", program,
                    "' not found in PATH (", path_var, ")")
      .withHint("give the program's path, or fix PATH");
}

// This environment with options.env set and options.unset_env removed.
std::vector<std::string> childEnvironment(const SpawnOptions& options) {
  std::set<std::string, std::less<>> drop(options.unset_env.begin(), options.unset_env.end());
  for (const auto& [name, value] : options.env) drop.insert(name);
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry(*e);
    if (drop.count(entry.substr(0, entry.find('=')))) continue;
    env.emplace_back(entry);
  }
  for (const auto& [name, value] : options.env) env.push_back(name + "=" + value);
  return env;
}

std::string lookupEnv(const std::vector<std::string>& env, std::string_view name) {
  for (const auto& entry : env) {
    if (entry.size() > name.size() && entry.compare(0, name.size(), name) == 0 &&
        entry[name.size()] == '=') {
      return entry.substr(name.size() + 1);
    }
  }
  return "";
}

struct ChildSetup {
  pid_t parent = 0;
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  int report_fd = -1;  // close-on-exec: receives errno when exec fails
  const int* keep_fds = nullptr;
  size_t num_keep_fds = 0;
  const char* cwd = nullptr;
  const char* path = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
};

[[noreturn]] void failInChild(const ChildSetup& s) {
  int err = errno;
  ssize_t ignored = ::write(s.report_fd, &err, sizeof(err));
  (void)ignored;
  ::_exit(127);
}

// Runs in the child between fork and exec: async-signal-safe calls only.
[[noreturn]] void execChild(const ChildSetup& s) {
  ::setpgid(0, 0);
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) failInChild(s);
  if (::getppid() != s.parent) ::_exit(127);  // the parent died before prctl
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);  // fails harmlessly
  if (s.stdin_fd >= 0 && ::dup2(s.stdin_fd, 0) < 0) failInChild(s);
  if (s.stdout_fd >= 0 && ::dup2(s.stdout_fd, 1) < 0) failInChild(s);
  if (s.stderr_fd >= 0 && ::dup2(s.stderr_fd, 2) < 0) failInChild(s);
  ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);  // no leaked descriptors (best effort)
  for (size_t i = 0; i < s.num_keep_fds; ++i) {
    if (::fcntl(s.keep_fds[i], F_SETFD, 0) != 0) failInChild(s);
  }
  if (s.cwd && ::chdir(s.cwd) != 0) failInChild(s);
  ::execve(s.path, s.argv, s.envp);
  failInChild(s);
}

std::vector<char*> cStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Waits until fd is readable or the deadline passes (ms granularity); false on timeout.
bool pollReadable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  int rc = ::poll(&p, 1, timeout_ms);
  return rc > 0;
}

// Waits until the child exec'd (the close-on-exec pipe reaches EOF) or reported why it could
// not (then reaps it).
Status awaitExec(int report_fd, pid_t pid, const std::string& path) {
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(report_fd, &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return Status::ok();
  int ws;  // exec failed: the child has exited with 127
  while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
  }
  return WEFT_ERROR(StatusCode::kIoError, "spawn: cannot execute '", path,
                    "': ", errnoString(child_errno));
}

}  // namespace

// Runs inside progress loops (UCX peer checks), so it allocates nothing: a stack buffer
// and open/read/close.
std::optional<ProcStat> readProcStat(uint32_t pid) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%u/stat", pid);
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[1024];  // fields 1..22 fit easily (the command name is at most 64 bytes)
  const ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
  ::close(fd);
  if (n <= 0) return std::nullopt;
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');  // the command name may contain spaces and ')'
  if (p == nullptr) return std::nullopt;
  ++p;
  ProcStat st;
  for (int i = 3; i <= 22; ++i) {  // field i starts after the next run of spaces
    while (*p == ' ') ++p;
    if (*p == '\0') return std::nullopt;
    if (i == 3) st.state = *p;
    if (i == 22) {
      st.start_time = std::strtoull(p, nullptr, 10);
      return st;
    }
    while (*p != ' ' && *p != '\0') ++p;
  }
  return std::nullopt;
}

bool processGone(uint32_t pid, uint64_t start_time) {
  const std::optional<ProcStat> st = readProcStat(pid);
  return !st || st->state == 'Z' || st->state == 'X' || st->start_time != start_time;
}

std::string signalName(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  if (abbrev) return strCat("SIG", abbrev);
  return strCat("signal ", sig);
}

ExitStatus ExitStatus::exited(int code) {
  ExitStatus s;
  s.code = code;
  return s;
}

ExitStatus ExitStatus::killed(int sig) {
  ExitStatus s;
  s.signaled = true;
  s.signal = sig;
  return s;
}

ExitStatus ExitStatus::fromWaitStatus(int wstatus) {
  if (WIFSIGNALED(wstatus)) {
    ExitStatus s = killed(WTERMSIG(wstatus));
    s.core_dumped = WCOREDUMP(wstatus);
    return s;
  }
  return exited(WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 255);
}

std::string ExitStatus::toString() const {
  if (!signaled) return strCat("exited with status ", code);
  return strCat("was killed by signal ", signal, " (", signalName(signal), ")",
                core_dumped ? " (core dumped)" : "");
}

// ---------------------------------------------------------------------------------------------
// Process

Result<std::unique_ptr<Process>> Process::spawn(const SpawnOptions& options) {
  if (options.argv.empty()) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "spawn: empty argv");
  }
  std::vector<std::string> env = childEnvironment(options);
  WEFT_ASSIGN_OR_RETURN(std::string path, resolveProgram(options.argv[0], lookupEnv(env, "PATH")));
  std::vector<std::string> argv = options.argv;
  std::vector<char*> argv_c = cStrings(argv);
  std::vector<char*> env_c = cStrings(env);

  Pipe out, err, report;
  if (options.capture_stdout) WEFT_RETURN_IF_ERROR(out.open("stdout"));
  if (options.capture_stderr) WEFT_RETURN_IF_ERROR(err.open("stderr"));
  WEFT_RETURN_IF_ERROR(report.open("exec status"));
  int devnull = -1;
  if (options.stdin_null) {
    devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0) {
      return WEFT_ERROR(StatusCode::kIoError, "spawn: open /dev/null: ", errnoString(errno));
    }
  }
  ChildSetup setup{.parent = ::getpid(),
                   .stdin_fd = devnull,
                   .stdout_fd = out.write,
                   .stderr_fd = err.write,
                   .report_fd = report.write,
                   .keep_fds = options.keep_fds.data(),
                   .num_keep_fds = options.keep_fds.size(),
                   .cwd = options.cwd.empty() ? nullptr : options.cwd.c_str(),
                   .path = path.c_str(),
                   .argv = argv_c.data(),
                   .envp = env_c.data()};
  pid_t pid = ::fork();
  if (pid == 0) execChild(setup);
  int fork_errno = errno;
  if (devnull >= 0) ::close(devnull);
  if (pid < 0) {
    return WEFT_ERROR(StatusCode::kNoResource, "spawn '", path,
                      "': fork: ", errnoString(fork_errno));
  }
  ::setpgid(pid, pid);  // also done by the child; whichever runs first wins the race
  closeFd(out.write);
  closeFd(err.write);
  closeFd(report.write);

  WEFT_RETURN_IF_ERROR(awaitExec(report.read, pid, path));
  std::unique_ptr<Process> p(new Process());
  p->pid_ = pid;
  p->program_ = options.argv[0];
  p->guard_ = options.guard;
  if (p->guard_) p->guard_->add(pid);
  p->pidfd_ = pidfdOpen(pid);  // -1 on old kernels: waits then poll waitpid
  if (p->pidfd_ >= 0) ::fcntl(p->pidfd_, F_SETFD, FD_CLOEXEC);
  p->out_fd_ = std::exchange(out.read, -1);
  p->err_fd_ = std::exchange(err.read, -1);
  for (int fd : {p->out_fd_, p->err_fd_}) {
    if (fd >= 0) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  return p;
}

Process::~Process() {
  if (running() && pid_ > 0) {
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);  // in case setpgid had not happened yet
    int ws;
    while (::waitpid(pid_, &ws, 0) < 0 && errno == EINTR) {
    }
    if (guard_) guard_->remove(pid_);
  }
  closeFd(pidfd_);
  closeFd(out_fd_);
  closeFd(err_fd_);
}

void Process::closeStdout() {
  closeFd(out_fd_);
}
void Process::closeStderr() {
  closeFd(err_fd_);
}

Result<std::optional<ExitStatus>> Process::tryWait() {
  if (status_) return status_;
  siginfo_t info;
  std::memset(&info, 0, sizeof(info));
  // Peek first (WNOWAIT): while the leader is a zombie its pid, and so its process group id,
  // cannot be reused, which makes killing the rest of the group safe.
  if (::waitid(P_PID, pid_, &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
    if (errno == EINTR) return std::optional<ExitStatus>();
    return WEFT_ERROR(StatusCode::kInternal, "waitid(pid ", pid_, ", '", program_,
                      "'): ", errnoString(errno));
  }
  if (info.si_pid == 0) return std::optional<ExitStatus>();
  ::kill(-pid_, SIGKILL);  // leftovers of the child's group (ESRCH when none)
  int ws = 0;
  pid_t r;
  while ((r = ::waitpid(pid_, &ws, 0)) < 0 && errno == EINTR) {
  }
  if (r < 0) {
    return WEFT_ERROR(StatusCode::kInternal, "waitpid(pid ", pid_, ", '", program_,
                      "'): ", errnoString(errno));
  }
  status_ = ExitStatus::fromWaitStatus(ws);
  if (guard_) guard_->remove(pid_);
  closeFd(pidfd_);
  return status_;
}

Result<ExitStatus> Process::wait(Deadline deadline) {
  while (true) {
    WEFT_ASSIGN_OR_RETURN(std::optional<ExitStatus> st, tryWait());
    if (st) return *st;
    if (deadline.expired()) {
      return WEFT_ERROR(StatusCode::kTimeout, "'", program_, "' (pid ", pid_,
                        ") still running at the deadline");
    }
    int ms = deadline.pollTimeoutMs();
    if (pidfd_ >= 0) {
      pollReadable(pidfd_, ms);
    } else {
      ms = (ms < 0 || ms > kNoPidfdPollMs) ? kNoPidfdPollMs : ms;
      ::poll(nullptr, 0, ms);
    }
  }
}

Status Process::signal(int sig) {
  if (!running()) return Status::ok();
  if (::kill(-pid_, sig) != 0 && ::kill(pid_, sig) != 0 && errno != ESRCH) {
    return WEFT_ERROR(StatusCode::kInternal, "kill(pid ", pid_, ", ", signalName(sig),
                      "): ", errnoString(errno));
  }
  return Status::ok();
}

Result<ExitStatus> Process::stop(nanoseconds grace) {
  if (!running()) return *status_;
  WEFT_RETURN_IF_ERROR(signal(SIGTERM));
  Result<ExitStatus> st = wait(Deadline::after(grace));
  if (st.isOk() || st.status().code() != StatusCode::kTimeout) return st;
  WEFT_RETURN_IF_ERROR(signal(SIGKILL));
  // SIGKILL cannot be caught; only a process stuck in the kernel survives this long.
  return wait(Deadline::afterSeconds(30));
}

// ---------------------------------------------------------------------------------------------
// GroupGuard

namespace {

// The helper: async-signal-safe calls only (it was forked from a maybe multithreaded process),
// `groups` was allocated before the fork.
[[noreturn]] void guardMain(int read_fd, int devnull, pid_t* groups, size_t capacity) {
  ::setpgid(0, 0);
  struct sigaction ign;
  std::memset(&ign, 0, sizeof(ign));
  ign.sa_handler = SIG_IGN;
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE}) ::sigaction(sig, &ign, nullptr);
  int ctl = ::fcntl(read_fd, F_DUPFD, 10);  // out of the way of 0..3
  for (int fd = 0; fd < 3; ++fd) ::dup2(devnull, fd);
  ::dup2(ctl, 3);
  ::close_range(4, ~0U, 0);
  size_t n = 0;
  int32_t msg;
  while (true) {
    ssize_t r = ::read(3, &msg, sizeof(msg));
    if (r < 0 && errno == EINTR) continue;
    if (r != static_cast<ssize_t>(sizeof(msg))) break;  // EOF: our parent is gone
    if (msg == 0) ::_exit(0);                           // released
    if (msg > 0 && n < capacity) {
      groups[n++] = msg;
    } else {
      for (size_t i = 0; i < n; ++i) {
        if (groups[i] == -msg) {
          groups[i] = groups[--n];
          break;
        }
      }
    }
  }
  for (size_t i = 0; i < n; ++i) ::kill(-groups[i], SIGKILL);
  ::_exit(0);
}

}  // namespace

Result<std::unique_ptr<GroupGuard>> GroupGuard::start() {
  Pipe control;
  WEFT_RETURN_IF_ERROR(control.open("group guard"));
  int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) {
    return WEFT_ERROR(StatusCode::kIoError, "group guard: open /dev/null: ", errnoString(errno));
  }
  std::vector<pid_t> groups(kMaxGroups);
  pid_t pid = ::fork();
  if (pid == 0) guardMain(control.read, devnull, groups.data(), groups.size());
  int fork_errno = errno;
  ::close(devnull);
  if (pid < 0) {
    return WEFT_ERROR(StatusCode::kNoResource, "group guard: fork: ", errnoString(fork_errno));
  }
  std::unique_ptr<GroupGuard> guard(new GroupGuard());
  guard->helper_ = pid;
  guard->fd_ = std::exchange(control.write, -1);
  return guard;
}

GroupGuard::~GroupGuard() {
  send(0);
  closeFd(fd_);
  int ws;
  // The helper exits as soon as it reads the 0.
  while (::waitpid(helper_, &ws, 0) < 0 && errno == EINTR) {
  }
}

void GroupGuard::add(pid_t pgid) {
  if (pgid > 0) send(static_cast<int32_t>(pgid));
}

void GroupGuard::remove(pid_t pgid) {
  if (pgid > 0) send(-static_cast<int32_t>(pgid));
}

void GroupGuard::send(int32_t message) {
  if (fd_ < 0) return;
  while (::write(fd_, &message, sizeof(message)) < 0 && errno == EINTR) {
  }
}

// ---------------------------------------------------------------------------------------------
// Lines

LineSink fdLineSink(int fd) {
  return [fd](std::string_view line) {
    while (!line.empty()) {
      ssize_t n = ::write(fd, line.data(), line.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      line.remove_prefix(static_cast<size_t>(n));
    }
  };
}

void LineSplitter::emit(std::string_view line_without_newline) {
  std::string line;
  line.reserve(prefix_.size() + line_without_newline.size() + 1);
  line.append(prefix_).append(line_without_newline).push_back('\n');
  if (sink_) sink_(line);
}

void LineSplitter::feed(std::string_view bytes) {
  while (!bytes.empty()) {
    size_t nl = bytes.find('\n');
    if (nl == std::string_view::npos) {
      partial_.append(bytes);
      while (partial_.size() >= kMaxLine) {
        emit(std::string_view(partial_).substr(0, kMaxLine));
        partial_.erase(0, kMaxLine);
      }
      return;
    }
    if (partial_.empty()) {
      emit(bytes.substr(0, nl));
    } else {
      partial_.append(bytes.substr(0, nl));
      emit(partial_);
      partial_.clear();
    }
    bytes.remove_prefix(nl + 1);
  }
}

void LineSplitter::finish() {
  if (partial_.empty()) return;
  emit(partial_);
  partial_.clear();
}

// ---------------------------------------------------------------------------------------------
// Supervisor

Supervisor::~Supervisor() {
  for (auto& c : children_) {
    if (c.process->running()) c.process->signal(SIGKILL).ignore();
  }
  for (auto& c : children_) {
    if (c.process->running()) c.process->wait(Deadline::afterSeconds(30)).status().ignore();
    drain(c);
  }
}

size_t Supervisor::add(std::unique_ptr<Process> process, const std::string& prefix, LineSink out,
                       LineSink err) {
  children_.push_back(Child{std::move(process), LineSplitter(prefix, std::move(out)),
                            LineSplitter(prefix, std::move(err))});
  return children_.size() - 1;
}

size_t Supervisor::numRunning() const {
  return static_cast<size_t>(std::count_if(children_.begin(), children_.end(),
                                           [](const Child& c) { return c.process->running(); }));
}

bool Supervisor::readPipe(Child& child, bool is_err) {
  Process& p = *child.process;
  int fd = is_err ? p.stderrFd() : p.stdoutFd();
  if (fd < 0) return false;
  char buf[kReadChunk];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n > 0) {
      (is_err ? child.err : child.out).feed(std::string_view(buf, static_cast<size_t>(n)));
      if (static_cast<size_t>(n) < sizeof(buf)) return true;
      continue;  // maybe more
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    // EOF or error: the pipe is done.
    (is_err ? child.err : child.out).finish();
    if (is_err) {
      p.closeStderr();
    } else {
      p.closeStdout();
    }
    return false;
  }
}

// After the child was reaped: takes what is left in its pipes and closes them. Processes that
// left the child's group may still hold the write ends; their later output is dropped.
void Supervisor::drain(Child& child) {
  readPipe(child, false);
  readPipe(child, true);
  child.out.finish();
  child.err.finish();
  child.process->closeStdout();
  child.process->closeStderr();
}

Result<std::vector<Supervisor::Exit>> Supervisor::collectExits() {
  std::vector<Exit> exits;
  for (size_t i = 0; i < children_.size(); ++i) {
    Child& c = children_[i];
    if (!c.process->running()) continue;
    WEFT_ASSIGN_OR_RETURN(std::optional<ExitStatus> st, c.process->tryWait());
    if (!st) continue;
    drain(c);
    exits.push_back(Exit{i, *st});
  }
  return exits;
}

Result<std::vector<Supervisor::Exit>> Supervisor::pump(Deadline deadline, int wake_fd) {
  while (true) {
    std::vector<pollfd> fds;
    std::vector<std::pair<size_t, int>> owners;  // (child, 0 out / 1 err / 2 exit) per pollfd
    bool need_tick = false;
    for (size_t i = 0; i < children_.size(); ++i) {
      Process& p = *children_[i].process;
      if (!p.running()) continue;
      int which = 0;
      for (int fd : {p.stdoutFd(), p.stderrFd(), p.exitFd()}) {
        if (fd >= 0) {
          fds.push_back(pollfd{fd, POLLIN, 0});
          owners.emplace_back(i, which);
        }
        ++which;
      }
      need_tick |= p.exitFd() < 0;
    }
    if (wake_fd >= 0) fds.push_back(pollfd{wake_fd, POLLIN, 0});
    int timeout = deadline.pollTimeoutMs();
    if (need_tick && (timeout < 0 || timeout > kNoPidfdPollMs)) timeout = kNoPidfdPollMs;
    int rc = ::poll(fds.data(), fds.size(), timeout);
    if (rc < 0 && errno != EINTR) {
      return WEFT_ERROR(StatusCode::kInternal, "supervisor: poll: ", errnoString(errno));
    }
    bool exit_ready = need_tick;
    for (size_t k = 0; rc > 0 && k < owners.size(); ++k) {
      if (fds[k].revents == 0) continue;
      auto [index, which] = owners[k];
      if (which == 2) {
        exit_ready = true;
      } else {
        readPipe(children_[index], which == 1);
      }
    }
    if (exit_ready) {
      WEFT_ASSIGN_OR_RETURN(std::vector<Exit> exits, collectExits());
      if (!exits.empty()) return exits;
    }
    bool woken = wake_fd >= 0 && rc > 0 && fds.back().revents != 0;
    if (woken || deadline.expired() || numRunning() == 0) return std::vector<Exit>();
  }
}

void Supervisor::signalAll(int sig) {
  for (auto& c : children_) c.process->signal(sig).ignore();
}

std::vector<Supervisor::Exit> Supervisor::stopAll(nanoseconds term_grace) {
  std::vector<Exit> all;
  signalAll(SIGTERM);
  Deadline grace = Deadline::after(term_grace);
  while (numRunning() > 0 && !grace.expired()) {
    Result<std::vector<Exit>> exits = pump(grace);
    if (!exits.isOk()) break;
    all.insert(all.end(), exits->begin(), exits->end());
  }
  if (numRunning() > 0) signalAll(SIGKILL);
  Deadline hard = Deadline::afterSeconds(30);  // SIGKILL: only the kernel can delay this
  while (numRunning() > 0 && !hard.expired()) {
    Result<std::vector<Exit>> exits = pump(hard);
    if (!exits.isOk()) break;
    all.insert(all.end(), exits->begin(), exits->end());
  }
  return all;
}

// ---------------------------------------------------------------------------------------------

Result<Captured> runCaptured(const SpawnOptions& options, Deadline deadline,
                             CaptureCallback on_line) {
  SpawnOptions opts = options;
  opts.capture_stdout = true;
  opts.capture_stderr = true;
  WEFT_ASSIGN_OR_RETURN(std::unique_ptr<Process> proc, Process::spawn(opts));
  Process* p = proc.get();
  Captured result;
  auto sink = [&result, p, &on_line](bool is_err) -> LineSink {
    return [&result, p, &on_line, is_err](std::string_view line) {
      (is_err ? result.err : result.out).append(line);
      if (on_line) on_line(*p, is_err, line);
    };
  };
  Supervisor sup;
  sup.add(std::move(proc), "", sink(false), sink(true));
  while (sup.numRunning() > 0 && !deadline.expired()) {
    WEFT_ASSIGN_OR_RETURN(std::vector<Supervisor::Exit> exits, sup.pump(deadline));
    if (!exits.empty()) result.status = exits[0].status;
  }
  if (sup.numRunning() > 0) {
    result.timed_out = true;
    std::vector<Supervisor::Exit> exits = sup.stopAll(std::chrono::seconds(1));
    if (!exits.empty()) result.status = exits[0].status;
  }
  return result;
}

}  // namespace weft
