// weft-ps-server: one parameter server (ps::net::Server) as a process.
//
//   weft-ps-server [--server-id I] [--servers N] [--rank R] [--ns NAME]
//                  [--checkpoint-root DIR] [--restore DIR] [--timeout S] [--join]
//
// --join adds this server (its --server-id must not be in the map yet) to a running group:
// the servers hand it the rows of the ranges it takes over (paramserver/PROTOCOL.md §11).
//
// The store comes from WEFT_STORE_ADDR (weft-run sets it). Defaults: server id and transport
// rank = WEFT_RANK, --servers 1, --ns ps. It serves until SIGINT / SIGTERM, until the store
// key <ns>/shutdown exists (workers set it when done), or --timeout, and prints its
// counters when it ends. Exit status 0 on a clean end, 1 on an error, 2 on bad usage.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>

#include "common/config.h"
#include "common/store/store.h"
#include "paramserver/net/server.h"
#include "tools/ps_tool_util.h"

namespace {

using weft::strCat;
namespace pt = weft::ps::tools;

struct Args {
  weft::ps::net::ServerOptions server;
  double timeout_s = 0;
};

Args parse(int argc, char** argv) {
  Args a;
  const int world_rank = pt::envRank();
  a.server.server_id = static_cast<uint32_t>(std::max(world_rank, 0));
  a.server.rank = std::max(world_rank, 0);
  pt::ArgReader r(argc, argv, "weft-ps-server",
      "usage: weft-ps-server [options]   (one parameter server; store from WEFT_STORE_ADDR)\n"
      "  --server-id I         this server's id (default WEFT_RANK)\n"
      "  --servers N           servers in the group (1)\n"
      "  --rank R              transport rank, unique in the namespace (default WEFT_RANK)\n"
      "  --ns NAME             store namespace (ps)\n"
      "  --checkpoint-root DIR checkpoints are written / read below DIR\n"
      "  --restore DIR         start from the checkpoint in DIR\n"
      "  --join                join a running group (takes over part of the key space)\n"
      "  --timeout S           stop after S seconds (0: until SIGTERM or <ns>/shutdown)\n"
      "Exit status: 0 clean end, 1 error, 2 bad usage.\n");
  while (r.next()) {
    if (r.is("--server-id")) {
      a.server.server_id = static_cast<uint32_t>(r.intValue(0, 1 << 20));
    } else if (r.is("--servers")) {
      a.server.num_servers = static_cast<uint32_t>(r.intValue(1, 1 << 20));
    } else if (r.is("--rank")) {
      a.server.rank = static_cast<int>(r.intValue(0, (1 << 22) - 1));
    } else if (r.is("--ns")) {
      a.server.ns = r.value();
    } else if (r.is("--checkpoint-root")) {
      a.server.checkpoint_root = r.value();
    } else if (r.is("--restore")) {
      a.server.restore_dir = r.value();
    } else if (r.is("--join")) {
      a.server.join = true;
    } else if (r.is("--timeout")) {
      a.timeout_s = r.doubleValue(0, 1e7);
    } else {
      r.unknown();
    }
  }
  return a;
}

int run(const Args& a) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before any thread starts
  auto store = pt::must(pt::connectEnvStore(), "connecting to the store (WEFT_STORE_ADDR)");
  const weft::Deadline end =
      a.timeout_s > 0 ? weft::Deadline::afterSeconds(a.timeout_s) : weft::Deadline::never();
  auto server = pt::must(weft::ps::net::Server::start(a.server, store, pt::defaultDeadline()),
                         "starting the parameter server");
  if (a.server.join) {
    std::cout << "weft-ps-server: server " << a.server.server_id << " (rank " << a.server.rank
              << ") joined the running group" << std::endl;
  } else {
    std::cout << "weft-ps-server: server " << a.server.server_id << " of "
              << a.server.num_servers << " (rank " << a.server.rank << ") serving" << std::endl;
  }
  const std::string shutdown_key = a.server.ns + "/shutdown";
  int exit_code = 0;
  while (true) {
    timespec ts{0, 100 * 1000 * 1000};
    const int sig = sigtimedwait(&set, nullptr, &ts);
    if (sig > 0) break;
    auto done = store->check(shutdown_key);
    if (done.isOk() && *done) break;
    if (end.expired()) break;
    const weft::Status health = server->health();
    if (!health.isOk()) {
      std::cerr << "weft-ps-server: " << health << "\n";
      exit_code = 1;
      break;
    }
  }
  const auto s = server->stats();
  std::cout << "weft-ps-server: server " << a.server.server_id << ": " << s.requests
            << " requests (" << s.error_replies << " errors, " << s.large_requests << " large, "
            << s.parked << " parked), " << s.bytes_in << " bytes in, " << s.bytes_out
            << " bytes out, " << s.slabs_registered << " slabs registered (" << s.slabs_allocated
            << " in transport memory), " << s.rows_imported << " rows imported, "
            << s.rows_handed_over << " handed over" << std::endl;
  pt::must(server->stop(weft::Deadline::afterSeconds(10)), "stopping");
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  return pt::toolMain("weft-ps-server", [&] { return run(parse(argc, argv)); });
}
