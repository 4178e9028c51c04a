#include "common/store/socket_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace weft::store_internal {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

std::string formatHostPort(std::string_view host, uint16_t port) {
  if (host.find(':') != std::string_view::npos) return strCat("[", host, "]:", port);
  return strCat(host, ":", port);
}

std::string formatSockaddr(const sockaddr* addr, socklen_t len) {
  char host[NI_MAXHOST];
  char serv[NI_MAXSERV];
  int rc = ::getnameinfo(addr, len, host, sizeof(host), serv, sizeof(serv),
                         NI_NUMERICHOST | NI_NUMERICSERV);
  if (rc != 0) return "<unknown address>";
  return formatHostPort(host, static_cast<uint16_t>(std::strtoul(serv, nullptr, 10)));
}

Status setNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL, 0);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return WEFT_ERROR(StatusCode::kIoError, "fcntl(O_NONBLOCK) failed: ", errnoString(errno));
  }
  return Status::ok();
}

Status setNoDelay(int fd) {
  int one = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
    return WEFT_ERROR(StatusCode::kIoError, "setsockopt(TCP_NODELAY) failed: ",
                      errnoString(errno));
  }
  return Status::ok();
}

}  // namespace weft::store_internal
