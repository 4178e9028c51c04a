// Liveness of peers on this host, and the address record published in the Store.
//
// UCX 1.13 detects a dead peer over TCP (connection reset) and, in principle, over shared
// memory through keepalive. The shared-memory keepalive proved unreliable here (a peer
// killed while its FIFO is full may go unnoticed), so endpoints connected through the Store
// to a process on the same host (same boot id and pid namespace) are also watched directly:
// every WEFT_UCX_KEEPALIVE seconds of progress or idle time the peer's /proc/<pid>/stat is
// read; a missing entry, a zombie, or another start time means the peer is gone.
//
// Address record (little-endian): u32 magic "WUA2" | u32 pid | u64 start time (clock ticks
// since boot, /proc/<pid>/stat field 22) | u32 flags (kAddressSameHostNoUcxErrors) | u16
// host id length, host id ("<boot id>/<pid namespace>") | the UCP worker address (rest).
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "common/logging.h"
#include "common/process.h"
#include "transport/ucx/ucx_internal.h"

namespace weft::transport::ucx {
namespace {

constexpr uint32_t kAddressMagic = 0x32415557;  // "WUA2"

std::string readFirstLine(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

template <typename T>
void putLe(std::string& out, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) {
    out.push_back(static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff));
  }
}

template <typename T>
bool getLe(std::string_view in, size_t& pos, T& v) {
  if (in.size() - pos < sizeof(T)) return false;
  uint64_t x = 0;
  for (size_t i = 0; i < sizeof(T); ++i) {
    x |= static_cast<uint64_t>(static_cast<unsigned char>(in[pos + i])) << (8 * i);
  }
  pos += sizeof(T);
  v = static_cast<T>(x);
  return true;
}

}  // namespace

ProcessIdentity selfIdentity() {
  ProcessIdentity id;
  id.pid = static_cast<uint32_t>(::getpid());
  if (const auto stat = readProcStat(id.pid)) id.start_time = stat->start_time;
  char ns[128] = {};
  const ssize_t n = ::readlink("/proc/self/ns/pid", ns, sizeof(ns) - 1);
  id.host = strCat(readFirstLine("/proc/sys/kernel/random/boot_id"), "/",
                   n > 0 ? std::string(ns, static_cast<size_t>(n)) : std::string("?"));
  return id;
}

std::string packAddress(const ProcessIdentity& id, uint32_t flags,
                        const std::string& worker_address) {
  std::string out;
  putLe(out, kAddressMagic);
  putLe(out, id.pid);
  putLe(out, id.start_time);
  putLe(out, flags);
  putLe(out, static_cast<uint16_t>(id.host.size()));
  out += id.host;
  out += worker_address;
  return out;
}

Result<AddressRecord> unpackAddress(std::string_view in) {
  size_t pos = 0;
  uint32_t magic = 0;
  uint16_t host_len = 0;
  AddressRecord r;
  ProcessIdentity& id = r.id;
  if (!getLe(in, pos, magic) || magic != kAddressMagic || !getLe(in, pos, id.pid) ||
      !getLe(in, pos, id.start_time) || !getLe(in, pos, r.flags) || !getLe(in, pos, host_len) ||
      in.size() - pos < host_len) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "malformed UCX address record (", in.size(),
                      " bytes)")
        .withHint("was it published by this version of Weft (Context::publishAddress)?");
  }
  id.host.assign(in.substr(pos, host_len));
  pos += host_len;
  r.worker_address.assign(in.substr(pos));
  return r;
}

void UcxState::watch(UcxEndpoint* ep) {
  watched_.push_back(ep);
}

void UcxState::unwatch(UcxEndpoint* ep) {
  for (size_t i = 0; i < watched_.size(); ++i) {
    if (watched_[i] == ep) {
      watched_[i] = watched_.back();
      watched_.pop_back();
      return;
    }
  }
}

void UcxState::checkPeers() {
  const auto now = Deadline::Clock::now();
  if (now < next_check_) return;
  next_check_ = now + check_interval_;
  for (size_t i = 0; i < watched_.size();) {
    UcxEndpoint* ep = watched_[i];
    if (ep->peerGone()) {
      watched_[i] = watched_.back();
      watched_.pop_back();
      ep->onPeerDeath();
    } else {
      ++i;
    }
  }
}

}  // namespace weft::transport::ucx
