#include "common/bootstrap.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <thread>

#include "common/config.h"
#include "common/logging.h"
#include "common/process.h"

namespace weft {

const char* EnvSource::get(const char* name) const {
  return std::getenv(name);
}

namespace {

// An integer environment variable: missing -> fallback; malformed -> error naming it.
Result<int> envInt(const EnvSource& env, const char* name, int fallback, int min, int max) {
  const char* v = env.get(name);
  if (!v || !*v) return fallback;
  errno = 0;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (errno || *end != '\0' || x < min || x > max) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "bootstrap: ", name, "=\"", v,
                      "\" is not an integer in [", min, ", ", max, "]");
  }
  return static_cast<int>(x);
}

std::string envStr(const EnvSource& env, const char* name) {
  const char* v = env.get(name);
  return v ? std::string(v) : std::string();
}

// A WEFT_* integer validated against its declaration in params.def.
Result<int> weftInt(const EnvSource& env, const char* name) {
  const config::ParamSpec* spec = config::findParam(name);
  const char* v = env.get(name);
  if (!v || !*v) return static_cast<int>(std::strtol(spec->default_value, nullptr, 10));
  Result<int64_t> n = config::parseIntValue(*spec, v);
  if (!n.isOk()) return n.status().withContext("bootstrap");
  return static_cast<int>(*n);
}

std::string hostName() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) return "unknown-host";
  return host;
}

// Rank/size from one launcher convention. Returns false when its variables are absent.
struct Convention {
  const char* launcher;
  const char* rank;
  const char* size;
  const char* local_rank;
  const char* local_size;
};

constexpr Convention kConventions[] = {
    {"openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     "OMPI_COMM_WORLD_LOCAL_SIZE"},
    {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", nullptr},
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"},
    {"pmi", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"},
};

Status fromConvention(const EnvSource& env, const Convention& c, BootInfo& info) {
  constexpr int kMax = 16777216;
  WEFT_ASSIGN_OR_RETURN(info.rank, envInt(env, c.rank, -1, 0, kMax - 1));
  WEFT_ASSIGN_OR_RETURN(info.size, envInt(env, c.size, 0, 1, kMax));
  WEFT_ASSIGN_OR_RETURN(info.local_rank, envInt(env, c.local_rank, -1, 0, kMax - 1));
  if (c.local_size) {
    WEFT_ASSIGN_OR_RETURN(info.local_size, envInt(env, c.local_size, 0, 1, kMax));
  }
  info.launcher = c.launcher;
  return Status::ok();
}

std::string launcherJobId(const EnvSource& env, const std::string& launcher) {
  if (launcher == "slurm") {
    return strCat("slurm-", envStr(env, "SLURM_JOB_ID"), ".", envStr(env, "SLURM_STEP_ID"));
  }
  for (const char* v : {"PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid", "PMI_JOBID"}) {
    if (!envStr(env, v).empty()) return envStr(env, v);
  }
  if (!envStr(env, "TORCHELASTIC_RUN_ID").empty()) return envStr(env, "TORCHELASTIC_RUN_ID");
  // Ranks of one node share the launcher's daemon as parent: its pid and start time name
  // the job on this node.
  pid_t ppid = getppid();
  const std::optional<ProcStat> stat = readProcStat(static_cast<uint32_t>(ppid));
  return strCat("ppid-", ppid, "-", stat ? stat->start_time : 0);
}

Status chooseStore(const EnvSource& env, BootInfo& info) {
  info.store_addr = envStr(env, "WEFT_STORE_ADDR");
  const char* host0 = env.get("WEFT_STORE_HOST_RANK0");
  if (host0 && *host0) {
    const config::ParamSpec* spec = config::findParam("WEFT_STORE_HOST_RANK0");
    WEFT_RETURN_IF_ERROR(config::validate(*spec, host0).withContext("bootstrap"));
    std::string v(host0);
    info.host_store = info.rank == 0 && (v == "1" || v == "true" || v == "yes" || v == "on");
  }
  if (!info.store_addr.empty() || info.size == 1) return Status::ok();
  if (info.launcher == "torchrun" && !envStr(env, "MASTER_ADDR").empty()) {
    // torchrun's own TCPStore owns MASTER_PORT: ours is served by rank 0 one port above.
    WEFT_ASSIGN_OR_RETURN(int port, envInt(env, "MASTER_PORT", -1, 1, 65534));
    info.store_addr = strCat(envStr(env, "MASTER_ADDR"), ":", port + 1);
    info.host_store = info.rank == 0;
    return Status::ok();
  }
  // One node without an address: a file store private to this job and user.
  const char* tmp = env.get("TMPDIR");
  info.store_addr =
      strCat("file:", tmp && *tmp ? tmp : "/tmp", "/weft-store-", getuid(), "-", info.job_id);
  return Status::ok();
}

}  // namespace

Result<BootInfo> detectBootInfo(const EnvSource& env) {
  BootInfo info;
  WEFT_ASSIGN_OR_RETURN(info.rank, weftInt(env, "WEFT_RANK"));
  WEFT_ASSIGN_OR_RETURN(info.size, weftInt(env, "WEFT_WORLD_SIZE"));
  if (info.rank >= 0 || info.size > 0) {
    if (info.rank < 0 || info.size <= 0) {
      return WEFT_ERROR(StatusCode::kInvalidArgument,
                        "bootstrap: WEFT_RANK and WEFT_WORLD_SIZE must be set together (got "
                        "WEFT_RANK=",
                        envStr(env, "WEFT_RANK"),
                        " WEFT_WORLD_SIZE=", envStr(env, "WEFT_WORLD_SIZE"), ")");
    }
    info.launcher = "weft";
    WEFT_ASSIGN_OR_RETURN(info.local_rank, weftInt(env, "WEFT_LOCAL_RANK"));
    WEFT_ASSIGN_OR_RETURN(info.local_size, weftInt(env, "WEFT_LOCAL_SIZE"));
  } else {
    for (const auto& c : kConventions) {
      if (!env.get(c.rank) || !env.get(c.size)) continue;
      WEFT_RETURN_IF_ERROR(fromConvention(env, c, info));
      break;
    }
    if (info.launcher.empty()) {
      info.rank = 0;
      info.size = 1;
      info.launcher = "single";
    }
  }
  if (info.rank >= info.size) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "bootstrap (", info.launcher, "): rank ",
                      info.rank, " is not below the world size ", info.size);
  }
  if (info.size == 1) info.local_rank = 0, info.local_size = 1;
  info.node_id = envStr(env, "WEFT_NODE_ID");
  if (info.node_id.empty())
    info.node_id = info.launcher == "slurm" ? envStr(env, "SLURMD_NODENAME") : "";
  if (info.node_id.empty()) info.node_id = hostName();
  info.job_id = envStr(env, "WEFT_JOB_ID");
  if (info.job_id.empty()) info.job_id = launcherJobId(env, info.launcher);
  WEFT_RETURN_IF_ERROR(chooseStore(env, info));
  return info;
}

Status deriveTopology(Store& store, BootInfo& info, std::vector<int>& node_of_rank,
                      Deadline deadline) {
  WEFT_RETURN_IF_ERROR(store.set(strCat("weft/boot/node/", info.rank), info.node_id));
  std::vector<std::string> node_ids(info.size);
  for (int r = 0; r < info.size; ++r) {
    auto v = store.get(strCat("weft/boot/node/", r), deadline);
    if (!v.isOk()) {
      return v.status().withContext(
          strCat("bootstrap: rank ", info.rank, " waiting for the node id of rank ", r));
    }
    node_ids[r] = std::move(*v);
  }
  std::map<std::string, int> index;  // node id -> dense index by lowest rank
  node_of_rank.assign(info.size, -1);
  int local_rank = 0, local_size = 0;
  for (int r = 0; r < info.size; ++r) {
    auto [it, inserted] = index.emplace(node_ids[r], static_cast<int>(index.size()));
    node_of_rank[r] = it->second;
    if (node_ids[r] == info.node_id) {
      if (r < info.rank) ++local_rank;
      ++local_size;
    }
  }
  if (info.local_rank >= 0 && info.local_rank != local_rank) {
    WEFT_LOG(kWarn, "boot") << "launcher says local rank " << info.local_rank
                            << " but the store says " << local_rank << " on node " << info.node_id
                            << "; keeping the launcher's";
  } else {
    info.local_rank = local_rank;
  }
  if (info.local_size <= 0) info.local_size = local_size;
  info.node_index = node_of_rank[info.rank];
  info.num_nodes = static_cast<int>(index.size());
  return Status::ok();
}

namespace {
Result<uint16_t> portOf(const std::string& addr) {
  size_t colon = addr.rfind(':');
  char* end = nullptr;
  long port = colon == std::string::npos ? -1 : std::strtol(addr.c_str() + colon + 1, &end, 10);
  if (port < 1 || port > 65535 || *end != '\0') {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "bootstrap: store address \"", addr,
                      "\" has no valid port (expected host:port)");
  }
  return static_cast<uint16_t>(port);
}
}  // namespace

Result<World> bootstrap(const BootInfo& info, Deadline deadline) {
  World world;
  world.info = info;
  log::setRank(info.rank);
  if (info.store_addr.empty()) {
    world.store = makeHashStore();
  } else {
    if (info.host_store) {
      WEFT_ASSIGN_OR_RETURN(uint16_t port, portOf(info.store_addr));
      WEFT_ASSIGN_OR_RETURN(world.server, startTcpStoreServer("0.0.0.0", port));
    }
    auto store = connectStore(info.store_addr, deadline);
    if (!store.isOk()) {
      return store.status().withContext(
          strCat("bootstrap: rank ", info.rank, " of ", info.size, " (", info.launcher, ")"));
    }
    world.store = std::move(*store);
  }
  Status st = deriveTopology(*world.store, world.info, world.node_of_rank, deadline);
  if (!st.isOk() && info.store_addr.rfind("file:", 0) == 0) {
    st = st.withHint(
        "a file store only reaches ranks of one node: for several nodes set "
        "WEFT_STORE_ADDR=host:port and WEFT_STORE_HOST_RANK0=1");
  }
  WEFT_RETURN_IF_ERROR(st);
  return world;
}

World::~World() {
  if (!store) return;
  auto n = store->add("weft/world/exit", 1);
  if (n.isOk() && *n >= info.size && info.store_addr.rfind("file:", 0) == 0) {
    // The last rank out removes the job's file store (no rank touches it after its count).
    store.reset();
    std::error_code ec;
    std::filesystem::remove_all(info.store_addr.substr(5), ec);
    if (ec) {
      WEFT_LOG(kWarn, "boot") << "removing the file store " << info.store_addr.substr(5) << ": "
                              << ec.message();
    }
    return;
  }
  if (!server) return;
  double timeout = config::getDouble("WEFT_TIMEOUT").valueOr(300.0);
  Deadline deadline = Deadline::afterSeconds(timeout);
  while (n.isOk() && *n < info.size && !deadline.expired()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    n = store->add("weft/world/exit", 0);
  }
  if (!n.isOk() || *n < info.size) {
    WEFT_LOG(kWarn, "boot") << "rank " << info.rank << " stops the store server at "
                            << info.store_addr << " while "
                            << (n.isOk() ? info.size - *n : info.size)
                            << " rank(s) have not finished: they lose the store";
  }
}

Result<World> bootstrap(Deadline deadline) {
  WEFT_RETURN_IF_ERROR(config::checkEnvironment());
  WEFT_ASSIGN_OR_RETURN(BootInfo info, detectBootInfo());
  return bootstrap(info, deadline);
}

Status checkSameArguments(Store& store, int rank, int size, std::string_view tool, int argc,
                          const char* const* argv, Deadline deadline) {
  std::string mine;
  for (int i = 1; i < argc; ++i) mine += strCat(i > 1 ? " " : "", argv[i]);
  const std::string base = strCat("args/", tool, "/");
  WEFT_RETURN_IF_ERROR(store.set(strCat(base, rank), mine));
  std::string verdict = "ok";
  if (rank != 0) {
    WEFT_ASSIGN_OR_RETURN(const std::string first, store.get(strCat(base, 0), deadline));
    if (first != mine) {
      verdict = strCat("rank ", rank, " was started with '", mine, "', rank 0 with '", first, "'");
    }
  }
  WEFT_RETURN_IF_ERROR(store.set(strCat(base, "verdict/", rank), verdict));
  if (rank == 0) {
    std::string all = "ok";
    int differ = 0;
    for (int r = 1; r < size; ++r) {
      Result<std::string> v = store.get(strCat(base, "verdict/", r), deadline);
      if (!v.isOk()) return v.status();
      if (*v == "ok") continue;
      if (differ++ == 0) all = std::move(v).value();
    }
    if (differ > 1) all += strCat(" (and ", differ - 1, " more rank(s) differ)");
    WEFT_RETURN_IF_ERROR(store.set(strCat(base, "verdict"), all));
  }
  WEFT_ASSIGN_OR_RETURN(const std::string all, store.get(strCat(base, "verdict"), deadline));
  if (all == "ok") return Status::ok();
  return WEFT_ERROR(StatusCode::kInvalidArgument, tool, ": the ranks were started with different "
                    "options: ", all)
      .withHint("give every rank the same command line");
}

}  // namespace weft
