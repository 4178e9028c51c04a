// CRC32C (Castagnoli, polynomial 0x1EDC6F41, reflected), as used by iSCSI, ext4 and
// RocksDB. Checkpoint files, the checkpoint manifest and the per-row torn-read check use it.
//
// Contract: pure functions, safe from any thread. crc32c("123456789") == 0xE3069283.
// Extending: crc32c(b, nb, crc32c(a, na)) == crc32c(a || b).
// Uses the SSE4.2 crc32 instruction when the CPU has it (checked once), a slice-by-8
// table otherwise, and for buffers of 1 KiB or more carry-less folding with AVX-512
// VPCLMULQDQ where the CPU has that; all give identical results.
#pragma once

#include <cstddef>
#include <cstdint>

namespace weft::ps {

uint32_t crc32c(const void* data, size_t bytes, uint32_t crc = 0);

// The portable table implementation (tests compare it with the dispatched one).
uint32_t crc32cPortable(const void* data, size_t bytes, uint32_t crc = 0);

}  // namespace weft::ps
