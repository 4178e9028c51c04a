// PerfRunner: the two ranks of weft-perf, connected through the store, running one
// (test, message size) at a time.
//
// Contract:
// - Collective: both ranks call create() and then run() with the same arguments in the
//   same order; rank 0 is the initiator (sender / put / get side), rank 1 the responder.
// - Errors throw PerfError (tools may throw) naming the rank, the test, the size and the
//   transport's Status; every wait is bounded by Options::timeout_s.
// - Hot loops allocate nothing: request rings and sample arrays are sized before the timed
//   phase, waits spin on Request::done() and Context::progress() directly.
// - One thread. The runner owns the Context, the Endpoint, the two message buffers
//   (each as large as the largest size, page-aligned, registered for put / get) and the
//   peer's RemoteKeys.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/bootstrap.h"
#include "common/deadline.h"
#include "transport/api/context.h"
#include "tools/perf_options.h"
#include "tools/perf_report.h"

namespace weft::perf {

class PerfError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class PerfRunner {
 public:
  // Opens the backend, connects to the other rank through world.store, allocates and
  // registers the buffers and exchanges their keys.
  static std::unique_ptr<PerfRunner> create(const Options& options, World& world);
  ~PerfRunner();
  PerfRunner(const PerfRunner&) = delete;
  PerfRunner& operator=(const PerfRunner&) = delete;

  // Runs one test at one size (warm-up, then the timed phase). The returned statistics are
  // rank 0's; rank 1 returns the same shape with only validated set.
  Measurement run(const TestSpec& test, size_t bytes);
  // Settles with the peer before the endpoint goes away (both ranks call it last).
  void finish();

  int rank() const { return rank_; }
  const transport::Capabilities& capabilities() const { return ctx_->capabilities(); }

 private:
  class Mapping;
  struct PhaseTime {
    uint64_t ticks = 0;    // the whole timed phase
    size_t samples = 0;    // entries written to the sample array
  };

  PerfRunner(const Options& options, int rank);
  void connect(World& world);
  void allocate(Store& store);

  // Blocking helpers (bounded by the test deadline).
  [[noreturn]] void fail(const std::string& what, const Status& st) const;
  template <typename Post>
  transport::Request post(Post&& post_fn);
  template <typename Pred>
  void spinUntil(Pred&& done);
  void waitOk(transport::Request& r, const char* what);
  void checkOk(const transport::Request& r, const char* what) const;
  // Waits for every request of a window and empties it.
  void drain(std::vector<transport::Request>& ring, const char* what);
  // Throws when the deadline passed or the endpoint failed (called every many spins).
  void checkStalled() const;
  // Both ranks: exchange a word (a barrier that also carries a value).
  uint64_t exchange(uint64_t mine);

  // The test loops: `count` iterations; rank 0 records a sample per round trip (latency)
  // or per window (bandwidth) into `samples` when it is not null.
  PhaseTime sendLatency(size_t n, int64_t count, uint64_t* samples);
  PhaseTime putLatency(size_t n, int64_t count, int64_t first_seq, uint64_t* samples);
  PhaseTime streamInitiator(PerfOp op, size_t n, int64_t count, uint64_t* samples);
  void streamResponder(PerfOp op, size_t n, int64_t count);
  PhaseTime streamBoth(PerfOp op, size_t n, int64_t count, uint64_t* samples);
  // Posts one data operation of the initiator: send, put into the peer's receive buffer,
  // or get from the peer's send buffer.
  transport::Request postOp(PerfOp op, size_t n);

  PhaseTime phase(const TestSpec& test, size_t n, int64_t count, int64_t seq0, uint64_t* samples);
  void prepareBuffers(size_t n);
  bool checkData(const TestSpec& test, size_t n) const;

  Options options_;
  int rank_;
  int peer_;
  Deadline deadline_ = Deadline::never();
  std::unique_ptr<transport::Context> ctx_;
  std::unique_ptr<transport::Endpoint> ep_;
  size_t buffer_size_ = 0;
  std::unique_ptr<Mapping> send_map_;  // before the regions: unmapped after deregistration
  std::unique_ptr<Mapping> recv_map_;
  char* send_buf_ = nullptr;
  char* recv_buf_ = nullptr;
  std::unique_ptr<transport::MemoryRegion> send_mr_;
  std::unique_ptr<transport::MemoryRegion> recv_mr_;
  transport::RemoteKey peer_send_key_;  // the peer's send buffer (get reads it)
  transport::RemoteKey peer_recv_key_;  // the peer's receive buffer (put writes it)
  std::vector<transport::Request> ring_;   // window of sends / puts / gets
  std::vector<transport::Request> ring2_;  // window of receives (bibw)
  std::vector<uint64_t> samples_;
};

}  // namespace weft::perf
