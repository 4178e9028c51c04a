// Registered memory and the descriptor a peer needs for one-sided access to it.
//
// Contract:
// - MemoryRegion: returned by Context::registerMemory or Context::allocateMemory; owns the
//   registration. Destroying it deregisters (failures are logged, never thrown).
//   deregister() does it explicitly; a second deregister() is kInvalidArgument naming the
//   region. registerMemory's memory stays the caller's: it must stay mapped while
//   registered and while peers may access it. allocateMemory's is the region's: released
//   with the registration.
// - RemoteKey: a plain, copyable, serializable value. The owner builds it (with a checksum
//   over every field) and sends serialize()'s bytes to peers by any means (Store, a
//   message); peers deserialize() it and pass it to Endpoint::put/get/atomics together
//   with an offset. Endpoints check the checksum, the owner rank and the bounds
//   [0, length) before posting anything, so a corrupt or foreign key is a clear error.
// - Threads: both are immutable after creation except deregister(), which follows the
//   Context's threading rule.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"
#include "transport/api/types.h"

namespace weft::transport {

// Serialized layout (little-endian), version 1:
//   u32 magic 0x4b524657 ("WFRK")   u16 version   u8 backend length, backend bytes
//   u8 memory type   i32 owner rank   u64 region id   u64 address   u64 length
//   u32 packed length, packed bytes   u64 checksum (FNV-1a 64 over every field above
//   except magic and version)
struct RemoteKey {
  std::string backend;      // backend that produced it ("ucx"); empty: no key
  int32_t owner_rank = -1;  // rank of the Context that registered the memory
  uint64_t region_id = 0;   // unique among the owner Context's regions
  uint64_t address = 0;     // virtual address of the region's first byte at the owner
  uint64_t length = 0;      // registered bytes
  MemoryType memory_type = MemoryType::kHost;
  std::string packed;     // backend access key (UCX: the packed rkey)
  uint64_t checksum = 0;  // computeChecksum() as set by the owner

  bool valid() const { return !backend.empty(); }
  uint64_t computeChecksum() const;
  // Recomputes and stores the checksum (owners call it after filling the fields).
  void seal() { checksum = computeChecksum(); }
  // "rank 1 region 3 [0x7f12..+4096 host]" for messages.
  std::string describe() const;

  std::string serialize() const;
  // kInvalidArgument naming the problem (short input, bad magic, version, checksum).
  static Result<RemoteKey> deserialize(std::string_view bytes);
};

class MemoryRegion {
 public:
  virtual ~MemoryRegion() = default;
  MemoryRegion(const MemoryRegion&) = delete;
  MemoryRegion& operator=(const MemoryRegion&) = delete;

  void* address() const { return address_; }
  size_t length() const { return length_; }
  MemoryType memoryType() const { return type_; }
  uint64_t id() const { return key_.region_id; }
  // The descriptor peers need; valid while the region is registered.
  const RemoteKey& remoteKey() const { return key_; }
  bool registered() const { return registered_; }
  // Deregisters now; see the contract above.
  virtual Status deregister() = 0;

 protected:
  MemoryRegion(void* address, size_t length, MemoryType type)
      : address_(address), length_(length), type_(type) {}

  void* address_;
  size_t length_;
  MemoryType type_;
  bool registered_ = true;
  RemoteKey key_;
};

}  // namespace weft::transport
