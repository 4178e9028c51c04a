// listDevices / formatDevices / registrationCacheStats (see verbs_info.h).
#include "transport/ibverbs/verbs_info.h"

#include <endian.h>
#include <net/if.h>

#include <cstring>
#include <iomanip>
#include <sstream>

#include "transport/ibverbs/verbs_internal.h"

namespace weft::transport::verbs {
namespace {

std::string speedText(const ibv_port_attr& pa) {
  double lane = 0;
  switch (pa.active_speed) {
    case 1: lane = 2.5; break;
    case 2: lane = 5.0; break;
    case 4: lane = 10.0; break;
    case 8: lane = 10.3125; break;
    case 16: lane = 14.0625; break;
    case 32: lane = 25.78125; break;
    case 64: lane = 53.125; break;
    case 128: lane = 106.25; break;
    default: break;
  }
  int width = 0;
  switch (pa.active_width) {
    case 1: width = 1; break;
    case 2: width = 4; break;
    case 4: width = 8; break;
    case 8: width = 12; break;
    case 16: width = 2; break;
    default: break;
  }
  if (lane == 0 || width == 0) return "unknown";
  std::ostringstream os;
  os << std::fixed << std::setprecision(1) << lane * width << " Gb/s (" << width << "X)";
  return os.str();
}

std::string stateName(ibv_port_state s) {
  switch (s) {
    case IBV_PORT_DOWN: return "DOWN";
    case IBV_PORT_INIT: return "INIT";
    case IBV_PORT_ARMED: return "ARMED";
    case IBV_PORT_ACTIVE: return "ACTIVE";
    case IBV_PORT_ACTIVE_DEFER: return "ACTIVE_DEFER";
    default: return "NOP";
  }
}

PortInfo portInfo(ibv_context* ctx, int port, const ibv_port_attr& pa) {
  PortInfo p;
  p.port = port;
  p.state = stateName(pa.state);
  p.link_layer = pa.link_layer == IBV_LINK_LAYER_ETHERNET ? "Ethernet" : "InfiniBand";
  p.active_mtu = mtuBytes(static_cast<uint8_t>(pa.active_mtu));
  p.max_mtu = mtuBytes(static_cast<uint8_t>(pa.max_mtu));
  p.lid = pa.lid;
  p.max_msg_size = pa.max_msg_sz;
  p.speed = speedText(pa);
  std::vector<GidCandidate> table;
  for (int i = 0; i < pa.gid_tbl_len; ++i) {
    ibv_gid_entry e{};
    if (ibv_query_gid_ex(ctx, static_cast<uint32_t>(port), static_cast<uint32_t>(i), &e, 0) != 0) {
      continue;
    }
    GidCandidate c;
    c.index = i;
    std::memcpy(c.gid.raw, e.gid.raw, sizeof(c.gid.raw));
    c.type = e.gid_type;
    char name[IF_NAMESIZE] = {};
    if (e.ndev_ifindex != 0 && if_indextoname(e.ndev_ifindex, name) != nullptr) c.netdev = name;
    GidInfo g;
    g.index = i;
    g.gid = gidText(c.gid);
    g.type = std::string(gidTypeName(c.type));
    g.netdev = c.netdev;
    g.ipv4 = gidIpv4(c.gid);
    p.gids.push_back(g);
    table.push_back(c);
  }
  const std::string where = strCat(ibv_get_device_name(ctx->device), ":", port);
  auto choice = chooseGid(table, -1, pa.link_layer != IBV_LINK_LAYER_ETHERNET, where);
  p.preferred_gid = choice.isOk() ? choice->index : -1;
  p.gid_choice = choice.isOk() ? choice->why : choice.status().message();
  return p;
}

std::string atomicText(ibv_atomic_cap cap) {
  switch (cap) {
    case IBV_ATOMIC_NONE: return "none";
    case IBV_ATOMIC_HCA: return "HCA";
    case IBV_ATOMIC_GLOB: return "global";
  }
  return "unknown";
}

Result<DeviceInfo> deviceInfo(ibv_device* d) {
  ContextPtr ctx = track(ibv_open_device(d), ObjectKind::kContext);
  if (!ctx) {
    return WEFT_ERROR(StatusCode::kUnavailable, "ibv_open_device(", ibv_get_device_name(d),
                      "): ", errnoString(errno))
        .withHint("permissions of /dev/infiniband/uverbs*?");
  }
  ibv_device_attr a{};
  const int rc = ibv_query_device(ctx.get(), &a);
  if (rc != 0) {
    return WEFT_ERROR(StatusCode::kIoError, "ibv_query_device(", ibv_get_device_name(d),
                      "): ", errnoString(rc));
  }
  DeviceInfo info;
  info.name = ibv_get_device_name(d);
  const uint64_t guid = be64toh(ibv_get_device_guid(d));
  info.node_guid = hex(guid);
  info.vendor_id = a.vendor_id;
  info.vendor_part_id = a.vendor_part_id;
  info.fw_ver = a.fw_ver;
  info.max_qp = a.max_qp;
  info.max_qp_wr = a.max_qp_wr;
  info.max_cqe = a.max_cqe;
  info.max_mr = a.max_mr;
  info.max_sge = a.max_sge;
  info.max_qp_rd_atom = a.max_qp_rd_atom;
  info.max_mr_size = a.max_mr_size;
  info.atomics = atomicText(a.atomic_cap);
  ibv_device_attr_ex ax{};
  if (ibv_query_device_ex(ctx.get(), nullptr, &ax) == 0) {
    info.odp = (ax.odp_caps.general_caps & IBV_ODP_SUPPORT) != 0 &&
               (ax.odp_caps.per_transport_caps.rc_odp_caps & IBV_ODP_SUPPORT_SEND) != 0;
  }
  PdPtr pd = track(ibv_alloc_pd(ctx.get()), ObjectKind::kPd);
  info.gpudirect = pd ? probeGpuDirect(pd.get(), info.name).text
                      : strCat("not probed (ibv_alloc_pd: ", errnoString(errno), ")");
  for (int p = 1; p <= a.phys_port_cnt; ++p) {
    ibv_port_attr pa{};
    if (ibv_query_port(ctx.get(), static_cast<uint8_t>(p), &pa) != 0) continue;
    info.ports.push_back(portInfo(ctx.get(), p, pa));
  }
  return info;
}

}  // namespace

Result<std::vector<DeviceInfo>> listDevices() {
  int n = 0;
  DeviceListPtr list(ibv_get_device_list(&n));
  std::vector<DeviceInfo> out;
  if (!list) return out;
  for (int i = 0; i < n; ++i) {
    WEFT_ASSIGN_OR_RETURN(DeviceInfo info, deviceInfo(list.get()[i]));
    out.push_back(std::move(info));
  }
  return out;
}

std::string formatDevices(const std::vector<DeviceInfo>& devices) {
  std::ostringstream os;
  if (devices.empty()) {
    os << "no RDMA device (libibverbs found none; soft-RoCE: "
          "`rdma link add rxe0 type rxe netdev eth0`)\n";
    return os.str();
  }
  for (const auto& d : devices) {
    os << d.name << ": node guid " << d.node_guid << ", vendor " << hex(d.vendor_id) << " part "
       << d.vendor_part_id << ", fw " << (d.fw_ver.empty() ? "-" : d.fw_ver) << "\n";
    os << "  caps: max_qp " << d.max_qp << ", max_qp_wr " << d.max_qp_wr << ", max_cqe "
       << d.max_cqe << ", max_mr " << d.max_mr << ", max_sge " << d.max_sge
       << ", max_qp_rd_atom " << d.max_qp_rd_atom << ", atomics " << d.atomics << ", ODP "
       << (d.odp ? "yes" : "no") << "\n";
    os << "  GPUDirect RDMA: " << d.gpudirect << "\n";
    for (const auto& p : d.ports) {
      os << "  port " << p.port << ": " << p.state << ", " << p.link_layer << ", MTU "
         << p.active_mtu << " (max " << p.max_mtu << "), lid " << p.lid << ", speed " << p.speed
         << ", max message " << p.max_msg_size << " B\n";
      for (const auto& g : p.gids) {
        os << "    gid " << std::setw(3) << g.index << "  " << std::left << std::setw(8) << g.type
           << std::right << " " << g.gid;
        if (!g.ipv4.empty()) os << "  (" << g.ipv4 << ")";
        if (!g.netdev.empty()) os << "  " << g.netdev;
        os << (g.index == p.preferred_gid ? "  <- chosen" : "") << "\n";
      }
      os << "    choice: " << p.gid_choice << "\n";
    }
  }
  return os.str();
}

Result<RegCacheStats> registrationCacheStats(const Context& context) {
  bool is_verbs = false;
  RegCacheStats s = cacheStatsOf(context, is_verbs);
  if (!is_verbs) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "registrationCacheStats: the Context is a ",
                      context.backend(), " Context, not a verbs one");
  }
  return s;
}

std::string formatRegCacheStats(const RegCacheStats& s) {
  return strCat("registration cache: ", s.hits, " hits, ", s.misses, " misses, ", s.evictions,
                " evictions, ", s.invalidations, " invalidations; ", s.entries, " entries, ",
                s.bytes, " of ", s.bound_bytes, " bytes; monitor ", s.monitor);
}

}  // namespace weft::transport::verbs
