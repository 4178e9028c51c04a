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
// Failures: a client that dies or sends garbage is dropped or answered with an Error; the
// server keeps serving the others with its tables intact. A failure of the loop itself
// (the Context) is sticky: health() reports it and the loop ends.
//
// Contract: start / stop / health / stats / shard are thread-safe; the Server owns its
// thread and Context and stops them in stop() or its destructor.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/deadline.h"
#include "common/result.h"
#include "common/store/store.h"
#include "paramserver/server/shard.h"
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
  ShardOptions shard;                   // server_rank is set from server_id
};

struct ServerStats {
  uint64_t requests = 0;
  uint64_t error_replies = 0;
  uint64_t large_requests = 0;  // announced + body
  uint64_t parked = 0;          // pulls parked for a clock
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t clients = 0;  // connected now
  uint64_t slabs_registered = 0;
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
  // Stops the loop, closes every connection and joins the thread (idempotent).
  virtual Status stop(Deadline deadline) = 0;
  // Blocks until the loop ends (stop() from another thread, or an error) or the deadline.
  virtual Status waitUntilStopped(Deadline deadline) = 0;

 protected:
  Server() = default;
};

}  // namespace weft::ps::net
