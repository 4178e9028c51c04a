// weft-perf command line: which tests, which message sizes, how many iterations.
//
// Contract: parseOptions() never throws; a bad option comes back as kInvalidArgument whose
// message names the option, the value and what is allowed (weft-perf prints it with the
// usage line and exits 2). Plain values, no threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace weft::perf {

// The one-sided or two-sided operation a test drives.
enum class PerfOp : uint8_t { kSend, kPut, kGet };

// One test: ping-pong latency (lat), or a stream of messages with a sliding window of
// `window` operations in flight, in one direction (bw) or both at once (bibw).
enum class PerfPattern : uint8_t { kLatency, kUni, kBi };

struct TestSpec {
  std::string_view name;  // "send_lat", "put_bw", ...
  PerfOp op;
  PerfPattern pattern;
  std::string_view what;  // one line for --help
};

// Every test weft-perf knows, in --help order.
const std::vector<TestSpec>& allTests();
// nullptr when `name` is not a test.
const TestSpec* findTest(std::string_view name);

struct Options {
  std::vector<const TestSpec*> tests;  // in the order given
  std::vector<size_t> sizes;           // message sizes in bytes, in the order run
  int64_t iters = 0;                   // timed iterations per size; 0: automatic
  int64_t warmup = -1;                 // warm-up iterations per size; -1: automatic
  int64_t window = 32;                 // operations in flight in bw / bibw tests
  bool json = false;                   // one JSON document instead of the table
  bool validate = false;               // check the data after each size (not timed)
  // Leave the send buffers as mmap returned them, never written: reads of such pages are
  // served from the kernel's shared zero page, which is what ucx_perftest's tag tests send
  // (they never write their send buffer). Off: the buffers are zero-filled real pages.
  bool untouched_send = false;
  // Buffers from Context::allocateMemory (UCX: its shared-memory segments, which the peer
  // maps: puts and gets become copies by the initiator, as on ucx_perftest's default
  // buffers) instead of anonymous memory registered with registerMemory.
  bool transport_memory = false;
  bool markers = false;                // getppid() right before / after each timed phase
  std::vector<int> cpus;               // rank r binds to cpus[r % size] (empty: no binding)
  std::string backend = "ucx";
  std::vector<std::pair<std::string, std::string>> backend_config;  // --set NAME=VALUE
  double timeout_s = 600;  // deadline of every blocking step (connect, sync, test)
  bool timeout_given = false;  // --timeout (else WEFT_TIMEOUT when set, else 600)
  bool help = false;
};

// Parses argv (argv[0] is the program). Size lists accept K/M/G suffixes (powers of 2).
Result<Options> parseOptions(int argc, const char* const* argv);
// The --help text.
std::string usage();

// Iterations for one size when the user gave none: bounded by bytes moved, so big messages
// run fewer iterations (latency 256 MiB per direction, bandwidth 2 GiB).
int64_t autoIterations(const TestSpec& test, size_t bytes);
int64_t autoWarmup(const TestSpec& test, int64_t iters);

}  // namespace weft::perf
