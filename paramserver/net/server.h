// ps::net::Server: a parameter server serving RequestHandler over the transport.
//
//   ServerOptions o;  o.server_id = 0;  o.num_servers = 2;  o.rank = world_rank;
//   WEFT_ASSIGN_OR_RETURN(auto server, Server::start(o, store, deadline));
//   ... clients connect through the same store ...
//   WEFT_RETURN_IF_ERROR(server->stop(deadline));
//
// start() opens a transport Context (rank o.rank), restores o.restore_dir when given,
// registers the server in the Store (membership.h), publishes the shard map once every
// server registered, and starts one loop thread that owns the Context from then on. The loop
// connects to every client that registers in the Store, keeps recvs_per_client receives
// posted per client, answers each request with RequestHandler (framing.h: eager requests,
// announced large ones, replies tagged with the request id, several requests in flight per
// client), parks pulls that must wait for slower workers (BSP / SSP) and runs them again when
// a Clock request advances the table, and registers every slab of row memory with the
// transport so clients can read rows one-sided (the RemoteKeys go to the Store).
//
// Joining a running group (options.join, PROTOCOL.md §11): the server connects to the
// servers of the current map, adds itself to the map (version + 1, compare-and-set in the
// Store) and serves nothing (every keyed request is refused as routed with a stale map)
// until each server that lost rows to it has handed them over (ImportRows) and marked the
// move done in the Store; then it serves the new version and marks it served
// (Membership::waitServed). Every server's loop watches the map: on a newer version it
// starts refusing requests routed with the old one, exports the rows it lost (values,
// optimizer state, clocks), sends them to their new owners and erases them once they
// acknowledged. Its loop blocks meanwhile (a few ms per thousand rows). If a new owner does
// not acknowledge, the rows stay (unserved) and the error is logged: not a lost update,
// but the moved range is unavailable until an operator intervenes.
//
// Failures: a client that dies or sends garbage is dropped or answered with an Error; the
// server keeps serving the others with its tables intact. A failure of the loop itself
// (the Context) is sticky: health() reports it and the loop ends.
//
// Contract: start / stop / health / stats / tableStats are thread-safe; the Server owns its
// thread and Context and stops them in stop() or its destructor.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/deadline.h"
#include "common/result.h"
#include "common/store/store.h"
#include "paramserver/server/shard.h"
#include "paramserver/wire/header.h"
#include "transport/api/context.h"

namespace weft::ps::net {

struct ServerOptions {
  uint32_t server_id = 0;    // 0..num_servers-1: the shard map's server id
  uint32_t num_servers = 1;  // servers of the job (the initial map holds 0..num_servers-1)
  int rank = 0;              // transport rank, unique among the job's servers and clients
  std::string ns = "ps";     // store namespace (several parameter servers in one store)
  std::string backend = "ucx";
  transport::ContextOptions transport;  // rank is set from `rank`
  std::string checkpoint_root;          // "" refuses Checkpoint requests
  std::string restore_dir;              // restore this checkpoint directory before serving
  bool register_rows = true;            // register slabs for one-sided reads
  size_t eager_bytes = 0;               // 0: WEFT_PS_EAGER_BYTES
  size_t recvs_per_client = 0;          // 0: WEFT_PS_SERVER_RECVS
  // Threads for one request's table work (paramserver/util/fork_join.h); 0:
  // WEFT_PS_SERVER_THREADS, whose 0 means the process's CPUs / ranks on its node, 1 to 4.
  uint32_t threads = 0;
  ShardOptions shard;                   // server_rank is set from server_id
  // Join the running group whose map is in the store (server_id must not be in it yet;
  // num_servers is ignored).
  bool join = false;
  // The highest protocol version the server agrees on in Hello (wire/header.h; 1: clients
  // send values in the messages, as to a server of an older release).
  uint16_t max_version = wire::kMaxVersion;
};

struct ServerStats {
  uint64_t requests = 0;
  uint64_t error_replies = 0;
  uint64_t large_requests = 0;  // announced + body, or with gradients by reference
  // Requests whose values stay in the client's memory (kFlagValuesByRef): accessed through
  // a mapping of it (Push / PushPull gradients read, Pull values written; no copy), or
  // gradients fetched with a get.
  uint64_t values_mapped = 0;
  uint64_t values_fetched = 0;
  uint64_t parked = 0;          // pulls parked for a clock
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t clients = 0;  // connected now
  uint64_t slabs_registered = 0;  // slabs readable one-sided (their keys published)
  uint64_t slabs_allocated = 0;   // ... of them in transport memory (WEFT_PS_SLAB_MEMORY)
  uint64_t rows_handed_over = 0;  // rows sent to new owners after shard-map changes
  uint64_t rows_imported = 0;     // rows received from previous owners (ImportRows)
};

struct ServerTableStats {
  uint32_t id = 0;
  std::string name;
  uint32_t dim = 0;
  TableStats stats;  // rows, memory, bytes_per_row (server/table.h)
};

class Server {
 public:
  static Result<std::unique_ptr<Server>> start(const ServerOptions& options,
                                               std::shared_ptr<Store> store, Deadline deadline);
  virtual ~Server() = default;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  virtual uint32_t id() const = 0;
  // OK while serving; the loop's error once it failed; kCanceled after stop().
  virtual Status health() const = 0;
  virtual ServerStats stats() const = 0;
  // The shard-map version this server serves (0 while a joining server waits for rows).
  virtual uint32_t mapVersion() const = 0;
  // Every table of this server's shard, by id.
  virtual std::vector<ServerTableStats> tableStats() const = 0;
  // Stops the loop, closes every connection and joins the thread (idempotent).
  virtual Status stop(Deadline deadline) = 0;
  // Blocks until the loop ends (stop() from another thread, or an error) or the deadline.
  virtual Status waitUntilStopped(Deadline deadline) = 0;

 protected:
  Server() = default;
};

}  // namespace weft::ps::net
