// The rendezvous key-value store used to bootstrap ranks (exchange addresses, counters,
// barriers). Keys are strings, values are byte strings (binary-safe std::string).
//
// Implementations: HashStore (in-process, tests), FileStore (one node, a directory),
// TcpStore (client of TcpStoreServer, hosted by rank 0 or by weft-run), PrefixStore
// (namespaces another store). See common/store/PROTOCOL.md for the TCP wire format.
//
// Thread safety: every method may be called concurrently from several threads.
// Blocking methods take a Deadline and return kTimeout naming the keys still missing.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/deadline.h"
#include "common/result.h"

namespace weft {

class Store {
 public:
  virtual ~Store() = default;

  // Sets key to value (overwrites), waking waiters.
  virtual Status set(std::string_view key, std::string_view value) = 0;
  // Waits until key exists, then returns its value.
  virtual Result<std::string> get(std::string_view key, Deadline deadline) = 0;
  // Waits until every key exists.
  virtual Status wait(const std::vector<std::string>& keys, Deadline deadline) = 0;
  // Adds delta to the integer stored at key (missing = 0) and returns the new value.
  // A key holding a non-integer value is kInvalidArgument.
  virtual Result<int64_t> add(std::string_view key, int64_t delta) = 0;
  // If key's current value equals expected (a missing key equals ""), sets it to desired.
  // Returns the value after the operation (desired on success, the current one otherwise).
  virtual Result<std::string> compareSet(std::string_view key, std::string_view expected,
                                         std::string_view desired) = 0;
  // Removes key; returns whether it existed.
  virtual Result<bool> erase(std::string_view key) = 0;
  // True when key exists (does not wait).
  virtual Result<bool> check(std::string_view key) = 0;
  // For messages: "tcp://host:port", "file:/dir", "hash", "prefix/<p>/...".
  virtual std::string describe() const = 0;
};

// In-process store (mutex + condition variable). Tests use it for thread-based ranks.
std::shared_ptr<Store> makeHashStore();

// A store in a directory shared by processes on one node (one file per key, atomic rename).
// Waiters poll the directory with a short sleep. The directory is created if needed.
Result<std::shared_ptr<Store>> makeFileStore(const std::string& dir);

// Every key is prefixed with "<prefix>/" before it reaches `base`.
std::shared_ptr<Store> makePrefixStore(std::string prefix, std::shared_ptr<Store> base);

// Client of a TcpStoreServer at host:port. Connecting retries until `deadline`; on failure
// the error names host:port and how long it tried. Each call's round trip is bounded by the
// deadline it takes, or by `op_timeout` for calls without one (add, set, ...).
Result<std::shared_ptr<Store>> connectTcpStore(const std::string& host, uint16_t port,
                                               Deadline deadline,
                                               double op_timeout_s = 300.0);

// Parses "host:port", "[v6]:port" or "file:/dir" and connects (TCP) or opens (file).
Result<std::shared_ptr<Store>> connectStore(const std::string& address, Deadline deadline);

// Serves the TCP store protocol from a background thread until destroyed.
class TcpStoreServer {
 public:
  virtual ~TcpStoreServer() = default;
  virtual uint16_t port() const = 0;
  virtual std::string host() const = 0;
  // Number of connections currently open (tests).
  virtual size_t numConnections() const = 0;
};

// Listens on bind_host:port (port 0 = any free port). bind_host "" or "0.0.0.0" = all IPv4.
Result<std::unique_ptr<TcpStoreServer>> startTcpStoreServer(const std::string& bind_host,
                                                            uint16_t port);

}  // namespace weft
