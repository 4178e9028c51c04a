// weft-demo: the multi-rank demo of README's main job (until the benchmarks take over).
//
// Every rank bootstraps (rank, node, local rank, store), publishes who it is, and rank 0
// prints the job's table. Then a token goes round the ranks through the store
// (`--rounds N`), and rank 0 reports the store's round-trip latency per hop.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/bootstrap.h"
#include "common/config.h"

namespace {

int fail(const char* what, const weft::Status& st) {
  std::fprintf(stderr, "weft-demo: %s: %s\n", what, st.toString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 20;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: weft-demo [--rounds N]   (run under weft-run -n N)\n");
      return 2;
    }
  }
  double timeout = weft::config::getDouble("WEFT_TIMEOUT").valueOr(300.0);
  weft::Deadline deadline = weft::Deadline::afterSeconds(timeout);
  auto world = weft::bootstrap(deadline);
  if (!world.isOk()) return fail("bootstrap", world.status());
  const weft::BootInfo& me = world->info;
  weft::Store& store = *world->store;

  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  std::string card = weft::strCat(me.rank, " ", me.local_rank, "/", me.local_size, " ",
                                  me.node_id, " ", host, " ", getpid());
  if (auto st = store.set(weft::strCat("demo/card/", me.rank), card); !st.isOk()) {
    return fail("publish", st);
  }
  if (me.rank == 0) {
    std::printf("weft demo: %d ranks on %d node(s), launcher %s, store %s\n", me.size,
                me.num_nodes, me.launcher.c_str(), store.describe().c_str());
    std::printf("%6s %12s %-12s %-16s %8s\n", "rank", "local", "node", "host", "pid");
    for (int r = 0; r < me.size; ++r) {
      auto c = store.get(weft::strCat("demo/card/", r), deadline);
      if (!c.isOk()) return fail("collect", c.status());
      int rank = 0, pid = 0;
      char local[32], node[128], h[128];
      std::sscanf(c->c_str(), "%d %31s %127s %127s %d", &rank, local, node, h, &pid);
      std::printf("%6d %12s %-12s %-16s %8d\n", rank, local, node, h, pid);
    }
  }
  // Token ring through the store: rank r > 0 waits for hop (k, r-1); rank 0 waits for the
  // end of the previous round (k-1, n-1). Each then publishes (k, r).
  const int n = me.size;
  double t0 = weft::monotonicSeconds();
  for (int k = 0; k < rounds && n > 1; ++k) {
    if (me.rank > 0 || k > 0) {
      int prev_round = me.rank > 0 ? k : k - 1;
      int prev = (me.rank + n - 1) % n;
      auto v = store.get(weft::strCat("demo/token/", prev_round, "/", prev), deadline);
      if (!v.isOk()) return fail("token", v.status());
    }
    if (auto st = store.set(weft::strCat("demo/token/", k, "/", me.rank), "t"); !st.isOk()) {
      return fail("token", st);
    }
  }
  if (me.rank == 0 && n > 1 && rounds > 0) {
    auto v = store.get(weft::strCat("demo/token/", rounds - 1, "/", n - 1), deadline);
    if (!v.isOk()) return fail("token", v.status());
  }
  double dt = weft::monotonicSeconds() - t0;
  if (me.rank == 0 && n > 1) {
    std::printf("token ring: %d rounds x %d hops in %.3f s: %.1f us per store hop\n", rounds,
                n, dt, dt / (rounds * n) * 1e6);
  }
  std::fflush(stdout);
  return 0;
}
