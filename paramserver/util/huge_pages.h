// Anonymous memory for large, randomly accessed server structures (row slabs, row indexes),
// backed by transparent huge pages where the kernel allows it.
//
// A parameter-server lookup touches one index slot and one row at random addresses of a
// table of many MiB: with 4 KiB pages nearly every one is also a TLB miss (a page walk,
// dearer still under virtualization). mapHuge() returns memory aligned to 2 MiB and
// madvise(MADV_HUGEPAGE)s its whole 2 MiB pages, so with THP "madvise" or "always" each is
// one TLB entry (the tail below 2 MiB keeps 4 KiB pages: no memory is wasted); with THP
// "never" it is plain anonymous memory. The memory is zero-filled.
//
// Contract: thread-safe functions; mapHuge()'s memory is released with unmapHuge(p, bytes)
// using the same byte count. HugeArray is a move-only owner (not thread-safe).
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace weft::ps {

inline constexpr size_t kHugePageBytes = size_t{2} << 20;

// Below this size regions use malloc'ed memory (a huge page would be mostly empty).
inline constexpr size_t kHugeMinBytes = size_t{1} << 20;

// Bytes actually mapped for a region of `bytes` (rounded up to whole 4 KiB pages).
size_t hugeMappedBytes(size_t bytes);
// nullptr when the memory cannot be mapped (errno set by mmap).
void* mapHuge(size_t bytes);
void unmapHuge(void* p, size_t bytes);

// A fixed-size array of trivially copyable T, value-initialized (every element T{}).
template <class T>
class HugeArray {
  static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>);

 public:
  HugeArray() = default;
  // Throws nothing: a failed allocation leaves an empty array (ok() false).
  explicit HugeArray(size_t n) : n_(n) {
    const size_t bytes = n * sizeof(T);
    huge_ = bytes >= kHugeMinBytes;
    data_ = static_cast<T*>(huge_ ? mapHuge(bytes) : ::operator new(bytes, std::nothrow));
    if (data_ == nullptr) {
      n_ = 0;
      return;
    }
    for (size_t i = 0; i < n; ++i) new (data_ + i) T{};
  }
  HugeArray(HugeArray&& o) noexcept { swap(o); }
  HugeArray& operator=(HugeArray&& o) noexcept {
    HugeArray(std::move(o)).swap(*this);
    return *this;
  }
  HugeArray(const HugeArray&) = delete;
  HugeArray& operator=(const HugeArray&) = delete;
  ~HugeArray() {
    if (data_ == nullptr) return;
    if (huge_) {
      unmapHuge(data_, n_ * sizeof(T));
    } else {
      ::operator delete(data_);
    }
  }

  bool ok() const { return data_ != nullptr; }
  size_t size() const { return n_; }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  T* begin() { return data_; }
  T* end() { return data_ + n_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + n_; }
  void swap(HugeArray& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(n_, o.n_);
    std::swap(huge_, o.huge_);
  }

 private:
  T* data_ = nullptr;
  size_t n_ = 0;
  bool huge_ = false;
};

}  // namespace weft::ps
