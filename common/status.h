// Status and error codes shared by every Weft layer.
//
// Contract: library code (common, transport, collectives, paramserver) never throws; it
// returns Status or Result<T>. A Status is cheap when OK (one null pointer), copyable, and
// safe to hand to another thread. Error messages name the operation, the ranks, the
// address or device involved, and end with "hint: ..." when the usual cause is known.
#pragma once

#include <cstdint>
#include <memory>
#include <source_location>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>

namespace weft {

enum class StatusCode : uint8_t {
  kOk = 0,
  kInvalidArgument,  // the caller passed something wrong (sizes, names, env values)
  kNotSupported,     // the backend or device cannot do this
  kUnavailable,      // the service or device is not reachable / not viable
  kNoResource,       // a queue or pool is full: back-pressure, retry later
  kTimeout,          // a deadline expired
  kPeerFailure,      // a remote rank died or broke the protocol
  kIoError,          // a system call or the wire failed
  kCanceled,         // the operation was canceled (close, abort)
  kInternal,         // a bug in Weft
};

std::string_view statusCodeName(StatusCode code);

// Concatenates anything that has operator<< into a string.
template <typename... Args>
std::string strCat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message,
         std::source_location where = std::source_location::current());

  static Status ok() { return Status(); }

  bool isOk() const { return rep_ == nullptr; }
  explicit operator bool() const { return isOk(); }
  StatusCode code() const { return rep_ ? rep_->code : StatusCode::kOk; }
  // The message without code or origin.
  const std::string& message() const;
  // Source file:line where the error was decided ("" when OK).
  std::string origin() const;
  // "kTimeout: <message> [file.cc:42]", or "OK".
  std::string toString() const;

  // Returns a copy whose message is "<context>: <old message>" (same code and origin).
  Status withContext(std::string_view context) const;
  // Returns a copy with " (hint: <hint>)" appended.
  Status withHint(std::string_view hint) const;

  // Marks an error as seen so that it may be dropped on purpose.
  void ignore() const {}

 private:
  struct Rep {
    StatusCode code;
    std::string message;
    const char* file;
    uint32_t line;
  };
  std::shared_ptr<const Rep> rep_;
};

std::ostream& operator<<(std::ostream& os, const Status& s);

// Builds an error Status with a message concatenated from the arguments.
#define WEFT_ERROR(code, ...) ::weft::Status((code), ::weft::strCat(__VA_ARGS__))

#define WEFT_RETURN_IF_ERROR(expr)          \
  do {                                      \
    ::weft::Status _weft_st = (expr);       \
    if (!_weft_st.isOk()) return _weft_st;  \
  } while (0)

// errno as "Connection refused (errno 111)".
std::string errnoString(int err);

}  // namespace weft
