// RemoteKey checksum and wire format (layout documented in transport/api/memory.h).
#include <cstring>
#include <ios>
#include <sstream>

#include "transport/api/memory.h"

namespace weft::transport {
namespace {

constexpr uint32_t kMagic = 0x4b524657;  // "WFRK" little-endian
constexpr uint16_t kVersion = 1;
constexpr uint64_t kFnvOffset = 1469598103934665603ULL;
constexpr uint64_t kFnvPrime = 1099511628211ULL;

void fnv(uint64_t& h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= kFnvPrime;
  }
}

template <typename T>
void fnvValue(uint64_t& h, T v) {
  unsigned char b[sizeof(T)];
  for (size_t i = 0; i < sizeof(T); ++i) b[i] = static_cast<unsigned char>(uint64_t(v) >> (8 * i));
  fnv(h, b, sizeof(T));
}

template <typename T>
void put(std::string& out, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) {
    out.push_back(static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff));
  }
}

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
  bool bytes(size_t n, std::string& out) {
    if (in_.size() - pos_ < n) return false;
    out.assign(in_.substr(pos_, n));
    pos_ += n;
    return true;
  }
  size_t left() const { return in_.size() - pos_; }

 private:
  std::string_view in_;
  size_t pos_ = 0;
};

Status malformed(std::string_view what, size_t size) {
  return WEFT_ERROR(StatusCode::kInvalidArgument, "RemoteKey::deserialize: ", what, " (", size,
                    " bytes of input)")
      .withHint("pass the exact bytes of RemoteKey::serialize() from the owner");
}

}  // namespace

uint64_t RemoteKey::computeChecksum() const {
  uint64_t h = kFnvOffset;
  fnvValue(h, static_cast<uint8_t>(backend.size()));
  fnv(h, backend.data(), backend.size());
  fnvValue(h, static_cast<uint8_t>(memory_type));
  fnvValue(h, static_cast<uint32_t>(owner_rank));
  fnvValue(h, region_id);
  fnvValue(h, address);
  fnvValue(h, length);
  fnvValue(h, static_cast<uint32_t>(packed.size()));
  fnv(h, packed.data(), packed.size());
  return h;
}

std::string RemoteKey::describe() const {
  std::ostringstream os;
  os << "rank " << owner_rank << " region " << region_id << " [0x" << std::hex << address
     << std::dec << "+" << length << " " << memoryTypeName(memory_type) << "]";
  return os.str();
}

std::string RemoteKey::serialize() const {
  std::string out;
  out.reserve(48 + backend.size() + packed.size());
  put(out, kMagic);
  put(out, kVersion);
  put(out, static_cast<uint8_t>(backend.size()));
  out.append(backend.substr(0, 255));
  put(out, static_cast<uint8_t>(memory_type));
  put(out, static_cast<uint32_t>(owner_rank));
  put(out, region_id);
  put(out, address);
  put(out, length);
  put(out, static_cast<uint32_t>(packed.size()));
  out.append(packed);
  put(out, checksum);
  return out;
}

Result<RemoteKey> RemoteKey::deserialize(std::string_view bytes) {
  Reader r(bytes);
  uint32_t magic = 0;
  uint16_t version = 0;
  uint8_t backend_len = 0;
  if (!r.get(magic) || magic != kMagic) return malformed("bad magic", bytes.size());
  if (!r.get(version) || version != kVersion) {
    return malformed(strCat("unsupported version ", version, " (this build reads ", kVersion, ")"),
                     bytes.size());
  }
  RemoteKey k;
  uint8_t type = 0;
  uint32_t owner = 0;
  uint32_t packed_len = 0;
  if (!r.get(backend_len) || !r.bytes(backend_len, k.backend) || !r.get(type) || !r.get(owner) ||
      !r.get(k.region_id) || !r.get(k.address) || !r.get(k.length) || !r.get(packed_len) ||
      !r.bytes(packed_len, k.packed) || !r.get(k.checksum)) {
    return malformed("truncated input", bytes.size());
  }
  if (r.left() != 0) return malformed(strCat(r.left(), " trailing bytes"), bytes.size());
  if (type > static_cast<uint8_t>(MemoryType::kCuda)) {
    return malformed(strCat("unknown memory type ", int(type)), bytes.size());
  }
  k.memory_type = static_cast<MemoryType>(type);
  k.owner_rank = static_cast<int32_t>(owner);
  if (k.checksum != k.computeChecksum()) {
    return malformed(strCat("checksum mismatch for ", k.describe()), bytes.size());
  }
  return k;
}

}  // namespace weft::transport
