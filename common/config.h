// The config registry: typed, validated access to WEFT_* environment variables.
//
// Every variable is declared once in common/params.def. Lookups validate the value against
// the declared type and range; a malformed value is an error naming the variable, the value
// and what is allowed. Values come from (highest first) an override set by the process
// (setOverride), the environment, or the declared default.
//
// Thread safety: all functions may be called from any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace weft::config {

enum class ParamType { kBool, kInt, kDouble, kString, kEnum, kList };

struct ParamSpec {
  const char* name;
  ParamType type;
  const char* default_value;
  double min;
  double max;
  const char* choices;  // "a|b|c" for kEnum / kList, "" otherwise
  const char* doc;
};

enum class Source { kDefault, kEnvironment, kOverride };
std::string_view sourceName(Source s);

// All declared variables, in declaration order.
std::span<const ParamSpec> allParams();
// nullptr when the name is not declared (patterns like WEFT_ALGO_ALLREDUCE resolve too).
const ParamSpec* findParam(std::string_view name);
// "integer in [0, 16]", "one of warn|info", ... for messages and docs.
std::string allowedText(const ParamSpec& spec);

struct RawValue {
  std::string text;
  Source source;
};
// The raw text and where it came from. Fails for undeclared names.
Result<RawValue> raw(std::string_view name);

// Typed, validated lookups.
Result<bool> getBool(std::string_view name);
Result<int64_t> getInt(std::string_view name);
Result<double> getDouble(std::string_view name);
Result<std::string> getString(std::string_view name);  // kString and kEnum
Result<std::vector<std::string>> getList(std::string_view name);

// Parses text as the given parameter would (used by lookups and by tools).
Status validate(const ParamSpec& spec, std::string_view text);
// The value of an integer parameter's text: decimal, or hexadecimal with 0x.
Result<int64_t> parseIntValue(const ParamSpec& spec, std::string_view text);

// Process-local override that wins over the environment ("" value still counts as set).
void setOverride(std::string_view name, std::string value);
void clearOverride(std::string_view name);

// Checks every WEFT_* variable of the environment: returns an error for the first malformed
// value, and logs one warning per unknown WEFT_* name (with the nearest declared name).
// Tools and bootstrap call it once at start.
Status checkEnvironment();

}  // namespace weft::config
