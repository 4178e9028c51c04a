// connectStore: parses a store address and connects (TCP) or opens (file).
//
// Accepted forms: "host:port", "[v6-literal]:port", "tcp://host:port" (what describe()
// prints), "file:/dir" (also "file:relative/dir").
#include <charconv>

#include "common/config.h"
#include "common/store/store.h"

namespace weft {
namespace {

constexpr const char* kForms =
    "expected host:port, [ipv6]:port, tcp://host:port or file:/dir";

Status badAddress(const std::string& address, std::string_view why) {
  return WEFT_ERROR(StatusCode::kInvalidArgument, "store address '", address, "': ", why, " (",
                    kForms, ")")
      .withHint("check WEFT_STORE_ADDR");
}

struct HostPort {
  std::string host;
  uint16_t port = 0;
};

Result<HostPort> parseHostPort(const std::string& address, std::string_view text) {
  HostPort hp;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return badAddress(address, "missing ']'");
    hp.host = std::string(text.substr(1, close - 1));
    std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') return badAddress(address, "missing ':port'");
    port_text = rest.substr(1);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return badAddress(address, "missing ':port'");
    hp.host = std::string(text.substr(0, colon));
    if (hp.host.find(':') != std::string::npos) {
      return badAddress(address, "IPv6 hosts must be written in brackets, [::1]:port");
    }
    port_text = text.substr(colon + 1);
  }
  if (hp.host.empty()) return badAddress(address, "empty host");
  unsigned port = 0;
  const char* end = port_text.data() + port_text.size();
  auto [ptr, ec] = std::from_chars(port_text.data(), end, port);
  if (port_text.empty() || ec != std::errc() || ptr != end || port == 0 || port > 65535) {
    return badAddress(address, strCat("port '", port_text, "' is not a number in 1..65535"));
  }
  hp.port = static_cast<uint16_t>(port);
  return hp;
}

}  // namespace

Result<std::shared_ptr<Store>> connectStore(const std::string& address, Deadline deadline) {
  std::string_view text = address;
  if (text.empty()) return badAddress(address, "empty address");
  if (text.starts_with("file:")) {
    std::string_view dir = text.substr(5);
    if (dir.starts_with("//")) dir.remove_prefix(2);  // file:///dir
    if (dir.empty()) return badAddress(address, "empty directory after 'file:'");
    return makeFileStore(std::string(dir));
  }
  if (text.starts_with("tcp://")) text.remove_prefix(6);
  if (text.find("://") != std::string_view::npos) {
    return badAddress(address, "unknown scheme");
  }
  WEFT_ASSIGN_OR_RETURN(HostPort hp, parseHostPort(address, text));
  WEFT_ASSIGN_OR_RETURN(double op_timeout_s, config::getDouble("WEFT_TIMEOUT"));
  return connectTcpStore(hp.host, hp.port, deadline, op_timeout_s);
}

}  // namespace weft
