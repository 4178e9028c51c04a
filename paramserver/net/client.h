// ps::net::Client: a worker's connection to every parameter server of a job.
//
//   ClientOptions o;  o.rank = world_rank;  o.worker = worker_index;
//   WEFT_ASSIGN_OR_RETURN(auto client, Client::connect(o, store, deadline));
//   WEFT_RETURN_IF_ERROR(client->createTable(spec, deadline));     // every server
//   WEFT_ASSIGN_OR_RETURN(Ticket t, client->pull(spec.id, keys, out));
//   WEFT_RETURN_IF_ERROR(client->wait(t, deadline));                // out is filled
//
// Requests: keys may come in any order and repeat. A pull fills every position (a key
// without a row reads as its initializer). A push sums duplicate keys' gradients on the
// server, then runs the optimizer once per distinct key (PROTOCOL.md §4). Keys are routed
// to servers by the shard map; one request per server is in flight per call, and any number
// of calls may be in flight (each returns a Ticket): replies are matched by request id.
// push / pushPull check every gradient is finite before sending anything, so a bad push
// changes no server. Requests above the servers' max_keys are refused at once.
//
// Errors: an Error reply comes back as its Status (unknown table, dim mismatch, ...,
// naming the server). A server that dies fails the calls waiting on it, and every later
// call to it, with kPeerFailure naming it ("ps server 1 (rank 3)") as soon as the transport
// notices (same-host peers: at once; remote ones: UCX keepalive); wait() never outlives its
// deadline (kTimeout naming the servers that did not answer; the ticket stays valid).
// reconnect() re-reads the store and reconnects to servers that failed (restarted ones).
// Shard-map changes (a server joined, PROTOCOL.md §11): a pull / push / pushPull part that a
// server refuses as routed with a stale map (kUnavailable; nothing was applied) is re-routed
// by wait() with the map re-read from the store, connecting to new servers, and resent
// (only the refused keys) with short pauses until the call's deadline. createTable re-reads
// the map first, so a table created after a join reaches the new server too.
//
// Paths: pull / push / pushPull / clock / checkpoint are RPCs (framing.h: eager messages up
// to WEFT_PS_EAGER_BYTES, larger requests announced then moved by the transport's
// rendezvous). pullOneSided() reads rows straight from the servers' registered memory
// (transport get), validated per row (row_layout.h), retrying torn copies, and falls back
// to RPC for keys without a row or whose row moved; rows of ASP tables this client created
// can be read at cached locations, without a Locate (WEFT_PS_LOCATION_CACHE, off by
// default, PROTOCOL.md §6);
// oneSidedStats() counts both paths,
// pathStats() the RPCs' eager and announced (rendezvous) requests and their replies.
// Copies on the RPC path: keys and gradients are copied once, at the call, from the
// caller's buffers into a pooled request buffer that the transport sends from (a batch one
// server owns whole is two memcpy calls, others are gathered per key); a reply lands in a
// pooled buffer and is copied once into `out` (one memcpy for a whole batch). Once the
// pools have grown, a request allocates only its ticket's map entry. (The transport has no
// gather send, so sending keys and gradients from the caller's buffers needs a protocol
// change; while a large request's body is on its way, wait() drives progress without
// sleeping: the rendezvous advances only while the sender progresses.)
//
// Contract: one thread at a time (the Client drives its own Context in wait()); buffers
// given to pull / push stay the caller's and must stay valid until the ticket completed
// (grads are copied at the call, out is written during wait()).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/deadline.h"
#include "common/result.h"
#include "common/store/store.h"
#include "paramserver/sharding/shard_map.h"
#include "paramserver/table_spec.h"
#include "transport/api/context.h"

namespace weft::ps::net {

struct ClientOptions {
  int rank = 0;         // transport rank, unique among the job's servers and clients
  uint32_t worker = 0;  // worker index for Clock (BSP / SSP tables: 0..num_workers-1)
  std::string ns = "ps";
  std::string backend = "ucx";
  transport::ContextOptions transport;  // rank is set from `rank`
  size_t eager_bytes = 0;               // 0: WEFT_PS_EAGER_BYTES (same value as the servers)
};

using Ticket = uint64_t;

struct OneSidedStats {
  uint64_t rows_one_sided = 0;  // rows returned from a validated one-sided read
  uint64_t rows_rpc = 0;        // rows pullOneSided fetched by RPC (no row yet, moved)
  uint64_t gets = 0;            // transport gets posted
  uint64_t mapped_reads = 0;    // rows copied from a slab the transport maps here (UCX shared
                                // memory, Endpoint::mappedAddress): no get, no server work
  uint64_t torn_retries = 0;    // copies rejected as torn and read again
  uint64_t locates = 0;         // Locate RPCs
  uint64_t locations_cached = 0;  // rows read at a cached location (no Locate; ASP tables)
  uint64_t locations_stale = 0;   // of those, rows that went by RPC (failed validation, or
                                  // their get window failed) and left the cache
  uint64_t failed_windows = 0;  // get windows with a failed get (its rows went by RPC and the
                                // server's cached slab keys were dropped: a restart)
};

// Which RPC path this client's requests took (every opcode; pullOneSided's Locate RPCs
// too). Eager: the request was one message of at most WEFT_PS_EAGER_BYTES. Announced: its
// header went first and the body followed by the transport's rendezvous (framing.h).
// Replies: one message each; the transport picks eager or rendezvous by size.
struct PathStats {
  uint64_t eager_requests = 0;
  uint64_t eager_bytes = 0;
  uint64_t announced_requests = 0;
  uint64_t announced_bytes = 0;
  // Large pushes whose gradients stayed in this client's transport memory, and large pulls
  // that offered it for their values (kFlagValuesByRef; counted in eager_* for their
  // message without values): their value bytes, and how the servers' replies said they
  // handled them: through a mapping of that memory (no copy), or not (gradients fetched
  // with a get, values sent in the reply; later requests to that server then carry them).
  uint64_t values_by_ref_requests = 0;
  uint64_t values_by_ref_bytes = 0;
  uint64_t values_mapped = 0;
  uint64_t values_unmapped = 0;
  uint64_t replies = 0;  // replies decoded (error replies included)
  uint64_t reply_bytes = 0;
};

class Client {
 public:
  static Result<std::unique_ptr<Client>> connect(const ClientOptions& options,
                                                 std::shared_ptr<Store> store, Deadline deadline);
  virtual ~Client() = default;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Creates the table on every server (idempotent for an identical spec) and remembers it.
  virtual Status createTable(const TableSpec& spec, Deadline deadline) = 0;
  // Uses a table created elsewhere (by another worker) with this dim.
  virtual void useTable(uint32_t table_id, uint32_t dim) = 0;

  // out: keys.size() * dim floats; grads: keys.size() * dim floats (copied at the call).
  virtual Result<Ticket> pull(uint32_t table_id, std::span<const uint64_t> keys, float* out) = 0;
  virtual Result<Ticket> push(uint32_t table_id, std::span<const uint64_t> keys,
                              std::span<const float> grads) = 0;
  virtual Result<Ticket> pushPull(uint32_t table_id, std::span<const uint64_t> keys,
                                  std::span<const float> grads, float* out) = 0;
  // Completes a ticket: OK, the first error of its servers, or kTimeout (ticket kept).
  // Waiting again after kTimeout resumes where the last wait stopped: parts already
  // answered keep their outcome and no key is sent twice (a re-send after a shard-map
  // change included). A completed ticket is forgotten; waiting on it again is
  // kInvalidArgument.
  virtual Status wait(Ticket ticket, Deadline deadline) = 0;
  // Drives progress once; true when wait() would not block.
  virtual bool test(Ticket ticket) = 0;
  virtual size_t outstanding() const = 0;

  // Blocking conveniences.
  Status pullSync(uint32_t table_id, std::span<const uint64_t> keys, float* out, Deadline d);
  Status pushSync(uint32_t table_id, std::span<const uint64_t> keys, std::span<const float> grads,
                  Deadline d);

  // This worker finished its current clock of the table (on every server); the clock
  // pulls carry becomes clock + 1.
  virtual Status clock(uint32_t table_id, Deadline deadline) = 0;
  virtual uint32_t currentClock(uint32_t table_id) const = 0;

  // Every server writes (restore: reads) <its checkpoint root>/<path>/server-<id>. A write
  // records one random id of this call on every server; a restore first has every server
  // check its checkpoint and report that id, and restores only when all agree, so a path
  // whose last write failed on some server is refused before any server changes
  // (PROTOCOL.md §4 Checkpoint).
  virtual Status checkpoint(const std::string& path, bool restore, Deadline deadline) = 0;
  // The same as one collective of all `num_workers` workers: a consistent cut of the whole
  // job. Every worker (ClientOptions::worker 0..num_workers-1) calls it with the same path
  // and flag once every request it made was answered (tickets need not have been waited
  // for); the k-th call of each worker is one checkpoint. The workers meet through the
  // Store; worker 0 then waits until the shard map is fully served (no rows being handed to
  // a joining server), checkpoints (or restores) every server and publishes the outcome,
  // which every worker returns. As a push is answered only once every server applied it and
  // no worker sends while in here, the snapshot holds the rows after exactly the pushes
  // answered before the calls, on every server (admission counts of not-yet-admitted keys
  // are not part of any checkpoint). A worker with unanswered requests, or workers that
  // disagree on the path, make every worker fail with kInvalidArgument naming them; a
  // worker that never comes, kTimeout naming it. A worker whose deadline passes first
  // claims the call, so worker 0 then writes nothing. The table clocks this client had at
  // a job checkpoint it wrote come back with its restore. PROTOCOL.md §8 and §10.
  virtual Status checkpointJob(const std::string& path, bool restore, uint32_t num_workers,
                               Deadline deadline) = 0;

  // One-sided pull (see above). Blocking.
  virtual Status pullOneSided(uint32_t table_id, std::span<const uint64_t> keys, float* out,
                              Deadline deadline) = 0;
  virtual OneSidedStats oneSidedStats() const = 0;
  virtual PathStats pathStats() const = 0;

  // Reconnects to servers whose connection failed (re-reading their rank from the store).
  // Outstanding tickets with a part on such a server are dropped (waiting on them is then
  // kInvalidArgument); their buffers are kept until their parts on live servers complete.
  virtual Status reconnect(Deadline deadline) = 0;
  virtual const ShardMap& shardMap() const = 0;
  // "ps server 1 (rank 3)" for the server of a shard-map id.
  virtual std::string describeServer(uint32_t server_id) const = 0;

 protected:
  Client() = default;
};

}  // namespace weft::ps::net
