// weft-bench command line (nccl-tests style): which operations, which sizes, type, reduction,
// iterations, output format.
//
// Contract: parseBenchOptions() never throws; a bad option comes back as kInvalidArgument whose
// message names the option, the value and what is allowed (weft-bench prints it and exits 2).
// Plain values, no threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/coll_bench_ops.h"
#include "collectives/api/types.h"
#include "common/result.h"

namespace weft::bench {

struct BenchOptions {
  std::vector<BenchOp> ops;   // in the order given
  std::vector<size_t> sizes;  // bytes (nccl-tests convention, see coll_bench_ops.h)
  coll::DataType type = coll::DataType::kF32;
  coll::ReduceOp reduce_op = coll::ReduceOp::kSum;
  int root = 0;
  int64_t iters = 0;            // timed iterations per size; 0: automatic (time_target_s)
  int64_t warmup = -1;          // untimed iterations first; -1: automatic
  int batches = 5;              // the timed iterations run in this many barrier-separated batches
  double time_target_s = 0.25;  // automatic iterations: timed seconds per size
  std::string algorithm;        // "" = the tuner's choice
  size_t chunk_bytes = 0;       // 0 = WEFT_COLL_CHUNK
  bool check = false;
  bool csv = false;
  bool json = false;
  bool bind = false;           // pin rank r to CPU (local rank % online CPUs)
  std::string label = "weft";  // first column of the CSV records
  std::string backend = "ucx";
  double timeout_s = 300;
  bool timeout_given = false;  // --timeout (else WEFT_TIMEOUT decides)
  bool help = false;
};

// argv[0] is the program.
Result<BenchOptions> parseBenchOptions(int argc, const char* const* argv);
std::string benchUsage();

}  // namespace weft::bench
