#include "common/status.h"

#include <cstring>

namespace weft {

std::string_view statusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "kOk";
    case StatusCode::kInvalidArgument: return "kInvalidArgument";
    case StatusCode::kNotSupported: return "kNotSupported";
    case StatusCode::kUnavailable: return "kUnavailable";
    case StatusCode::kNoResource: return "kNoResource";
    case StatusCode::kTimeout: return "kTimeout";
    case StatusCode::kPeerFailure: return "kPeerFailure";
    case StatusCode::kIoError: return "kIoError";
    case StatusCode::kCanceled: return "kCanceled";
    case StatusCode::kInternal: return "kInternal";
  }
  return "kUnknown";
}

namespace {
const char* baseName(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash ? slash + 1 : path;
}
}  // namespace

Status::Status(StatusCode code, std::string message, std::source_location where) {
  if (code == StatusCode::kOk) return;
  rep_ = std::make_shared<const Rep>(
      Rep{code, std::move(message), baseName(where.file_name()), where.line()});
}

const std::string& Status::message() const {
  static const std::string kEmpty;
  return rep_ ? rep_->message : kEmpty;
}

std::string Status::origin() const {
  return rep_ ? strCat(rep_->file, ":", rep_->line) : std::string();
}

std::string Status::toString() const {
  if (!rep_) return "OK";
  return strCat(statusCodeName(rep_->code), ": ", rep_->message, " [", origin(), "]");
}

Status Status::withContext(std::string_view context) const {
  if (!rep_) return *this;
  Status s;
  s.rep_ = std::make_shared<const Rep>(
      Rep{rep_->code, strCat(context, ": ", rep_->message), rep_->file, rep_->line});
  return s;
}

Status Status::withHint(std::string_view hint) const {
  if (!rep_) return *this;
  Status s;
  s.rep_ = std::make_shared<const Rep>(
      Rep{rep_->code, strCat(rep_->message, " (hint: ", hint, ")"), rep_->file, rep_->line});
  return s;
}

std::ostream& operator<<(std::ostream& os, const Status& s) { return os << s.toString(); }

std::string errnoString(int err) {
  char buf[256];
  // GNU strerror_r returns a pointer that may or may not be buf.
  const char* text = strerror_r(err, buf, sizeof(buf));
  return strCat(text, " (errno ", err, ")");
}

}  // namespace weft
