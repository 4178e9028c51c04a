// weft-info: version, enabled backends, configuration and identity of a Weft process.
//
//   weft-info                  version and backends
//   weft-info --config         every WEFT_* variable: value, source, allowed values, doc
//   weft-info --config --markdown   the same as a Markdown table (README)
//   weft-info --whoami         rank, local rank, node (bootstraps through the store)
//   weft-info --devices        RDMA devices: ports, state, link layer, MTU, GID table with types
//                              and the GID the verbs backend would pick, capabilities, the
//                              GPUDirect probe, the registration cache's bound and counters
//   weft-info --gpu            CUDA driver and devices, GPUDirect RDMA probe (dma-buf export,
//                              peer-memory module), each with the reason when unavailable
//   weft-info --doctor         checks what a job here depends on (limits, /dev/shm, store,
//                              each transport end to end) and says what to fix
//   weft-info --explain allreduce 64M [--ranks 4] [--nodes 1]
//                              the algorithm the collectives would pick, and the predicted
//                              time of every alternative (cost model + WEFT_ALGO_<OP>)
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>

#include "collectives/tuner/tuner.h"
#include "common/bootstrap.h"
#include "common/config.h"
#include "tools/doctor.h"
#ifdef WEFT_HAVE_CUDA
#include "gpu/gpudirect.h"
#endif
#ifdef WEFT_HAVE_VERBS
#include "transport/api/context.h"
#include "transport/ibverbs/verbs_info.h"
#endif

namespace {

using weft::config::ParamSpec;

constexpr const char* kUsage =
    "usage: weft-info [--config [--markdown]] [--whoami] [--devices] [--gpu] [--doctor]\n"
    "                 [--explain OP SIZE [--ranks N] [--nodes M]] [--help]\n"
    "  (no option)  version and enabled backends\n"
    "  --config     every WEFT_* variable with its value and where it came from\n"
    "  --markdown   with --config: print a Markdown table\n"
    "  --whoami     bootstrap and print rank, world size, local rank, node\n"
    "  --devices    RDMA devices (ports, GIDs, MTU, capabilities, GPUDirect probe) and the\n"
    "               verbs registration caches of running jobs (counters) and a new one's bound\n"
    "  --gpu        CUDA devices and the GPUDirect RDMA probe (dma-buf, peer memory)\n"
    "  --doctor     check locked memory, /dev/shm, ptrace scope, clock, store and each\n"
    "               transport end to end; exit 1 when a check fails\n"
    "  --explain    collective OP (allreduce, broadcast, ...) of SIZE bytes per rank (64M,\n"
    "               1K, 8): the algorithm chosen and every alternative's predicted time\n";

struct Backend {
  const char* name;
  const char* what;
};

constexpr Backend kBackends[] = {
    {"ucx", "UCX (UCP) transport"},
    {"verbs", "native libibverbs transport"},
    {"cuda", "CUDA device memory and kernels"},
    {"torch", "PyTorch process-group backend"},
};

// WEFT_FEATURES is ",ucx,verbs," etc. (set by cmake/WeftOptions.cmake).
bool builtIn(const char* name) {
  return std::string_view(WEFT_FEATURES).find("," + std::string(name) + ",") !=
         std::string_view::npos;
}

// What the backend line adds after its description ("" for most).
std::string backendDetail(std::string_view name) {
#ifdef WEFT_HAVE_CUDA
  if (name == "cuda") return " (" + weft::gpu::probeGpuDirect().driver_text + ")";
#endif
  (void)name;
  return "";
}

int printVersion() {
  std::printf("weft %s\n", WEFT_VERSION);
  std::printf("backends (built in):\n");
  for (const auto& b : kBackends) {
    std::printf("  %-6s %-9s %s%s\n", b.name, builtIn(b.name) ? "enabled" : "disabled", b.what,
                backendDetail(b.name).c_str());
  }
  return 0;
}

// --gpu: one line per probe; exit code 0 even when nothing is available (it is a report).
int printGpu() {
#ifdef WEFT_HAVE_CUDA
  const weft::gpu::GpuDirectProbe& p = weft::gpu::probeGpuDirect();
  std::printf("%s\n%s\n%s\n", p.driver_text.c_str(), p.dmabuf_text.c_str(), p.peermem_text.c_str());
  std::printf("GPUDirect RDMA: %s\n", p.dmabuf_export
                                          ? "possible through dma-buf (with a dma-buf capable NIC)"
                                      : p.peermem ? "possible through the peer-memory module"
                                                  : "not available on this host (see above)");
#else
  std::printf("CUDA: not built into this binary (configure with -DWEFT_WITH_CUDA=ON)\n");
#endif
  return 0;
}

std::string valueText(const ParamSpec& p, std::string* source) {
  auto raw = weft::config::raw(p.name);
  if (!raw.isOk()) return "?";
  *source = std::string(weft::config::sourceName(raw->source));
  weft::Status st = weft::config::validate(p, raw->text);
  return st.isOk() ? raw->text : raw->text + "  <-- INVALID";
}

int printConfig(bool markdown) {
  if (markdown) {
    std::printf("| variable | default | allowed | meaning |\n|---|---|---|---|\n");
    for (const auto& p : weft::config::allParams()) {
      std::printf("| `%s` | `%s` | %s | %s |\n", p.name, p.default_value,
                  weft::config::allowedText(p).c_str(), p.doc);
    }
    return 0;
  }
  int bad = 0;
  for (const auto& p : weft::config::allParams()) {
    std::string source;
    std::string value = valueText(p, &source);
    bad += value.find("<-- INVALID") != std::string::npos;
    std::printf("%-24s = %-14s [%s]\n    %s; %s\n", p.name, ("\"" + value + "\"").c_str(),
                source.c_str(), p.doc, weft::config::allowedText(p).c_str());
  }
  weft::Status st = weft::config::checkEnvironment();
  if (!st.isOk()) {
    std::fprintf(stderr, "weft-info: %s\n", st.message().c_str());
    return 2;
  }
  return bad ? 2 : 0;
}

int whoami() {
  double timeout = weft::config::getDouble("WEFT_TIMEOUT").valueOr(300.0);
  auto world = weft::bootstrap(weft::Deadline::afterSeconds(timeout));
  if (!world.isOk()) {
    std::fprintf(stderr, "weft-info --whoami: %s\n", world.status().toString().c_str());
    return 1;
  }
  const weft::BootInfo& i = world->info;
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  std::printf("rank %d/%d local_rank %d/%d node %s (index %d of %d) host %s pid %d launcher %s\n",
              i.rank, i.size, i.local_rank, i.local_size, i.node_id.c_str(), i.node_index,
              i.num_nodes, host, static_cast<int>(getpid()), i.launcher.c_str());
  std::fflush(stdout);
  return 0;
}

struct ExplainArgs {
  std::string op;
  std::string size;
  int ranks = 2;
  int nodes = 1;
};

int explain(const ExplainArgs& a) {
  auto kind = weft::coll::parseCollKind(a.op);
  auto bytes = weft::coll::parseByteSize(a.size);
  auto tuner = weft::coll::Tuner::fromEnvironment();
  auto chunk = weft::config::getInt("WEFT_COLL_CHUNK");
  for (const weft::Status& st : {kind.status(), bytes.status(), tuner.status(), chunk.status()}) {
    if (!st.isOk()) {
      std::fprintf(stderr, "weft-info --explain: %s\n", st.message().c_str());
      return 2;
    }
  }
  if (a.ranks < 1 || a.nodes < 1 || a.nodes > a.ranks) {
    std::fprintf(stderr, "weft-info --explain: need 1 <= nodes <= ranks (got %d nodes, %d ranks)\n",
                 a.nodes, a.ranks);
    return 2;
  }
  const weft::coll::TopologyShape shape{a.ranks, a.nodes};
  std::fputs(tuner->explain(*kind, *bytes, shape, static_cast<size_t>(*chunk)).c_str(), stdout);
  return tuner->select(*kind, *bytes, shape, static_cast<size_t>(*chunk)).isOk() ? 0 : 2;
}

// --devices: what libibverbs sees, the registration-cache counters of every running job on
// this host (published in /dev/shm by each verbs Context), and the bound and monitor a new
// Context on the first device would get.
int printDevices() {
#ifndef WEFT_HAVE_VERBS
  std::puts(
      "verbs: not built into this binary (configure with -DWEFT_WITH_VERBS=ON and "
      "libibverbs-dev installed)");
  return 1;
#else
  namespace verbs = weft::transport::verbs;
  weft::Result<std::vector<verbs::DeviceInfo> > devices = verbs::listDevices();
  if (!devices.isOk()) {
    std::fprintf(stderr, "weft-info --devices: %s\n", devices.status().toString().c_str());
    return 1;
  }
  if (devices->empty()) {
    std::puts(
        "no RDMA device: libibverbs sees none (a NIC with its driver, or soft-RoCE: "
        "`rdma link add rxe0 type rxe netdev eth0` after `modprobe rdma_rxe`)");
    return 0;
  }
  std::fputs(verbs::formatDevices(*devices).c_str(), stdout);
  std::fputs(verbs::formatRunningRegCacheStats(verbs::runningRegCacheStats()).c_str(), stdout);
  weft::transport::ContextOptions o;
  o.backend_config = {{"WEFT_IB_CACHE_BOARD", "0"}};  // this probe is no running job
  auto ctx = weft::transport::openContext("verbs", o);
  if (!ctx.isOk()) {
    std::printf("registration cache: no verbs Context could be opened: %s\n",
                ctx.status().toString().c_str());
    return 1;
  }
  weft::Result<verbs::RegCacheStats> stats = verbs::registrationCacheStats(**ctx);
  if (!stats.isOk()) {
    std::printf("registration cache: %s\n", stats.status().toString().c_str());
    return 1;
  }
  std::printf("a new Context here would get: bound %.1f MiB, invalidation monitor %s\n",
              static_cast<double>(stats->bound_bytes) / (1 << 20), stats->monitor.c_str());
  return 0;
#endif
}

// Parses "--explain OP SIZE [--ranks N] [--nodes M]" from argv[i]; false on bad input.
bool parseExplain(int argc, char** argv, int& i, ExplainArgs& out) {
  if (i + 2 >= argc) return false;
  out.op = argv[++i];
  out.size = argv[++i];
  while (i + 2 < argc) {
    std::string_view opt = argv[i + 1];
    if (opt != "--ranks" && opt != "--nodes") break;
    const int v = std::atoi(argv[i + 2]);
    (opt == "--ranks" ? out.ranks : out.nodes) = v;
    i += 2;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  bool config = false, markdown = false, who = false, explainMode = false, gpu = false;
  bool devices = false, doctor = false;
  ExplainArgs explainArgs;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--explain") {
      if (!parseExplain(argc, argv, i, explainArgs)) {
        std::fprintf(stderr, "weft-info: --explain needs OP and SIZE\n%s", kUsage);
        return 2;
      }
      explainMode = true;
    } else if (a == "--config") {
      config = true;
    } else if (a == "--markdown") {
      markdown = true;
    } else if (a == "--whoami") {
      who = true;
    } else if (a == "--gpu") {
      gpu = true;
    } else if (a == "--devices") {
      devices = true;
    } else if (a == "--doctor") {
      doctor = true;
    } else if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "weft-info: unknown option '%s'\n%s", argv[i], kUsage);
      return 2;
    }
  }
  if (config) return printConfig(markdown);
  if (doctor) {  // before the environment check: it reports a bad variable as a finding
    const auto findings = weft::tools::runDoctor(
        std::min(weft::config::getDouble("WEFT_TIMEOUT").valueOr(10.0), 10.0));
    std::fputs(weft::tools::formatFindings(findings).c_str(), stdout);
    return weft::tools::doctorExitCode(findings);
  }
  weft::Status st = weft::config::checkEnvironment();
  if (!st.isOk()) {
    std::fprintf(stderr, "weft-info: %s\n", st.message().c_str());
    return 2;
  }
  if (who) return whoami();
  if (gpu) return printGpu();
  if (devices) return printDevices();
  if (explainMode) return explain(explainArgs);
  return printVersion();
}
