#include "common/config.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>

#include "common/logging.h"

extern char** environ;

namespace weft::config {
namespace {

constexpr ParamSpec kParams[] = {
#define WEFT_PARAM(NAME, TYPE, DEF, MIN, MAX, CHOICES, DOC) \
  {#NAME, ParamType::TYPE, DEF, MIN, MAX, CHOICES, DOC},
#include "common/params.def"
#undef WEFT_PARAM
};

std::mutex& overrideMutex() {
  static std::mutex mu;
  return mu;
}
std::map<std::string, std::string, std::less<>>& overrides() {
  static std::map<std::string, std::string, std::less<>> m;
  return m;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string_view::npos) end = s.size();
    out.emplace_back(trim(s.substr(start, end - start)));
    start = end + 1;
  }
  return out;
}

bool inChoices(const ParamSpec& spec, std::string_view v) {
  for (const auto& c : split(spec.choices, '|')) {
    if (c == v) return true;
  }
  return false;
}

Status invalid(const ParamSpec& spec, std::string_view text, std::string_view problem = "") {
  return WEFT_ERROR(StatusCode::kInvalidArgument, spec.name, "=\"", text, "\" is invalid",
                    problem.empty() ? "" : ": ", problem, "; allowed: ", allowedText(spec),
                    " (", spec.doc, ")");
}

std::optional<bool> parseBool(std::string_view text) {
  std::string v = lower(trim(text));
  if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
  if (v == "0" || v == "false" || v == "no" || v == "off") return false;
  return std::nullopt;
}

Result<int64_t> parseInt(const ParamSpec& spec, std::string_view text) {
  std::string v(trim(text));
  if (v.empty()) return invalid(spec, text, "empty");
  errno = 0;
  char* end = nullptr;
  // Decimal, or hexadecimal with 0x: "010" is ten (strtoll's base 0 made it octal eight).
  const size_t sign = v[0] == '-' || v[0] == '+' ? 1 : 0;  // v is not empty here
  const bool hex = v.size() > sign + 1 && v[sign] == '0' && (v[sign + 1] | 0x20) == 'x';
  long long x = std::strtoll(v.c_str(), &end, hex ? 16 : 10);
  if (errno == ERANGE) return invalid(spec, text, "out of the 64-bit range");
  if (*end != '\0') return invalid(spec, text, "not an integer");
  if (x < spec.min || x > spec.max) return invalid(spec, text, "out of range");
  return static_cast<int64_t>(x);
}

Result<double> parseDouble(const ParamSpec& spec, std::string_view text) {
  std::string v(trim(text));
  if (v.empty()) return invalid(spec, text, "empty");
  char* end = nullptr;
  double x = std::strtod(v.c_str(), &end);
  if (*end != '\0' || !std::isfinite(x)) return invalid(spec, text, "not a number");
  if (x < spec.min || x > spec.max) return invalid(spec, text, "out of range");
  return x;
}

const ParamSpec& requireSpec(std::string_view name, Status* error) {
  static const ParamSpec kNone{"", ParamType::kString, "", 0, 0, "", ""};
  const ParamSpec* spec = findParam(name);
  if (!spec) {
    *error = WEFT_ERROR(StatusCode::kInternal, "config variable ", name,
                        " is not declared in common/params.def");
    return kNone;
  }
  return *spec;
}

size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

std::string_view sourceName(Source s) {
  switch (s) {
    case Source::kDefault: return "default";
    case Source::kEnvironment: return "environment";
    case Source::kOverride: return "override";
  }
  return "?";
}

std::span<const ParamSpec> allParams() { return kParams; }

const ParamSpec* findParam(std::string_view name) {
  for (const auto& p : kParams) {
    std::string_view pn = p.name;
    if (pn == name) return &p;
    if (!pn.empty() && pn.back() == '*' && name.size() > pn.size() - 1 &&
        name.substr(0, pn.size() - 1) == pn.substr(0, pn.size() - 1)) {
      return &p;
    }
  }
  return nullptr;
}

std::string allowedText(const ParamSpec& spec) {
  switch (spec.type) {
    case ParamType::kBool: return "a boolean (1/0, true/false, yes/no, on/off)";
    case ParamType::kInt:
      return strCat("an integer in [", static_cast<int64_t>(spec.min), ", ",
                    static_cast<int64_t>(spec.max), "]");
    case ParamType::kDouble: return strCat("a number in [", spec.min, ", ", spec.max, "]");
    case ParamType::kString: return "any string";
    case ParamType::kEnum: return strCat("one of ", spec.choices);
    case ParamType::kList:
      return *spec.choices ? strCat("a comma list of ", spec.choices) : "a comma list";
  }
  return "?";
}

Result<int64_t> parseIntValue(const ParamSpec& spec, std::string_view text) {
  return parseInt(spec, text);
}

Status validate(const ParamSpec& spec, std::string_view text) {
  switch (spec.type) {
    case ParamType::kBool:
      return parseBool(text) ? Status::ok() : invalid(spec, text, "not a boolean");
    case ParamType::kInt: return parseInt(spec, text).status();
    case ParamType::kDouble: return parseDouble(spec, text).status();
    case ParamType::kString: return Status::ok();
    case ParamType::kEnum:
      return inChoices(spec, lower(trim(text))) ? Status::ok() : invalid(spec, text);
    case ParamType::kList:
      if (!*spec.choices) return Status::ok();
      for (const auto& item : split(lower(text), ',')) {
        if (!item.empty() && !inChoices(spec, item)) {
          return invalid(spec, text, strCat("\"", item, "\" is not a known item"));
        }
      }
      return Status::ok();
  }
  return Status::ok();
}

Result<RawValue> raw(std::string_view name) {
  Status err;
  const ParamSpec& spec = requireSpec(name, &err);
  if (!err.isOk()) return err;
  {
    std::lock_guard<std::mutex> lock(overrideMutex());
    auto it = overrides().find(name);
    if (it != overrides().end()) return RawValue{it->second, Source::kOverride};
  }
  std::string key(name);
  if (const char* v = std::getenv(key.c_str())) return RawValue{v, Source::kEnvironment};
  return RawValue{spec.default_value, Source::kDefault};
}

namespace {
// Validated raw text of a parameter of the expected type.
Result<std::pair<const ParamSpec*, std::string>> lookup(std::string_view name) {
  WEFT_ASSIGN_OR_RETURN(RawValue rv, raw(name));
  const ParamSpec* spec = findParam(name);
  WEFT_RETURN_IF_ERROR(validate(*spec, rv.text));
  return std::make_pair(spec, std::move(rv.text));
}
}  // namespace

Result<bool> getBool(std::string_view name) {
  WEFT_ASSIGN_OR_RETURN(auto v, lookup(name));
  return *parseBool(v.second);
}

Result<int64_t> getInt(std::string_view name) {
  WEFT_ASSIGN_OR_RETURN(auto v, lookup(name));
  return parseInt(*v.first, v.second);
}

Result<double> getDouble(std::string_view name) {
  WEFT_ASSIGN_OR_RETURN(auto v, lookup(name));
  return parseDouble(*v.first, v.second);
}

Result<std::string> getString(std::string_view name) {
  WEFT_ASSIGN_OR_RETURN(auto v, lookup(name));
  if (v.first->type == ParamType::kEnum) return lower(trim(v.second));
  return std::move(v.second);
}

Result<std::vector<std::string>> getList(std::string_view name) {
  WEFT_ASSIGN_OR_RETURN(auto v, lookup(name));
  std::vector<std::string> out;
  std::string text = v.first->choices[0] ? lower(v.second) : v.second;
  for (auto& item : split(text, ',')) {
    if (!item.empty()) out.push_back(std::move(item));
  }
  return out;
}

void setOverride(std::string_view name, std::string value) {
  std::lock_guard<std::mutex> lock(overrideMutex());
  overrides()[std::string(name)] = std::move(value);
}

void clearOverride(std::string_view name) {
  std::lock_guard<std::mutex> lock(overrideMutex());
  auto it = overrides().find(name);
  if (it != overrides().end()) overrides().erase(it);
}

Status checkEnvironment() {
  std::string errors;
  int nerr = 0;
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry(*e);
    if (entry.substr(0, 5) != "WEFT_") continue;
    size_t eq = entry.find('=');
    std::string_view name = entry.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? "" : entry.substr(eq + 1);
    const ParamSpec* spec = findParam(name);
    if (!spec) {
      const ParamSpec* best = nullptr;
      size_t best_d = 4;  // suggest only close names
      for (const auto& p : kParams) {
        size_t d = editDistance(name, p.name);
        if (d < best_d) best_d = d, best = &p;
      }
      WEFT_LOG(kWarn, "config") << "unknown variable " << name << " is ignored"
                                << (best ? strCat(" (did you mean ", best->name, "?)") : "");
      continue;
    }
    Status st = validate(*spec, value);
    if (!st.isOk()) {
      errors += (nerr++ ? "; " : "") + st.message();
    }
  }
  if (nerr) return WEFT_ERROR(StatusCode::kInvalidArgument, errors);
  return Status::ok();
}

}  // namespace weft::config
