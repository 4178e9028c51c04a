// Constants and the manifest entry shared by checkpoint.cc and checkpoint_restore.cc.
// Internal to the server; the formats are described in PROTOCOL.md ("Checkpoints").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace weft::ps::ckpt {

inline constexpr uint32_t kTableMagic = 0x54504657u;    // "WFPT"
inline constexpr uint32_t kTrailerMagic = 0x45504657u;  // "WFPE"
inline constexpr uint16_t kTableFormat = 1;
inline constexpr int kManifestFormat = 2;  // 2 added the checkpoint_id line; 1 is still read
inline constexpr const char* kManifestName = "MANIFEST";
inline constexpr const char* kManifestTitle = "weft-ps-checkpoint";
inline constexpr size_t kTrailerBytes = 16;  // rows u64, magic u32, reserved u32

struct TableEntry {
  uint32_t id = 0;
  std::string file;
  uint64_t bytes = 0;
  uint64_t rows = 0;
  uint32_t crc = 0;
};

}  // namespace weft::ps::ckpt
