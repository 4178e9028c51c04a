// Native libibverbs backend internals. Nothing outside transport/ includes this header.
//
// Object graph: VerbsContext (the public Context) owns a shared_ptr<VerbsState>; every
// VerbsEndpoint and VerbsMemoryRegion holds another, so the device, PD, completion
// channel and registration cache live until the last of them is gone. VerbsState is the
// EventSource of the Context's ProgressEngine and owns the RequestPool and the OpPool.
// A Channel is the verbs side of one connection (RC QP, its CQ, eager buffers); an
// Endpoint owns one Channel and runs the protocol on it (see verbs_endpoint.cc).
//
// Threads: every verbs call happens with the engine lock held (a no-op unless the Context
// is thread-safe); connect() talks to the Store without it (see verbs_connect.cc).
#pragma once

#include <infiniband/verbs.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "transport/api/context.h"
#include "transport/core/options.h"
#include "transport/core/progress_engine.h"
#include "transport/core/request_pool.h"
#include "transport/ibverbs/verbs_device_memory.h"
#include "transport/ibverbs/verbs_raii.h"
#include "transport/ibverbs/verbs_reg_cache.h"
#include "transport/ibverbs/verbs_wire.h"

namespace weft::transport::verbs {

// The path MTU (an ibv_mtu value) this rank offers its peers: the port's active MTU, capped
// by WEFT_IB_MTU (cap_bytes > 0). Both ends connect with the smaller of the two offers, so
// a cap set on one rank only still gives both ends of a QP the same path MTU.
inline uint8_t offeredMtu(uint8_t active, int cap_bytes) {
  uint8_t cap = IBV_MTU_4096;
  if (cap_bytes > 0) {
    cap = cap_bytes <= 256    ? IBV_MTU_256
          : cap_bytes <= 512  ? IBV_MTU_512
          : cap_bytes <= 1024 ? IBV_MTU_1024
          : cap_bytes <= 2048 ? IBV_MTU_2048
                              : IBV_MTU_4096;
  }
  return active < cap ? active : cap;
}

using detail::RequestSlot;

// Caller tag bits (the header carries 64; the rest is reserved, as for UCX).
inline constexpr int kTagBits = 40;
inline constexpr Tag kUserTagMask = (Tag{1} << kTagBits) - 1;
// Ranks travel as 32-bit fields; WEFT_RANK allows 24 bits.
inline constexpr int kMaxRank = (1 << 24) - 1;
// Selective signaling: one send WR in kSignalEvery asks for a completion (each completion
// retires every earlier WR of the QP, RC completes in order). 16 keeps the CQ traffic low
// while bounce buffers come back soon enough to never stall a window. Puts and gets are
// signaled while fewer than kSignalEvery WRs are in flight or none of them is signaled
// (short bursts and lone operations complete on their own completions, as before), and
// one in kSignalEvery otherwise; the others complete when a later signaled WR retires
// them, and an endpoint whose last signaled WR retired while such operations wait posts
// a signaled probe (kickDeferred) before anyone sleeps (or after kBusyPollsBeforeKick
// polls in a row that found only other completions). Why: a completion per small put /
// get is CQ traffic and polling that perftest (cq_mod 100) and UCX avoid (a real NIC
// writes every CQE over PCIe); on soft-RoCE, 128 8-byte gets in flight, the get rate rose
// ~7 % (median of 7 alternated runs) and the put rate did not move. Atomics and
// rendezvous steps are always signaled.
inline constexpr uint32_t kSignalEvery = 16;
inline constexpr uint32_t kBusyPollsBeforeKick = 64;
// Completions taken per ibv_poll_cq call.
inline constexpr int kPollBatch = 16;
// 8-byte result words for atomics in flight per endpoint (more wait in the pending queue;
// devices serve max_qp_rd_atom, 16..128, at once anyway).
inline constexpr uint32_t kAtomicSlots = 64;
// wr_id of receive WRs (the low bits are the buffer index).
inline constexpr uint64_t kRecvWrFlag = uint64_t{1} << 63;
// Eager sends of at least this many payload bytes (and too large to go inline) go
// zero-copy: a SEND gathering the header (if any, from a bounce buffer) and the caller's
// buffer (registered through the registration cache), completing when the WR completes.
// Smaller ones are copied into the bounce buffer, cheaper than the cache lookup and the
// extra completion. On soft-RoCE zero-copy measured neutral at 4 KiB (transport/README.md,
// verbs section); UINT32_MAX turns it off.
inline constexpr uint32_t kEagerZcopyMin = 2048;
// Compact eager messages: an eager message whose tag fits kCompactTagBits travels without
// the 16-byte header, as SEND with immediate = credits (8 bits) << 24 | tag (the length is
// the received byte count). A 4 KiB payload then takes 4 packets at MTU 1024 (1 at 4096),
// not 5 (2). Larger tags use the header.
inline constexpr int kCompactTagBits = 24;
inline constexpr Tag kCompactTagMax = (Tag{1} << kCompactTagBits) - 1;
inline constexpr uint32_t kCompactCreditMax = 255;

enum class Rndv : uint8_t { kRead = 0, kWrite = 1 };
// WEFT_GPUDIRECT (see verbs_device_memory.h).
enum class GpuDirectMode : uint8_t { kAuto, kOn, kOff };

// WEFT_IB_* resolved (verbs_device.cc).
struct VerbsConfig {
  std::string device;  // "" = first device with an ACTIVE port
  int port = 0;        // 0 = first ACTIVE port
  int gid_index = -1;  // -1 = choose
  int mtu = 0;         // 0 = negotiate the largest common active MTU
  int timeout = 14;
  int retry_count = 6;
  int rnr_retry = 7;
  int sl = 0;
  int traffic_class = 0;
  uint32_t sq_depth = 512;
  uint32_t recv_buffers = 64;
  uint32_t eager_size = 8192;
  Rndv rndv = Rndv::kRead;
  int max_inline = -1;  // -1 = device maximum
  double keepalive_s = 1.0;
  bool reg_cache = true;
  uint64_t reg_cache_max = 0;  // 0 = from RLIMIT_MEMLOCK
  bool cache_board = true;     // publish the cache counters (verbs_cache_board.h)
  bool fork_init = true;
};
// From the environment; ContextOptions::backend_config entries (NAME or WEFT_IB_NAME) win.
Result<VerbsConfig> readVerbsConfig(const ContextOptions& options);

// The device port and GID a Context uses.
struct PortSelection {
  std::string device;
  int port = 1;
  uint16_t lid = 0;
  int gid_index = 0;
  ibv_gid gid{};
  uint32_t gid_type = IBV_GID_TYPE_IB;
  uint8_t link_layer = IBV_LINK_LAYER_INFINIBAND;
  uint8_t active_mtu = IBV_MTU_1024;
  uint32_t max_msg = 0;
  std::string gid_why;  // why this GID (logged at open, shown in Capabilities::transports)
};

// A GID table entry the chooser looks at (pure data, unit-tested without a device).
struct GidCandidate {
  int index = 0;
  ibv_gid gid{};
  uint32_t type = IBV_GID_TYPE_IB;
  std::string netdev;
};
struct GidChoice {
  int index = -1;
  std::string why;
};
// Picks the GID: the override when >= 0 (it must exist), else for InfiniBand index 0, for
// RoCE the first RoCE v2 IPv4-mapped GID, then RoCE v2 global IPv6, RoCE v2 link-local,
// then RoCE v1. kInvalidArgument naming `where` and listing the table otherwise.
Result<GidChoice> chooseGid(const std::vector<GidCandidate>& table, int override_index,
                            bool infiniband, std::string_view where);

// Opens the configured device and port (unknown names are kInvalidArgument listing what
// exists; no device at all is kUnavailable).
Result<ContextPtr> openDevice(const VerbsConfig& config, PortSelection& selection);
// GPUDirect RDMA probe on a PD: dmabuf through ibv_reg_dmabuf_mr, peer memory through
// nvidia_peermem. `text` explains both ("dmabuf: not supported by rxe0 (...)").
struct GpuDirectProbe {
  bool dmabuf = false;
  bool peer_memory = false;
  std::string text;
};
GpuDirectProbe probeGpuDirect(ibv_pd* pd, std::string_view device);

// "transport retry counter exceeded (IBV_WC_RETRY_EXC_ERR, status 12)"
std::string wcStatusText(ibv_wc_status status);
std::string_view wcOpcodeName(ibv_wc_opcode opcode);
std::string_view wrOpcodeName(ibv_wr_opcode opcode);
// The Status of a failed work completion (see verbs_completion.cc for the hints).
// peer_buffer: the WR used a key the peer gave the protocol (rendezvous, keepalive), so a
// remote access error means the peer went away (kPeerFailure), not a bad caller key.
Status wcError(const ibv_wc& wc, std::string_view op, std::string_view endpoint, uint32_t local_qp,
               uint32_t remote_qp, int peer_rank, std::string_view gid_note,
               bool peer_buffer = false);
// "0x1a"
std::string hex(uint64_t v);

class VerbsState;
class VerbsEndpoint;

// The verbs side of one RC connection: QP, CQ (on the Context's completion channel), eager
// receive buffers (pre-posted), send bounce buffers and a small control area (the word
// peers write keepalive probes into, and result words for atomics).
class Channel {
 public:
  // Creates the QP in INIT with every receive buffer posted. Lock held.
  static Result<std::unique_ptr<Channel>> create(VerbsState& state, int peer);
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // This side's half of the connection record (from/to/seq/nonces filled by the caller).
  QpRecord localRecord() const;
  // INIT -> RTR -> RTS against the peer's record. Lock held.
  Status connect(const QpRecord& peer, std::string_view what);

  ibv_qp* qp() const { return qp_.get(); }
  ibv_cq* cq() const { return cq_.get(); }
  int peer() const { return peer_; }
  const QpRecord& remote() const { return remote_; }
  uint8_t pathMtu() const { return mtu_; }
  uint32_t recvBuffers() const { return recv_count_; }
  uint32_t sendBuffers() const { return send_count_; }
  uint32_t eagerSize() const { return eager_size_; }
  char* recvBuffer(uint32_t i) const { return recv_mem_.get() + size_t{i} * eager_size_; }
  char* sendBuffer(uint32_t i) const { return send_mem_.get() + size_t{i} * eager_size_; }
  uint32_t recvLkey() const { return recv_mr_->lkey; }
  uint32_t sendLkey() const { return send_mr_->lkey; }
  uint32_t ctlLkey() const { return ctl_mr_->lkey; }
  uint64_t* atomicWord(uint32_t i) const {
    return reinterpret_cast<uint64_t*>(ctl_mem_.get()) + 1 + i;
  }
  // Posts receive buffer i again (lock held); false with errno text in `err` on failure.
  bool postRecv(uint32_t i, std::string& err);
  uint32_t maxDestRdAtomic() const;

 private:
  Channel(VerbsState& state, int peer) : state_(state), peer_(peer) {}
  Status allocate();
  // The peer's record fits ours (rendezvous protocol, link layer, RoCE version).
  Status checkPeer(const QpRecord& peer, std::string_view what, const std::string& ends) const;
  Status toRtr(const QpRecord& peer, std::string_view what, const std::string& ends);
  Status toRts(const QpRecord& peer, std::string_view what, const std::string& ends);

  VerbsState& state_;
  int peer_;
  uint32_t recv_count_ = 0;
  uint32_t send_count_ = 0;
  uint32_t eager_size_ = 0;
  uint32_t psn_ = 0;
  uint8_t mtu_ = IBV_MTU_1024;
  QpRecord remote_;
  // Destruction order (reverse of declaration): MRs, QP, CQ, then the memory.
  AlignedBuffer recv_mem_;
  AlignedBuffer send_mem_;
  AlignedBuffer ctl_mem_;
  CqPtr cq_;
  QpPtr qp_;
  MrPtr recv_mr_;
  MrPtr send_mr_;
  MrPtr ctl_mr_;
};

// Per-operation state of the backend (Requests only see their RequestSlot).
enum class OpType : uint8_t {
  kControl,  // internal message (CTS, FIN, RTS retry...) waiting for credits / buffers
  kSend,
  kRecv,
  kPut,
  kGet,
  kPutNotify,
  kRecvNotify,
  kAtomic,
  kFlush,
};

// Steps of multi-step operations (VerbsOp::stage).
enum class Stage : uint8_t {
  kNone = 0,
  kEager,        // send: eager message waiting to be posted
  kEagerPosted,  // send: zero-copy eager message posted, completes with its send completion
  kRtsToPost,    // send: the RTS waits for credits / a buffer
  kAwaitFin,     // send (read) / recv (write): waiting for the peer's FIN
  kAwaitCts,     // send (write): waiting for the peer's CTS
  kWriteToPost,  // send (write): RDMA WRITE + FIN wait for the send queue
  kWriting,      // send (write): posted, completes with the FIN's send completion
  kPosted,       // recv: matching; rma: waiting for its completion
  kReadToPost,   // recv (read): the RDMA READ waits for the send queue
  kReading,      // recv (read): READ posted
  kFinToPost,    // recv: data in place (read) or refused; its FIN waits for credits, then
                 // it completes (with fin_error unless fin_status is kFinOk)
  kToPost,       // rma / atomics / notify: waiting for the send queue (or credits)
};

struct VerbsOp {
  RequestSlot* slot = nullptr;  // null for internal control messages
  VerbsEndpoint* ep = nullptr;
  uint32_t index = 0;
  uint32_t gen = 0;
  OpType type = OpType::kControl;
  Stage stage = Stage::kNone;
  bool in_recvs = false;
  char* local = nullptr;  // user buffer
  size_t length = 0;      // bytes to move (send / put / get) or receive capacity (recv)
  size_t posted = 0;      // bytes of a chunked RDMA op posted so far
  Tag tag = 0;
  Tag mask = 0;
  uint64_t remote_addr = 0;
  uint32_t rkey = 0;
  uint32_t atomic_slot = UINT32_MAX;
  ibv_wr_opcode opcode = IBV_WR_SEND;  // RDMA / atomic opcode
  uint64_t operand = 0;                // atomic operand / immediate
  uint64_t compare = 0;                // compare-and-swap: expected value
  uint64_t peer_op = 0;                // rendezvous: the peer's operation id
  uint32_t fin_status = 0;             // Stage::kFinToPost: the FIN's status (kFinOk ...)
  Status fin_error;                    // ... and, unless kFinOk, the recv's
  uint64_t flush_target = 0;           // flush: one-sided ops that must be done first
  RegEntry* reg = nullptr;             // registration of `local` (released on completion)
  // Device buffers (verbs_device_memory.h): `local` is device memory registered by GPUDirect
  // (device_local), or a staging buffer (staged) standing in for the caller's device buffer,
  // which receives the bytes on success when device_dst is set (recv, get).
  bool device_local = false;
  char* staged = nullptr;
  size_t staged_cap = 0;
  char* device_dst = nullptr;
  // Internal control message (type kControl).
  MsgType msg = MsgType::kCredit;
  uint32_t body_len = 0;
  alignas(8) unsigned char body[32] = {};
  // Links in the endpoint's posted-receive list / all-ops list.
  VerbsOp* prev = nullptr;
  VerbsOp* next = nullptr;
  VerbsOp* all_prev = nullptr;
  VerbsOp* all_next = nullptr;

  uint64_t wireId() const { return (uint64_t{gen} << 32) | index; }
};

// Stable VerbsOp storage with a free list and generation numbers (wire ids stay checkable).
class OpPool {
 public:
  static constexpr uint32_t kChunk = 1024;
  VerbsOp* acquire();
  void release(VerbsOp* op);
  // The live op with this wire id, or nullptr (stale / unknown).
  VerbsOp* find(uint64_t wire_id);

 private:
  std::vector<std::unique_ptr<VerbsOp[]>> chunks_;
  std::vector<uint32_t> free_;
  std::vector<bool> live_;
};

// ibv_reg_mr / ibv_dereg_mr for the registration cache.
// MemoryType::kCuda ranges go to the DeviceMemory's GPUDirect registration.
class PdRegistrar final : public Registrar {
 public:
  PdRegistrar(const VerbsState& state, ibv_pd* pd, std::string device)
      : state_(state), pd_(pd), device_(std::move(device)) {}
  Result<Registration> registerRange(void* address, size_t length, MemoryType type,
                                     LocalAccess access) override;
  void deregister(const Registration& registration) override;

 private:
  const VerbsState& state_;
  ibv_pd* pd_;
  std::string device_;
};
#ifdef WEFT_HAVE_CUDA
// GPUDirect registration of CUDA device memory: dma-buf, then peer memory; kNotSupported
// with both reasons (warned once) otherwise. `what` names the caller in the error.
Result<ibv_mr*> registerCudaForNic(const VerbsState& st, std::string_view what, void* address,
                                   size_t length, int access);
#endif
// The error for a failed ibv_reg_mr (errno) with the memlock hint where it applies; for
// EFAULT it reads /proc/self/maps to say whether the range is unmapped or read-only.
// ibv_reg_mr with `access`; when that fails with EFAULT (read-only pages cannot be pinned
// for writing) and read_only_ok, again with IBV_ACCESS_REMOTE_READ only. *writable says
// which one worked. nullptr with errno set when neither did.
ibv_mr* registerWithReadOnlyFallback(ibv_pd* pd, void* address, size_t length, int access,
                                     bool read_only_ok, bool* writable);
// writing: the use needed write access (a reading use already retried read-only).
Status registrationError(int err, std::string_view what, const void* address, size_t length,
                         bool writing = true);

class VerbsState final : public detail::EventSource {
 public:
  VerbsState(const ContextOptions& options, const ResolvedOptions& resolved);
  ~VerbsState() override;
  VerbsState(const VerbsState&) = delete;
  VerbsState& operator=(const VerbsState&) = delete;

  // Reads WEFT_IB_*, opens the device, PD, completion channel, event fd, cache.
  Status init(const ContextOptions& options);

  unsigned pollEvents() override;
  bool armEvents() override;
  int eventFd() const override { return epoll_fd_; }
  void wakeUp() override;
  void onIdle() override;

  void addEndpoint(VerbsEndpoint* ep);
  void removeEndpoint(VerbsEndpoint* ep);
  bool claimPeer(int peer) { return peers_.insert(peer).second; }
  void releasePeer(int peer) { peers_.erase(peer); }

  ibv_context* device() const { return device_.get(); }
  ibv_pd* pd() const { return pd_.get(); }
  ibv_comp_channel* channel() const { return channel_.get(); }
  const PortSelection& port() const { return port_; }
  const VerbsConfig& config() const { return config_; }
  const ibv_device_attr& deviceAttr() const { return attr_; }
  uint32_t maxInline() const { return max_inline_; }
  int rank() const { return rank_; }
  uint64_t nonce() const { return nonce_; }
  uint32_t nextPsn();
  const Capabilities& caps() const { return caps_; }
  const GpuDirectProbe& gpuDirect() const { return gpudirect_; }
  // Device buffers (verbs_device_memory.h): the process's DeviceMemory when this Context
  // opened (nullptr: none), WEFT_GPUDIRECT, and whether auto gave up on GPUDirect.
  DeviceMemory* deviceMemory() const { return device_memory_; }
  GpuDirectMode gpuDirectMode() const { return gpudirect_mode_; }
  bool gpuDirectFailed() const { return gpudirect_failed_; }
  void noteGpuDirectFailure(const Status& why);  // warns once
  StagingPool& staging() { return staging_; }
  detail::ProgressEngine& engine() { return engine_; }
  detail::RequestPool& pool() { return pool_; }
  OpPool& ops() { return ops_; }
  RegistrationCache& cache() { return *cache_; }
  uint64_t nextRegionId() { return next_region_id_++; }
  // "verbs rank R (rxe0:1)"
  std::string name() const;
  AddressRecord addressRecord() const;

  // Store connection state (verbs_connect.cc; guarded by connectMutex(), not the engine).
  std::mutex& connectMutex() { return connect_mutex_; }
  std::map<int, uint32_t>& nextSeq() { return next_seq_; }
  std::map<std::pair<int, uint32_t>, std::unique_ptr<Channel>>& accepted() { return accepted_; }
  int64_t& inboxNext() { return inbox_next_; }
  bool& published() { return published_; }

 private:
  Status openEventFds();
  Status probeInline();
  void fillCapabilities();
  Status setUpCache();
  void drainChannel();
  void drainAsync();
  void checkTimers();

  int rank_;
  uint64_t nonce_ = 0;
  uint32_t psn_seed_ = 0;
  VerbsConfig config_;
  PortSelection port_;
  ibv_device_attr attr_{};
  uint32_t max_inline_ = 0;
  Capabilities caps_;
  GpuDirectProbe gpudirect_;
  DeviceMemory* device_memory_ = nullptr;
  GpuDirectMode gpudirect_mode_ = GpuDirectMode::kAuto;
  bool gpudirect_failed_ = false;
  StagingPool staging_;  // declared before cache_: freed after its registrations are gone
  // Destruction order (reverse of declaration): cache, PD, channel, device.
  ContextPtr device_;
  ChannelPtr channel_;
  PdPtr pd_;
  std::unique_ptr<PdRegistrar> registrar_;
  std::unique_ptr<CacheBoard> board_;  // before cache_: the cache writes into it
  std::unique_ptr<RegistrationCache> cache_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::vector<VerbsEndpoint*> endpoints_;
  std::set<int> peers_;
  uint64_t polls_ = 0;
  std::atomic<uint64_t> next_region_id_{1};
  std::mutex connect_mutex_;
  std::map<int, uint32_t> next_seq_;
  std::map<std::pair<int, uint32_t>, std::unique_ptr<Channel>> accepted_;
  int64_t inbox_next_ = 1;
  bool published_ = false;
  OpPool ops_;
  detail::ProgressEngine engine_;
  detail::RequestPool pool_;
};

using StatePtr = std::shared_ptr<VerbsState>;

// FIFO on a growing power-of-two ring: after warm-up, push / pop allocate nothing (a
// std::deque allocates and frees a block every few dozen operations).
template <typename T>
class Ring {
 public:
  bool empty() const { return head_ == tail_; }
  size_t size() const { return static_cast<size_t>(tail_ - head_); }
  T& front() { return buf_[head_ & (buf_.size() - 1)]; }
  void pop_front() { ++head_; }
  void clear() { head_ = tail_ = 0; }
  void push_back(T v) {
    if (size() == buf_.size()) grow();
    buf_[tail_++ & (buf_.size() - 1)] = std::move(v);
  }

 private:
  void grow() {
    std::vector<T> bigger(buf_.empty() ? 16 : 2 * buf_.size());
    for (size_t i = 0; i < size(); ++i)
      bigger[i] = std::move(buf_[(head_ + i) & (buf_.size() - 1)]);
    tail_ = size();
    head_ = 0;
    buf_ = std::move(bigger);
  }
  std::vector<T> buf_;
  uint64_t head_ = 0;
  uint64_t tail_ = 0;
};

// An arrived message nobody has posted a receive for yet.
struct Unexpected {
  MsgType type = MsgType::kEager;
  Tag tag = 0;
  size_t length = 0;
  std::vector<char> data;  // eager payload
  RndvBody rts{};          // rendezvous request
};

// Send queue bookkeeping: what a posted WR holds until its completion (or a later one).
struct SqEntry {
  VerbsOp* op = nullptr;  // the op this WR advances (when it or a later signaled WR retires)
  uint32_t op_gen = 0;
  int32_t bounce = -1;  // send buffer to recycle
  bool keepalive = false;
  ibv_wr_opcode opcode = IBV_WR_SEND;  // for error messages (a failed wc has no opcode)
};

// How an operation moves a device buffer (VerbsEndpoint::deviceUse): a GPUDirect
// registration, or a staging buffer.
struct DeviceUse {
  RegEntry* reg = nullptr;
  char* staged = nullptr;
  size_t staged_cap = 0;
};

// A message SEND built by prepareMessage (inline header lives here until it is posted).
struct PreparedSend {
  ibv_send_wr wr{};
  ibv_sge sge[2]{};
  alignas(8) unsigned char head[sizeof(MsgHeader) + 32]{};
  int32_t bounce = -1;
};

class VerbsEndpoint final : public Endpoint {
 public:
  VerbsEndpoint(StatePtr state, int peer, std::unique_ptr<Channel> channel, std::string how);
  ~VerbsEndpoint() override;

  int peerRank() const override { return peer_; }
  std::string describe() const override;
  Status health() const override;

  Result<Request> send(const void* buffer, size_t length, Tag tag) override;
  Result<Request> recv(void* buffer, size_t length, Tag tag, Tag mask) override;
  Result<Request> put(const void* source, size_t length, const RemoteKey& key,
                      uint64_t offset) override;
  Status releaseMapping(const RemoteKey&) override { return Status::ok(); }
  Result<void*> mappedAddress(const RemoteKey& key, uint64_t offset, size_t length) override;
  Result<Request> get(void* destination, size_t length, const RemoteKey& key,
                      uint64_t offset) override;
  Result<Request> putNotify(const void* source, size_t length, const RemoteKey& key,
                            uint64_t offset, uint64_t immediate) override;
  Result<Request> recvNotify() override;
  Result<Request> fetchAdd(const RemoteKey& key, uint64_t offset, uint64_t addend) override;
  Result<Request> compareSwap(const RemoteKey& key, uint64_t offset, uint64_t expected,
                              uint64_t desired) override;
  Result<Request> flush() override;
  Status close(Deadline deadline) override;

  // Engine side (lock held).
  unsigned poll();
  void arm();
  void checkTimers(Deadline::Clock::time_point now);
  // A QP async event (fatal error): fails the endpoint.
  void onAsyncError(std::string_view what);
  ibv_qp* qp() const { return channel_->qp(); }

  // Messages this endpoint sent and received, for tests and diagnostics (takes the engine
  // lock: not for callers that hold it). Sent: SENDs (WRITE with immediate not counted);
  // received: every receive completion (put notifications included).
  struct Counters {
    uint64_t messages_sent = 0;  // every SEND (credit-only ones included)
    uint64_t credit_messages_sent = 0;
    uint64_t messages_received = 0;  // every receive completion (credit-only ones included)
    uint64_t credit_messages_received = 0;
  };
  Counters counters() const;

 private:
  // ---- common (verbs_endpoint.cc)
  Status usable(OpKind op) const;
  Status argError(OpKind op, std::string_view what) const;
  VerbsOp* newOp(OpType type, OpKind kind, bool with_slot);
  void freeOp(VerbsOp* op);
  Result<Request> handleFor(VerbsOp* op);
  void completeOp(VerbsOp* op, Status status);
  void enqueue(VerbsOp* op);
  void pump();
  bool tryPost(VerbsOp* op);
  void fail(Status why);
  void failAll(Status why);
  uint32_t sqFree() const { return sq_depth_ - static_cast<uint32_t>(sq_posted_ - sq_retired_); }
  // Posts one WR (chain) and records it; false with the connection failed on error.
  // deferrable: op's completion may come from a later signaled WR (puts and gets).
  bool postSend(ibv_send_wr* wr, VerbsOp* op, int32_t bounce, bool keepalive = false,
                bool deferrable = false);
  // Posts a signaled probe when operations wait behind no signaled WR (see kSignalEvery).
  void kickDeferred();
  bool wantSignal(bool must);
  uint16_t takeCredits(uint32_t max);
  bool haveCredit(MsgType type) const;
  // Builds and posts a message (header + body + payload) when credits, the send queue and
  // (for non-inline) a bounce buffer allow it; `op` gets the completion when signaled.
  // payload_lkey != 0: the payload is registered memory, sent from where it is (zero-copy:
  // it must stay untouched until the WR completes, so `op` must be set).
  bool postMessage(MsgType type, Tag tag, const void* body, uint32_t body_len, const void* payload,
                   uint32_t payload_len, VerbsOp* op, uint32_t payload_lkey = 0);
  // The SEND of a message (credit and bounce buffer taken), for chains; false when credits
  // or bounce buffers are short.
  bool prepareMessage(MsgType type, Tag tag, const void* body, uint32_t body_len,
                      const void* payload, uint32_t payload_len, PreparedSend& out,
                      uint32_t payload_lkey = 0);
  // An eager send queued as op (copied, or zero-copy when op->reg is set).
  bool postEager(VerbsOp* op);
  void sendControl(MsgType type, const void* body, uint32_t body_len);
  void maybeReturnCredits();

  // ---- device buffers (verbs_staging.cc)
  // GPUDirect (zero_copy, when this op would be zero-copy for host memory) or a staging
  // buffer (copy_in: filled from the device buffer now); errors per WEFT_GPUDIRECT.
  Result<DeviceUse> deviceUse(OpKind kind, const void* buffer, size_t length, bool zero_copy,
                              bool copy_in);
  void dropDeviceUse(DeviceUse& use);
  // op->local is the caller's device buffer; copy_out: copy the staged bytes to it on success.
  void attachDeviceUse(VerbsOp* op, const DeviceUse& use, bool copy_out);
  // completeOp's part for staged ops: the copy to the device, the staging buffer back.
  Status finishStaged(VerbsOp* op, Status status);
  // completeOp's part for GPUDirect ops: the write flush after a receive / get.
  Status finishDevice(VerbsOp* op, Status status);
  Result<Request> sendDevice(const void* buffer, size_t length, Tag tag);
  Result<Request> startSend(VerbsOp* op, bool eager);
  // A non-empty buffer in device memory (one branch without a GPU runtime).
  bool isDeviceBuffer(const void* p, size_t length) const {
    return dev_ != nullptr && length > 0 && p != nullptr && dev_->contains(p);
  }

  // ---- receive side (verbs_recv.cc)
  unsigned pollCq();
  void onSendCompletion(const ibv_wc& wc);
  bool handleMessage(const char* data, uint32_t bytes);
  void onCompactEager(const char* data, uint32_t bytes, uint32_t imm);
  void onEager(const MsgHeader& h, const char* payload);
  void onRts(const MsgHeader& h, const RndvBody& rts);
  void onCts(const CtsBody& cts);
  void onFin(const FinBody& fin);
  void onNotify(uint64_t value);
  VerbsOp* matchRecv(Tag tag);
  void unlinkRecv(VerbsOp* op);
  void deliverEager(VerbsOp* op, Tag tag, const char* data, size_t length);
  void startRndvRecv(VerbsOp* op, Tag tag, const RndvBody& rts);
  void opDone(VerbsOp* op);
  void rmaDone(VerbsOp* op, Status status);
  void checkFlushes();
  Status truncation(const VerbsOp* op, size_t sent) const;
  Status protocolError(std::string_view what) const;

  // ---- one-sided (verbs_rma.cc)
  // Validates key + [offset, offset + length) and returns its rkey; the key checked last
  // is answered without checking it again.
  Result<uint32_t> remoteAccess(OpKind op, const RemoteKey& key, uint64_t offset, size_t length);
  Result<uint32_t> checkKey(OpKind op, const RemoteKey& key, uint64_t offset, size_t length);
  Result<Request> postRma(OpType type, OpKind kind, ibv_wr_opcode opcode, char* local,
                          size_t length, const RemoteKey& key, uint64_t offset, uint64_t imm);
  Result<Request> postAtomic(OpKind kind, ibv_wr_opcode opcode, const RemoteKey& key,
                             uint64_t offset, uint64_t operand, uint64_t compare);
  bool postRmaChunks(VerbsOp* op);
  bool postAtomicOp(VerbsOp* op);
  bool postNotifyOp(VerbsOp* op);
  bool postRead(VerbsOp* op);
  bool postWriteAndFin(VerbsOp* op);
  // Ends a rendezvous recv with a FIN of fin_status to the sender: the recv completes (OK,
  // or with `error`) once the FIN is posted, not before (Stage::kFinToPost).
  void finishRecvWithFin(VerbsOp* op, uint32_t fin_status, Status error);
  // Posts that FIN, then completes the recv; false when credits / a bounce buffer / the send
  // queue are short (or the connection failed).
  bool postRecvFin(VerbsOp* op);
  bool postKeepalive();

  StatePtr state_;
  DeviceMemory* dev_ = nullptr;  // state_->deviceMemory()
  detail::RequestPool& pool_;
  detail::ProgressEngine& engine_;
  OpPool& ops_;
  std::unique_ptr<Channel> channel_;
  int peer_;
  std::string how_;
  std::string name_;  // describe(), computed once
  bool closed_ = false;
  Status failure_;             // sticky
  detail::RequestList slots_;  // every pending Request of this endpoint
  VerbsOp* all_ = nullptr;     // every live op (failAll walks it)
  // Send queue.
  uint32_t sq_depth_ = 0;
  uint64_t sq_posted_ = 0;
  uint64_t sq_retired_ = 0;
  uint32_t unsignaled_ = 0;
  uint64_t signaled_end_ = 0;  // sequence number + 1 of the last signaled WR
  uint32_t deferred_ = 0;      // ops on unsignaled WRs posted after it
  uint32_t busy_polls_ = 0;    // polls with completions while deferred_ > 0 (see poll())
  std::vector<std::pair<VerbsOp*, uint32_t>> retired_;  // onSendCompletion's scratch: op, gen
  std::vector<SqEntry> sq_;
  std::vector<uint32_t> free_bounce_;
  std::vector<uint32_t> free_atomic_;
  Ring<VerbsOp*> queue_;  // the pending queue: posted in order when resources allow
  // Credits.
  uint32_t credits_ = 0;            // receive buffers the peer holds for us
  uint32_t owed_ = 0;               // buffers re-posted for the peer, not yet announced
  uint32_t owed_quiet_ = 0;         // of owed_: buffers that held credit-only messages
  uint32_t credit_threshold_ = 1;   // owed_ - owed_quiet_ that sends a credit-only message
  uint32_t quiet_threshold_ = 2;    // owed_ that sends one (see maybeReturnCredits)
  uint32_t batch_credit_msgs_ = 0;  // credit-only messages in pollCq's current batch
  Counters counters_;
  uint32_t eager_max_ = 0;           // largest eager payload
  uint32_t inline_max_ = 0;          // largest inline message (header included)
  uint32_t zcopy_min_ = UINT32_MAX;  // smallest zero-copy eager payload (see kEagerZcopyMin)
  size_t max_wr_bytes_ = 0;          // largest single RDMA WR
  // Matching.
  VerbsOp* recvs_head_ = nullptr;
  VerbsOp* recvs_tail_ = nullptr;
  std::deque<Unexpected> unexpected_;
  Ring<VerbsOp*> notify_waiters_;
  Ring<uint64_t> notifications_;
  Ring<VerbsOp*> flushes_;
  struct CheckedKey {
    uint64_t region_id = 0;
    uint64_t checksum = 0;
    uint64_t address = 0;
    uint64_t length = 0;
    int32_t owner = -1;
    uint32_t rkey = 0;
    bool valid = false;
  };
  CheckedKey last_key_;  // remoteAccess's last checked key
  uint64_t rma_started_ = 0;
  uint64_t rma_finished_ = 0;
  std::vector<ibv_recv_wr> repost_wrs_;
  std::vector<ibv_sge> repost_sges_;
  // Keepalive.
  Deadline::Clock::time_point last_heard_;
  bool heard_ = false;  // a completion arrived since the last timer check
  bool keepalive_in_flight_ = false;
};

class VerbsMemoryRegion final : public MemoryRegion {
 public:
  static Result<std::unique_ptr<MemoryRegion>> create(StatePtr state, void* address, size_t length,
                                                      MemoryType type);
  ~VerbsMemoryRegion() override;
  Status deregister() override;

 private:
  VerbsMemoryRegion(StatePtr state, void* address, size_t length, MemoryType type)
      : MemoryRegion(address, length, type), state_(std::move(state)) {}
  StatePtr state_;
  MrPtr mr_;
};

// Store rendezvous (verbs_connect.cc).
Result<std::unique_ptr<Endpoint>> connectThroughStore(const StatePtr& state, Store& store,
                                                      int peer_rank, Deadline deadline);
Status publishAddress(VerbsState& state, Store& store);

// The backend entry point used by openContext().
Result<std::unique_ptr<Context>> openVerbsContext(const ContextOptions& options);
// The registration cache counters of a verbs Context (verbs_info.h).
RegCacheStats cacheStatsOf(const Context& context, bool& is_verbs);

}  // namespace weft::transport::verbs
