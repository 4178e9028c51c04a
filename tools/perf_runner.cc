#include "tools/perf_runner.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "tools/alloc_count.h"

namespace weft::perf {

using transport::Request;

namespace {

// Tags of the benchmark's messages (caller bits of the transport's Tag).
constexpr transport::Tag kTagData = 1;
constexpr transport::Tag kTagSync = 2;  // exchange(): barrier + one word
constexpr transport::Tag kTagAck = 3;   // send_bw: the receiver got everything
constexpr transport::Tag kTagDone = 4;  // put / get: the initiator is done, stop serving

// Spins between deadline / peer-health checks (each spin is one progress call).
constexpr uint32_t kCheckEvery = 0xffff;

// Sequence byte of put_lat iteration i: 1..255, never 0 (the cleared buffer) and never
// equal for consecutive iterations.
char seqByte(int64_t i) {
  return static_cast<char>(i % 255 + 1);
}

char patternByte(int rank, size_t n, size_t j) {
  return static_cast<char>((j * 7 + static_cast<size_t>(rank) * 101 + n) & 0xff);
}

}  // namespace

// An anonymous page-aligned mapping, touched once so that no page fault lands in a timed
// loop.
class PerfRunner::Mapping {
 public:
  // `write`: zero-fill it now, so that every page is a real page of this process.
  Mapping(size_t size, bool write) : size_(size) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      throw PerfError(strCat("mmap of ", size, " bytes failed: ", errnoString(errno)));
    }
    data_ = static_cast<char*>(p);
    if (write) std::memset(data_, 0, size);
  }
  ~Mapping() { ::munmap(data_, size_); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  char* data() const { return data_; }

 private:
  size_t size_;
  char* data_ = nullptr;
};

PerfRunner::PerfRunner(const Options& options, int rank)
    : options_(options), rank_(rank), peer_(1 - rank) {}

PerfRunner::~PerfRunner() = default;

std::unique_ptr<PerfRunner> PerfRunner::create(const Options& options, World& world) {
  if (world.info.size != 2) {
    throw PerfError(strCat("weft-perf needs exactly 2 ranks, this job has ", world.info.size,
                           " (launcher ", world.info.launcher,
                           "); run it as: weft-run -n 2 -- weft-perf [options]"));
  }
  std::unique_ptr<PerfRunner> r(new PerfRunner(options, world.info.rank));
  r->deadline_ = Deadline::afterSeconds(options.timeout_s);
  r->connect(world);
  r->allocate(*world.store);
  return r;
}

void PerfRunner::fail(const std::string& what, const Status& st) const {
  throw PerfError(strCat(what, ": ", st.toString()));
}

void PerfRunner::connect(World& world) {
  transport::ContextOptions co;
  co.rank = rank_;
  co.backend_config = options_.backend_config;
  auto ctx = transport::openContext(options_.backend, co);
  if (!ctx.isOk()) fail(strCat("opening the ", options_.backend, " backend"), ctx.status());
  ctx_ = std::move(ctx).value();
  auto ep = ctx_->connect(*world.store, peer_, deadline_);
  if (!ep.isOk()) fail(strCat("connecting to rank ", peer_), ep.status());
  ep_ = std::move(ep).value();
}

void PerfRunner::allocate(Store& store) {
  size_t largest = 64;
  for (size_t n : options_.sizes) largest = std::max(largest, n);
  buffer_size_ = (largest + 4095) / 4096 * 4096;
  if (options_.transport_memory) {
    // Zero-filled and owned by the regions.
    auto smr = ctx_->allocateMemory(buffer_size_);
    if (!smr.isOk()) fail("allocating the send buffer", smr.status());
    send_mr_ = std::move(smr).value();
    auto rmr = ctx_->allocateMemory(buffer_size_);
    if (!rmr.isOk()) fail("allocating the receive buffer", rmr.status());
    recv_mr_ = std::move(rmr).value();
    send_buf_ = static_cast<char*>(send_mr_->address());
    recv_buf_ = static_cast<char*>(recv_mr_->address());
  } else {
    send_map_ = std::make_unique<Mapping>(buffer_size_, !options_.untouched_send);
    recv_map_ = std::make_unique<Mapping>(buffer_size_, true);
    send_buf_ = send_map_->data();
    recv_buf_ = recv_map_->data();
    auto smr = ctx_->registerMemory(send_buf_, buffer_size_);
    if (!smr.isOk()) fail("registering the send buffer", smr.status());
    send_mr_ = std::move(smr).value();
    auto rmr = ctx_->registerMemory(recv_buf_, buffer_size_);
    if (!rmr.isOk()) fail("registering the receive buffer", rmr.status());
    recv_mr_ = std::move(rmr).value();
  }

  auto publish = [&](const char* which, const transport::MemoryRegion& mr) {
    Status st = store.set(strCat("weft-perf/key/", rank_, "/", which), mr.remoteKey().serialize());
    if (!st.isOk()) fail("publishing a RemoteKey", st);
  };
  auto fetch = [&](const char* which) {
    const std::string key = strCat("weft-perf/key/", peer_, "/", which);
    auto bytes = store.get(key, deadline_);
    if (!bytes.isOk()) fail(strCat("reading ", key), bytes.status());
    auto rk = transport::RemoteKey::deserialize(*bytes);
    if (!rk.isOk()) fail(strCat("decoding ", key), rk.status());
    return std::move(rk).value();
  };
  publish("send", *send_mr_);
  publish("recv", *recv_mr_);
  peer_send_key_ = fetch("send");
  peer_recv_key_ = fetch("recv");
  ring_.resize(static_cast<size_t>(options_.window));
  ring2_.resize(static_cast<size_t>(options_.window));
}

void PerfRunner::checkStalled() const {
  if (deadline_.expired()) {
    throw PerfError(strCat("rank ", rank_, ": no progress with rank ", peer_, " within --timeout ",
                           options_.timeout_s, " s"));
  }
  Status health = ep_->health();
  if (!health.isOk()) fail("the endpoint failed", health);
}

template <typename PostFn>
Request PerfRunner::post(PostFn&& post_fn) {
  for (uint32_t spins = 1;; ++spins) {
    Result<Request> r = post_fn();
    if (r.isOk()) [[likely]]
      return std::move(r).value();
    if (r.status().code() != StatusCode::kNoResource) fail("posting an operation", r.status());
    ctx_->progress();  // back-pressure: let earlier requests finish
    if ((spins & kCheckEvery) == 0) checkStalled();
  }
}

template <typename Pred>
void PerfRunner::spinUntil(Pred&& done) {
  uint32_t spins = 0;
  while (!done()) {
    ctx_->progress();
    if ((++spins & kCheckEvery) == 0) [[unlikely]]
      checkStalled();
  }
}

void PerfRunner::checkOk(const Request& r, const char* what) const {
  Status st = r.status();
  if (!st.isOk()) [[unlikely]]
    fail(strCat(what, " (rank ", rank_, " <-> rank ", peer_, ")"), st);
}

void PerfRunner::waitOk(Request& r, const char* what) {
  spinUntil([&] { return r.done(); });
  checkOk(r, what);
}

void PerfRunner::drain(std::vector<Request>& ring, const char* what) {
  for (Request& r : ring) {
    if (!r.valid()) continue;
    waitOk(r, what);
    r = Request();
  }
}

uint64_t PerfRunner::exchange(uint64_t mine) {
  uint64_t in = 0;
  uint64_t out = mine;
  Request r = post([&] { return ep_->recv(&in, sizeof(in), kTagSync); });
  Request s = post([&] { return ep_->send(&out, sizeof(out), kTagSync); });
  waitOk(s, "sync send");
  waitOk(r, "sync recv");
  return in;
}

Request PerfRunner::postOp(PerfOp op, size_t n) {
  switch (op) {
    case PerfOp::kSend: return post([&] { return ep_->send(send_buf_, n, kTagData); });
    case PerfOp::kPut: return post([&] { return ep_->put(send_buf_, n, peer_recv_key_, 0); });
    case PerfOp::kGet: return post([&] { return ep_->get(recv_buf_, n, peer_send_key_, 0); });
  }
  throw PerfError("internal: unknown operation");
}

PerfRunner::PhaseTime PerfRunner::sendLatency(size_t n, int64_t count, uint64_t* samples) {
  PhaseTime t;
  if (rank_ != 0) {
    for (int64_t i = 0; i < count; ++i) {
      Request r = post([&] { return ep_->recv(recv_buf_, n, kTagData); });
      spinUntil([&] { return r.done(); });
      Request s = post([&] { return ep_->send(send_buf_, n, kTagData); });
      checkOk(r, "send_lat recv");  // after the reply is out: off the measured path
      waitOk(s, "send_lat send");
    }
    return t;
  }
  // Like ucx_perftest: send first, then post the receive while the ping travels. Samples
  // run from one iteration's start to the next, so the loop's own work counts too.
  // The previous receive is checked and released after the next ping is out.
  const uint64_t start = TickClock::now();
  uint64_t t0 = start;
  Request r;
  for (int64_t i = 0; i < count; ++i) {
    Request s = post([&] { return ep_->send(send_buf_, n, kTagData); });
    if (r.valid()) checkOk(r, "send_lat recv");
    r = post([&] { return ep_->recv(recv_buf_, n, kTagData); });
    spinUntil([&] { return r.done() && s.done(); });
    checkOk(s, "send_lat send");
    const uint64_t t1 = TickClock::now();
    if (samples != nullptr) samples[i] = t1 - t0;
    t0 = t1;
  }
  if (r.valid()) checkOk(r, "send_lat recv");
  t.ticks = t0 - start;
  t.samples = samples != nullptr ? static_cast<size_t>(count) : 0;
  return t;
}

PerfRunner::PhaseTime PerfRunner::putLatency(size_t n, int64_t count, int64_t first_seq,
                                             uint64_t* samples) {
  PhaseTime t;
  const char* flag = recv_buf_ + n - 1;  // the peer's put writes the sequence byte here
  auto arrived = [flag](char seq) { return __atomic_load_n(flag, __ATOMIC_ACQUIRE) == seq; };
  // Where the backend needs no target progress (verbs: the NIC writes the flag), wait for
  // the peer's put as ib_write_lat does: polling the flag only, no progress calls between
  // the reads (each one polls completion queues and would delay seeing the flag).
  const bool memory_poll = !ctx_->capabilities().rma_needs_target_progress;
  auto waitArrival = [&](char seq) {
    if (!memory_poll) {
      spinUntil([&] { return arrived(seq); });
      return;
    }
    for (uint32_t spins = 1; !arrived(seq); ++spins) {
      if ((spins & kCheckEvery) == 0) [[unlikely]]
        checkStalled();
    }
  };
  const uint64_t start = TickClock::now();
  uint64_t t0 = start;
  for (int64_t i = 0; i < count; ++i) {
    const char seq = seqByte(first_seq + i);
    if (rank_ != 0) {
      waitArrival(seq);
      send_buf_[n - 1] = seq;
      Request p = postOp(PerfOp::kPut, n);
      waitOk(p, "put_lat put");  // the source buffer is rewritten next iteration
      continue;
    }
    send_buf_[n - 1] = seq;
    Request p = postOp(PerfOp::kPut, n);
    waitOk(p, "put_lat put");  // as ib_write_lat: the own completion, then the peer's put
    waitArrival(seq);
    const uint64_t t1 = TickClock::now();
    if (samples != nullptr) samples[i] = t1 - t0;
    t0 = t1;
  }
  t.ticks = t0 - start;
  t.samples = rank_ == 0 && samples != nullptr ? static_cast<size_t>(count) : 0;
  return t;
}

// Rank 0 of a unidirectional test: a sliding window of `window` operations; a sample per
// window. Ends when the data is at the target: the receiver's ack (send), flush (put), or
// the last get's completion.
PerfRunner::PhaseTime PerfRunner::streamInitiator(PerfOp op, size_t n, int64_t count,
                                                  uint64_t* samples) {
  PhaseTime t;
  const size_t window = ring_.size();
  Request ack;
  if (op == PerfOp::kSend) ack = post([&] { return ep_->recv(nullptr, 0, kTagAck); });
  const uint64_t t0 = TickClock::now();
  uint64_t last = t0;
  size_t slot = 0;
  for (int64_t i = 0; i < count; ++i) {
    Request& r = ring_[slot];
    if (r.valid()) {
      spinUntil([&] { return r.done(); });
      checkOk(r, "stream operation");
    }
    r = postOp(op, n);
    if (++slot == window) {
      slot = 0;
      if (samples != nullptr) {
        const uint64_t now = TickClock::now();
        samples[t.samples++] = now - last;
        last = now;
      }
    }
  }
  drain(ring_, "stream operation");
  if (op == PerfOp::kSend) waitOk(ack, "send_bw ack");
  if (op == PerfOp::kPut) {
    Request f = post([&] { return ep_->flush(); });
    waitOk(f, "put_bw flush");
  }
  t.ticks = TickClock::now() - t0;
  if (op != PerfOp::kSend) {
    Request done = post([&] { return ep_->send(nullptr, 0, kTagDone); });
    waitOk(done, "done message");
  }
  return t;
}

// Rank 1 of a unidirectional test: receives with the same window (send), or drives
// progress for the initiator's one-sided operations until it says it is done.
void PerfRunner::streamResponder(PerfOp op, size_t n, int64_t count) {
  if (op != PerfOp::kSend) {
    Request done = post([&] { return ep_->recv(nullptr, 0, kTagDone); });
    if (ctx_->capabilities().rma_needs_target_progress) {
      waitOk(done, "done message");  // the peer's puts / gets need this rank's progress
      return;
    }
    // Nothing to do until the done message: sleep in a blocking wait, as perftest's passive
    // side does (a spinning target takes a core the initiator and the NIC may need: on
    // soft-RoCE both share the CPUs).
    const Status st = done.wait(deadline_);
    if (!st.isOk()) fail(strCat("done message (rank ", rank_, " <-> rank ", peer_, ")"), st);
    return;
  }
  const size_t window = ring_.size();
  size_t slot = 0;
  for (int64_t i = 0; i < count; ++i) {
    Request& r = ring_[slot];
    if (r.valid()) {
      spinUntil([&] { return r.done(); });
      checkOk(r, "send_bw recv");
    }
    r = post([&] { return ep_->recv(recv_buf_, n, kTagData); });
    if (++slot == window) slot = 0;
  }
  drain(ring_, "send_bw recv");
  Request ack = post([&] { return ep_->send(nullptr, 0, kTagAck); });
  waitOk(ack, "send_bw ack");
}

// Both ranks at once (bibw): each keeps `window` operations in flight towards the other
// (and `window` receives posted for send); ends with a sync so that both are complete.
PerfRunner::PhaseTime PerfRunner::streamBoth(PerfOp op, size_t n, int64_t count,
                                             uint64_t* samples) {
  PhaseTime t;
  const size_t window = ring_.size();
  const bool send = op == PerfOp::kSend;
  auto postRecv = [&] { return post([&] { return ep_->recv(recv_buf_, n, kTagData); }); };
  for (size_t j = 0; send && j < window && static_cast<int64_t>(j) < count; ++j) {
    ring2_[j] = postRecv();
  }
  const uint64_t t0 = TickClock::now();
  uint64_t last = t0;
  size_t slot = 0;
  for (int64_t i = 0; i < count; ++i) {
    Request& r = ring_[slot];
    if (r.valid()) {
      spinUntil([&] { return r.done(); });
      checkOk(r, "bibw operation");
    }
    r = postOp(op, n);
    if (send) {
      Request& in = ring2_[slot];
      waitOk(in, "send_bibw recv");
      in = i + static_cast<int64_t>(window) < count ? postRecv() : Request();
    }
    if (++slot == window) {
      slot = 0;
      if (samples != nullptr) {
        const uint64_t now = TickClock::now();
        samples[t.samples++] = now - last;
        last = now;
      }
    }
  }
  drain(ring_, "bibw operation");
  if (op == PerfOp::kPut) {
    Request f = post([&] { return ep_->flush(); });
    waitOk(f, "put_bibw flush");
  }
  exchange(0);
  t.ticks = TickClock::now() - t0;
  return t;
}

PerfRunner::PhaseTime PerfRunner::phase(const TestSpec& test, size_t n, int64_t count,
                                        int64_t seq0, uint64_t* samples) {
  if (test.pattern == PerfPattern::kLatency) {
    return test.op == PerfOp::kSend ? sendLatency(n, count, samples)
                                    : putLatency(n, count, seq0, samples);
  }
  if (test.pattern == PerfPattern::kBi) return streamBoth(test.op, n, count, samples);
  if (rank_ == 0) return streamInitiator(test.op, n, count, samples);
  streamResponder(test.op, n, count);
  return PhaseTime{};
}

void PerfRunner::prepareBuffers(size_t n) {
  if (options_.validate) {
    for (size_t j = 0; j < n; ++j) send_buf_[j] = patternByte(rank_, n, j);
  }
  std::memset(recv_buf_, 0, n);
}

// True when this rank's receive buffer holds what the peer sent (or this rank read).
bool PerfRunner::checkData(const TestSpec& test, size_t n) const {
  const bool uni = test.pattern == PerfPattern::kUni;
  if (uni && test.op == PerfOp::kGet && rank_ != 0) return true;  // the target reads nothing
  if (uni && test.op != PerfOp::kGet && rank_ == 0) return true;  // rank 0 only sent
  size_t check = n;
  if (test.pattern == PerfPattern::kLatency && test.op == PerfOp::kPut && n > 0) {
    check = n - 1;  // the last byte is the sequence number
  }
  for (size_t j = 0; j < check; ++j) {
    if (recv_buf_[j] != patternByte(peer_, n, j)) return false;
  }
  return true;
}

Measurement PerfRunner::run(const TestSpec& test, size_t bytes) {
  Measurement m;
  m.test = &test;
  m.bytes = bytes;
  m.iters = options_.iters > 0 ? options_.iters : autoIterations(test, bytes);
  m.warmup = options_.warmup >= 0 ? options_.warmup : autoWarmup(test, m.iters);
  const bool latency = test.pattern == PerfPattern::kLatency;
  m.window = latency ? 0 : static_cast<int64_t>(ring_.size());
  deadline_ = Deadline::afterSeconds(options_.timeout_s);
  prepareBuffers(bytes);
  const size_t need = latency ? static_cast<size_t>(m.iters)
                              : static_cast<size_t>(m.iters) / ring_.size() + 1;
  samples_.resize(need);  // before the timed phase: the loops allocate nothing
  exchange(0);
  if (m.warmup > 0) phase(test, bytes, m.warmup, 0, nullptr);
  exchange(0);
  if (options_.markers) ::getppid();  // strace marker: the timed phase starts
  alloc::startAllocCount();
  PhaseTime t = phase(test, bytes, m.iters, m.warmup, samples_.data());
  const uint64_t allocs = alloc::stopAllocCount().total;
  if (options_.markers) ::getppid();  // ... and ends
  if (alloc::allocCountAvailable()) m.allocs = static_cast<int64_t>(allocs);
  const uint64_t ok = checkData(test, bytes) ? 1 : 0;
  const uint64_t peer_ok = exchange(ok);
  if (options_.validate) m.validated = ok != 0 && peer_ok != 0 ? 1 : 0;
  if (rank_ != 0) return m;
  std::vector<uint64_t> s(samples_.begin(), samples_.begin() + static_cast<ptrdiff_t>(t.samples));
  if (s.empty()) s.push_back(t.ticks);  // fewer iterations than one window
  const double per_sample = latency ? 2.0 : s.size() == 1 && t.samples == 0
                                                ? static_cast<double>(m.iters)
                                                : static_cast<double>(ring_.size());
  const double both = test.pattern == PerfPattern::kBi ? 2.0 : 1.0;
  const double messages = static_cast<double>(m.iters) * (latency ? 2.0 : both);
  summarize(s, per_sample * both, static_cast<double>(t.ticks), messages,
            static_cast<double>(bytes), m);
  return m;
}

void PerfRunner::finish() {
  exchange(0);
  Status st = ep_->close(Deadline::afterSeconds(options_.timeout_s));
  if (!st.isOk()) fail("closing the endpoint", st);
}

}  // namespace weft::perf
