// Encoding of the verbs Store records (layouts in verbs_wire.h; little-endian fields).
#include "transport/ibverbs/verbs_wire.h"

#include <cstdio>

namespace weft::transport::verbs {
namespace {

constexpr uint32_t kAddressMagic = 0x41425657;  // "WVBA"
constexpr uint32_t kQpMagic = 0x51425657;       // "WVBQ"
// 2: compact eager messages (SEND with immediate, no MsgHeader; verbs_wire.h). A peer
// of version 1 would take them for headers, so versions must match exactly.
constexpr uint16_t kVersion = 2;

class Writer {
 public:
  template <typename T>
  void put(T v) {
    for (size_t i = 0; i < sizeof(T); ++i) {
      out_.push_back(static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff));
    }
  }
  void bytes(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  template <typename T>
  bool get(T& v) {
    if (in_.size() - pos_ < sizeof(T)) return false;
    uint64_t x = 0;
    for (size_t i = 0; i < sizeof(T); ++i) {
      x |= static_cast<uint64_t>(static_cast<unsigned char>(in_[pos_ + i])) << (8 * i);
    }
    pos_ += sizeof(T);
    v = static_cast<T>(x);
    return true;
  }
  bool bytes(void* p, size_t n) {
    if (in_.size() - pos_ < n) return false;
    std::memcpy(p, in_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  bool done() const { return pos_ == in_.size(); }

 private:
  std::string_view in_;
  size_t pos_ = 0;
};

Status malformed(std::string_view what, size_t size) {
  return WEFT_ERROR(StatusCode::kPeerFailure, "malformed verbs ", what, " record (", size,
                    " bytes)")
      .withHint("do all ranks run the same Weft build? (the record has a magic and a version)");
}

// The record's magic and version; an error naming both versions when only they differ.
Status checkPrefix(Reader& rd, uint32_t want_magic, std::string_view what, size_t size) {
  uint32_t magic = 0;
  uint16_t version = 0;
  if (!rd.get(magic) || magic != want_magic || !rd.get(version)) return malformed(what, size);
  if (version != kVersion) {
    return WEFT_ERROR(StatusCode::kPeerFailure, "the peer's verbs ", what,
                      " record has wire version ", version, "; this build speaks version ",
                      kVersion)
        .withHint("run the same Weft build on every rank");
  }
  return Status::ok();
}

}  // namespace

std::string encodeAddress(const AddressRecord& r) {
  Writer w;
  w.put(kAddressMagic);
  w.put(kVersion);
  w.put(static_cast<uint32_t>(r.rank));
  w.put(r.nonce);
  w.put(static_cast<uint8_t>(r.device.size()));
  w.bytes(r.device.data(), r.device.size() & 0xff);
  w.put(r.port);
  w.put(r.lid);
  w.bytes(r.gid.raw, sizeof(r.gid.raw));
  w.put(r.gid_type);
  w.put(r.link_layer);
  w.put(r.mtu);
  w.put(r.rndv);
  w.put(r.eager_size);
  return w.take();
}

Result<AddressRecord> decodeAddress(std::string_view bytes) {
  Reader rd(bytes);
  uint32_t rank = 0;
  uint8_t dev_len = 0;
  AddressRecord r;
  WEFT_RETURN_IF_ERROR(checkPrefix(rd, kAddressMagic, "address", bytes.size()));
  if (!rd.get(rank) || !rd.get(r.nonce) || !rd.get(dev_len)) {
    return malformed("address", bytes.size());
  }
  r.device.resize(dev_len);
  if (!rd.bytes(r.device.data(), dev_len) || !rd.get(r.port) || !rd.get(r.lid) ||
      !rd.bytes(r.gid.raw, sizeof(r.gid.raw)) || !rd.get(r.gid_type) || !rd.get(r.link_layer) ||
      !rd.get(r.mtu) || !rd.get(r.rndv) || !rd.get(r.eager_size) || !rd.done()) {
    return malformed("address", bytes.size());
  }
  r.rank = static_cast<int32_t>(rank);
  return r;
}

std::string encodeQp(const QpRecord& r) {
  Writer w;
  w.put(kQpMagic);
  w.put(kVersion);
  w.put(static_cast<uint32_t>(r.from));
  w.put(static_cast<uint32_t>(r.to));
  w.put(r.seq);
  w.put(r.from_nonce);
  w.put(r.to_nonce);
  w.put(r.qpn);
  w.put(r.psn);
  w.put(r.lid);
  w.bytes(r.gid.raw, sizeof(r.gid.raw));
  w.put(r.gid_type);
  w.put(r.link_layer);
  w.put(r.mtu);
  w.put(r.rndv);
  w.put(r.recv_buffers);
  w.put(r.eager_size);
  w.put(r.max_dest_rd_atomic);
  w.put(r.scratch_addr);
  w.put(r.scratch_rkey);
  return w.take();
}

Result<QpRecord> decodeQp(std::string_view bytes) {
  Reader rd(bytes);
  uint32_t from = 0;
  uint32_t to = 0;
  QpRecord r;
  WEFT_RETURN_IF_ERROR(checkPrefix(rd, kQpMagic, "connection", bytes.size()));
  if (!rd.get(from) || !rd.get(to) || !rd.get(r.seq) || !rd.get(r.from_nonce) ||
      !rd.get(r.to_nonce) || !rd.get(r.qpn) || !rd.get(r.psn) || !rd.get(r.lid) ||
      !rd.bytes(r.gid.raw, sizeof(r.gid.raw)) || !rd.get(r.gid_type) || !rd.get(r.link_layer) ||
      !rd.get(r.mtu) || !rd.get(r.rndv) || !rd.get(r.recv_buffers) || !rd.get(r.eager_size) ||
      !rd.get(r.max_dest_rd_atomic) || !rd.get(r.scratch_addr) || !rd.get(r.scratch_rkey) ||
      !rd.done()) {
    return malformed("connection", bytes.size());
  }
  r.from = static_cast<int32_t>(from);
  r.to = static_cast<int32_t>(to);
  return r;
}

std::string gidText(const ibv_gid& gid) {
  char buf[48];
  const uint8_t* g = gid.raw;
  std::snprintf(buf, sizeof(buf),
                "%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x", g[0],
                g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13],
                g[14], g[15]);
  return buf;
}

std::string gidIpv4(const ibv_gid& gid) {
  const uint8_t* g = gid.raw;
  for (int i = 0; i < 10; ++i) {
    if (g[i] != 0) return "";
  }
  if (g[10] != 0xff || g[11] != 0xff) return "";
  char buf[20];
  std::snprintf(buf, sizeof(buf), "%u.%u.%u.%u", g[12], g[13], g[14], g[15]);
  return buf;
}

std::string_view gidTypeName(uint32_t type) {
  switch (type) {
    case IBV_GID_TYPE_IB: return "IB";
    case IBV_GID_TYPE_ROCE_V1: return "RoCE v1";
    case IBV_GID_TYPE_ROCE_V2: return "RoCE v2";
    default: return "unknown";
  }
}

int mtuBytes(uint8_t mtu) {
  switch (mtu) {
    case IBV_MTU_256: return 256;
    case IBV_MTU_512: return 512;
    case IBV_MTU_1024: return 1024;
    case IBV_MTU_2048: return 2048;
    case IBV_MTU_4096: return 4096;
    default: return 0;
  }
}

}  // namespace weft::transport::verbs
