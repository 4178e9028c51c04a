#include "common/store/store_util.h"

#include <algorithm>
#include <charconv>

#include "common/deadline.h"

namespace weft::store_internal {

namespace {
constexpr size_t kMaxQuotedKey = 200;
constexpr size_t kMaxQuotedKeys = 8;
}  // namespace

std::string quoteKey(std::string_view key) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "'";
  for (size_t i = 0; i < key.size(); ++i) {
    if (i == kMaxQuotedKey) {
      out += strCat("...' (", key.size(), " bytes)");
      return out;
    }
    auto c = static_cast<unsigned char>(key[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  out += "'";
  return out;
}

std::string quoteKeys(const std::vector<std::string>& keys) {
  std::string out;
  size_t shown = std::min(keys.size(), kMaxQuotedKeys);
  for (size_t i = 0; i < shown; ++i) {
    if (i > 0) out += (i + 1 == shown && shown == keys.size()) ? " and " : ", ";
    out += quoteKey(keys[i]);
  }
  if (keys.size() > shown) out += strCat(" and ", keys.size() - shown, " more");
  return out;
}

Result<int64_t> parseCounter(std::string_view value, std::string_view key,
                             std::string_view store) {
  if (value.empty()) return int64_t{0};
  int64_t n = 0;
  const char* end = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(value.data(), end, n);
  if (ec != std::errc() || ptr != end || value.front() == '+') {
    return WEFT_ERROR(StatusCode::kInvalidArgument, store, ": add(", quoteKey(key),
                      ") on a key that holds ", quoteKey(value),
                      ", not a decimal int64 counter")
        .withHint("use a separate key for counters");
  }
  return n;
}

Result<int64_t> addCounter(int64_t value, int64_t delta, std::string_view key,
                           std::string_view store) {
  int64_t sum = 0;
  if (__builtin_add_overflow(value, delta, &sum)) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, store, ": add(", quoteKey(key), ", ",
                      delta, ") overflows int64 (current value ", value, ")");
  }
  return sum;
}

Status timeoutError(std::string_view store, std::string_view op,
                    const std::vector<std::string>& missing, std::chrono::nanoseconds waited) {
  const char* noun = missing.size() == 1 ? "key " : "keys ";
  return WEFT_ERROR(StatusCode::kTimeout, store, ": ", op, " timed out after ",
                    formatDuration(waited), " waiting for ", noun, quoteKeys(missing),
                    " to be set")
      .withHint("the rank that sets it may have failed, not started yet, or use another "
                "store address/prefix; raise WEFT_TIMEOUT if it is just slow");
}

}  // namespace weft::store_internal
