// The layout of one table row in slab memory, the seqlock protocol its writers follow, and
// the validation a lock-free reader (a one-sided RDMA/UCX get, or a local thread) applies
// to a copy of it.
//
//   offset           size      field
//   0                8         version     seqlock word: odd while a writer changes the row
//   8                4         last_clock  table clock of the last push/pull (eviction)
//   12               4         steps       updates applied to the row (Adam bias correction)
//   16               8         key         feature id
//   24               4         flags       kRowLive while the row holds `key`
//   28               4         reserved    0
//   32               4*dim     values      f32
//   T = 32 + round8(4*dim)
//   T                8         tail        (low 32 bits of version) << 32 | crc32c([16, 32+4*dim))
//   T + 8            4*S*dim   state       f32 optimizer state (S per element, see table_spec.h)
//   stride = round8(T + 8 + 4*S*dim); rows sit back to back in slabs, 8-byte aligned.
//
// A remote reader fetches bytes [0, T + 8) (readableBytes()). Writers (holding the row's
// stripe lock) make the version odd, change the row, then store the tail and the next even
// version (beginRowWrite / endRowWrite). A copy is accepted only when its version is even,
// the tail carries the same version and the CRC of key, flags and values matches, so a copy
// that mixes bytes of two versions is rejected whatever order the bytes were read in
// (RDMA gives no ordering guarantee inside one read); the chance of a torn copy passing
// is 2^-32 per torn read. A row freed by eviction is rewritten with flags = 0 and a
// reused row carries its new key, so stale locations are detected (kNotLive, kWrongKey).
//
// Contract: the functions are thread-safe as described per function; nothing allocates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace weft::ps {

inline constexpr size_t kRowVersionOffset = 0;
inline constexpr size_t kRowClockOffset = 8;
inline constexpr size_t kRowStepsOffset = 12;
inline constexpr size_t kRowKeyOffset = 16;
inline constexpr size_t kRowFlagsOffset = 24;
inline constexpr size_t kRowValuesOffset = 32;
inline constexpr uint32_t kRowLive = 1;

struct RowLayout {
  uint32_t dim = 0;
  uint32_t state_floats = 0;  // optimizer state floats per row (S * dim)
  size_t tail_offset = 0;
  size_t state_offset = 0;
  size_t stride = 0;

  size_t readableBytes() const { return tail_offset + 8; }
  static RowLayout make(uint32_t dim, uint32_t state_floats_per_element);
};

// Where a row lives: slab `slab_id` at byte `offset` (Locate replies). present == 0 when
// the key has no row (a pull returns its initializer value).
struct RowLocation {
  uint32_t slab_id = 0;
  uint32_t present = 0;
  uint64_t offset = 0;
};

enum class RowRead : uint8_t {
  kOk = 0,
  kTorn,      // a writer was active or the copy mixes versions: read again
  kWrongKey,  // the row now holds another key (evicted and reused): locate again
  kNotLive,   // the row was freed (evicted): locate again / pull by RPC
  kShort,     // fewer than readableBytes() bytes were given
};
std::string_view rowReadName(RowRead r);

// Validates a private copy of a row's first readableBytes() bytes (taken without locks) and
// copies its dim values to out on kOk. row_bytes may have any alignment.
RowRead readRowConsistent(const void* row_bytes, size_t bytes, uint32_t dim, uint64_t expected_key,
                          float* out);

// Copies row[0, readableBytes()) to `copy` with no lock, as a remote get would, and
// validates it; retries up to max_tries times while torn. For in-process lock-free readers.
RowRead readRowLockFree(const uint8_t* row, const RowLayout& layout, uint64_t expected_key,
                        float* out, uint8_t* copy, int max_tries);

// Writer side (caller holds the lock that serialises writers of this row).
// beginRowWrite makes the version odd and returns it; endRowWrite publishes the tail and
// the next even version.
uint64_t beginRowWrite(uint8_t* row);
void endRowWrite(uint8_t* row, const RowLayout& layout, uint64_t odd_version);

}  // namespace weft::ps
