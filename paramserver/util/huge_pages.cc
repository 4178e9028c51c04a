#include "paramserver/util/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>

namespace weft::ps {

namespace {
constexpr size_t kPageBytes = 4096;
}  // namespace

size_t hugeMappedBytes(size_t bytes) {
  return (bytes + kPageBytes - 1) / kPageBytes * kPageBytes;
}

void* mapHuge(size_t bytes) {
  const size_t len = hugeMappedBytes(bytes);
  // Map one huge page more, then trim both ends so that [p, p + len) starts 2 MiB aligned.
  void* raw = ::mmap(nullptr, len + kHugePageBytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const auto start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + kHugePageBytes - 1) & ~(uintptr_t{kHugePageBytes} - 1);
  if (aligned > start) ::munmap(raw, aligned - start);
  const uintptr_t tail = start + len + kHugePageBytes - (aligned + len);
  if (tail > 0) ::munmap(reinterpret_cast<void*>(aligned + len), tail);
  void* p = reinterpret_cast<void*>(aligned);
  // Whole huge pages only (a partial one would be filled to 2 MiB on first touch); the
  // advice fails harmlessly (EINVAL) without THP support.
  const size_t huge = len / kHugePageBytes * kHugePageBytes;
  if (huge > 0) (void)::madvise(p, huge, MADV_HUGEPAGE);
  return p;
}

void unmapHuge(void* p, size_t bytes) {
  if (p != nullptr) ::munmap(p, hugeMappedBytes(bytes));
}

}  // namespace weft::ps
