// weft-run: starts the ranks of a Weft job, hosts their rendezvous store, forwards output and
// signals, and stops the whole job when one rank fails. See kUsage (weft-run --help).
//
// Structure: parseArgs -> planRanks (who runs where) -> Job::run (store, spawn, supervise).
// Signals SIGINT/SIGTERM/SIGHUP are blocked before any thread starts and read from a
// signalfd, so the supervision loop sleeps in one poll(2) on ranks' pidfds, pipes and signals.
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/process.h"
#include "common/status.h"
#include "common/store/store.h"

extern char** environ;

namespace {

using weft::ExitStatus;
using weft::strCat;

constexpr const char* kUsage = R"USAGE(usage: weft-run -n N [options] [--] program [args...]

Starts N ranks of `program`, hosts their rendezvous store (TCP, in this process), prefixes
every output line with the rank ("[3] ..."), and stops the whole job when a rank fails.

Options:
  -n, --np N           number of ranks (default with --hosts/--node-ids: all their slots)
  --timeout S          stop every rank after S seconds and exit with status 124
  --hosts H[:K],...    run ranks on hosts, K slots each (default 1), filled in order:
                       --hosts a:2,b:2 puts ranks 0,1 on a and 2,3 on b.
                       "localhost", "127.0.0.1" and this machine's hostname run locally;
                       other hosts run through the remote shell (--rsh).
  --rsh "CMD"          remote-shell template (default: "ssh -o BatchMode=yes {host}").
                       {host} is replaced by the host name; without {host} the host is
                       appended after CMD. A remote rank runs as
                         CMD env WEFT_RANK=.. WEFT_...=.. program args
                       (the WEFT_* variables of this environment are passed on as well).
                       When CMD is ssh or rsh (a remote shell parses the command line),
                       arguments are shell-quoted. Examples:
                         --rsh "ssh -p 2222 {host}"   --rsh "ip netns exec {host}"
  --store-addr IP      address ranks use to reach the store (default: 127.0.0.1 when all
                       ranks are local, else the first non-loopback IPv4 address of this
                       machine). The store listens on that address (on 0.0.0.0 if it is
                       not local).
  --node-ids ID[:K],...  run locally but give ranks these node ids (WEFT_NODE_ID), K ranks
                       each, in order: fakes a multi-node job on one machine.
  --no-prefix          do not prefix output lines with the rank
  -h, --help           this text

Each rank gets WEFT_RANK, WEFT_WORLD_SIZE, WEFT_LOCAL_RANK, WEFT_LOCAL_SIZE,
WEFT_STORE_ADDR (host:port), WEFT_JOB_ID, and WEFT_NODE_ID (the host or node id, when
--hosts or --node-ids is given). Ranks start in their own process groups with stdin from
/dev/null. A local rank dies when weft-run dies (even by SIGKILL), and so does whatever it
started in its process group; when a rank exits, what it left running in its group is killed.
Remote ranks depend on the remote shell for that (ssh without a tty does not signal them).

Failures: when a rank exits non-zero or is killed by a signal, weft-run says so
("weft-run: rank 1 (pid 123) was killed by signal 9 (SIGKILL)"), waits WEFT_RUN_GRACE
seconds (default 2) for the other ranks to end by themselves, then sends them SIGTERM and,
after up to one more second, SIGKILL. SIGINT, SIGTERM and SIGHUP sent to weft-run are
forwarded to every rank (a second one kills them with SIGKILL).

Exit status: 0 when every rank exits 0; else the first failed rank's status (128+N when
it was killed by signal N); 124 after --timeout; 128+N when weft-run got signal N;
2 for a usage or configuration error (malformed WEFT_* variable); 127 when the program
cannot be started.
)USAGE";

constexpr int kExitUsage = 2;
constexpr int kExitTimeout = 124;
constexpr int kExitCannotStart = 127;
constexpr double kMaxTermWaitS = 1.0;  // SIGTERM -> SIGKILL when stopping ranks
const char* const kDefaultRsh = "ssh -o BatchMode=yes {host}";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One line to stderr with one write(2), so it never mixes with ranks' lines.
void say(const std::string& text) {
  weft::fdLineSink(2)(strCat("weft-run: ", text, "\n"));
}

struct HostSlots {
  std::string name;
  int slots = 1;
};

struct Options {
  int n = 0;
  double timeout_s = 0;  // 0: none
  std::vector<HostSlots> hosts;
  std::vector<HostSlots> node_ids;
  std::string rsh = kDefaultRsh;
  std::string store_addr;
  bool prefix = true;
  std::vector<std::string> command;
};

// "0-3, 5, 7-9" for sorted rank numbers (thousands of ranks stay one short line).
std::string rankRanges(const std::vector<size_t>& ranks) {
  std::string out;
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    out += strCat(out.empty() ? "" : ", ", ranks[i]);
    if (j > i) out += strCat(j == i + 1 ? ", " : "-", ranks[j]);
    i = j + 1;
  }
  return out;
}

// A job's ranks (WEFT_WORLD_SIZE allows more; a launcher of one host forks each rank).
constexpr int kMaxRanks = 65536;

// True when `host` is a numeric address or a name that resolves (not "host:port").
bool resolvable(const std::string& host) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0) return false;
  ::freeaddrinfo(res);
  return true;
}

int parsePositiveInt(std::string_view text, const std::string& what) {
  std::string s(text);
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno != 0 || v <= 0 || v > INT_MAX) {
    throw UsageError(strCat(what, ": expected a positive integer, got '", s, "'"));
  }
  return static_cast<int>(v);
}

// "a:2,b,c:1" -> {a,2} {b,1} {c,1}
std::vector<HostSlots> parseHostList(std::string_view spec, const std::string& what) {
  std::vector<HostSlots> out;
  while (!spec.empty()) {
    size_t comma = spec.find(',');
    std::string_view item = spec.substr(0, comma);
    spec = comma == std::string_view::npos ? "" : spec.substr(comma + 1);
    if (item.empty()) continue;
    HostSlots h;
    size_t colon = item.rfind(':');
    h.name = std::string(item.substr(0, colon));
    if (colon != std::string_view::npos) {
      h.slots = parsePositiveInt(item.substr(colon + 1), strCat(what, " '", item, "'"));
    }
    if (h.name.empty()) throw UsageError(strCat(what, ": empty name in '", item, "'"));
    out.push_back(h);
  }
  if (out.empty()) throw UsageError(strCat(what, ": empty list"));
  return out;
}

// Matches "--name VALUE", "--name=VALUE" (and "-nVALUE" for short options); advances i.
bool takeValue(int argc, char** argv, int& i, std::string_view name, std::string& value) {
  std::string_view a = argv[i];
  if (a.substr(0, name.size()) != name) return false;
  std::string_view rest = a.substr(name.size());
  if (rest.empty()) {
    if (i + 1 >= argc) throw UsageError(strCat(name, " needs a value"));
    value = argv[++i];
    return true;
  }
  if (rest[0] == '=') {
    value = std::string(rest.substr(1));
    return true;
  }
  if (name.size() == 2) {  // -n4
    value = std::string(rest);
    return true;
  }
  return false;
}

void finishOptions(Options& o) {
  if (o.command.empty()) throw UsageError("no program given");
  if (!o.hosts.empty() && !o.node_ids.empty()) {
    throw UsageError("--hosts and --node-ids cannot be combined");
  }
  const auto& list = o.hosts.empty() ? o.node_ids : o.hosts;
  if (!list.empty()) {
    int slots = 0;
    for (const auto& h : list) slots += h.slots;
    if (o.n == 0) o.n = slots;
    if (o.n > slots) {
      throw UsageError(strCat("-n ", o.n, " but ", o.hosts.empty() ? "--node-ids" : "--hosts",
                              " offers only ", slots, " slots"));
    }
  }
  if (o.n <= 0) throw UsageError("give the number of ranks with -n N");
}

Options parseArgs(int argc, char** argv) {
  Options o;
  int i = 1;
  for (; i < argc; ++i) {
    std::string_view a = argv[i];
    std::string v;
    if (a == "--") {
      ++i;
      break;
    } else if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (a == "--no-prefix") {
      o.prefix = false;
    } else if (takeValue(argc, argv, i, "--np", v) || takeValue(argc, argv, i, "-n", v)) {
      o.n = parsePositiveInt(v, "-n");
      if (o.n > kMaxRanks) {
        throw UsageError(strCat("-n ", o.n, ": at most ", kMaxRanks, " ranks per job"));
      }
    } else if (takeValue(argc, argv, i, "--timeout", v)) {
      char* end = nullptr;
      o.timeout_s = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(o.timeout_s > 0)) {
        throw UsageError(strCat("--timeout: expected seconds > 0, got '", v, "'"));
      }
    } else if (takeValue(argc, argv, i, "--hosts", v)) {
      o.hosts = parseHostList(v, "--hosts");
    } else if (takeValue(argc, argv, i, "--node-ids", v)) {
      o.node_ids = parseHostList(v, "--node-ids");
    } else if (takeValue(argc, argv, i, "--rsh", v)) {
      o.rsh = v;
    } else if (takeValue(argc, argv, i, "--store-addr", v)) {
      o.store_addr = v;
    } else if (a.size() > 1 && a[0] == '-') {
      throw UsageError(strCat("unknown option '", a, "'"));
    } else {
      break;  // the program
    }
  }
  for (; i < argc; ++i) o.command.emplace_back(argv[i]);
  finishOptions(o);
  return o;
}

// ---------------------------------------------------------------------------------------------
// Hosts and commands

std::string hostName() {
  char buf[256] = {};
  ::gethostname(buf, sizeof(buf) - 1);
  return buf;
}

bool isLocalHost(const std::string& host) {
  if (host == "localhost" || host == "127.0.0.1" || host == "::1") return true;
  std::string me = hostName();
  auto shortName = [](const std::string& h) { return h.substr(0, h.find('.')); };
  return host == me || host == shortName(me);
}

// The first IPv4 address of an interface that is up and not loopback ("" when none).
std::string firstNonLoopbackIpv4() {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return "";
  std::string found;
  for (ifaddrs* ifa = list; ifa && found.empty(); ifa = ifa->ifa_next) {
    if (!ifa->ifa_addr || ifa->ifa_addr->sa_family != AF_INET) continue;
    if ((ifa->ifa_flags & IFF_LOOPBACK) || !(ifa->ifa_flags & IFF_UP)) continue;
    char text[INET_ADDRSTRLEN] = {};
    auto* sin = reinterpret_cast<sockaddr_in*>(ifa->ifa_addr);
    if (::inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text))) found = text;
  }
  ::freeifaddrs(list);
  return found;
}

// Splits a command template into words: blanks separate, '...' and "..." quote, \ escapes.
std::vector<std::string> splitWords(std::string_view text) {
  std::vector<std::string> words;
  std::string cur;
  bool in_word = false;
  char quote = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quote) {
      if (c == quote) {
        quote = 0;
      } else if (c == '\\' && quote == '"' && i + 1 < text.size()) {
        cur += text[++i];
      } else {
        cur += c;
      }
    } else if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) words.push_back(std::move(cur));
      cur.clear();
      in_word = false;
    } else {
      in_word = true;
      if (c == '\'' || c == '"') {
        quote = c;
      } else if (c == '\\' && i + 1 < text.size()) {
        cur += text[++i];
      } else {
        cur += c;
      }
    }
  }
  if (quote) throw UsageError(strCat("--rsh: unterminated quote in '", text, "'"));
  if (in_word) words.push_back(std::move(cur));
  return words;
}

std::string shellQuote(const std::string& s) {
  bool plain = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("_-./=:,+@%").find(c) != std::string_view::npos;
  });
  if (plain) return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct RankPlan {
  int rank = 0;
  std::string host;  // "" = local, no --hosts
  bool remote = false;
  std::string node_id;  // "" = leave WEFT_NODE_ID alone
  int local_rank = 0;
  int local_size = 0;
};

std::vector<RankPlan> planRanks(const Options& o) {
  std::vector<RankPlan> plan(static_cast<size_t>(o.n));
  const auto& list = o.hosts.empty() ? o.node_ids : o.hosts;
  size_t slot_host = 0;
  int used = 0;
  for (int r = 0; r < o.n; ++r) {
    RankPlan& p = plan[static_cast<size_t>(r)];
    p.rank = r;
    if (list.empty()) continue;
    while (used == list[slot_host].slots) ++slot_host, used = 0;
    ++used;
    p.node_id = list[slot_host].name;
    if (!o.hosts.empty()) {
      p.host = p.node_id;
      p.remote = !isLocalHost(p.host);
    }
  }
  std::map<std::string, int> count;  // local ranks follow global rank order per node
  for (auto& p : plan) p.local_rank = count[p.node_id]++;
  for (auto& p : plan) p.local_size = count[p.node_id];
  return plan;
}

// ---------------------------------------------------------------------------------------------
// The job

class Job {
 public:
  Job(Options options, double grace_s, int signal_fd)
      : opts_(std::move(options)),
        plan_(planRanks(opts_)),
        grace_s_(grace_s),
        signal_fd_(signal_fd) {}
  int run();

 private:
  enum class Phase { kRunning, kFailing, kSignaled, kStopping };

  weft::Status startStore();
  weft::SpawnOptions spawnOptions(const RankPlan& p) const;
  weft::Status spawnRanks();
  void onExit(const weft::Supervisor::Exit& e);
  void readSignals();
  void stopRemaining();
  int exitCode() const;

  Options opts_;
  std::vector<RankPlan> plan_;
  double grace_s_;
  int signal_fd_;
  std::unique_ptr<weft::GroupGuard> guard_;  // kills ranks' groups if weft-run is killed
  std::unique_ptr<weft::TcpStoreServer> server_;
  std::string store_addr_;
  std::string job_id_;
  weft::Supervisor sup_;  // index == rank
  Phase phase_ = Phase::kRunning;
  std::optional<ExitStatus> first_failure_;
  int signal_received_ = 0;
  bool timed_out_ = false;
  int startup_error_ = 0;
  weft::Deadline stop_at_ = weft::Deadline::never();
};

weft::Status Job::startStore() {
  // The guard first: it is forked, so before the store's thread exists.
  WEFT_ASSIGN_OR_RETURN(guard_, weft::GroupGuard::start());
  bool all_local =
      std::none_of(plan_.begin(), plan_.end(), [](const RankPlan& p) { return p.remote; });
  std::string ip = opts_.store_addr;
  if (ip.empty()) ip = all_local ? "127.0.0.1" : firstNonLoopbackIpv4();
  if (ip.empty()) {
    return WEFT_ERROR(weft::StatusCode::kUnavailable,
                      "no non-loopback IPv4 address on this machine for remote ranks to reach "
                      "the store")
        .withHint("give one with --store-addr IP");
  }
  auto server = weft::startTcpStoreServer(ip, 0);
  if (!server.isOk() && !opts_.store_addr.empty() && !resolvable(ip)) {
    return WEFT_ERROR(weft::StatusCode::kInvalidArgument, "--store-addr ", ip,
                      " is not an address of this network (", server.status().message(), ")")
        .withHint("give an IP address or host name without a port, e.g. --store-addr 10.0.0.5");
  }
  if (!server.isOk() && !opts_.store_addr.empty()) {
    say(strCat("cannot listen on ", ip, " (", server.status().message(),
               "); listening on 0.0.0.0 and telling ranks to use ", ip));
    server = weft::startTcpStoreServer("0.0.0.0", 0);
  }
  if (!server.isOk()) return server.status();
  server_ = std::move(server).value();
  store_addr_ = ip.find(':') != std::string::npos ? strCat("[", ip, "]:", server_->port())
                                                  : strCat(ip, ":", server_->port());
  std::string host = hostName();
  job_id_ = strCat("weft-", host.substr(0, host.find('.')), "-", ::getpid(), "-",
                   static_cast<long long>(std::time(nullptr)));
  return weft::Status::ok();
}

weft::SpawnOptions Job::spawnOptions(const RankPlan& p) const {
  std::vector<std::pair<std::string, std::string>> vars = {
      {"WEFT_RANK", std::to_string(p.rank)},
      {"WEFT_WORLD_SIZE", std::to_string(opts_.n)},
      {"WEFT_LOCAL_RANK", std::to_string(p.local_rank)},
      {"WEFT_LOCAL_SIZE", std::to_string(p.local_size)},
      {"WEFT_STORE_ADDR", store_addr_},
      {"WEFT_JOB_ID", job_id_}};
  if (!p.node_id.empty()) vars.emplace_back("WEFT_NODE_ID", p.node_id);
  weft::SpawnOptions so;
  so.guard = guard_.get();
  // A rank must not try to host the store itself: weft-run does.
  so.unset_env = {"WEFT_STORE_HOST_RANK0"};
  if (!p.remote) {
    so.argv = opts_.command;
    so.env = std::move(vars);
    return so;
  }
  // Remote: <rsh words> env VAR=... program args. Pass our other WEFT_* variables on too.
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry(*e);
    std::string name(entry.substr(0, entry.find('=')));
    if (name.rfind("WEFT_", 0) != 0 || name == "WEFT_STORE_HOST_RANK0") continue;
    bool ours =
        std::any_of(vars.begin(), vars.end(), [&](const auto& v) { return v.first == name; });
    if (!ours) vars.emplace_back(name, std::string(entry.substr(name.size() + 1)));
  }
  std::vector<std::string> words = splitWords(opts_.rsh);
  bool has_host = false;
  for (auto& w : words) {
    for (size_t at; (at = w.find("{host}")) != std::string::npos; has_host = true) {
      w.replace(at, 6, p.host);
    }
  }
  if (!has_host) words.push_back(p.host);
  std::string rsh_prog = words.empty() ? "" : words[0].substr(words[0].rfind('/') + 1);
  bool quote = rsh_prog == "ssh" || rsh_prog == "rsh";
  auto arg = [quote](const std::string& s) { return quote ? shellQuote(s) : s; };
  so.argv = words;
  so.argv.push_back("env");
  for (const auto& [name, value] : vars) so.argv.push_back(arg(name + "=" + value));
  std::string program = opts_.command[0];
  if (program.find('/') != std::string::npos && program[0] != '/') {
    char cwd[PATH_MAX];
    if (::getcwd(cwd, sizeof(cwd))) program = strCat(cwd, "/", program);
  }
  so.argv.push_back(arg(program));
  for (size_t i = 1; i < opts_.command.size(); ++i) so.argv.push_back(arg(opts_.command[i]));
  return so;
}

weft::Status Job::spawnRanks() {
  for (const RankPlan& p : plan_) {
    auto proc = weft::Process::spawn(spawnOptions(p));
    if (!proc.isOk()) {
      return proc.status().withContext(
          strCat("starting rank ", p.rank, p.remote ? strCat(" on ", p.host) : ""));
    }
    std::string prefix = opts_.prefix ? strCat("[", p.rank, "] ") : "";
    sup_.add(std::move(proc).value(), prefix, weft::fdLineSink(1), weft::fdLineSink(2));
    // The signals are blocked (read through signal_fd_): look between spawns, so that
    // Ctrl-C or a SIGTERM while many ranks start stops the start instead of waiting for it.
    readSignals();
    if (signal_received_ != 0) {
      return WEFT_ERROR(weft::StatusCode::kCanceled, "got ", weft::signalName(signal_received_),
                        " while starting the ranks (", sup_.size(), " of ", opts_.n,
                        " started); stopping them");
    }
  }
  return weft::Status::ok();
}

void Job::onExit(const weft::Supervisor::Exit& e) {
  if (e.status.success() || phase_ == Phase::kStopping || phase_ == Phase::kSignaled) return;
  say(strCat("rank ", e.index, " (pid ", sup_.process(e.index).pid(), ") ", e.status.toString()));
  if (first_failure_) return;
  first_failure_ = e.status;
  phase_ = Phase::kFailing;
  stop_at_ = weft::Deadline::afterSeconds(grace_s_);
}

void Job::readSignals() {
  signalfd_siginfo info;
  while (::read(signal_fd_, &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
    int sig = static_cast<int>(info.ssi_signo);
    if (signal_received_ != 0) {
      say(strCat("got ", weft::signalName(sig), " again: killing every rank (SIGKILL)"));
      sup_.signalAll(SIGKILL);
      continue;
    }
    signal_received_ = sig;
    say(strCat("got ", weft::signalName(sig), ": forwarding it to the ", sup_.numRunning(),
               " running ranks"));
    sup_.signalAll(sig);
    if (phase_ != Phase::kStopping) {
      phase_ = Phase::kSignaled;
      stop_at_ = weft::Deadline::afterSeconds(grace_s_);
    }
  }
}

void Job::stopRemaining() {
  phase_ = Phase::kStopping;
  stop_at_ = weft::Deadline::never();
  std::vector<size_t> running;
  for (size_t r = 0; r < sup_.size(); ++r) {
    if (sup_.process(r).running()) running.push_back(r);
  }
  if (running.empty()) return;
  const std::string ranks = rankRanges(running);
  double term_wait = std::min(grace_s_, kMaxTermWaitS);
  say(strCat("stopping ranks still running: ", ranks, " (SIGTERM, SIGKILL after ",
             weft::formatDuration(std::chrono::duration_cast<std::chrono::nanoseconds>(
                 std::chrono::duration<double>(term_wait))),
             ")"));
  sup_.stopAll(std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::duration<double>(term_wait)));
}

int Job::exitCode() const {
  if (startup_error_) return startup_error_;
  if (signal_received_) return 128 + signal_received_;
  if (first_failure_) return first_failure_->shellCode();
  if (timed_out_) return kExitTimeout;
  return 0;
}

int Job::run() {
  weft::Status st = startStore();
  if (st.isOk()) st = spawnRanks();
  if (!st.isOk()) {
    say(st.message());
    startup_error_ = signal_received_ != 0                           ? 128 + signal_received_
                     : st.code() == weft::StatusCode::kUnavailable     ? 1
                     : st.code() == weft::StatusCode::kInvalidArgument ? kExitUsage
                                                                       : kExitCannotStart;
    stopRemaining();
    return exitCode();
  }
  weft::Deadline timeout =
      opts_.timeout_s > 0 ? weft::Deadline::afterSeconds(opts_.timeout_s) : weft::Deadline::never();
  while (sup_.numRunning() > 0) {
    auto exits = sup_.pump(timeout.min(stop_at_), signal_fd_);
    if (!exits.isOk()) {
      say(exits.status().message());
      startup_error_ = 1;
      break;
    }
    for (const auto& e : *exits) onExit(e);
    readSignals();
    if (sup_.numRunning() == 0) break;
    if (timeout.expired() && !timed_out_) {
      timed_out_ = true;
      say(strCat("timeout: ", sup_.numRunning(), " of ", opts_.n,
                 " ranks still running after --timeout ", opts_.timeout_s, " s"));
      stopRemaining();
    } else if (stop_at_.expired()) {
      stopRemaining();
    }
  }
  stopRemaining();  // after an internal error; a no-op otherwise
  return exitCode();
}

// Blocks the signals weft-run forwards (before any thread exists, so that every thread
// inherits the mask) and returns a signalfd that reads them.
int setupSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, sig);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);  // a closed stdout must not kill the launcher
  return ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  try {
    options = parseArgs(argc, argv);
  } catch (const UsageError& e) {
    say(strCat(e.what(), " (see weft-run --help)"));
    return kExitUsage;
  }
  weft::Status st = weft::config::checkEnvironment();
  auto grace = weft::config::getDouble("WEFT_RUN_GRACE");
  if (st.isOk() && !grace.isOk()) st = grace.status();
  if (!st.isOk()) {
    say(strCat("bad configuration: ", st.message()));
    return kExitUsage;
  }
  int signal_fd = setupSignals();
  if (signal_fd < 0) {
    say(strCat("signalfd: ", weft::errnoString(errno)));
    return 1;
  }
  try {
    Job job(std::move(options), *grace, signal_fd);
    return job.run();
  } catch (const UsageError& e) {  // --rsh template errors surface when ranks are planned
    say(strCat(e.what(), " (see weft-run --help)"));
    return kExitUsage;
  }
}
