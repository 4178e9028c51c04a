// Endpoint creation: worker-address exchange through a Store, and socket addresses through
// a ucp_listener (the only way UCP connects over rdma_cm / soft-RoCE with UCX 1.13).
//
// Listener handshake (after UCP connected the endpoint; both messages are control tags):
//   client -> server  Hello{magic, version, client rank, expected server rank, nonce}
//                     tag: control | client rank | type hello (8 bits) | nonce (32 bits)
//   server -> client  Hello{magic, version, server rank, client rank, nonce}
//                     tag: control | server rank | type reply | nonce
// The server learns the client's rank from the UCP client id as well and checks both; the
// client checks that the server is the rank it meant to reach. The nonce keeps concurrent
// handshakes of one process apart. Fields are host-endian (peers share an architecture).
#include <netdb.h>
#include <sys/socket.h>

#include <cstring>

#include "common/logging.h"
#include "transport/ucx/ucx_internal.h"

namespace weft::transport::ucx {
namespace {

constexpr uint32_t kHelloMagic = 0x4f4c4548;  // "HELO"
constexpr uint32_t kHelloVersion = 1;

struct Hello {
  uint32_t magic;
  uint32_t version;
  int32_t rank;      // sender
  int32_t expected;  // rank the sender means to talk to
  uint32_t nonce;
  uint32_t reserved;
};
static_assert(sizeof(Hello) == 24);

struct SockAddr {
  sockaddr_storage storage{};
  socklen_t length = 0;
};

// "host:port" or "[v6]:port" -> socket address (numeric or resolvable host).
Result<SockAddr> parseHostPort(const std::string& host_port, bool passive) {
  std::string host;
  std::string port;
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos || colon + 1 == host_port.size()) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "\"", host_port,
                      "\" is not a host:port socket address");
  }
  host = host_port.substr(0, colon);
  port = host_port.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* res = nullptr;
  const int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "cannot resolve socket address \"", host_port,
                      "\": ", gai_strerror(rc));
  }
  SockAddr out;
  std::memcpy(&out.storage, res->ai_addr, res->ai_addrlen);
  out.length = res->ai_addrlen;
  ::freeaddrinfo(res);
  return out;
}

std::string formatSockAddr(const sockaddr* sa, socklen_t len) {
  char host[NI_MAXHOST];
  char port[NI_MAXSERV];
  if (::getnameinfo(sa, len, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "?";
  }
  if (sa->sa_family == AF_INET6) return strCat("[", host, "]:", port);
  return strCat(host, ":", port);
}

// listen / connectAddress need a network transport (see tlsHasNetwork in ucx_context.cc).
Status socketSupport(const UcxState& state, std::string_view op, const std::string& host_port) {
  if (state.caps().socket_connect) return Status::ok();
  return WEFT_ERROR(StatusCode::kNotSupported, op, "(", host_port, ") on ", state.name(),
                    ": UCX client/server connections need a network transport, and ",
                    state.caps().transports, " has none")
      .withHint("add tcp (or rc / rdmacm) to UCX_TLS, or connect through a Store");
}

uint64_t controlTag(int rank, uint64_t type, uint32_t nonce) {
  return kKindControl | rankBits(rank) | (type << kControlTypeShift) | nonce;
}

void connHandler(ucp_conn_request_h request, void* arg) {
  static_cast<UcxListener*>(arg)->onConnRequest(request);
}

// Waits for a handshake request and returns its status (kTimeout naming `what`).
Status waitStep(Request& r, Deadline deadline, std::string_view what) {
  Status st = r.wait(deadline);
  if (st.code() == StatusCode::kTimeout) {
    return WEFT_ERROR(StatusCode::kTimeout, what, ": no answer before the deadline");
  }
  return st;
}

}  // namespace

std::string addressKey(int rank) {
  return strCat("transport/ucx/addr/", rank);
}

Result<std::unique_ptr<Endpoint>> connectThroughStore(const StatePtr& state, Store& store,
                                                      int peer_rank, Deadline deadline) {
  const std::string what = strCat("connect(store) from ", state->name(), " to rank ", peer_rank);
  if (peer_rank < 0 || peer_rank > kMaxRank) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what, ": rank outside [0, ", kMaxRank, "]");
  }
  Status st = store.set(addressKey(state->rank()), state->addressRecord());
  if (!st.isOk()) return st.withContext(strCat(what, ": publishing our address"));
  Result<std::string> remote = store.get(addressKey(peer_rank), deadline);
  if (!remote.isOk()) {
    return remote.status().withContext(
        strCat(what, ": reading key ", addressKey(peer_rank), " from ", store.describe()));
  }
  auto record = unpackAddress(*remote);
  if (!record.isOk()) {
    return record.status().withContext(strCat(what, ": key ", addressKey(peer_rank)));
  }
  const ProcessIdentity& peer_id = record->id;
  const std::string& worker_address = record->worker_address;
  detail::EngineLock lock(state->engine());
  if (!state->claimPeer(peer_rank)) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what,
                      ": this Context already has an endpoint to that rank");
  }
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
  params.address = reinterpret_cast<const ucp_address_t*>(worker_address.data());
  const bool same_host = peer_id.host == state->identity().host;
  auto ep = UcxEndpoint::create(state, peer_rank, params, "store", same_host,
                                (record->flags & kAddressSameHostNoUcxErrors) != 0);
  if (!ep.isOk()) {
    state->releasePeer(peer_rank);
    return ep.status().withContext(what);
  }
  if (same_host && peer_id.pid != state->identity().pid) {
    ep.value()->watchProcess(peer_id.pid, peer_id.start_time);
  }
  return std::unique_ptr<Endpoint>(std::move(ep).value());
}

Result<std::unique_ptr<Listener>> UcxListener::create(StatePtr state,
                                                      const std::string& host_port) {
  WEFT_ASSIGN_OR_RETURN(SockAddr sa, parseHostPort(host_port, true));
  WEFT_RETURN_IF_ERROR(socketSupport(*state, "listen", host_port));
  std::unique_ptr<UcxListener> l(new UcxListener(std::move(state)));
  ucp_listener_params_t params{};
  params.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
  params.sockaddr.addr = reinterpret_cast<const sockaddr*>(&sa.storage);
  params.sockaddr.addrlen = sa.length;
  params.conn_handler.cb = connHandler;
  params.conn_handler.arg = l.get();
  detail::EngineLock lock(l->state_->engine());
  ucs_status_t st = ucp_listener_create(l->state_->worker(), &params, &l->listener_);
  if (st != UCS_OK) {
    Status err = ucxError(st, strCat("listen on ", host_port, " (", l->state_->name(), ")"));
    return Status(StatusCode::kUnavailable, err.message())
        .withHint(
            "is the port in use, or the address not local? UCX needs a sockaddr-capable "
            "transport (tcp or rdmacm) for listeners");
  }
  ucp_listener_attr_t attr{};
  attr.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
  st = ucp_listener_query(l->listener_, &attr);
  l->address_ = st == UCS_OK ? formatSockAddr(reinterpret_cast<const sockaddr*>(&attr.sockaddr),
                                              sizeof(attr.sockaddr))
                             : host_port;
  return std::unique_ptr<Listener>(std::move(l));
}

UcxListener::~UcxListener() {
  if (listener_ == nullptr) return;  // creation failed (the creator holds the lock)
  detail::EngineLock lock(state_->engine());
  for (ucp_conn_request_h r : pending_) ucp_listener_reject(listener_, r);
  pending_.clear();
  ucp_listener_destroy(listener_);
}

Result<std::unique_ptr<Endpoint>> UcxListener::accept(Deadline deadline) {
  ucp_conn_request_h request = nullptr;
  const bool got = state_->engine().waitUntil(
      [&] {
        if (pending_.empty()) return false;
        request = pending_.front();
        pending_.pop_front();
        return true;
      },
      deadline);
  if (!got) {
    return WEFT_ERROR(StatusCode::kTimeout, "accept on ", address_, " (", state_->name(),
                      "): no client connected before the deadline");
  }
  return acceptOne(request, deadline);
}

// Creates the server-side endpoint for a connection request (takes the lock).
Result<std::unique_ptr<UcxEndpoint>> UcxListener::endpointFor(ucp_conn_request_h request,
                                                              std::string& what) {
  detail::EngineLock lock(state_->engine());
  ucp_conn_request_attr_t attr{};
  attr.field_mask = UCP_CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR | UCP_CONN_REQUEST_ATTR_FIELD_CLIENT_ID;
  const ucs_status_t st = ucp_conn_request_query(request, &attr);
  if (st != UCS_OK) {
    ucp_listener_reject(listener_, request);
    return ucxError(st, strCat("accept on ", address_, ": ucp_conn_request_query"));
  }
  const std::string client = formatSockAddr(reinterpret_cast<const sockaddr*>(&attr.client_address),
                                            sizeof(attr.client_address));
  what = strCat("accept on ", address_, " (", state_->name(), ") from ", client);
  const uint64_t peer = attr.client_id;
  if (peer > static_cast<uint64_t>(kMaxRank) || !state_->claimPeer(static_cast<int>(peer))) {
    ucp_listener_reject(listener_, request);
    return WEFT_ERROR(StatusCode::kInvalidArgument, what, ": client rank ", peer,
                      " is out of range or already connected to this Context");
  }
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST;
  params.conn_request = request;
  auto created =
      UcxEndpoint::create(state_, static_cast<int>(peer), params, strCat("accepted from ", client));
  if (!created.isOk()) {
    state_->releasePeer(static_cast<int>(peer));
    return created.status().withContext(what);
  }
  return created;
}

// Runs the server side of the handshake. The endpoint is owned outside the locked scopes
// so that a failure destroys it without the lock (its destructor takes it); the hello
// buffers are declared before it because UCX uses them until the endpoint is gone.
Result<std::unique_ptr<Endpoint>> UcxListener::acceptOne(ucp_conn_request_h request,
                                                         Deadline deadline) {
  Hello hello{};
  Hello reply{};
  std::string what;
  WEFT_ASSIGN_OR_RETURN(std::unique_ptr<UcxEndpoint> ep, endpointFor(request, what));
  Request r;
  {
    detail::EngineLock lock(state_->engine());
    WEFT_ASSIGN_OR_RETURN(
        r, ep->recvRaw(OpKind::kRecv, &hello, sizeof(hello),
                       controlTag(ep->peerRank(), kControlHello, 0),
                       kKindMask | kRankMask | (uint64_t{0xff} << kControlTypeShift)));
  }
  WEFT_RETURN_IF_ERROR(waitStep(r, deadline, strCat(what, ": waiting for the client's hello")));
  if (hello.magic != kHelloMagic || hello.version != kHelloVersion ||
      hello.rank != ep->peerRank()) {
    return WEFT_ERROR(StatusCode::kPeerFailure, what, ": bad hello (magic ", hello.magic,
                      ", version ", hello.version, ", rank ", hello.rank, ")");
  }
  if (hello.expected != state_->rank()) {
    WEFT_LOG(kWarn, "ucx") << what << ": the client expected rank " << hello.expected
                           << "; it will refuse the connection";
  }
  reply = Hello{kHelloMagic, kHelloVersion, state_->rank(), hello.rank, hello.nonce, 0};
  {
    detail::EngineLock lock(state_->engine());
    WEFT_ASSIGN_OR_RETURN(r,
                          ep->sendRaw(OpKind::kSend, &reply, sizeof(reply),
                                      controlTag(state_->rank(), kControlHelloReply, hello.nonce)));
  }
  WEFT_RETURN_IF_ERROR(waitStep(r, deadline, strCat(what, ": sending the hello reply")));
  return std::unique_ptr<Endpoint>(std::move(ep));
}

Result<std::unique_ptr<Endpoint>> connectToListener(const StatePtr& state,
                                                    const std::string& host_port, int peer_rank,
                                                    Deadline deadline) {
  const std::string what =
      strCat("connectAddress(", host_port, ") from ", state->name(), " to rank ", peer_rank);
  if (peer_rank < 0 || peer_rank > kMaxRank) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what, ": rank outside [0, ", kMaxRank, "]");
  }
  Result<SockAddr> sa = parseHostPort(host_port, false);
  if (!sa.isOk()) return sa.status().withContext(what);
  WEFT_RETURN_IF_ERROR(socketSupport(*state, "connectAddress", host_port));
  Hello hello{};  // declared before the endpoint: UCX reads / writes them until it is gone
  Hello reply{};
  std::unique_ptr<UcxEndpoint> ep;
  Request r_reply;
  Request r_hello;
  {
    detail::EngineLock lock(state->engine());
    if (!state->claimPeer(peer_rank)) {
      return WEFT_ERROR(StatusCode::kInvalidArgument, what,
                        ": this Context already has an endpoint to that rank");
    }
    ucp_ep_params_t params{};
    params.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR;
    params.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER | UCP_EP_PARAMS_FLAGS_SEND_CLIENT_ID;
    params.sockaddr.addr = reinterpret_cast<const sockaddr*>(&sa->storage);
    params.sockaddr.addrlen = sa->length;
    auto created = UcxEndpoint::create(state, peer_rank, params, strCat("client of ", host_port));
    if (!created.isOk()) {
      state->releasePeer(peer_rank);
      return Status(StatusCode::kUnavailable, strCat(what, ": ", created.status().message()));
    }
    ep = std::move(created).value();
    const uint32_t nonce = state->nextNonce();
    WEFT_ASSIGN_OR_RETURN(
        r_reply,
        ep->recvRaw(OpKind::kRecv, &reply, sizeof(reply), controlTag(0, kControlHelloReply, nonce),
                    kKindMask | (uint64_t{0xff} << kControlTypeShift) | 0xffffffffu));
    hello = Hello{kHelloMagic, kHelloVersion, state->rank(), peer_rank, nonce, 0};
    WEFT_ASSIGN_OR_RETURN(r_hello, ep->sendRaw(OpKind::kSend, &hello, sizeof(hello),
                                               controlTag(state->rank(), kControlHello, nonce)));
  }
  Status st = waitStep(r_hello, deadline, what);
  if (st.isOk()) st = waitStep(r_reply, deadline, strCat(what, ": waiting for the hello reply"));
  if (!st.isOk()) {
    if (st.code() == StatusCode::kPeerFailure || st.code() == StatusCode::kUnavailable) {
      return Status(StatusCode::kUnavailable, strCat(what, ": cannot connect: ", st.message()))
          .withHint("is a Listener running at that address and reachable from here?");
    }
    return st;
  }
  if (reply.magic != kHelloMagic || reply.rank != peer_rank) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what, ": the listener there is rank ",
                      reply.rank, ", not rank ", peer_rank);
  }
  return std::unique_ptr<Endpoint>(std::move(ep));
}

}  // namespace weft::transport::ucx
