// UcxState (UCP context + worker + progress) and UcxContext (the public Context).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#include "common/config.h"
#include "common/logging.h"
#include "transport/ucx/ucx_internal.h"

namespace weft::transport::ucx {
namespace {

// True when UCX_<name> is in the environment or in the caller's backend settings.
bool configured(const ContextOptions& options, std::string_view name) {
  for (const auto& [k, v] : options.backend_config) {
    if (k == name) return true;
  }
  return std::getenv(strCat("UCX_", name).c_str()) != nullptr;
}

// The UCX_TLS list in force: the caller's TLS setting, else the environment; nullopt when
// neither sets one (UCX then uses every transport).
std::optional<std::string> tlsSetting(const ContextOptions& options) {
  for (const auto& [k, v] : options.backend_config) {
    if (k == "TLS") return v;
  }
  const char* env = std::getenv("UCX_TLS");
  if (env == nullptr) return std::nullopt;
  return std::string(env);
}

std::string tlsDescription(const ContextOptions& options) {
  const std::optional<std::string> tls = tlsSetting(options);
  return tls ? strCat("UCX_TLS=", *tls) : std::string("UCX_TLS=all (default)");
}

// True when UCX_TLS may select a transport whose name starts with one of `prefixes`. An
// unset or empty list, "all" and exclusion lists ("^...") may select anything.
bool tlsMaySelect(const ContextOptions& options, std::initializer_list<const char*> prefixes) {
  const std::optional<std::string> tls = tlsSetting(options);
  if (!tls || tls->empty() || (*tls)[0] == '^') return true;
  size_t pos = 0;
  while (pos <= tls->size()) {
    const size_t comma = std::min(tls->find(',', pos), tls->size());
    const std::string t = tls->substr(pos, comma - pos);
    if (t == "all") return true;
    for (const char* p : prefixes) {
      if (t.rfind(p, 0) == 0) return true;
    }
    pos = comma + 1;
  }
  return false;
}

// True when UCX_TLS lists shared-memory transports only (UCX then cannot reach a peer on
// another host, and every peer is a process the backend can watch on this host).
bool tlsSharedMemoryOnly(const ContextOptions& options) {
  const std::optional<std::string> tls = tlsSetting(options);
  if (!tls || tls->empty() || (*tls)[0] == '^') return false;
  size_t pos = 0;
  while (pos <= tls->size()) {
    const size_t comma = std::min(tls->find(',', pos), tls->size());
    const std::string t = tls->substr(pos, comma - pos);
    // The transports themselves, and UCX's aliases for groups of them.
    if (!isSharedMemoryTransport(t) && t != "sm" && t != "shm" && t != "mm") return false;
    pos = comma + 1;
  }
  return true;
}

// UCX connects client/server endpoints through a network transport only (the connection
// manager carries just the network part of the worker address), so listen/connectAddress
// need one in UCX_TLS.
bool tlsHasNetwork(const ContextOptions& options) {
  return tlsMaySelect(options, {"tcp", "ib", "rc", "ud", "dc", "rdmacm", "sockcm"});
}

struct UcpConfig {
  ucp_config_t* config = nullptr;
  ~UcpConfig() {
    if (config != nullptr) ucp_config_release(config);
  }
};

// What `print` writes to a FILE, as a string ("" when no memory stream can be opened).
std::string capturePrint(void (*print)(void*, FILE*), void* arg) {
  char* buf = nullptr;
  size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  if (f == nullptr) return {};
  print(arg, f);
  std::fclose(f);
  std::string out(buf != nullptr ? buf : "", len);
  std::free(buf);
  return out;
}

// The transport of a "tl/dev" token.
std::string transportOf(std::string_view token) {
  return std::string(token.substr(0, token.find('/')));
}

}  // namespace

bool isSharedMemoryTransport(const std::string& tl) {
  static constexpr std::string_view kShm[] = {"posix", "sysv", "cma", "knem", "xpmem", "self"};
  return std::find(std::begin(kShm), std::end(kShm), tl) != std::end(kShm);
}

std::string joinStrings(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += sep;
    out += parts[i];
  }
  return out;
}

// The transports named by the "tl/dev" tokens that `token_of` finds in the lines of
// `text` (an empty view: none on that line).
std::vector<std::string> transportsIn(const std::string& text,
                                      std::string_view (*token_of)(std::string_view line)) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const std::string_view token = token_of(line);
    if (token.find('/') != std::string_view::npos) out.push_back(transportOf(token));
  }
  return out;
}

// "#      resource 0  :  md 0  dev 0  flags -- posix/memory": the last token.
std::vector<std::string> parseResourceTransports(const std::string& text) {
  return transportsIn(text, [](std::string_view line) -> std::string_view {
    if (line.find("resource") == std::string_view::npos) return {};
    const size_t end = line.find_last_not_of(" \t");
    if (end == std::string_view::npos) return {};
    const size_t space = line.find_last_of(" \t", end);
    const size_t begin = space == std::string_view::npos ? 0 : space + 1;
    return line.substr(begin, end + 1 - begin);
  });
}

// "...lane[0]:  3:sysv/memory.0 md[2] -> ...": the token after "<resource index>:" (a
// connection-manager lane, "lane[1]: cm ...", has none).
std::vector<std::string> parseLaneTransports(const std::string& text) {
  return transportsIn(text, [](std::string_view line) -> std::string_view {
    const size_t lane = line.find("lane[");
    if (lane == std::string_view::npos) return {};
    size_t at = line.find("]:", lane);
    if (at == std::string_view::npos) return {};
    at = line.find_first_not_of(' ', at + 2);
    if (at == std::string_view::npos) return {};
    at = line.find_first_not_of("0123456789", at);
    if (at == std::string_view::npos || line[at] != ':') return {};
    const size_t end = line.find_first_of(" \t", at + 1);
    return line.substr(at + 1, end == std::string_view::npos ? end : end - at - 1);
  });
}

std::vector<std::string> ucxContextTransports(ucp_context_h context) {
  return parseResourceTransports(capturePrint(
      [](void* c, FILE* f) { ucp_context_print_info(static_cast<ucp_context_h>(c), f); },
      context));
}

std::vector<std::string> ucxLaneTransports(ucp_ep_h ep) {
  return parseLaneTransports(capturePrint(
      [](void* e, FILE* f) { ucp_ep_print_info(static_cast<ucp_ep_h>(e), f); }, ep));
}

UcxState::UcxState(const ContextOptions& options, const ResolvedOptions& resolved)
    : rank_(options.rank), engine_(this, resolved.engine), pool_(&engine_, resolved.max_requests) {}

UcxState::~UcxState() {
  engine_.stop();
  if (worker_ != nullptr) ucp_worker_destroy(worker_);
  if (context_ != nullptr) ucp_cleanup(context_);
}

std::string UcxState::name() const {
  return strCat("ucx rank ", rank_);
}

uint32_t UcxState::nextNonce() {
  // Distinct per connect of this process; mixes in the rank so that two processes'
  // concurrent handshakes differ too.
  nonce_ += 0x9e3779b9u;
  return nonce_ ^ (static_cast<uint32_t>(rank_) * 2654435761u);
}

Status UcxState::readConfig(const ContextOptions& options, ucp_config_t* config) {
  for (const auto& [name, value] : options.backend_config) {
    const ucs_status_t st = ucp_config_modify(config, name.c_str(), value.c_str());
    if (st != UCS_OK) {
      return ucxError(st, strCat("openContext(ucx): backend setting ", name, "=", value))
          .withHint(
              "names are UCX variables without the UCX_ prefix (TLS, NET_DEVICES, ...); "
              "`ucx_info -c` lists them");
    }
  }
  auto set_default = [&](const char* name, const std::string& value) -> Status {
    if (configured(options, name)) return Status::ok();
    const ucs_status_t st = ucp_config_modify(config, name, value.c_str());
    if (st != UCS_OK) return ucxError(st, strCat("openContext(ucx): setting UCX_", name));
    return Status::ok();
  };
  WEFT_ASSIGN_OR_RETURN(double keepalive, config::getDouble("WEFT_UCX_KEEPALIVE"));
  check_interval_ = std::chrono::nanoseconds(static_cast<int64_t>(keepalive * 1e9));
  WEFT_RETURN_IF_ERROR(
      set_default("KEEPALIVE_INTERVAL", strCat(static_cast<int64_t>(keepalive * 1e6), "us")));
  WEFT_ASSIGN_OR_RETURN(peer_errors_, config::getBool("WEFT_UCX_ERROR_HANDLING"));
  shm_only_ = tlsSharedMemoryOnly(options);
  if (peer_errors_ && !shm_only_ &&
      tlsMaySelect(options, {"posix", "sysv", "sm", "shm", "mm", "xpmem"})) {
    // Debian's UCX hides the shared-memory transports from endpoints that ask for peer
    // error handling unless they advertise it; they detect dead peers through keepalive.
    // (With shared memory only, endpoints use no UCX error handling: see ucxPeerErrors.)
    WEFT_RETURN_IF_ERROR(set_default("MM_ERROR_HANDLING", "y"));
  }
  return Status::ok();
}

Status UcxState::init(const ContextOptions& options) {
  UcpConfig cfg;
  ucs_status_t st = ucp_config_read(nullptr, nullptr, &cfg.config);
  if (st != UCS_OK) return ucxError(st, "openContext(ucx): ucp_config_read");
  WEFT_RETURN_IF_ERROR(readConfig(options, cfg.config));

  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME;
  params.features = UCP_FEATURE_TAG | UCP_FEATURE_RMA | UCP_FEATURE_AMO64 | UCP_FEATURE_WAKEUP;
  params.name = "weft";
  st = ucp_init(&params, cfg.config, &context_);
  if (st != UCS_OK) {
    return ucxError(st, strCat("openContext(ucx): ucp_init with ", tlsDescription(options)))
        .withHint("check UCX_TLS / UCX_NET_DEVICES against `ucx_info -d`");
  }
  if (peer_errors_ && !shm_only_) {
    // See ucxPeerErrors: shared memory (an mm transport for messages, a single-copy one
    // for rendezvous: without it UCX adds tcp lanes, as with UCX_TLS=tcp,posix) plus tcp at
    // most.
    const std::vector<std::string> tls = ucxContextTransports(context_);
    auto has = [&](std::initializer_list<std::string_view> names) {
      return std::any_of(tls.begin(), tls.end(), [&](const std::string& t) {
        return std::find(names.begin(), names.end(), t) != names.end();
      });
    };
    const bool other = std::any_of(tls.begin(), tls.end(), [](const std::string& t) {
      return !isSharedMemoryTransport(t) && t != "tcp";
    });
    host_shm_lanes_ = has({"posix", "sysv", "xpmem"}) && has({"cma", "knem", "xpmem"}) && !other;
    WEFT_LOG(kDebug, "ucx") << "transports [" << joinStrings(tls, ",") << "]: peers on this host "
                            << (host_shm_lanes_ ? "without" : "with")
                            << " UCX peer error handling";
  }
  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE | UCP_WORKER_PARAM_FIELD_CLIENT_ID;
  wp.thread_mode = engine_.threadSafe() ? UCS_THREAD_MODE_SERIALIZED : UCS_THREAD_MODE_SINGLE;
  wp.client_id = static_cast<uint64_t>(rank_);
  st = ucp_worker_create(context_, &wp, &worker_);
  if (st != UCS_OK) return ucxError(st, "openContext(ucx): ucp_worker_create");

  ucp_address_t* addr = nullptr;
  size_t addr_len = 0;
  st = ucp_worker_get_address(worker_, &addr, &addr_len);
  if (st != UCS_OK) return ucxError(st, "openContext(ucx): ucp_worker_get_address");
  worker_address_.assign(reinterpret_cast<const char*>(addr), addr_len);
  ucp_worker_release_address(worker_, addr);
  identity_ = selfIdentity();
  address_record_ = packAddress(
      identity_, sameHostWithoutUcxErrors() ? kAddressSameHostNoUcxErrors : 0, worker_address_);

  st = ucp_worker_get_efd(worker_, &efd_);
  if (st != UCS_OK) {
    WEFT_LOG(kInfo, "ucx") << "no worker event fd (" << ucs_status_string(st)
                           << "): blocking waits nap instead of sleeping on events";
    efd_ = -1;
  }
  fillCapabilities(options);
  return engine_.start();
}

void UcxState::fillCapabilities(const ContextOptions& options) {
  caps_.backend = "ucx";
  unsigned major = 0;
  unsigned minor = 0;
  unsigned release = 0;
  ucp_get_version(&major, &minor, &release);
  caps_.transports = strCat("UCX ", major, ".", minor, ".", release, ", ", tlsDescription(options));
  caps_.tag_bits = kTagBits;
  caps_.max_rank = kMaxRank;
  caps_.immediate_bits = 64;
  caps_.max_message = SIZE_MAX / 2;
  caps_.max_inline = 0;  // UCP does not report it
  caps_.max_outstanding = pool_.maxSlots();
  caps_.tagged = caps_.rdma_write = caps_.rdma_read = caps_.put_notify = true;
  caps_.atomics64 = true;
  caps_.rma_needs_target_progress = true;  // UCX may emulate RMA / AMO with messages
  ucp_context_attr_t attr{};
  attr.field_mask = UCP_ATTR_FIELD_MEMORY_TYPES;
  if (ucp_context_query(context_, &attr) == UCS_OK) {
    caps_.cuda_memory = (attr.memory_types & UCS_BIT(UCS_MEMORY_TYPE_CUDA)) != 0;
  }
  caps_.dmabuf = false;
  caps_.blocking_wait = efd_ >= 0;
  caps_.socket_connect = tlsHasNetwork(options);
  caps_.store_connect = true;
}

unsigned UcxState::pollDuties() {
  unsigned n = 0;
  // Peer liveness every 1024 rounds (the check itself is rate-limited by time).
  if (!watched_.empty()) checkPeers();
  while (!failed_.empty()) {
    UcxEndpoint* ep = failed_.back();
    failed_.pop_back();
    ep->failPending();
    ++n;
  }
  return n;
}

bool UcxState::armEvents() {
  const ucs_status_t st = ucp_worker_arm(worker_);
  if (st == UCS_OK) return true;
  if (st != UCS_ERR_BUSY) {
    WEFT_LOG(kWarn, "ucx") << name() << ": ucp_worker_arm: " << ucs_status_string(st);
  }
  return false;
}

void UcxState::wakeUp() {
  if (worker_ != nullptr) ucp_worker_signal(worker_);
}

void UcxState::forget(UcxEndpoint* ep) {
  for (size_t i = 0; i < failed_.size();) {
    if (failed_[i] == ep) {
      failed_[i] = failed_.back();
      failed_.pop_back();
    } else {
      ++i;
    }
  }
}

namespace {

class UcxContext final : public Context {
 public:
  explicit UcxContext(StatePtr state) : state_(std::move(state)) {}
  ~UcxContext() override { state_->engine().stop(); }

  std::string_view backend() const override { return "ucx"; }
  int rank() const override { return state_->rank(); }
  const Capabilities& capabilities() const override { return state_->caps(); }

  Result<std::unique_ptr<MemoryRegion>> registerMemory(void* address, size_t length,
                                                       MemoryType type) override {
    return UcxMemoryRegion::create(state_, address, length, type);
  }
  Result<std::unique_ptr<MemoryRegion>> allocateMemory(size_t length) override {
    return UcxMemoryRegion::allocate(state_, length);
  }
  Status publishAddress(Store& store) override {
    Status st = store.set(addressKey(state_->rank()), state_->addressRecord());
    if (st.isOk()) return st;
    return st.withContext(
        strCat(state_->name(), ": publishing the worker address in ", store.describe()));
  }
  Result<std::unique_ptr<Endpoint>> connect(Store& store, int peer_rank,
                                            Deadline deadline) override {
    return connectThroughStore(state_, store, peer_rank, deadline);
  }
  Result<std::unique_ptr<Listener>> listen(const std::string& host_port) override {
    return UcxListener::create(state_, host_port);
  }
  Result<std::unique_ptr<Endpoint>> connectAddress(const std::string& host_port, int peer_rank,
                                                   Deadline deadline) override {
    return connectToListener(state_, host_port, peer_rank, deadline);
  }
  unsigned progress() override {
    // Single-threaded Contexts skip the engine (no lock to take): this is the call that
    // benchmark and completion loops spin on.
    if (!state_->engine().threadSafe()) return state_->pollOnce();
    return state_->engine().progress();
  }
  Status waitForEvent(Deadline deadline) override {
    if (deadline.expired()) {
      return WEFT_ERROR(StatusCode::kTimeout, state_->name(),
                        ": waitForEvent called with an expired deadline");
    }
    state_->engine().waitForActivity(deadline);
    return Status::ok();
  }

 private:
  StatePtr state_;
};

}  // namespace

Result<std::unique_ptr<Context>> openUcxContext(const ContextOptions& options) {
  WEFT_ASSIGN_OR_RETURN(ResolvedOptions resolved, resolveOptions(options, "ucx", kMaxRank));
  auto state = std::make_shared<UcxState>(options, resolved);
  WEFT_RETURN_IF_ERROR(state->init(options));
  return std::unique_ptr<Context>(new UcxContext(std::move(state)));
}

}  // namespace weft::transport::ucx
