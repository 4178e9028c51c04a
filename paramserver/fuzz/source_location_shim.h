// Fuzz builds only: clang < 15 cannot use libstdc++'s <source_location> (it needs
// __builtin_source_location), which common/status.h includes. paramserver/CMakeLists.txt
// force-includes this header in WEFT_FUZZ builds with such a clang; it supplies the
// members Weft uses, built from the older __builtin_FILE / __builtin_LINE.
#pragma once

#include <source_location>

#if !__has_builtin(__builtin_source_location)
namespace std {  // NOLINT: stands in for the missing standard class in this configuration
struct source_location {
  static constexpr source_location current(const char* file = __builtin_FILE(),
                                           const char* function = __builtin_FUNCTION(),
                                           unsigned line = __builtin_LINE()) noexcept {
    source_location l;
    l.file_ = file;
    l.function_ = function;
    l.line_ = line;
    return l;
  }
  constexpr const char* file_name() const noexcept { return file_; }
  constexpr const char* function_name() const noexcept { return function_; }
  constexpr unsigned line() const noexcept { return line_; }
  constexpr unsigned column() const noexcept { return 0; }

 private:
  const char* file_ = "";
  const char* function_ = "";
  unsigned line_ = 0;
};
}  // namespace std
#endif
