// Device discovery, port and GID selection, WEFT_IB_* configuration, GPUDirect probe.
#include <fcntl.h>
#include <net/if.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <ios>
#include <map>
#include <sstream>

#include "common/config.h"
#include "common/logging.h"
#include "transport/ibverbs/verbs_internal.h"
#ifdef WEFT_HAVE_CUDA
#include "gpu/gpudirect.h"
#endif

namespace weft::transport::verbs {

std::atomic<long>& liveCounter(ObjectKind kind) {
  static std::atomic<long> counters[static_cast<int>(ObjectKind::kCount)];
  return counters[static_cast<int>(kind)];
}

void logDestroyFailure(const char* call, int err) {
  WEFT_LOG(kWarn, "verbs") << call << " failed: " << errnoString(err);
}

void FreeDeleter::operator()(void* p) const noexcept {
  std::free(p);
}

AlignedBuffer allocateAligned(size_t bytes) {
  void* p = nullptr;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  if (::posix_memalign(&p, page, (bytes + page - 1) / page * page) != 0) return nullptr;
  return AlignedBuffer(static_cast<char*>(p));
}

std::string hex(uint64_t v) {
  std::ostringstream os;
  os << "0x" << std::hex << v;
  return os.str();
}

LiveObjects liveObjects() {
  LiveObjects l;
  l.contexts = liveCounter(ObjectKind::kContext).load();
  l.pds = liveCounter(ObjectKind::kPd).load();
  l.channels = liveCounter(ObjectKind::kChannel).load();
  l.cqs = liveCounter(ObjectKind::kCq).load();
  l.qps = liveCounter(ObjectKind::kQp).load();
  l.mrs = liveCounter(ObjectKind::kMr).load();
  return l;
}

namespace {

// WEFT_IB_* values: ContextOptions::backend_config ({"RNDV", "write"} or
// {"WEFT_IB_RNDV", "write"}) wins over the environment.
class Settings {
 public:
  static Result<Settings> create(const ContextOptions& options) {
    Settings s;
    for (const auto& [key, value] : options.backend_config) {
      std::string name = key.rfind("WEFT_IB_", 0) == 0 ? key : "WEFT_IB_" + key;
      for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      const config::ParamSpec* spec = config::findParam(name);
      if (spec == nullptr) {
        return WEFT_ERROR(StatusCode::kInvalidArgument, "openContext(verbs): unknown backend "
                          "setting ", key, "=", value)
            .withHint("names are WEFT_IB_* variables with or without the prefix (RNDV, "
                      "EAGER_SIZE, ...); `weft-info --config` lists them");
      }
      Status st = config::validate(*spec, value);
      if (!st.isOk()) return st.withContext("openContext(verbs): backend setting");
      s.overrides_[name] = value;
    }
    return s;
  }
  Result<std::string> str(const char* name) const {
    auto it = overrides_.find(name);
    return it != overrides_.end() ? Result<std::string>(it->second) : config::getString(name);
  }
  Result<int64_t> i64(const char* name) const {
    auto it = overrides_.find(name);
    if (it == overrides_.end()) return config::getInt(name);
    return static_cast<int64_t>(std::strtoll(it->second.c_str(), nullptr, 0));  // validated
  }
  Result<double> f64(const char* name) const {
    auto it = overrides_.find(name);
    if (it == overrides_.end()) return config::getDouble(name);
    return std::strtod(it->second.c_str(), nullptr);
  }
  Result<bool> flag(const char* name) const {
    auto it = overrides_.find(name);
    if (it == overrides_.end()) return config::getBool(name);
    const std::string& v = it->second;
    return v == "1" || v == "true" || v == "yes" || v == "on";
  }

 private:
  std::map<std::string, std::string> overrides_;
};

Status parseDevice(std::string dev, VerbsConfig& c) {
  const size_t colon = dev.rfind(':');
  if (colon != std::string::npos) {
    const std::string port = dev.substr(colon + 1);
    char* end = nullptr;
    const long p = std::strtol(port.c_str(), &end, 10);
    if (port.empty() || *end != '\0' || p < 1 || p > 255) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, "WEFT_IB_DEVICE=\"", dev,
                        "\": the port after ':' must be a number in [1, 255]")
          .withHint("write name:port, e.g. rxe0:1 or mlx5_0:1");
    }
    c.port = static_cast<int>(p);
    dev.resize(colon);
  }
  c.device = dev;
  return Status::ok();
}

Status readLinkSettings(const Settings& s, VerbsConfig& c) {
  WEFT_ASSIGN_OR_RETURN(std::string dev, s.str("WEFT_IB_DEVICE"));
  WEFT_RETURN_IF_ERROR(parseDevice(dev, c));
  WEFT_ASSIGN_OR_RETURN(int64_t gid, s.i64("WEFT_IB_GID_INDEX"));
  WEFT_ASSIGN_OR_RETURN(int64_t mtu, s.i64("WEFT_IB_MTU"));
  if (mtu != 0 && mtu != 256 && mtu != 512 && mtu != 1024 && mtu != 2048 && mtu != 4096) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "WEFT_IB_MTU=", mtu,
                      " is not one of 0, 256, 512, 1024, 2048, 4096");
  }
  WEFT_ASSIGN_OR_RETURN(int64_t timeout, s.i64("WEFT_IB_TIMEOUT"));
  WEFT_ASSIGN_OR_RETURN(int64_t retry, s.i64("WEFT_IB_RETRY_COUNT"));
  WEFT_ASSIGN_OR_RETURN(int64_t rnr, s.i64("WEFT_IB_RNR_RETRY"));
  WEFT_ASSIGN_OR_RETURN(int64_t sl, s.i64("WEFT_IB_SL"));
  WEFT_ASSIGN_OR_RETURN(int64_t tc, s.i64("WEFT_IB_TRAFFIC_CLASS"));
  c.gid_index = static_cast<int>(gid);
  c.mtu = static_cast<int>(mtu);
  c.timeout = static_cast<int>(timeout);
  c.retry_count = static_cast<int>(retry);
  c.rnr_retry = static_cast<int>(rnr);
  c.sl = static_cast<int>(sl);
  c.traffic_class = static_cast<int>(tc);
  return Status::ok();
}

Status readProtocolSettings(const Settings& s, VerbsConfig& c) {
  WEFT_ASSIGN_OR_RETURN(int64_t sq, s.i64("WEFT_IB_SQ_DEPTH"));
  WEFT_ASSIGN_OR_RETURN(int64_t rb, s.i64("WEFT_IB_RECV_BUFFERS"));
  WEFT_ASSIGN_OR_RETURN(int64_t eager, s.i64("WEFT_IB_EAGER_SIZE"));
  WEFT_ASSIGN_OR_RETURN(std::string rndv, s.str("WEFT_IB_RNDV"));
  WEFT_ASSIGN_OR_RETURN(int64_t inl, s.i64("WEFT_IB_MAX_INLINE"));
  WEFT_ASSIGN_OR_RETURN(c.keepalive_s, s.f64("WEFT_IB_KEEPALIVE"));
  WEFT_ASSIGN_OR_RETURN(std::string cache, s.str("WEFT_IB_REG_CACHE"));
  WEFT_ASSIGN_OR_RETURN(int64_t cache_max, s.i64("WEFT_IB_REG_CACHE_MAX"));
  WEFT_ASSIGN_OR_RETURN(c.fork_init, s.flag("WEFT_IB_FORK_INIT"));
  WEFT_ASSIGN_OR_RETURN(c.cache_board, s.flag("WEFT_IB_CACHE_BOARD"));
  c.sq_depth = static_cast<uint32_t>(sq);
  c.recv_buffers = static_cast<uint32_t>(rb);
  c.eager_size = static_cast<uint32_t>(eager);
  c.rndv = rndv == "write" ? Rndv::kWrite : Rndv::kRead;
  c.max_inline = static_cast<int>(inl);
  c.reg_cache = cache != "off";
  c.reg_cache_max = static_cast<uint64_t>(cache_max);
  return Status::ok();
}

}  // namespace

Result<VerbsConfig> readVerbsConfig(const ContextOptions& options) {
  WEFT_ASSIGN_OR_RETURN(Settings s, Settings::create(options));
  VerbsConfig c;
  WEFT_RETURN_IF_ERROR(readLinkSettings(s, c));
  WEFT_RETURN_IF_ERROR(readProtocolSettings(s, c));
  return c;
}

namespace {

bool isZeroGid(const ibv_gid& g) {
  for (uint8_t b : g.raw) {
    if (b != 0) return false;
  }
  return true;
}

bool isLinkLocal(const ibv_gid& g) {
  return g.raw[0] == 0xfe && (g.raw[1] & 0xc0) == 0x80;
}

std::string describeGid(const GidCandidate& c) {
  std::string ip = gidIpv4(c.gid);
  std::string s = strCat(c.index, " (", gidTypeName(c.type), " ", ip.empty() ? gidText(c.gid) : ip);
  if (!c.netdev.empty()) s += strCat(" on ", c.netdev);
  return s + ")";
}

std::string tableText(const std::vector<GidCandidate>& table) {
  std::string s;
  for (const auto& c : table) s += (s.empty() ? "" : ", ") + describeGid(c);
  return s.empty() ? std::string("none") : s;
}

}  // namespace

Result<GidChoice> chooseGid(const std::vector<GidCandidate>& table, int override_index,
                            bool infiniband, std::string_view where) {
  if (override_index >= 0) {
    for (const auto& c : table) {
      if (c.index == override_index && !isZeroGid(c.gid)) {
        return GidChoice{c.index, strCat("GID ", describeGid(c), " as WEFT_IB_GID_INDEX says")};
      }
    }
    return WEFT_ERROR(StatusCode::kInvalidArgument, "WEFT_IB_GID_INDEX=", override_index,
                      ": ", where, " has no such GID (valid: ", tableText(table), ")")
        .withHint("pick an index from that list (`weft-info --devices` shows the table)");
  }
  if (infiniband) {
    return GidChoice{0, "GID 0: InfiniBand port, routed by LID (the GID only fills the GRH)"};
  }
  // RoCE: v2 is routable (UDP/IP) and what every modern fabric runs; an IPv4-mapped GID
  // matches the IPv4 addressing peers usually share; link-local v6 only works inside one
  // L2 segment; v1 (raw Ethernet) only when nothing else exists.
  struct Pref {
    uint32_t type;
    int kind;  // 0 IPv4-mapped, 1 global IPv6, 2 link-local
    const char* text;
  };
  const Pref prefs[] = {
      {IBV_GID_TYPE_ROCE_V2, 0, "RoCE v2 with an IPv4 address: routable and matches IPv4 peers"},
      {IBV_GID_TYPE_ROCE_V2, 1, "RoCE v2 global IPv6 (no IPv4-mapped RoCE v2 GID exists)"},
      {IBV_GID_TYPE_ROCE_V2, 2, "RoCE v2 link-local IPv6 (no routable RoCE v2 GID exists)"},
      {IBV_GID_TYPE_ROCE_V1, 0, "RoCE v1 (no RoCE v2 GID exists; not routable)"},
      {IBV_GID_TYPE_ROCE_V1, 1, "RoCE v1 (no RoCE v2 GID exists; not routable)"},
      {IBV_GID_TYPE_ROCE_V1, 2, "RoCE v1 link-local (no RoCE v2 GID exists; not routable)"},
  };
  for (const Pref& p : prefs) {
    for (const auto& c : table) {
      if (c.type != p.type || isZeroGid(c.gid)) continue;
      const int kind = !gidIpv4(c.gid).empty() ? 0 : isLinkLocal(c.gid) ? 2 : 1;
      if (kind != p.kind) continue;
      return GidChoice{c.index, strCat("GID ", describeGid(c), ": ", p.text, "; table: ",
                                       tableText(table))};
    }
  }
  return WEFT_ERROR(StatusCode::kUnavailable, where, " has no usable RoCE GID (table: ",
                    tableText(table), ")")
      .withHint("give the Ethernet device an IP address (RoCE GIDs follow the netdev's "
                "addresses) or set WEFT_IB_GID_INDEX");
}

namespace {

std::string deviceNames(ibv_device** list) {
  std::string s;
  for (int i = 0; list[i] != nullptr; ++i) s += (s.empty() ? "" : ", ") + std::string(list[i]->name);
  return s;
}

std::vector<GidCandidate> gidTable(ibv_context* ctx, int port, int table_len) {
  std::vector<GidCandidate> out;
  for (int i = 0; i < table_len; ++i) {
    ibv_gid_entry e{};
    if (ibv_query_gid_ex(ctx, static_cast<uint32_t>(port), static_cast<uint32_t>(i), &e, 0) != 0) {
      continue;  // empty slot
    }
    GidCandidate c;
    c.index = i;
    std::memcpy(c.gid.raw, e.gid.raw, sizeof(c.gid.raw));
    c.type = e.gid_type;
    char name[IF_NAMESIZE] = {};
    if (e.ndev_ifindex != 0 && ::if_indextoname(e.ndev_ifindex, name) != nullptr) c.netdev = name;
    if (!isZeroGid(c.gid)) out.push_back(c);
  }
  return out;
}

// The first port that is ACTIVE (port 0 in config) or the configured one, checked.
Result<int> pickPort(ibv_context* ctx, const ibv_device_attr& attr, const VerbsConfig& cfg,
                     ibv_port_attr& pa) {
  const std::string dev = ibv_get_device_name(ctx->device);
  if (cfg.port > attr.phys_port_cnt) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "WEFT_IB_DEVICE=", cfg.device, ":", cfg.port,
                      ": ", dev, " has ", static_cast<int>(attr.phys_port_cnt), " port(s)")
        .withHint("ports are numbered from 1");
  }
  const int first = cfg.port > 0 ? cfg.port : 1;
  const int last = cfg.port > 0 ? cfg.port : attr.phys_port_cnt;
  for (int p = first; p <= last; ++p) {
    const int rc = ibv_query_port(ctx, static_cast<uint8_t>(p), &pa);
    if (rc != 0) {
      return WEFT_ERROR(StatusCode::kIoError, "ibv_query_port(", dev, ":", p, "): ",
                        errnoString(rc));
    }
    if (pa.state == IBV_PORT_ACTIVE) return p;
  }
  return WEFT_ERROR(StatusCode::kUnavailable, dev,
                    cfg.port > 0 ? strCat(":", cfg.port, " is not ACTIVE (state ",
                                          ibv_port_state_str(pa.state), ")")
                                 : std::string(" has no ACTIVE port"))
      .withHint("check the link (`ibv_devinfo`); for soft-RoCE the netdev must be up");
}

}  // namespace

namespace {

// Fills `sel` from an opened device: the port (pickPort) and the GID (chooseGid).
Status selectPort(ibv_context* ctx, const VerbsConfig& cfg, PortSelection& sel) {
  ibv_device_attr attr{};
  ibv_port_attr pa{};
  const int rc = ibv_query_device(ctx, &attr);
  if (rc != 0) {
    return WEFT_ERROR(StatusCode::kIoError, "ibv_query_device(", ibv_get_device_name(ctx->device),
                      "): ", errnoString(rc));
  }
  WEFT_ASSIGN_OR_RETURN(sel.port, pickPort(ctx, attr, cfg, pa));
  sel.device = ibv_get_device_name(ctx->device);
  sel.lid = pa.lid;
  sel.link_layer = pa.link_layer;
  sel.active_mtu = static_cast<uint8_t>(pa.active_mtu);
  sel.max_msg = pa.max_msg_sz;
  const bool ib = pa.link_layer != IBV_LINK_LAYER_ETHERNET;
  const std::string where = strCat(sel.device, ":", sel.port);
  WEFT_ASSIGN_OR_RETURN(GidChoice g,
                        chooseGid(gidTable(ctx, sel.port, pa.gid_tbl_len), cfg.gid_index, ib, where));
  sel.gid_index = g.index;
  sel.gid_why = g.why;
  ibv_gid_entry e{};
  if (ibv_query_gid_ex(ctx, static_cast<uint32_t>(sel.port), static_cast<uint32_t>(sel.gid_index),
                       &e, 0) == 0) {
    std::memcpy(sel.gid.raw, e.gid.raw, sizeof(sel.gid.raw));
    sel.gid_type = e.gid_type;
  } else if (ibv_query_gid(ctx, static_cast<uint8_t>(sel.port), sel.gid_index, &sel.gid) != 0) {
    return WEFT_ERROR(StatusCode::kIoError, "ibv_query_gid(", where, ", ", sel.gid_index, "): ",
                      errnoString(errno));
  }
  return Status::ok();
}

}  // namespace

Result<ContextPtr> openDevice(const VerbsConfig& cfg, PortSelection& sel) {
  int n = 0;
  DeviceListPtr list(ibv_get_device_list(&n));
  if (!list || n == 0) {
    return WEFT_ERROR(StatusCode::kUnavailable,
                      "openContext(verbs): no RDMA device found (ibv_get_device_list: ",
                      list ? std::string("empty") : errnoString(errno), ")")
        .withHint("load the NIC's driver, or create a soft-RoCE device: "
                  "`rdma link add rxe0 type rxe netdev eth0` (see scripts/softroce)");
  }
  std::string why;
  for (int i = 0; i < n; ++i) {
    ibv_device* d = list.get()[i];
    if (!cfg.device.empty() && cfg.device != ibv_get_device_name(d)) continue;
    ContextPtr ctx = track(ibv_open_device(d), ObjectKind::kContext);
    Status st = ctx ? selectPort(ctx.get(), cfg, sel)
                    : WEFT_ERROR(StatusCode::kUnavailable, "ibv_open_device(",
                                 ibv_get_device_name(d), "): ", errnoString(errno));
    if (st.isOk()) return ctx;
    // The one device asked for, or a bad setting (GID index): that error.
    if (!cfg.device.empty() || st.code() == StatusCode::kInvalidArgument) return st;
    why += (why.empty() ? "" : "; ") + st.message();
  }
  if (!cfg.device.empty()) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "WEFT_IB_DEVICE=", cfg.device,
                      ": no such RDMA device (found: ", deviceNames(list.get()), ")")
        .withHint("`weft-info --devices` or `ibv_devices` lists the names");
  }
  return WEFT_ERROR(StatusCode::kUnavailable, "openContext(verbs): no usable RDMA port (", why,
                    ")");
}

GpuDirectProbe probeGpuDirect(ibv_pd* pd, std::string_view device) {
  GpuDirectProbe p;
  // A dma-buf registration with an invalid fd: a provider without dma-buf support answers
  // EOPNOTSUPP / EPROTONOSUPPORT; one with support fails on the fd instead (EBADF...).
  ibv_mr* mr = ibv_reg_dmabuf_mr(pd, 0, 4096, 0, -1, IBV_ACCESS_LOCAL_WRITE);
  const int err = errno;
  if (mr != nullptr) {
    ibv_dereg_mr(mr);
    p.dmabuf = true;
  } else {
    p.dmabuf = err != EOPNOTSUPP && err != EPROTONOSUPPORT && err != ENOSYS;
  }
  const std::string dmabuf =
      p.dmabuf ? strCat("dmabuf: supported by ", device)
               : strCat("dmabuf: not supported by ", device, " (ibv_reg_dmabuf_mr: ",
                        errnoString(err), ")");
  p.peer_memory = ::access("/sys/module/nvidia_peermem", F_OK) == 0 ||
                  ::access("/sys/kernel/mm/memory_peers/nv_mem/version", F_OK) == 0;
  const std::string peer = p.peer_memory ? std::string("peer memory: nvidia_peermem loaded")
                                         : std::string("peer memory: not supported "
                                                       "(nvidia_peermem is not loaded)");
#ifdef WEFT_HAVE_CUDA
  // The light probe: driver and devices only (no context, no allocation).
  p.text = strCat(dmabuf, "; ", peer, "; ", gpu::probeGpuDirect(false).driver_text);
#else
  p.text = strCat(dmabuf, "; ", peer, "; CUDA: not built into this binary");
#endif
  return p;
}

}  // namespace weft::transport::verbs
