// weft-perf: point-to-point benchmark of the transport API in the style of ucx_perftest /
// perftest (ping-pong latency, uni- and bidirectional bandwidth, message rate), run as two
// ranks under weft-run. See perf_options.cc (usage) and perf_runner.h (the loops).
#include <sched.h>

#include <cerrno>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "common/bootstrap.h"
#include "common/config.h"
#include "tools/perf_options.h"
#include "tools/perf_report.h"
#include "tools/perf_runner.h"

namespace {

using namespace weft::perf;

void bindCpu(const Options& o, int rank) {
  if (o.cpus.empty()) return;
  const int cpu = o.cpus[static_cast<size_t>(rank) % o.cpus.size()];
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0) {
    throw PerfError(weft::strCat("--cpus: binding rank ", rank, " to CPU ", cpu,
                                 " failed: ", weft::errnoString(errno)));
  }
}

// Settings that change what the numbers mean, for the header / JSON.
std::string configText(const Options& o) {
  std::string s = weft::strCat("WEFT_UCX_ERROR_HANDLING=",
                               weft::config::getBool("WEFT_UCX_ERROR_HANDLING").valueOr(true) ? 1 : 0);
  for (const auto& [k, v] : o.backend_config) s += weft::strCat(", ", k, "=", v);
  if (o.untouched_send) s += ", send buffer untouched (zero page)";
  if (o.transport_memory) s += ", buffers from the transport (allocateMemory)";
  return s;
}

int runAll(const Options& o, int argc, char** argv) {
  auto world = weft::bootstrap(weft::Deadline::afterSeconds(o.timeout_s));
  if (!world.isOk()) {
    std::fprintf(stderr, "weft-perf: bootstrap: %s\n", world.status().toString().c_str());
    return 1;
  }
  const int rank = world->info.rank;
  const weft::Status same =
      weft::checkSameArguments(*world->store, rank, world->info.size, "weft-perf", argc, argv,
                               weft::Deadline::afterSeconds(o.timeout_s));
  if (!same.isOk()) {
    std::fprintf(stderr, "%s\n", same.message().c_str());
    return 2;
  }
  try {
    bindCpu(o, rank);
    TickClock::calibrate();
    auto runner = PerfRunner::create(o, *world);
    RunInfo info{o.backend, runner->capabilities().transports, configText(o), o.cpus};
    std::vector<Measurement> all;
    bool data_ok = true;
    for (const TestSpec* test : o.tests) {
      if (rank == 0 && !o.json) printTableHeader(stdout, *test, info, o.window);
      for (size_t n : o.sizes) {
        Measurement m = runner->run(*test, n);
        data_ok = data_ok && m.validated != 0;
        if (rank != 0) continue;
        all.push_back(m);
        if (!o.json) printTableRow(stdout, m);
      }
    }
    runner->finish();
    if (rank == 0 && o.json) printJson(stdout, info, all);
    if (!data_ok) {
      std::fprintf(stderr, "weft-perf: rank %d: --validate found wrong data (see the rows "
                   "marked DATA WRONG)\n", rank);
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "weft-perf: rank %d: %s\n", rank, e.what());
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  auto options = parseOptions(argc, argv);
  if (!options.isOk()) {
    std::fprintf(stderr, "weft-perf: %s\nrun weft-perf --help for the options\n",
                 options.status().message().c_str());
    return 2;
  }
  if (options->help) {
    std::fputs(usage().c_str(), stdout);
    return 0;
  }
  if (!options->timeout_given) {  // WEFT_TIMEOUT, when set, bounds bootstrap and the tests
    auto raw = weft::config::raw("WEFT_TIMEOUT");
    if (raw.isOk() && raw->source != weft::config::Source::kDefault) {
      options->timeout_s = weft::config::getDouble("WEFT_TIMEOUT").valueOr(options->timeout_s);
    }
  }
  return runAll(*options, argc, argv);
}
