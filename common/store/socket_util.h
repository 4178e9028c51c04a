// Internal: small socket helpers for the TCP store (client and server).
//
// UniqueFd owns one file descriptor (move-only). The functions are thread-safe.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "common/status.h"

namespace weft::store_internal {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// "host:port", or "[host]:port" when host is an IPv6 literal.
std::string formatHostPort(std::string_view host, uint16_t port);
// Numeric "ip:port" / "[ip]:port" of a socket address.
std::string formatSockaddr(const sockaddr* addr, socklen_t len);

Status setNonBlocking(int fd);
// TCP_NODELAY: store requests are small and latency-bound.
Status setNoDelay(int fd);

}  // namespace weft::store_internal
