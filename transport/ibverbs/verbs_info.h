// What the verbs backend can tell tools (weft-info --devices, weft-perf) and tests.
//
// Contract: plain values; every function may be called from any thread. listDevices()
// opens each device briefly (no QP, no registration) and closes it again; it works
// without a Context and reports "no RDMA device" as an empty list, not an error.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "transport/api/context.h"

namespace weft::transport::verbs {

struct GidInfo {
  int index = 0;
  std::string gid;     // "fe80:0000:...:0001" (8 groups of 4 hex digits)
  std::string type;    // "IB", "RoCE v1", "RoCE v2"
  std::string netdev;  // "eth0" (RoCE), "" otherwise
  std::string ipv4;    // "10.77.0.1" for an IPv4-mapped GID, "" otherwise
};

struct PortInfo {
  int port = 0;
  std::string state;       // "ACTIVE", "DOWN", ...
  std::string link_layer;  // "InfiniBand", "Ethernet"
  int active_mtu = 0;      // bytes
  int max_mtu = 0;
  uint16_t lid = 0;
  uint32_t max_msg_size = 0;
  std::string speed;  // "10.0 Gb/s (4X SDR)"
  std::vector<GidInfo> gids;
  int preferred_gid = -1;     // what the backend would pick (see gidChoiceText)
  std::string gid_choice;     // why (or why nothing fits)
};

struct DeviceInfo {
  std::string name;  // "rxe0", "mlx5_0"
  std::string node_guid;
  uint32_t vendor_id = 0;
  uint32_t vendor_part_id = 0;
  std::string fw_ver;
  int max_qp = 0;
  int max_qp_wr = 0;
  int max_cqe = 0;
  int max_mr = 0;
  int max_sge = 0;
  int max_qp_rd_atom = 0;
  uint64_t max_mr_size = 0;
  std::string atomics;     // "none", "HCA", "global"
  bool odp = false;        // on-demand paging for RC
  std::string gpudirect;   // GPUDirect RDMA probe: "dmabuf: not supported (...); ..."
  std::vector<PortInfo> ports;
};

// Every device libibverbs sees (empty when there is none). kUnavailable only when a device
// exists but cannot be opened (the message names it and errno).
Result<std::vector<DeviceInfo>> listDevices();
// The table weft-info --devices prints.
std::string formatDevices(const std::vector<DeviceInfo>& devices);

// Registration cache counters of a verbs Context (kInvalidArgument for another backend).
struct RegCacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t evictions = 0;      // LRU entries dropped to stay under the bound
  uint64_t invalidations = 0;  // entries dropped because their memory was unmapped / freed
  uint64_t entries = 0;        // cached registrations now
  uint64_t bytes = 0;          // bytes they cover
  uint64_t bound_bytes = 0;    // the cache's limit (from RLIMIT_MEMLOCK or WEFT_IB_REG_CACHE_MAX)
  std::string monitor;         // "userfaultfd" or why caching is off
};
Result<RegCacheStats> registrationCacheStats(const Context& context);
std::string formatRegCacheStats(const RegCacheStats& stats);

// The registration-cache counters every running process on this host publishes for its
// verbs Contexts (WEFT_IB_CACHE_BOARD, on by default; see verbs_cache_board.h), sorted by
// pid and rank; segments of processes that are gone are skipped (and removed when allowed);
// segments from another pid namespace are listed, never judged gone.
struct RunningCacheStats {
  int pid = 0;
  bool other_pid_namespace = false;  // written from another pid namespace (a container)
  int rank = -1;
  std::string device;
  RegCacheStats stats;
};
std::vector<RunningCacheStats> runningRegCacheStats();
std::string formatRunningRegCacheStats(const std::vector<RunningCacheStats>& running);

// Live verbs objects of this process (every Context together), for leak checks.
struct LiveObjects {
  long contexts = 0;
  long pds = 0;
  long channels = 0;
  long cqs = 0;
  long qps = 0;
  long mrs = 0;
};
LiveObjects liveObjects();

}  // namespace weft::transport::verbs
