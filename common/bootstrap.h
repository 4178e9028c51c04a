// Bootstrap: who am I (rank, size, node, local rank) and where is the rendezvous store.
//
// Sources, first match wins:
//   WEFT_RANK / WEFT_WORLD_SIZE / WEFT_LOCAL_RANK / WEFT_LOCAL_SIZE / WEFT_STORE_ADDR (weft-run)
//   Open MPI:  OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK / _LOCAL_SIZE
//   Slurm:     SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID (+ SLURM_NTASKS_PER_NODE-ish)
//   torchrun:  RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE / MASTER_ADDR / MASTER_PORT
//   MPICH/PMI: PMI_RANK / PMI_SIZE (MPI_LOCALRANKID / MPI_LOCALNRANKS from Hydra)
// Node identity: WEFT_NODE_ID, else the hostname.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/deadline.h"
#include "common/result.h"
#include "common/store/store.h"

namespace weft {

// Environment lookup, replaceable in tests (defaults to getenv).
struct EnvSource {
  virtual ~EnvSource() = default;
  // nullptr when unset.
  virtual const char* get(const char* name) const;
};

struct BootInfo {
  int rank = -1;
  int size = 0;
  int local_rank = -1;   // -1 until known
  int local_size = 0;    // 0 until known
  int node_index = -1;   // dense index of this node among the job's nodes (-1 until known)
  int num_nodes = 0;
  std::string node_id;   // WEFT_NODE_ID or hostname
  std::string store_addr;  // host:port, file:/dir, or "" (single rank: in-process store)
  std::string launcher;  // "weft", "openmpi", "slurm", "torchrun", "pmi", "single"
  std::string job_id;    // used to namespace file stores
  bool host_store = false;  // this rank must serve the TCP store at store_addr
};

// Reads rank/size/... from the environment (no network). Fails with a message naming the
// variable when a value is malformed or inconsistent (rank >= size, ...).
Result<BootInfo> detectBootInfo(const EnvSource& env = EnvSource());

// Everything a rank needs to talk to the others: its identity and a connected store.
// Destroying a World counts this rank out under "weft/world/exit"; the rank that hosts the
// store server keeps serving until every rank has counted out (or WEFT_TIMEOUT passes), so
// that no rank loses the store because rank 0 finished first.
struct World {
  World() = default;
  World(World&&) = default;
  World& operator=(World&&) = default;
  ~World();

  BootInfo info;
  std::shared_ptr<Store> store;
  std::unique_ptr<TcpStoreServer> server;  // set when this rank hosts the store
  std::vector<int> node_of_rank;           // node index of every rank
};

// detectBootInfo + connect (or host) the store + derive local ranks and node indices
// through the store when the launcher did not provide them. Collective over all ranks.
Result<World> bootstrap(Deadline deadline);
Result<World> bootstrap(const BootInfo& info, Deadline deadline);

// Publishes this rank's node id under "boot/node/<rank>", waits for all, and fills
// local_rank, local_size, node_index, num_nodes and node_of_rank (deterministic: nodes are
// numbered by the lowest rank they hold, local ranks follow global rank order).
Status deriveTopology(Store& store, BootInfo& info, std::vector<int>& node_of_rank,
                      Deadline deadline);

// Every rank of a tool must be started with the same options (a benchmark whose ranks
// disagree on sizes or operations would otherwise hang or report wrong figures). Each rank
// publishes its arguments (argv[1..]) under "args/<tool>/<rank>"; ranks compare theirs with
// rank 0's, rank 0 gathers the verdicts, and every rank returns the same result:
// kInvalidArgument naming the first rank that differs and both command lines. Collective.
Status checkSameArguments(Store& store, int rank, int size, std::string_view tool, int argc,
                          const char* const* argv, Deadline deadline);

}  // namespace weft
