// Session: the Weft side of one PyTorch process group (torch-free: only the plugin's torch
// sources include torch headers, which take ~25 s per translation unit to parse).
//
//   // rank 0:  auto server = Session::hostStore();  publish storeAddress(*server) via c10d
//   // every rank, with the published address:
//   WEFT_ASSIGN_OR_RETURN(auto s, Session::join(rank, size, addr, std::move(server), 300));
//   coll::allreduce(s->comm(), ...);
//
// Contract
//  - Rank 0 hosts a Weft TCP store (all IPv4 interfaces, a free port); the launcher's store
//    (c10d) only carries its address. A rank on the host that published the address
//    connects to 127.0.0.1, the others to the published host name.
//  - join() is collective over the group's ranks: it connects the store, derives the node
//    of every rank (WEFT_NODE_ID, else the host name), opens a "ucx" transport Context and
//    creates the world Communicator, all bounded by timeout_s.
//  - Threads: comm() is used by one thread at a time (the caller serializes).
//  - Lifetime: destroying a Session counts this rank out of the store; the rank hosting
//    the store waits (at most min(timeout_s, 60 s); not at all when the communicator is
//    broken) until every rank has counted out, so that no rank loses the store while it
//    still connects endpoints.
#pragma once

#include <memory>
#include <string>

#include "collectives/api/communicator.h"
#include "common/result.h"
#include "common/store/store.h"
#include "transport/api/context.h"

namespace weft::torchpg {

class Session {
 public:
  // Starts the store server rank 0 hosts.
  static Result<std::unique_ptr<TcpStoreServer>> hostStore();
  // "<host name>:<port>" of a server hostStore() started, for the other ranks.
  static std::string storeAddress(const TcpStoreServer& server);
  // Collective. `server` is hostStore()'s result on rank 0, nullptr elsewhere.
  static Result<std::unique_ptr<Session>> join(int rank, int size, const std::string& store_addr,
                                               std::unique_ptr<TcpStoreServer> server,
                                               double timeout_s);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  coll::Communicator& comm() { return *comm_; }

 private:
  Session() = default;

  int size_ = 0;
  double timeout_s_ = 0;
  std::unique_ptr<TcpStoreServer> server_;
  std::shared_ptr<Store> store_;
  std::shared_ptr<transport::Context> context_;
  std::unique_ptr<coll::Communicator> comm_;
};

}  // namespace weft::torchpg
