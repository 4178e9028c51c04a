// weft-bench output: the nccl-tests-like table (rank 0), CSV rows or one JSON document, and
// the peak RSS of every rank at the end.
//
// Contract: every rank constructs a Report and calls it in the same order; only rank 0 writes.
// Not thread-safe.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/coll_bench_ops.h"
#include "bench/coll_bench_options.h"
#include "collectives/api/communicator.h"

namespace weft::bench {

struct Row {
  Shape shape;
  std::string algorithm;
  int64_t iters = 0;
  double time_us = 0;  // median batch, max over ranks
  double min_us = 0;   // fastest / slowest batch
  double max_us = 0;
  uint64_t wrong = 0;    // summed over ranks (0 without --check)
  double algbw() const;  // GB/s (1e9 B/s)
  double busbw() const;
};

class Report {
 public:
  Report(const BenchOptions& o, const coll::Communicator& comm, std::FILE* out);
  void beginOp(BenchOp op);
  void row(const Row& r);
  // A "#" comment line in the table format (nothing in CSV / JSON).
  void note(const std::string& text);
  // rss_kib: peak RSS of every rank (getrusage), by rank.
  void finish(const std::vector<int64_t>& rss_kib);

 private:
  void header();
  const BenchOptions& o_;
  int nranks_;
  int num_nodes_;
  bool print_;
  std::FILE* out_;
  bool first_row_ = true;
};

}  // namespace weft::bench
