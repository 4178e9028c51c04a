#include "tools/doctor.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include "common/config.h"
#include "common/deadline.h"
#include "common/status.h"
#include "common/store/store.h"
#include "transport/api/context.h"
#ifdef WEFT_HAVE_CUDA
#include "gpu/gpudirect.h"
#endif
#ifdef WEFT_HAVE_VERBS
#include "transport/ibverbs/verbs_info.h"
#endif

namespace weft::tools {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
// Below this much locked memory an RDMA job registers little at a time (Docker's default is
// 64 KiB, many distributions' 8 MiB).
constexpr uint64_t kMemlockWant = 64 * kMiB;
// Docker's default /dev/shm is 64 MiB: a few communicators' segments exhaust it.
constexpr uint64_t kShmWant = 256 * kMiB;

std::string readLine(const char* path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

std::string mib(uint64_t bytes) {
  return strCat(bytes / kMiB, " MiB");
}

// Ports libibverbs reports ACTIVE, as "dev:port" (empty without verbs or devices).
std::vector<std::string> activePorts(std::string* why) {
  std::vector<std::string> out;
#ifdef WEFT_HAVE_VERBS
  auto devices = transport::verbs::listDevices();
  if (!devices.isOk()) {
    *why = devices.status().message();
    return out;
  }
  for (const auto& d : *devices) {
    for (const auto& p : d.ports) {
      if (p.state == "ACTIVE") out.push_back(strCat(d.name, ":", p.port));
    }
  }
  if (devices->empty()) *why = "libibverbs sees no RDMA device";
#else
  *why = "verbs is not built into this binary";
#endif
  return out;
}

Finding checkEnvironment() {
  Status st = config::checkEnvironment();
  if (!st.isOk()) return {Verdict::kFail, "WEFT_* variables", st.message()};
  return {Verdict::kOk, "WEFT_* variables", "every value set is valid (weft-info --config)"};
}

Finding checkMemlock(bool rdma) {
  rlimit lim{};
  ::getrlimit(RLIMIT_MEMLOCK, &lim);
  if (lim.rlim_cur == RLIM_INFINITY) return {Verdict::kOk, "locked memory", "unlimited"};
  const std::string have = strCat("RLIMIT_MEMLOCK ", lim.rlim_cur / 1024, " KiB");
  if (lim.rlim_cur >= kMemlockWant) {
    return {Verdict::kOk, "locked memory", strCat(have, " (RDMA registrations stay below it)")};
  }
  if (!rdma) {
    return {Verdict::kInfo, "locked memory",
            strCat(have, ": enough without RDMA (no active RDMA port here)")};
  }
  return {Verdict::kWarn, "locked memory",
          strCat(have,
                 ": RDMA registrations (and the verbs registration cache) are capped "
                 "there; raise it: `ulimit -l unlimited`, memlock in "
                 "/etc/security/limits.conf, or `--ulimit memlock=-1` for a container")};
}

Finding checkDevShm() {
  struct statvfs vfs {};
  if (::statvfs("/dev/shm", &vfs) != 0) {
    return {Verdict::kFail, "/dev/shm",
            strCat("statvfs: ", errnoString(errno),
                   ": shared-memory collectives and UCX's posix transport need a tmpfs "
                   "there (WEFT_COLL_SHM=0 avoids the former)")};
  }
  const uint64_t free = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  const std::string name = strCat("/weft-doctor-", ::getpid());
  const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(kMiB)) != 0) {
    const std::string err = errnoString(errno);
    if (fd >= 0) {
      ::close(fd);
      ::shm_unlink(name.c_str());
    }
    return {Verdict::kFail, "/dev/shm", strCat("creating a 1 MiB segment: ", err)};
  }
  ::close(fd);
  ::shm_unlink(name.c_str());
  if (free < kShmWant) {
    return {Verdict::kWarn, "/dev/shm",
            strCat(mib(free),
                   " free: each one-node communicator maps ranks x 4 MiB there "
                   "(WEFT_COLL_SHM_CHUNK); enlarge it (`--shm-size=1g` for a "
                   "container) or lower WEFT_COLL_SHM_CHUNK")};
  }
  return {Verdict::kOk, "/dev/shm", strCat(mib(free), " free, segments can be created")};
}

Finding checkCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  const int usable = ::sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : -1;
  return {Verdict::kInfo, "CPUs",
          strCat(online, " online, ", usable,
                 " in this process's affinity; more ranks than CPUs work (blocking waits "
                 "sleep) but small-message latency then depends on the scheduler")};
}

Finding checkPtrace() {
  const std::string scope = readLine("/proc/sys/kernel/yama/ptrace_scope");
  if (scope.empty() || scope == "0") {
    return {Verdict::kOk, "ptrace scope",
            scope.empty() ? "no Yama restriction" : "0: UCX's cma (single-copy) works"};
  }
  if (scope == "1") {
    return {Verdict::kInfo, "ptrace scope",
            "1: cross-process memory access between ranks needs UCX's own permission "
            "(UCX asks for it); if cma fails, UCX copies through posix segments"};
  }
  return {Verdict::kWarn, "ptrace scope",
          strCat(scope,
                 ": UCX's cma cannot read other ranks' memory; large shared-memory "
                 "messages take two copies (sysctl kernel.yama.ptrace_scope=0 allows it)")};
}

Finding checkClock() {
  const std::string src =
      readLine("/sys/devices/system/clocksource/clocksource0/current_clocksource");
  if (src.empty()) return {Verdict::kInfo, "clock source", "unknown"};
  if (src == "tsc" || src == "kvm-clock" || src == "arch_sys_counter") {
    return {Verdict::kOk, "clock source", strCat(src, " (read without a system call)")};
  }
  return {Verdict::kWarn, "clock source",
          strCat(src,
                 ": every clock read is a system call, which small-message latency "
                 "and the benchmarks' timers feel")};
}

Finding checkHugePages() {
  const std::string thp = readLine("/sys/kernel/mm/transparent_hugepage/enabled");
  return {
      Verdict::kInfo, "transparent huge pages",
      thp.empty() ? "unknown" : strCat(thp, " (the parameter server asks for them by madvise)")};
}

Finding checkStore(double timeout_s) {
  const std::string addr = config::getString("WEFT_STORE_ADDR").valueOr("");
  if (addr.empty()) {
    return {Verdict::kInfo, "store",
            "WEFT_STORE_ADDR is not set: weft-run and the launchers (mpirun, srun, torchrun) "
            "provide one"};
  }
  if (addr.rfind("file:", 0) == 0) {
    return {Verdict::kInfo, "store", strCat(addr, ": a file store (one node only)")};
  }
  Result<std::shared_ptr<Store>> s = connectStore(addr, Deadline::afterSeconds(timeout_s));
  if (!s.isOk()) {
    return {Verdict::kFail, "store", s.status().toString()};
  }
  return {Verdict::kOk, "store", strCat(addr, " answers")};
}

// One side of the transport check: rank r connects to 1 - r through the store; rank 0
// sends 8 B and 1 MiB (eager and rendezvous), rank 1 receives and checks the bytes.
Status pairSide(const std::string& backend, int r, Store& store, Deadline deadline) {
  transport::ContextOptions o;
  o.rank = r;
  WEFT_ASSIGN_OR_RETURN(std::unique_ptr<transport::Context> ctx,
                        transport::openContext(backend, o));
  WEFT_RETURN_IF_ERROR(ctx->publishAddress(store));
  WEFT_ASSIGN_OR_RETURN(std::unique_ptr<transport::Endpoint> ep,
                        ctx->connect(store, 1 - r, deadline));
  for (size_t n : {size_t{8}, size_t{kMiB}}) {
    std::vector<unsigned char> buf(n);
    if (r == 0) {
      for (size_t i = 0; i < n; ++i) buf[i] = static_cast<unsigned char>(i * 7 + n);
      WEFT_ASSIGN_OR_RETURN(transport::Request q, ep->send(buf.data(), n, 1));
      WEFT_RETURN_IF_ERROR(q.wait(deadline));
    } else {
      WEFT_ASSIGN_OR_RETURN(transport::Request q, ep->recv(buf.data(), n, 1));
      WEFT_RETURN_IF_ERROR(q.wait(deadline));
      for (size_t i = 0; i < n; ++i) {
        if (buf[i] != static_cast<unsigned char>(i * 7 + n)) {
          return WEFT_ERROR(StatusCode::kInternal, "byte ", i, " of the ", n,
                            "-byte message differs");
        }
      }
    }
  }
  // Both sides done before either closes (a close may fail the peer's last request).
  WEFT_RETURN_IF_ERROR(store.set(strCat("done/", r), "1"));
  return store.get(strCat("done/", 1 - r), deadline).status();
}

Finding checkTransport(const std::string& backend, double timeout_s, bool rdma) {
  const std::string name = strCat("transport ", backend);
  std::shared_ptr<Store> store = makeHashStore();
  const Deadline deadline = Deadline::afterSeconds(timeout_s);
  const auto t0 = std::chrono::steady_clock::now();
  Status peer;
  std::thread other([&] {
    peer = pairSide(backend, 1, *store, deadline);
    if (!peer.isOk()) store->set("done/1", "failed").ignore();  // releases this side
  });
  Status mine = pairSide(backend, 0, *store, deadline);
  if (!mine.isOk()) store->set("done/0", "failed").ignore();  // releases the other side
  other.join();
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (!mine.isOk() || !peer.isOk()) {
    const Status& st = !mine.isOk() ? mine : peer;
    // Debian's UCX 1.13 on soft-RoCE reaches a peer's worker address over rxe and stalls
    // (UCP connects over rxe only through a listener).
    const std::string hint =
        backend == "ucx" && rdma
            ? "; UCX picked the RDMA device: with soft-RoCE (rxe) or a misconfigured port set "
              "UCX_TLS=posix,sysv,cma,tcp for UCX, or use the verbs backend"
            : "";
    return {
        Verdict::kFail, name,
        strCat("two Contexts of this process could not exchange messages: ", st.toString(), hint)};
  }
  return {Verdict::kOk, name,
          strCat("8 B and 1 MiB exchanged between two Contexts of this process, bytes "
                 "checked (",
                 static_cast<int>(ms), " ms)")};
}

Finding checkGpu() {
#ifdef WEFT_HAVE_CUDA
  return {Verdict::kInfo, "GPU", gpu::probeGpuDirect().driver_text};
#else
  return {Verdict::kInfo, "GPU", "CUDA support is not built into this binary"};
#endif
}

}  // namespace

std::vector<Finding> runDoctor(double timeout_s) {
  std::string no_rdma;
  const std::vector<std::string> ports = activePorts(&no_rdma);
  std::vector<Finding> f;
  f.push_back(checkEnvironment());
  f.push_back(checkMemlock(!ports.empty()));
  f.push_back(checkDevShm());
  f.push_back(checkCpus());
  f.push_back(checkPtrace());
  f.push_back(checkClock());
  f.push_back(checkHugePages());
  f.push_back(checkStore(timeout_s));
  for (const std::string& b : transport::availableBackends()) {
    if (b == "verbs" && ports.empty()) {
      f.push_back(
          {Verdict::kInfo, "transport verbs",
           strCat("not checked: no active RDMA port (", no_rdma.empty() ? "none ACTIVE" : no_rdma,
                  "); weft-info --devices lists what libibverbs sees")});
      continue;
    }
    f.push_back(checkTransport(b, timeout_s, !ports.empty()));
  }
  if (!ports.empty()) {
    std::string list;
    for (const auto& p : ports) list += strCat(list.empty() ? "" : ", ", p);
    f.push_back({Verdict::kInfo, "RDMA ports", strCat("active: ", list)});
  }
  f.push_back(checkGpu());
  return f;
}

std::string formatFindings(const std::vector<Finding>& findings) {
  std::string out;
  for (const Finding& x : findings) {
    const char* tag = x.verdict == Verdict::kOk     ? "[ ok ]"
                      : x.verdict == Verdict::kInfo ? "[info]"
                      : x.verdict == Verdict::kWarn ? "[warn]"
                                                    : "[FAIL]";
    out += strCat(tag, " ", x.check, ": ", x.text, "\n");
  }
  return out;
}

int doctorExitCode(const std::vector<Finding>& findings) {
  for (const Finding& x : findings) {
    if (x.verdict == Verdict::kFail) return 1;
  }
  return 0;
}

}  // namespace weft::tools
