// Helpers shared by the parameter-server tools (weft-ps-server, weft-ps-ctr, weft-ps-bench):
// argument parsing, error-to-exception conversion (tools may throw), the store from the
// environment, and the server / worker roles of a weft-run job.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/deadline.h"
#include "common/result.h"
#include "common/store/store.h"
#include "paramserver/net/client.h"
#include "paramserver/net/server.h"

namespace weft::ps::tools {

// --help: the tool prints `what()` (its usage) on stdout and exits 0.
struct HelpRequested : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline void must(const Status& st, const std::string& what) {
  if (!st.isOk()) throw std::runtime_error(what + ": " + st.toString());
}
template <class T>
T must(Result<T> r, const std::string& what) {
  if (!r.isOk()) throw std::runtime_error(what + ": " + r.status().toString());
  return std::move(r).value();
}

// "--name value" / "--name=value" reader.
class ArgReader {
 public:
  // usage: printed for -h / --help.
  ArgReader(int argc, char** argv, std::string tool, std::string usage)
      : argc_(argc), argv_(argv), tool_(std::move(tool)), usage_(std::move(usage)) {}
  bool next();  // advances to the next option; false at the end
  bool is(const char* name) const { return name_ == name; }
  std::string value();
  int64_t intValue(int64_t lo, int64_t hi);
  double doubleValue(double lo, double hi);
  // A comma-separated list, each item one of `allowed` (else a usage error naming it).
  std::vector<std::string> listValue(std::initializer_list<const char*> allowed);
  [[noreturn]] void unknown() const;
  [[noreturn]] void fail(const std::string& why) const;

 private:
  int argc_;
  char** argv_;
  std::string tool_;
  std::string usage_;
  int i_ = 0;
  std::string name_;
  std::string inline_value_;
  bool has_inline_ = false;
};

// Runs a tool's body: its exit status, 2 after a UsageError (message on stderr), 1 after any
// other exception ("<tool>: <what>" on stderr).
int toolMain(const char* tool, const std::function<int()>& body);

int envRank();       // WEFT_RANK (-1 when unset)
int envWorldSize();  // WEFT_WORLD_SIZE (0 when unset)
Result<std::shared_ptr<Store>> connectEnvStore();
Deadline defaultDeadline();  // WEFT_TIMEOUT from now

// A weft-run job split into roles: ranks [0, servers) run a ps::net::Server (server id =
// rank), the others are workers (worker index = rank - servers). run() on a server rank
// serves until every worker called finishWorker() (the <ns>/shutdown key), then prints the
// server's counters; on a worker rank it returns the connected Client.
struct JobRoles {
  int rank = 0;
  int world = 1;
  int servers = 1;
  std::string ns = "ps";
  std::string checkpoint_root;  // servers: ServerOptions::checkpoint_root ("" = none)
  std::shared_ptr<Store> store;

  bool isServer() const { return rank < servers; }
  int workers() const { return world - servers; }
  int worker() const { return rank - servers; }
  // Server ranks: serve until shutdown (returns the CPU seconds the process used while
  // serving and the stats). Worker ranks: not called.
  struct ServeResult {
    net::ServerStats stats;
    double cpu_s = 0;
    double wall_s = 0;
  };
  ServeResult serve(Deadline deadline) const;
  std::unique_ptr<net::Client> connectWorker(Deadline deadline) const;
  // Every rank must be started with the same options (weft::checkSameArguments); throws
  // UsageError naming the first rank that differs.
  void checkSameArguments(const char* tool, int argc, char** argv) const;
  // Counts this worker out; the last one sets <ns>/shutdown.
  void finishWorker() const;
  // Store barrier among the workers only.
  void workerBarrier(const std::string& name, Deadline deadline) const;
};

JobRoles jobRoles(int servers, std::string ns);
double processCpuSeconds();

}  // namespace weft::ps::tools
