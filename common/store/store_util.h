// Internal helpers shared by the Store implementations (not a public header).
//
// Pure functions; thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace weft::store_internal {

// A key quoted for messages: printable ASCII kept, other bytes as \xNN, long keys cut.
std::string quoteKey(std::string_view key);
// "'a', 'b' and 3 more" for messages.
std::string quoteKeys(const std::vector<std::string>& keys);

// Parses a counter value: optional '-', decimal digits, fits int64. "" (missing) is 0.
// Errors are kInvalidArgument naming the key and the store.
Result<int64_t> parseCounter(std::string_view value, std::string_view key,
                             std::string_view store);
// value + delta, or kInvalidArgument on overflow (naming key and store).
Result<int64_t> addCounter(int64_t value, int64_t delta, std::string_view key,
                           std::string_view store);

// kTimeout "<store>: <op> timed out after <waited>: key(s) ... not set" with a hint.
Status timeoutError(std::string_view store, std::string_view op,
                    const std::vector<std::string>& missing, std::chrono::nanoseconds waited);

}  // namespace weft::store_internal
