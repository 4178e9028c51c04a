// VerbsState (device, PD, completion channel, progress) and VerbsContext (the Context).
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "common/config.h"
#include "common/logging.h"
#include "transport/ibverbs/verbs_info.h"
#ifdef WEFT_HAVE_CUDA
#include "gpu/gpudirect.h"
#endif
#include "transport/core/memory_map.h"
#include "transport/core/owned_region.h"
#include "transport/ibverbs/verbs_internal.h"

namespace weft::transport::verbs {
namespace {

// ibv_fork_init must run before the first registration of the process.
void setUpForkSafety(bool fork_init) {
  static std::once_flag once;
  std::call_once(once, [fork_init] {
    if (ibv_is_fork_initialized() != IBV_FORK_DISABLED) return;  // unneeded or done
    if (!fork_init) {
      WEFT_LOG(kWarn, "verbs") << "WEFT_IB_FORK_INIT=0 and this kernel needs ibv_fork_init: "
                               << "a fork() after memory registration may corrupt RDMA buffers";
      return;
    }
    const int rc = ibv_fork_init();
    if (rc != 0) {
      WEFT_LOG(kWarn, "verbs") << "ibv_fork_init failed (" << errnoString(rc)
                               << "): a fork() after memory registration may corrupt RDMA buffers";
    }
  });
}

Status setNonBlocking(int fd, std::string_view what) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return WEFT_ERROR(StatusCode::kIoError, "openContext(verbs): fcntl(O_NONBLOCK) on the ", what,
                      ": ", errnoString(errno));
  }
  return Status::ok();
}

std::string limitText(rlim_t v) {
  if (v == RLIM_INFINITY) return "unlimited";
  return strCat(v / 1024, " KiB");
}

}  // namespace

// ---- OpPool -------------------------------------------------------------------------------

VerbsOp* OpPool::acquire() {
  if (free_.empty()) {
    const auto base = static_cast<uint32_t>(chunks_.size() * kChunk);
    chunks_.push_back(std::make_unique<VerbsOp[]>(kChunk));
    live_.resize(live_.size() + kChunk, false);
    free_.reserve(free_.size() + kChunk);
    for (uint32_t i = kChunk; i > 0; --i) free_.push_back(base + i - 1);
  }
  const uint32_t index = free_.back();
  free_.pop_back();
  VerbsOp* op = &chunks_[index / kChunk][index % kChunk];
  const uint32_t gen = op->gen + 1;
  *op = VerbsOp();
  op->index = index;
  op->gen = gen;
  live_[index] = true;
  return op;
}

void OpPool::release(VerbsOp* op) {
  live_[op->index] = false;
  ++op->gen;
  free_.push_back(op->index);
}

VerbsOp* OpPool::find(uint64_t wire_id) {
  const auto index = static_cast<uint32_t>(wire_id & 0xffffffffu);
  const auto gen = static_cast<uint32_t>(wire_id >> 32);
  if (index >= live_.size() || !live_[index]) return nullptr;
  VerbsOp* op = &chunks_[index / kChunk][index % kChunk];
  return op->gen == gen ? op : nullptr;
}

// ---- registration -------------------------------------------------------------------------

Status registrationError(int err, std::string_view what, const void* address, size_t length,
                         bool writing) {
  const std::string range = strCat("[", address, "+", length, ")");
  if (err == ENOMEM || err == EAGAIN || err == EPERM) {
    rlimit lim{};
    ::getrlimit(RLIMIT_MEMLOCK, &lim);
    return WEFT_ERROR(StatusCode::kNoResource, what, ": ibv_reg_mr of ", range, ": ",
                      errnoString(err))
        .withHint(strCat("the locked-memory limit (RLIMIT_MEMLOCK) is ", limitText(lim.rlim_cur),
                         ": raise `ulimit -l` (memlock in /etc/security/limits.conf, "
                         "LimitMEMLOCK for systemd services)"));
  }
  if (err != EFAULT) {
    return WEFT_ERROR(StatusCode::kIoError, what, ": ibv_reg_mr of ", range, ": ",
                      errnoString(err));
  }
  const auto begin = reinterpret_cast<uintptr_t>(address);
  const detail::MappingCheck m = detail::checkMapping(begin, begin + std::max<size_t>(length, 1));
  const std::string bad = strCat("ibv_reg_mr: ", errnoString(err));
  if (!m.known) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what, ": ", range, " cannot be registered (",
                      bad, "; /proc/self/maps could not be read to say why)");
  }
  if (m.hole) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what, ": ", range,
                      " is not mapped memory of this process (nothing mapped at ",
                      reinterpret_cast<void*>(m.hole_at), "; ", bad, ")")
        .withHint("register memory the process allocated and still owns");
  }
  if (!m.inaccessible.empty()) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what, ": ", range,
                      " includes inaccessible memory (mapping ", m.inaccessible, "; ", bad, ")")
        .withHint("PROT_NONE pages (guard pages, reserved ranges) cannot be registered");
  }
  if (!m.read_only.empty() && writing) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what, ": ", range,
                      " is read-only memory (mapping ", m.read_only, "), and this use needs "
                      "the NIC to write it (", bad, ")")
        .withHint("receive and get into writable memory; read-only memory can be sent, put "
                  "from, and registered for remote reads");
  }
  return WEFT_ERROR(StatusCode::kInvalidArgument, what, ": ibv_reg_mr of ", range, " failed: ",
                    errnoString(err), m.read_only.empty() ? " (the memory is mapped and writable)"
                                                          : " (read-only memory, even for reading)")
      .withHint("memory that cannot be pinned (device or DAX mappings) cannot be registered");
}

ibv_mr* registerWithReadOnlyFallback(ibv_pd* pd, void* address, size_t length, int access,
                                     bool read_only_ok, bool* writable) {
  *writable = true;
  ibv_mr* mr = ibv_reg_mr(pd, address, length, access);
  if (mr == nullptr && errno == EFAULT && read_only_ok) {
    mr = ibv_reg_mr(pd, address, length, IBV_ACCESS_REMOTE_READ);
    *writable = false;
  }
  return mr;
}

Result<Registration> PdRegistrar::registerRange(void* address, size_t length, MemoryType type,
                                                LocalAccess access) {
  const int full = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE;
  if (type == MemoryType::kCuda) {
    DeviceMemory* dev = state_.deviceMemory();
    if (dev == nullptr) {
      return WEFT_ERROR(StatusCode::kNotSupported, "registering device memory on ", device_,
                        ": this process has no GPU runtime");
    }
    WEFT_ASSIGN_OR_RETURN(
        ibv_mr * mr,
        dev->registerForNic(state_, strCat("registering ", dev->name(), " memory on ", device_),
                            address, length, full));
    liveCounter(ObjectKind::kMr).fetch_add(1);
    return Registration{mr, mr->lkey, mr->rkey, true};
  }
  bool writable = true;
  ibv_mr* mr = registerWithReadOnlyFallback(pd_, address, length, full,
                                            access == LocalAccess::kRead, &writable);
  if (mr == nullptr) {
    return registrationError(errno, strCat("registering a buffer on ", device_), address, length,
                             access == LocalAccess::kWrite);
  }
  liveCounter(ObjectKind::kMr).fetch_add(1);
  return Registration{mr, mr->lkey, mr->rkey, writable};
}

void PdRegistrar::deregister(const Registration& r) {
  VerbsDeleter<ibv_mr>()(static_cast<ibv_mr*>(r.handle));
}

// ---- VerbsState ---------------------------------------------------------------------------

VerbsState::VerbsState(const ContextOptions& options, const ResolvedOptions& resolved)
    : rank_(options.rank), engine_(this, resolved.engine), pool_(&engine_, resolved.max_requests) {}

VerbsState::~VerbsState() {
  engine_.stop();
  accepted_.clear();  // channels before the PD / device
  if (cache_ != nullptr) {  // the job's registration-cache counters (weft-info --devices)
    WEFT_LOG(kInfo, "verbs") << name() << " closing; " << formatRegCacheStats(cache_->stats());
  }
  cache_.reset();
  board_.reset();
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

std::string VerbsState::name() const {
  return strCat("verbs rank ", rank_, " (", port_.device, ":", port_.port, ")");
}

uint32_t VerbsState::nextPsn() {
  psn_seed_ = psn_seed_ * 1664525u + 1013904223u;
  return psn_seed_ & 0xffffff;
}

AddressRecord VerbsState::addressRecord() const {
  AddressRecord r;
  r.rank = rank_;
  r.nonce = nonce_;
  r.device = port_.device;
  r.port = static_cast<uint8_t>(port_.port);
  r.lid = port_.lid;
  r.gid = port_.gid;
  r.gid_type = static_cast<uint8_t>(port_.gid_type);
  r.link_layer = port_.link_layer;
  r.mtu = offeredMtu(port_.active_mtu, config_.mtu);
  r.rndv = static_cast<uint8_t>(config_.rndv);
  r.eager_size = config_.eager_size;
  return r;
}

Status VerbsState::init(const ContextOptions& options) {
  WEFT_ASSIGN_OR_RETURN(config_, readVerbsConfig(options));
  setUpForkSafety(config_.fork_init);
  WEFT_ASSIGN_OR_RETURN(device_, openDevice(config_, port_));
  int rc = ibv_query_device(device_.get(), &attr_);
  if (rc != 0) {
    return WEFT_ERROR(StatusCode::kIoError, "openContext(verbs): ibv_query_device(", port_.device,
                      "): ", errnoString(rc));
  }
  // rdma_rxe (soft-RoCE, vendor id 0xffffff) retries forever when retry_cnt is 7 (its
  // completer never counts 7 down), so a dead peer would never be reported there.
  const bool rxe = attr_.vendor_id == 0xffffff || port_.device.rfind("rxe", 0) == 0;
  if (config_.retry_count == 7 && rxe) {
    WEFT_LOG(kWarn, "verbs") << "WEFT_IB_RETRY_COUNT=7 means unlimited transport retries on "
                             << port_.device << " (soft-RoCE): a dead peer would never be "
                             << "reported; using 6";
    config_.retry_count = 6;
  }
  pd_ = track(ibv_alloc_pd(device_.get()), ObjectKind::kPd);
  if (!pd_) {
    return WEFT_ERROR(StatusCode::kNoResource, "openContext(verbs): ibv_alloc_pd on ",
                      port_.device, ": ", errnoString(errno));
  }
  channel_ = track(ibv_create_comp_channel(device_.get()), ObjectKind::kChannel);
  if (!channel_) {
    return WEFT_ERROR(StatusCode::kNoResource, "openContext(verbs): ibv_create_comp_channel on ",
                      port_.device, ": ", errnoString(errno));
  }
  WEFT_RETURN_IF_ERROR(openEventFds());
  WEFT_RETURN_IF_ERROR(probeInline());
  std::random_device rd;
  nonce_ = (uint64_t{rd()} << 32) ^ rd() ^ static_cast<uint64_t>(::getpid());
  psn_seed_ = static_cast<uint32_t>(nonce_ ^ (nonce_ >> 32));
  gpudirect_ = probeGpuDirect(pd_.get(), port_.device);
  {
    WEFT_ASSIGN_OR_RETURN(std::string mode, weft::config::getString("WEFT_GPUDIRECT"));
    gpudirect_mode_ = mode == "off"  ? GpuDirectMode::kOff
                      : mode == "on" ? GpuDirectMode::kOn
                                     : GpuDirectMode::kAuto;
  }
  device_memory_ = verbs::deviceMemory();
  WEFT_RETURN_IF_ERROR(setUpCache());
  fillCapabilities();
  WEFT_LOG(kInfo, "verbs") << name() << ": " << port_.gid_why << "; MTU "
                           << mtuBytes(port_.active_mtu) << ", inline " << max_inline_
                           << " B; " << formatRegCacheStats(cache_->stats());
  return engine_.start();
}

Status VerbsState::openEventFds() {
  WEFT_RETURN_IF_ERROR(setNonBlocking(channel_->fd, "completion channel"));
  WEFT_RETURN_IF_ERROR(setNonBlocking(device_->async_fd, "async event fd"));
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epoll_fd_ < 0 || wake_fd_ < 0) {
    return WEFT_ERROR(StatusCode::kIoError, "openContext(verbs): epoll_create1 / eventfd: ",
                      errnoString(errno));
  }
  for (int fd : {channel_->fd, wake_fd_, device_->async_fd}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      return WEFT_ERROR(StatusCode::kIoError, "openContext(verbs): epoll_ctl: ",
                        errnoString(errno));
    }
  }
  return Status::ok();
}

// The inline size a QP really gets: create a throw-away QP asking for a size and read back
// what the provider granted (it may grant more, and fails for too much).
Status VerbsState::probeInline() {
  CqPtr cq = track(ibv_create_cq(device_.get(), 4, nullptr, nullptr, 0), ObjectKind::kCq);
  if (!cq) {
    return WEFT_ERROR(StatusCode::kNoResource, "openContext(verbs): ibv_create_cq on ",
                      port_.device, ": ", errnoString(errno));
  }
  const int asks[] = {config_.max_inline >= 0 ? config_.max_inline : 1024, 512, 256, 128, 64, 0};
  for (int ask : asks) {
    if (config_.max_inline >= 0 && ask > config_.max_inline) continue;
    ibv_qp_init_attr ia{};
    ia.send_cq = ia.recv_cq = cq.get();
    ia.qp_type = IBV_QPT_RC;
    ia.cap.max_send_wr = ia.cap.max_recv_wr = 4;
    ia.cap.max_send_sge = ia.cap.max_recv_sge = 1;
    ia.cap.max_inline_data = static_cast<uint32_t>(ask);
    QpPtr qp = track(ibv_create_qp(pd_.get(), &ia), ObjectKind::kQp);
    if (qp) {
      max_inline_ = ia.cap.max_inline_data;
      return Status::ok();
    }
  }
  return WEFT_ERROR(StatusCode::kNoResource, "openContext(verbs): cannot create an RC QP on ",
                    port_.device, ": ", errnoString(errno));
}

Status VerbsState::setUpCache() {
  rlimit lim{};
  ::getrlimit(RLIMIT_MEMLOCK, &lim);
  uint64_t bound = 0;
  if (lim.rlim_cur == RLIM_INFINITY) {
    bound = static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) *
            static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)) / 2;
  } else {
    bound = lim.rlim_cur / 4 * 3;
  }
  if (config_.reg_cache_max > 0) bound = config_.reg_cache_max;
  RegistrationCache::Options o;
  o.max_bytes = bound;
  o.max_entries = static_cast<size_t>(attr_.max_mr > 64 ? attr_.max_mr / 2 : 32);
  o.page_size = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  MemoryEvents* events = nullptr;
  if (!config_.reg_cache) {
    o.off_reason = "WEFT_IB_REG_CACHE=off";
  } else if ((events = MemoryMonitor::instance()) == nullptr) {
    o.off_reason = strCat("no userfaultfd memory monitor: ", MemoryMonitor::unavailableReason());
  }
  registrar_ = std::make_unique<PdRegistrar>(*this, pd_.get(), port_.device);
  board_ = std::make_unique<CacheBoard>(
      config_.cache_board, rank_, port_.device,
      o.off_reason.empty() ? std::string("userfaultfd") : strCat("off (", o.off_reason, ")"),
      bound);
  o.board = board_->data();
  cache_ = std::make_unique<RegistrationCache>(registrar_.get(), events, o);
  return Status::ok();
}

void VerbsState::fillCapabilities() {
  caps_.backend = "verbs";
  caps_.transports = strCat(port_.device, ":", port_.port, " ",
                            port_.link_layer == IBV_LINK_LAYER_ETHERNET
                                ? std::string(gidTypeName(port_.gid_type))
                                : std::string("InfiniBand"),
                            " gid ", port_.gid_index, " (", gidIpv4(port_.gid).empty()
                                                                ? gidText(port_.gid)
                                                                : gidIpv4(port_.gid),
                            "), MTU ", mtuBytes(port_.active_mtu), ", rendezvous ",
                            config_.rndv == Rndv::kRead ? "RDMA READ" : "RDMA WRITE");
  caps_.tag_bits = kTagBits;
  caps_.max_rank = kMaxRank;
  caps_.immediate_bits = 64;
  caps_.max_message = SIZE_MAX / 2;
  caps_.max_inline = max_inline_ > sizeof(MsgHeader) ? max_inline_ - sizeof(MsgHeader) : 0;
  caps_.max_outstanding = pool_.maxSlots();
  caps_.tagged = caps_.rdma_write = caps_.rdma_read = caps_.put_notify = true;
  caps_.atomics64 = attr_.atomic_cap != IBV_ATOMIC_NONE;
  caps_.rma_needs_target_progress = false;  // RC: the NIC serves RMA and atomics
#ifdef WEFT_HAVE_CUDA
  // GPUDirect: the NIC takes dma-bufs or peer memory is loaded, a CUDA device exists, and
  // WEFT_GPUDIRECT is not off. (Light probe: no CUDA context is created here.)
  const gpu::GpuDirectProbe& gpu = gpu::probeGpuDirect(false);
  const bool allowed =
      weft::config::getString("WEFT_GPUDIRECT").valueOr(std::string("auto")) != "off";
  caps_.dmabuf = allowed && gpudirect_.dmabuf && gpu.devices > 0 && gpu.dmabuf_attribute;
  caps_.cuda_memory = allowed && gpu.devices > 0 && (caps_.dmabuf || gpudirect_.peer_memory);
#else
  caps_.cuda_memory = false;  // needs a CUDA build (gpu/) for dma-buf handles
  caps_.dmabuf = false;
#endif
  caps_.blocking_wait = true;
  caps_.socket_connect = false;
  caps_.store_connect = true;
}

void VerbsState::addEndpoint(VerbsEndpoint* ep) {
  endpoints_.push_back(ep);
}

void VerbsState::removeEndpoint(VerbsEndpoint* ep) {
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    if (endpoints_[i] == ep) {
      endpoints_.erase(endpoints_.begin() + static_cast<long>(i));
      return;
    }
  }
}

unsigned VerbsState::pollEvents() {
  unsigned n = 0;
  for (size_t i = 0; i < endpoints_.size(); ++i) n += endpoints_[i]->poll();
  if ((++polls_ & 255) == 0) checkTimers();
  return n;
}

void VerbsState::drainChannel() {
  ibv_cq* cq = nullptr;
  void* ctx = nullptr;
  while (ibv_get_cq_event(channel_.get(), &cq, &ctx) == 0) ibv_ack_cq_events(cq, 1);
  uint64_t v = 0;
  while (::read(wake_fd_, &v, sizeof(v)) == static_cast<ssize_t>(sizeof(v))) {
  }
}

void VerbsState::drainAsync() {
  ibv_async_event ev{};
  while (ibv_get_async_event(device_.get(), &ev) == 0) {
    const char* what = ibv_event_type_str(ev.event_type);
    switch (ev.event_type) {
      case IBV_EVENT_QP_FATAL:
      case IBV_EVENT_QP_REQ_ERR:
      case IBV_EVENT_QP_ACCESS_ERR:
        for (VerbsEndpoint* ep : endpoints_) {
          if (ep->qp() == ev.element.qp) ep->onAsyncError(what);
        }
        break;
      case IBV_EVENT_PORT_ERR:
      case IBV_EVENT_DEVICE_FATAL:
        WEFT_LOG(kWarn, "verbs") << name() << ": async event " << what;
        break;
      default:
        WEFT_LOG(kDebug, "verbs") << name() << ": async event " << what;
        break;
    }
    ibv_ack_async_event(&ev);
  }
}

bool VerbsState::armEvents() {
  drainChannel();
  drainAsync();
  for (VerbsEndpoint* ep : endpoints_) ep->arm();
  unsigned n = 0;
  for (size_t i = 0; i < endpoints_.size(); ++i) n += endpoints_[i]->poll();
  return n == 0;
}

void VerbsState::wakeUp() {
  const uint64_t one = 1;
  if (wake_fd_ >= 0 && ::write(wake_fd_, &one, sizeof(one)) < 0 && errno != EAGAIN) {
    WEFT_LOG(kWarn, "verbs") << name() << ": waking the progress thread: " << errnoString(errno);
  }
}

void VerbsState::onIdle() {
  checkTimers();
}

void VerbsState::checkTimers() {
  const auto now = Deadline::Clock::now();
  for (size_t i = 0; i < endpoints_.size(); ++i) endpoints_[i]->checkTimers(now);
}

// ---- VerbsContext -------------------------------------------------------------------------

namespace {

Status checkHostPort(std::string_view op, const std::string& host_port) {
  const size_t colon = host_port.rfind(':');
  bool ok = colon != std::string::npos && colon + 1 < host_port.size();
  for (size_t i = ok ? colon + 1 : host_port.size(); i < host_port.size(); ++i) {
    ok = ok && host_port[i] >= '0' && host_port[i] <= '9';
  }
  if (!ok) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, op, "(verbs): \"", host_port,
                      "\" is not a host:port socket address");
  }
  return WEFT_ERROR(StatusCode::kNotSupported, op, "(", host_port,
                    ") on the verbs backend: socket-address connections are not supported")
      .withHint("connect through a Store (Context::connect), which exchanges the QP numbers");
}

class VerbsContext final : public Context {
 public:
  explicit VerbsContext(StatePtr state) : state_(std::move(state)) {}
  ~VerbsContext() override { state_->engine().stop(); }

  std::string_view backend() const override { return "verbs"; }
  int rank() const override { return state_->rank(); }
  const Capabilities& capabilities() const override { return state_->caps(); }

  Result<std::unique_ptr<MemoryRegion>> registerMemory(void* address, size_t length,
                                                       MemoryType type) override {
    return VerbsMemoryRegion::create(state_, address, length, type);
  }
  Result<std::unique_ptr<MemoryRegion>> allocateMemory(size_t length) override {
    return detail::allocateAnonymous(*this, length, strCat("allocateMemory on ", state_->name()));
  }
  Status publishAddress(Store& store) override { return verbs::publishAddress(*state_, store); }
  Result<std::unique_ptr<Endpoint>> connect(Store& store, int peer_rank,
                                            Deadline deadline) override {
    return connectThroughStore(state_, store, peer_rank, deadline);
  }
  Result<std::unique_ptr<Listener>> listen(const std::string& host_port) override {
    return checkHostPort("listen", host_port);
  }
  Result<std::unique_ptr<Endpoint>> connectAddress(const std::string& host_port, int peer_rank,
                                                   Deadline deadline) override {
    (void)peer_rank;
    (void)deadline;
    return checkHostPort("connectAddress", host_port);
  }
  unsigned progress() override { return state_->engine().progress(); }
  Status waitForEvent(Deadline deadline) override {
    if (deadline.expired()) {
      return WEFT_ERROR(StatusCode::kTimeout, state_->name(),
                        ": waitForEvent called with an expired deadline");
    }
    state_->engine().waitForActivity(deadline);
    return Status::ok();
  }
  RegCacheStats cacheStats() const {
    detail::EngineLock lock(state_->engine());
    return state_->cache().stats();
  }

 private:
  StatePtr state_;
};

}  // namespace

RegCacheStats cacheStatsOf(const Context& context, bool& is_verbs) {
  const auto* v = dynamic_cast<const VerbsContext*>(&context);
  is_verbs = v != nullptr;
  return v != nullptr ? v->cacheStats() : RegCacheStats{};
}

Result<std::unique_ptr<Context>> openVerbsContext(const ContextOptions& options) {
  WEFT_ASSIGN_OR_RETURN(ResolvedOptions resolved, resolveOptions(options, "verbs", kMaxRank));
  auto state = std::make_shared<VerbsState>(options, resolved);
  WEFT_RETURN_IF_ERROR(state->init(options));
  return std::unique_ptr<Context>(new VerbsContext(std::move(state)));
}

}  // namespace weft::transport::verbs
