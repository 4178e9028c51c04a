// weft-bench: nccl-tests-style benchmark of the collectives (every operation, a sweep of
// sizes, algbw / busbw, optional result checking), run under weft-run. See
// coll_bench_options.cc (usage) and coll_bench_ops.h (sizes, factors, data).
//
// Timing: per (operation, size) the ranks run the warm-up calls, agree on an iteration count
// (the slowest rank's warm-up time against --time, unless -n is given), then run the timed
// calls in batches that each start with a barrier. Each rank measures a batch's time per call;
// the batch's figure is the maximum over ranks, and the row reports the median batch (and the
// fastest / slowest batch in CSV and JSON).
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/coll_bench_ops.h"
#include "bench/coll_bench_options.h"
#include "bench/coll_bench_report.h"
#include "collectives/api/collectives.h"
#include "collectives/api/communicator.h"
#include "common/bootstrap.h"
#include "common/config.h"
#include "transport/api/context.h"

namespace {

using namespace weft::bench;
using weft::coll::Communicator;
using weft::coll::DataType;
using weft::coll::ReduceOp;

void must(const weft::Status& st, std::string_view what) {
  if (!st.isOk()) throw std::runtime_error(weft::strCat(what, ": ", st.toString()));
}
template <typename T>
T must(weft::Result<T> r, std::string_view what) {
  must(r.status(), what);
  return std::move(r).value();
}

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

class Runner {
 public:
  Runner(const BenchOptions& o, Communicator& comm) : o_(o), comm_(comm) {
    call_.algorithm = o.algorithm;
    call_.chunk_bytes = o.chunk_bytes;
  }

  Row run(BenchOp op, size_t bytes) {
    const Shape s = shapeFor(op, bytes, o_.type, o_.reduce_op, o_.root, comm_.rank(), comm_.size());
    const size_t es = weft::coll::sizeOf(s.type);
    buffers_.reserve(s.in_count * es, s.out_count * es);
    Row row;
    row.shape = s;
    row.algorithm = must(algorithmOf(comm_, s, buffers_, call_), "first call");
    if (o_.check) row.wrong = check(s);
    const int64_t warmup = o_.warmup >= 0 ? o_.warmup : (s.bytes >= (16u << 20) ? 2 : 5);
    timeCalls(s, warmup);
    row.iters = o_.iters > 0 ? o_.iters : autoIters(pilot(s));
    std::vector<double> batches = timeBatches(s, row.iters);
    std::sort(batches.begin(), batches.end());
    row.min_us = batches.front() * 1e6;
    row.max_us = batches.back() * 1e6;
    const size_t mid = batches.size() / 2;
    row.time_us = (batches.size() % 2 ? batches[mid] : (batches[mid - 1] + batches[mid]) / 2) * 1e6;
    return row;
  }

 private:
  // Seconds per call over n calls started together (0 when n == 0).
  double timeCalls(const Shape& s, int64_t n) {
    if (n == 0) return 0;
    must(weft::coll::barrier(comm_), "barrier");
    const double t0 = now();
    for (int64_t i = 0; i < n; ++i) must(runOnce(comm_, s, buffers_, call_), toString(s.op));
    return (now() - t0) / static_cast<double>(n);
  }

  // Seconds per call from loops that grow until one takes 20 ms (as the MPI harness does):
  // a few warm-up calls alone overestimate small calls many times over.
  double pilot(const Shape& s) {
    int64_t n = 1;
    for (;;) {
      const double loop = maxOverRanks(timeCalls(s, n) * static_cast<double>(n));
      if (loop >= 0.02 || n >= (int64_t{1} << 20) || loop * 4 >= o_.time_target_s) {
        return loop / static_cast<double>(n);
      }
      n *= 4;
    }
  }

  int64_t autoIters(double per_call_s) const {
    const double want = o_.time_target_s / std::max(per_call_s, 1e-8);
    const auto n = static_cast<int64_t>(std::min(want, 1e6));
    return std::max<int64_t>(n, std::max(o_.batches, 5));
  }

  std::vector<double> timeBatches(const Shape& s, int64_t iters) {
    const int64_t nb = std::min<int64_t>(o_.batches, iters);
    std::vector<double> t(static_cast<size_t>(nb));
    for (int64_t b = 0; b < nb; ++b) {
      t[static_cast<size_t>(b)] = timeCalls(s, iters / nb + (b < iters % nb ? 1 : 0));
    }
    // Maximum over ranks, batch by batch (every rank gets the same vector).
    must(weft::coll::allreduce(comm_, t.data(), t.data(), t.size(), DataType::kF64, ReduceOp::kMax),
         "allreduce of the batch times");
    return t;
  }

  double maxOverRanks(double v) {
    must(weft::coll::allreduce(comm_, &v, &v, 1, DataType::kF64, ReduceOp::kMax), "allreduce");
    return v;
  }

  uint64_t check(const Shape& s) {
    fillForCheck(s, buffers_);
    must(runOnce(comm_, s, buffers_, call_), "checked call");
    uint64_t wrong = countWrong(s, buffers_);
    must(weft::coll::allreduce(comm_, &wrong, &wrong, 1, DataType::kU64, ReduceOp::kSum),
         "allreduce of the error counts");
    return wrong;
  }

  const BenchOptions& o_;
  Communicator& comm_;
  weft::coll::CallOptions call_;
  BenchBuffers buffers_;
};

void bindCpu(int local_rank) {
  const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  if (ncpu < 1 || local_rank < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(static_cast<int>(local_rank % ncpu), &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0) {
    throw std::runtime_error(weft::strCat("--bind: sched_setaffinity to CPU ", local_rank % ncpu,
                                          " failed: ", weft::errnoString(errno)));
  }
}

std::vector<int64_t> peakRssKiB(Communicator& comm) {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const auto mine = static_cast<int64_t>(ru.ru_maxrss);
  std::vector<int64_t> all(static_cast<size_t>(comm.size()));
  must(weft::coll::allgather(comm, &mine, all.data(), 1, DataType::kI64), "allgather of RSS");
  return all;
}

int runAll(const BenchOptions& o, weft::World& world) {
  const int rank = world.info.rank;
  if (o.bind) bindCpu(world.info.local_rank);
  weft::transport::ContextOptions co;
  co.rank = rank;
  auto ctx = must(weft::transport::openContext(o.backend, co), "opening the transport");
  std::shared_ptr<weft::transport::Context> shared(std::move(ctx));
  auto comm = must(Communicator::create(world, shared), "creating the world communicator");
  if (o.root >= comm->size()) {
    throw std::invalid_argument(weft::strCat("option -r/--root: ", o.root,
                                             " is not a rank of this ", comm->size(), "-rank job"));
  }
  Report report(o, *comm, stdout);
  Runner runner(o, *comm);
  uint64_t wrong = 0;
  for (BenchOp op : o.ops) {
    if (op == BenchOp::kSendRecv && comm->size() < 2) {
      throw std::invalid_argument("sendrecv needs at least 2 ranks");
    }
    report.beginOp(op);
    const std::vector<size_t> sizes = op == BenchOp::kBarrier ? std::vector<size_t>{0} : o.sizes;
    for (size_t bytes : sizes) {
      const Shape s = shapeFor(op, bytes, o.type, o.reduce_op, o.root, 0, comm->size());
      if (op != BenchOp::kBarrier && s.count == 0) {  // smaller than one element per rank
        report.note(weft::strCat(bytes, " bytes: less than one element per rank; skipped"));
        continue;
      }
      Row row = runner.run(op, bytes);
      wrong += row.wrong;
      report.row(row);
    }
  }
  report.finish(peakRssKiB(*comm));
  comm.reset();
  return wrong == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  auto options = parseBenchOptions(argc, argv);
  if (!options.isOk()) {
    std::fprintf(stderr, "weft-bench: %s\nrun weft-bench --help for the options\n",
                 options.status().message().c_str());
    return 2;
  }
  if (options->help) {
    std::fputs(benchUsage().c_str(), stdout);
    return 0;
  }
  // One deadline for every step: the collectives read WEFT_TIMEOUT, bootstrap this value.
  if (options->timeout_given) {
    weft::config::setOverride("WEFT_TIMEOUT", weft::strCat(options->timeout_s));
  } else {
    options->timeout_s = weft::config::getDouble("WEFT_TIMEOUT").valueOr(options->timeout_s);
  }
  auto world = weft::bootstrap(weft::Deadline::afterSeconds(options->timeout_s));
  if (!world.isOk()) {
    std::fprintf(stderr, "weft-bench: bootstrap: %s\n", world.status().toString().c_str());
    return 1;
  }
  const weft::Status same =
      weft::checkSameArguments(*world->store, world->info.rank, world->info.size, "weft-bench",
                               argc, argv, weft::Deadline::afterSeconds(options->timeout_s));
  if (!same.isOk()) {
    std::fprintf(stderr, "%s\n", same.message().c_str());
    return 2;
  }
  try {
    return runAll(*options, *world);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "weft-bench: rank %d: %s\n", world->info.rank, e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "weft-bench: rank %d: %s\n", world->info.rank, e.what());
    return 1;
  }
}
