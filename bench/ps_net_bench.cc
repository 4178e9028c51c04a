// weft-ps-bench: parameter-server throughput over the transport (push / pull / push_pull).
//
//   weft-run -n 2 -- weft-ps-bench --servers 1      # 1 server + 1 worker
//   weft-run -n 4 -- weft-ps-bench --servers 2      # 2 servers + 2 workers
//
// Workloads (each runs --duration seconds per case on every worker, after a warm-up that
// creates every row):
//   sparse: requests of --keys keys (1000) with dim 1 and dim 16, keys uniform over 2^20 ids
//           or Zipf(1)-distributed over them (duplicates allowed: pushes sum them)
//   dense:  one value of 1 MiB and one of 4 MiB (rows of dim 1024: 256 / 1024 keys)
// Each worker keeps --window requests in flight (16). Table: SGD on the servers.
// Ops: push, pull, push_pull (RPCs, windowed) and pull_1s (pullOneSided: rows read straight
// from the servers' registered memory, one blocking call at a time; not in the default set).
// Printed per case: keys/s and GB/s of values (all workers together), and the CPU use of
// each role (process CPU time, user + sys of all threads, / wall time while the case ran;
// 100 % = one core), and the path worker 0's requests took (Client::pathStats /
// oneSidedStats): "eager" (one message each), "rndv" (header, then the body by the
// transport's rendezvous), with the mean request size; "by-ref N% mapped" (large requests
// whose values stayed in the client's memory, WEFT_PS_VALUES_BY_REF: the share the server
// read or wrote through its mapping of it), or "1-sided" / "mapped" (the share of rows read
// one-sided; mapped: copied from slabs the transport maps here, WEFT_PS_SLAB_MEMORY=transport). At the end: rows and bytes per row of each table on each server.
// With --reps R every case runs R times, in R rounds over all cases (so a slow spell of a
// shared host spreads over the cases), and the table shows medians, with the lowest and
// highest keys/s of the R runs.
//
// Options: --servers N (1)  --duration S (2)  --window W (16)  --keys N (1000)  --reps R (1)
//          --workloads sparse,dense  --ops push,pull,push_pull  --dists uniform,zipf
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <numeric>
#include <sstream>
#include <vector>

#include "paramserver/util/hash.h"
#include "tools/ps_tool_util.h"

namespace {

using weft::strCat;
namespace ps = weft::ps;
namespace pt = weft::ps::tools;

constexpr uint64_t kKeySpace = uint64_t{1} << 20;
constexpr size_t kPoolKeys = size_t{1} << 20;  // pre-drawn keys each worker cycles through

struct Options {
  int servers = 1;
  double duration = 2;
  size_t window = 16, keys = 1000, reps = 1;
  std::vector<std::string> workloads = {"sparse", "dense"};
  std::vector<std::string> ops = {"push", "pull", "push_pull"};
  std::vector<std::string> dists = {"uniform", "zipf"};
};

Options parse(int argc, char** argv) {
  Options o;
  pt::ArgReader r(argc, argv, "weft-ps-bench",
      "usage: weft-run -n N -- weft-ps-bench [options]   (ranks below --servers serve, the rest push/pull)\n"
      "  --servers N     server ranks (1)\n"
      "  --duration S    seconds per case (2)\n"
      "  --window W      requests in flight per worker (16)\n"
      "  --keys N        keys per sparse request (1000)\n"
      "  --reps R        runs of every case; the table shows medians (1)\n"
      "  --workloads L   sparse,dense (both)\n"
      "  --ops L         push,pull,push_pull,pull_1s (push,pull,push_pull)\n"
      "  --dists L       uniform,zipf (both)\n");
  while (r.next()) {
    if (r.is("--servers")) o.servers = static_cast<int>(r.intValue(1, 1024));
    else if (r.is("--duration")) o.duration = r.doubleValue(0.01, 3600);
    else if (r.is("--window")) o.window = static_cast<size_t>(r.intValue(1, 4096));
    else if (r.is("--keys")) o.keys = static_cast<size_t>(r.intValue(1, 1 << 20));
    else if (r.is("--reps")) o.reps = static_cast<size_t>(r.intValue(1, 1000));
    else if (r.is("--workloads")) o.workloads = r.listValue({"sparse", "dense"});
    else if (r.is("--ops")) o.ops = r.listValue({"push", "pull", "push_pull", "pull_1s"});
    else if (r.is("--dists")) o.dists = r.listValue({"uniform", "zipf"});
    else r.unknown();
  }
  return o;
}

struct Case {
  std::string name;  // "sparse dim 16 zipf" / "dense 1 MiB"
  std::string op;
  uint32_t table = 0;
  uint32_t dim = 1;
  size_t keys = 0;  // per request
  bool zipf = false;
  bool dense = false;
  size_t base = 0;  // index among the distinct cases (runs of one case share it)
};

std::vector<Case> cases(const Options& o) {
  std::vector<Case> out;
  auto has = [](const std::vector<std::string>& v, const char* x) {
    return std::find(v.begin(), v.end(), x) != v.end();
  };
  for (const std::string& op : o.ops) {
    if (has(o.workloads, "sparse")) {
      for (uint32_t dim : {1u, 16u}) {
        for (const std::string& d : o.dists) {
          out.push_back({strCat("sparse ", o.keys, " keys dim ", dim, " ", d), op,
                         dim == 1 ? 1u : 2u, dim, o.keys, d == "zipf", false});
        }
      }
    }
    if (has(o.workloads, "dense")) {
      for (size_t mib : {1, 4}) {
        out.push_back({strCat("dense ", mib, " MiB value"), op, 3, 1024, mib * 256, false, true});
      }
    }
  }
  for (size_t i = 0; i < out.size(); ++i) out[i].base = i;
  // --reps: rounds over every case.
  const size_t distinct = out.size();
  for (size_t r = 1; r < o.reps; ++r) {
    for (size_t i = 0; i < distinct; ++i) out.push_back(out[i]);
  }
  return out;
}

std::vector<uint64_t> keyPool(bool zipf, uint64_t seed) {
  std::vector<uint64_t> pool(kPoolKeys);
  const double log_v = std::log(static_cast<double>(kKeySpace) + 1);
  for (size_t i = 0; i < pool.size(); ++i) {
    const uint64_t h = ps::hashKey(i, seed);
    const double u = static_cast<double>(h >> 11) * 0x1.0p-53;
    const uint64_t rank = zipf ? static_cast<uint64_t>(std::exp(u * log_v)) - 1 : h % kKeySpace;
    pool[i] = ps::hashKey(std::min(rank, kKeySpace - 1), 0xbe7c) % kKeySpace;
  }
  return pool;
}

ps::TableSpec table(uint32_t id, uint32_t dim) {
  ps::TableSpec s;
  s.id = id;
  s.name = strCat("bench", id);
  s.dim = dim;
  s.optimizer.kind = ps::OptimizerKind::kSgd;
  s.optimizer.learning_rate = 1e-6f;
  return s;
}

// The caller's buffers of one case: gradients, one output per window slot, dense keys.
// Allocated (and touched) before the case's clock starts: 16 fresh 4 MiB outputs cost
// page faults that belong to the benchmark, not to the parameter server.
struct Buffers {
  std::vector<float> grads;
  std::vector<std::vector<float>> out;
  std::vector<uint64_t> dense;

  Buffers(const Case& k, size_t window, size_t worker)
      : grads(k.keys * k.dim, 1e-3f), out(window, std::vector<float>(k.keys * k.dim)),
        dense(k.keys) {
    std::iota(dense.begin(), dense.end(), 1000000 * (worker + 1));
  }
};

// Keeps `window` requests in flight for `seconds`; returns the keys moved.
uint64_t drive(ps::net::Client& c, const Case& k, const std::vector<uint64_t>& pool,
               Buffers& b, double seconds, size_t worker) {
  const weft::Deadline d = pt::defaultDeadline();
  const std::vector<float>& grads = b.grads;
  std::vector<std::vector<float>>& out = b.out;
  const std::vector<uint64_t>& dense = b.dense;
  const size_t window = out.size();
  std::vector<ps::net::Ticket> tickets(window, 0);
  size_t cursor = (worker * 7919 * k.keys) % (pool.size() - k.keys);
  uint64_t moved = 0;
  const double end = weft::monotonicSeconds() + seconds;
  if (k.op == "pull_1s") {  // blocking: one call at a time
    for (size_t i = 0; weft::monotonicSeconds() < end; ++i) {
      std::span<const uint64_t> keys =
          k.dense ? std::span<const uint64_t>(dense)
                  : std::span<const uint64_t>(pool).subspan(cursor, k.keys);
      cursor = cursor + k.keys * 2 < pool.size() ? cursor + k.keys : 0;
      pt::must(c.pullOneSided(k.table, keys, out[i % window].data(), d), "pullOneSided");
      moved += k.keys;
    }
    return moved;
  }
  for (size_t i = 0;; ++i) {
    const size_t slot = i % window;
    if (tickets[slot] != 0) {
      pt::must(c.wait(tickets[slot], d), strCat(k.op, " ", k.name));
      moved += k.keys;
      tickets[slot] = 0;
    }
    if (weft::monotonicSeconds() >= end) break;
    std::span<const uint64_t> keys = k.dense ? std::span<const uint64_t>(dense)
                                             : std::span<const uint64_t>(pool).subspan(cursor, k.keys);
    cursor = cursor + k.keys * 2 < pool.size() ? cursor + k.keys : 0;
    tickets[slot] = k.op == "push"   ? pt::must(c.push(k.table, keys, grads), "push")
                    : k.op == "pull" ? pt::must(c.pull(k.table, keys, out[slot].data()), "pull")
                                     : pt::must(c.pushPull(k.table, keys, grads, out[slot].data()),
                                                "pushPull");
  }
  for (ps::net::Ticket t : tickets) {
    if (t != 0) {
      pt::must(c.wait(t, d), "drain");
      moved += k.keys;
    }
  }
  return moved;
}

// Creates every row the cases touch (so pulls read real rows).
void warmUp(ps::net::Client& c, const pt::JobRoles& roles) {
  const weft::Deadline d = pt::defaultDeadline();
  for (uint32_t dim : {1u, 16u}) {
    const uint32_t id = dim == 1 ? 1 : 2;
    std::vector<uint64_t> keys(1000);
    std::vector<float> g(keys.size() * dim, 0.0f);
    for (uint64_t k = static_cast<uint64_t>(roles.worker()) * 1000; k < kKeySpace;
         k += static_cast<uint64_t>(roles.workers()) * 1000) {
      std::iota(keys.begin(), keys.end(), k);
      pt::must(c.pushSync(id, keys, g, d), "warm-up push");
    }
  }
}

void serverRole(const pt::JobRoles& roles, const std::vector<Case>& all) {
  const weft::Deadline d = pt::defaultDeadline();
  ps::net::ServerOptions so;
  so.server_id = static_cast<uint32_t>(roles.rank);
  so.num_servers = static_cast<uint32_t>(roles.servers);
  so.rank = roles.rank;
  so.ns = roles.ns;
  auto server = pt::must(ps::net::Server::start(so, roles.store, d), "starting the server");
  for (size_t i = 0; i < all.size(); ++i) {
    pt::must(roles.store->get(strCat("bench/start/", i), d).status(), "waiting for a case");
    const double c0 = pt::processCpuSeconds(), t0 = weft::monotonicSeconds();
    pt::must(roles.store->get(strCat("bench/end/", i), d).status(), "waiting for a case");
    const double cpu = 100 * (pt::processCpuSeconds() - c0) / (weft::monotonicSeconds() - t0);
    pt::must(roles.store->set(strCat("bench/cpu/", i, "/", roles.rank), strCat(cpu)), "store");
  }
  // Memory per row of each table, for worker 0's report.
  std::string tables;
  for (const ps::net::ServerTableStats& t : server->tableStats()) {
    char line[160];
    std::snprintf(line, sizeof(line), "%u %u %llu %llu %.1f\n", t.id, t.dim,
                  static_cast<unsigned long long>(t.stats.rows),
                  static_cast<unsigned long long>(t.stats.row_stride), t.stats.bytes_per_row);
    tables += line;
  }
  pt::must(roles.store->set(strCat("bench/tables/", roles.rank), tables), "store");
  pt::must(roles.store->get(roles.ns + "/shutdown", d).status(), "waiting for the end");
  pt::must(server->stop(weft::Deadline::afterSeconds(10)), "stopping the server");
}

// Worker 0: rows and bytes per row (row slab + index + sketch, over live rows) of every
// table on every server, as the servers reported them after the last case.
void printTables(const pt::JobRoles& roles) {
  std::printf("# tables (per server): id dim rows row_stride_bytes bytes_per_row\n");
  for (int s = 0; s < roles.servers; ++s) {
    const std::string v =
        pt::must(roles.store->get(strCat("bench/tables/", s), pt::defaultDeadline()), "tables");
    std::stringstream in(v);
    for (std::string line; std::getline(in, line);) std::printf("# server %d: %s\n", s, line.c_str());
  }
  std::fflush(stdout);
}

// Each server's CPU % during run i.
std::vector<double> serverCpu(const pt::JobRoles& roles, size_t i) {
  std::vector<double> out;
  for (int s = 0; s < roles.servers; ++s) {
    out.push_back(std::stod(
        pt::must(roles.store->get(strCat("bench/cpu/", i, "/", s), pt::defaultDeadline()), "cpu")));
  }
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// One case's runs: keys/s (all workers), each server's CPU %, the workers' mean CPU %.
struct Runs {
  std::vector<double> rate, worker_cpu;
  std::vector<std::vector<double>> server_cpu;  // [server][run]
  std::string path;                             // worker 0's, first run
};

// "eager 8.0K", "rndv 4096.0K", "eager+rndv 12.1K", "1-sided 100%" ("mapped 100%": most rows
// copied from slabs the transport maps, WEFT_PS_SLAB_MEMORY=transport): the path of the requests
// between two snapshots of a client's counters (see the header comment).
std::string pathText(const ps::net::PathStats& a, const ps::net::PathStats& b,
                     const ps::net::OneSidedStats& oa, const ps::net::OneSidedStats& ob) {
  const uint64_t rows1 = ob.rows_one_sided - oa.rows_one_sided;
  const uint64_t rows_rpc = ob.rows_rpc - oa.rows_rpc;
  if (rows1 + rows_rpc > 0) {
    // "mapped": the rows were copied from slabs the transport maps here (no gets).
    const uint64_t reads = ob.mapped_reads - oa.mapped_reads + ob.gets - oa.gets;
    const bool mapped = reads > 0 && ob.mapped_reads - oa.mapped_reads >= (reads + 1) / 2;
    return strCat(
        mapped ? "mapped " : "1-sided ",
        std::lround(100.0 * static_cast<double>(rows1) / static_cast<double>(rows1 + rows_rpc)),
        "%");
  }
  const uint64_t eager = b.eager_requests - a.eager_requests;
  const uint64_t rndv = b.announced_requests - a.announced_requests;
  if (eager + rndv == 0) return "-";
  // "by-ref": the values stayed in the client's memory (eager messages without them); the
  // share of them the server reached through its mapping of that memory.
  const uint64_t by_ref = b.values_by_ref_requests - a.values_by_ref_requests;
  if (by_ref * 2 > eager + rndv) {
    const uint64_t mapped = b.values_mapped - a.values_mapped;
    return strCat("by-ref ", std::lround(100.0 * static_cast<double>(mapped) /
                                         static_cast<double>(by_ref)),
                  "% mapped");
  }
  const double bytes = static_cast<double>(b.eager_bytes - a.eager_bytes + b.announced_bytes -
                                           a.announced_bytes);
  char size[32];
  std::snprintf(size, sizeof(size), "%.1fK", bytes / static_cast<double>(eager + rndv) / 1024);
  return strCat(rndv == 0 ? "eager" : eager == 0 ? "rndv" : "eager+rndv", " ", size);
}

void printRow(const Case& k, const Runs& r, bool ranges) {
  std::string scpu;
  for (size_t s = 0; s < r.server_cpu.size(); ++s) {
    scpu += strCat(s ? "/" : "", static_cast<long long>(std::lround(median(r.server_cpu[s]))));
  }
  const double rate = median(r.rate);
  std::printf("%-30s %-9s %12.2f %9.3f %13s %11lld  %-16s", k.name.c_str(), k.op.c_str(),
              rate / 1e6, rate * k.dim * 4 / 1e9, scpu.c_str(),
              static_cast<long long>(std::lround(median(r.worker_cpu))), r.path.c_str());
  if (ranges) {
    std::printf("  %6.2f-%.2f", *std::min_element(r.rate.begin(), r.rate.end()) / 1e6,
                *std::max_element(r.rate.begin(), r.rate.end()) / 1e6);
  }
  std::printf("\n");
  std::fflush(stdout);
}

void workerRole(const Options& o, const pt::JobRoles& roles, const std::vector<Case>& all) {
  const weft::Deadline d = pt::defaultDeadline();
  auto c = roles.connectWorker(d);
  for (uint32_t id : {1u, 2u, 3u}) {
    pt::must(c->createTable(table(id, id == 1 ? 1 : id == 2 ? 16 : 1024), d), "createTable");
  }
  warmUp(*c, roles);
  const auto w = static_cast<uint64_t>(roles.worker());
  const std::vector<uint64_t> uniform = keyPool(false, 11 + w), zipf = keyPool(true, 17 + w);
  if (roles.worker() == 0) {
    std::printf("# weft-ps-bench: %d server(s) + %d worker(s), window %zu, %.1f s per case",
                roles.servers, roles.workers(), o.window, o.duration);
    if (o.reps > 1) std::printf(", medians of %zu runs (rounds over the cases)", o.reps);
    std::printf("\n%-30s %-9s %12s %9s %13s %11s  %-16s%s\n", "workload", "op", "Mkeys/s",
                "GB/s", "server CPU %", "worker CPU %", "path (request)",
                o.reps > 1 ? "  Mkeys/s range" : "");
    std::fflush(stdout);
  }
  std::vector<Runs> runs(all.size() / o.reps);
  for (Runs& r : runs) r.server_cpu.resize(static_cast<size_t>(roles.servers));
  for (size_t i = 0; i < all.size(); ++i) {
    const Case& k = all[i];
    Buffers buffers(k, o.window, w);
    roles.workerBarrier(strCat("case", i), d);
    if (roles.worker() == 0) pt::must(roles.store->set(strCat("bench/start/", i), "1"), "store");
    const ps::net::PathStats p0 = c->pathStats();
    const ps::net::OneSidedStats s0 = c->oneSidedStats();
    const double c0 = pt::processCpuSeconds(), t0 = weft::monotonicSeconds();
    const uint64_t moved = drive(*c, k, k.zipf ? zipf : uniform, buffers, o.duration, w);
    const double wall = weft::monotonicSeconds() - t0;
    const double cpu = 100 * (pt::processCpuSeconds() - c0) / wall;
    // Every worker adds its rate (keys/s, scaled by 1000) and CPU to the case's totals.
    pt::must(roles.store->add(strCat("bench/keys/", i), static_cast<int64_t>(moved / wall)).status(), "store");
    pt::must(roles.store->add(strCat("bench/wcpu/", i), static_cast<int64_t>(cpu)).status(), "store");
    roles.workerBarrier(strCat("done", i), d);
    if (roles.worker() != 0) continue;
    pt::must(roles.store->set(strCat("bench/end/", i), "1"), "store");
    const auto rate = static_cast<double>(pt::must(roles.store->add(strCat("bench/keys/", i), 0), "store"));
    const auto wcpu = pt::must(roles.store->add(strCat("bench/wcpu/", i), 0), "store");
    Runs& r = runs[k.base];
    if (r.path.empty()) r.path = pathText(p0, c->pathStats(), s0, c->oneSidedStats());
    r.rate.push_back(rate);
    r.worker_cpu.push_back(static_cast<double>(wcpu) / roles.workers());
    const std::vector<double> scpu = serverCpu(roles, i);
    for (size_t s = 0; s < scpu.size(); ++s) r.server_cpu[s].push_back(scpu[s]);
    if (o.reps == 1) printRow(k, r, false);
  }
  if (roles.worker() == 0 && o.reps > 1) {
    for (size_t b = 0; b < runs.size(); ++b) printRow(all[b], runs[b], true);
  }
  if (roles.worker() == 0) printTables(roles);
  roles.finishWorker();
}

int run(const Options& o, int argc, char** argv) {
  const pt::JobRoles roles = pt::jobRoles(o.servers, "psbench");
  roles.checkSameArguments("weft-ps-bench", argc, argv);
  const std::vector<Case> all = cases(o);
  if (roles.isServer()) {
    serverRole(roles, all);
  } else {
    workerRole(o, roles, all);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return pt::toolMain("weft-ps-bench", [&] { return run(parse(argc, argv), argc, argv); });
}
