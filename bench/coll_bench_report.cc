#include "bench/coll_bench_report.h"

#include <string_view>

namespace weft::bench {
namespace {

std::string_view typeName(const BenchOptions& o, BenchOp op) {
  return op == BenchOp::kBarrier ? "-" : coll::toString(o.type);
}
std::string_view redopName(const BenchOptions& o, BenchOp op) {
  return isReduction(op) ? coll::toString(o.reduce_op) : "none";
}

}  // namespace

double Row::algbw() const {
  return time_us > 0 ? static_cast<double>(shape.bytes) / (time_us * 1e3) : 0;
}
double Row::busbw() const {
  return algbw() * busFactor(shape.op, shape.nranks);
}

Report::Report(const BenchOptions& o, const coll::Communicator& comm, std::FILE* out)
    : o_(o),
      nranks_(comm.size()),
      num_nodes_(comm.topology().num_nodes),
      print_(comm.rank() == 0),
      out_(out) {
  if (print_) header();
}

void Report::header() {
  if (o_.json) {
    std::fprintf(out_,
                 "{\"tool\": \"weft-bench\", \"label\": \"%s\", \"ranks\": %d, \"nodes\": %d, "
                 "\"backend\": \"%s\", \"algorithm\": \"%s\", \"results\": [",
                 o_.label.c_str(), nranks_, num_nodes_, o_.backend.c_str(),
                 o_.algorithm.empty() ? "auto" : o_.algorithm.c_str());
    return;
  }
  if (o_.csv) {
    std::fprintf(out_,
                 "label,ranks,op,bytes,count,type,redop,root,algorithm,iters,time_us,"
                 "min_us,max_us,algbw_GBps,busbw_GBps,wrong\n");
    return;
  }
  std::fprintf(
      out_, "# weft-bench: %d ranks on %d node(s), backend %s, algorithm %s, %d batches%s\n",
      nranks_, num_nodes_, o_.backend.c_str(), o_.algorithm.empty() ? "auto" : o_.algorithm.c_str(),
      o_.batches, o_.check ? ", results checked" : "");
  std::fprintf(out_,
               "# time: median over batches of the per-call time, maximum over ranks; "
               "GB/s = 1e9 B/s\n");
}

void Report::beginOp(BenchOp op) {
  if (!print_ || o_.csv || o_.json) return;
  std::fprintf(out_, "#\n# %s\n#%11s %12s %6s %6s %5s %-18s %11s %12s %12s %8s\n",
               std::string(toString(op)).c_str(), "size", "count", "type", "redop", "root", "algo",
               "time(us)", "algbw(GB/s)", "busbw(GB/s)", "#wrong");
}

void Report::note(const std::string& text) {
  if (!print_ || o_.csv || o_.json) return;
  std::fprintf(out_, "# %s\n", text.c_str());
}

void Report::row(const Row& r) {
  if (!print_) return;
  const Shape& s = r.shape;
  const std::string op(toString(s.op));
  const int root = isRooted(s.op) ? s.root : -1;
  const std::string wrong = o_.check ? std::to_string(r.wrong) : std::string("N/A");
  const std::string type(typeName(o_, s.op));
  const std::string redop(redopName(o_, s.op));
  if (o_.json) {
    std::fprintf(out_,
                 "%s\n  {\"op\": \"%s\", \"bytes\": %zu, \"count\": %zu, \"type\": \"%s\", "
                 "\"redop\": \"%s\", \"root\": %d, \"algorithm\": \"%s\", \"iters\": %lld, "
                 "\"time_us\": %.4f, \"min_us\": %.4f, \"max_us\": %.4f, \"algbw_GBps\": %.4f, "
                 "\"busbw_GBps\": %.4f, \"wrong\": %s}",
                 first_row_ ? "" : ",", op.c_str(), s.bytes, s.count, type.c_str(), redop.c_str(),
                 root, r.algorithm.c_str(), static_cast<long long>(r.iters), r.time_us, r.min_us,
                 r.max_us, r.algbw(), r.busbw(), o_.check ? wrong.c_str() : "null");
  } else if (o_.csv) {
    std::fprintf(out_, "%s,%d,%s,%zu,%zu,%s,%s,%d,%s,%lld,%.4f,%.4f,%.4f,%.4f,%.4f,%s\n",
                 o_.label.c_str(), nranks_, op.c_str(), s.bytes, s.count, type.c_str(),
                 redop.c_str(), root, r.algorithm.c_str(), static_cast<long long>(r.iters),
                 r.time_us, r.min_us, r.max_us, r.algbw(), r.busbw(), wrong.c_str());
  } else {
    std::fprintf(out_, " %11zu %12zu %6s %6s %5d %-18s %11.2f %12.3f %12.3f %8s\n", s.bytes,
                 s.count, type.c_str(), redop.c_str(), root, r.algorithm.c_str(), r.time_us,
                 r.algbw(), r.busbw(), wrong.c_str());
  }
  first_row_ = false;
  std::fflush(out_);
}

void Report::finish(const std::vector<int64_t>& rss_kib) {
  if (!print_) return;
  if (o_.json) {
    std::fprintf(out_, "\n], \"peak_rss_kib\": [");
    for (size_t r = 0; r < rss_kib.size(); ++r) {
      std::fprintf(out_, "%s%lld", r ? ", " : "", static_cast<long long>(rss_kib[r]));
    }
    std::fprintf(out_, "]}\n");
    return;
  }
  std::fprintf(out_, "# peak RSS per rank (MiB):");
  for (size_t r = 0; r < rss_kib.size(); ++r) {
    std::fprintf(out_, " [%zu] %.1f", r, static_cast<double>(rss_kib[r]) / 1024);
  }
  std::fprintf(out_, "\n");
}

}  // namespace weft::bench
