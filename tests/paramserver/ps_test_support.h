// Helpers of the networked parameter-server tests: a server or a client inside a rank of
// the multi-rank harness, tables with exact arithmetic, and error-checking shorthands.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "paramserver/net/client.h"
#include "paramserver/net/server.h"
#include "tests/support/rank_harness.h"

namespace weft::ps::testing {

template <class T>
T must(Result<T> r, const char* what) {
  if (!r.isOk()) throw std::runtime_error(std::string(what) + ": " + r.status().toString());
  return std::move(r).value();
}
inline void must(const Status& s, const char* what) {
  if (!s.isOk()) throw std::runtime_error(std::string(what) + ": " + s.toString());
}

// Starts server `server_id` of `num_servers` in this rank (transport rank = env.rank).
std::unique_ptr<net::Server> startServer(weft::testing::RankEnv& env, uint32_t server_id,
                                         uint32_t num_servers, const std::string& ns = "ps",
                                         const std::string& checkpoint_root = "");
// Runs server `server_id` of `num_servers` in this rank (transport rank = env.rank) until
// the store counter "done" reaches `workers` (each worker calls workerDone at its end).
void serveUntil(weft::testing::RankEnv& env, uint32_t server_id, uint32_t num_servers,
                int workers, const std::string& ns = "ps",
                const std::string& checkpoint_root = "");
void workerDone(weft::testing::RankEnv& env);
// A barrier among `count` ranks (env.barrier waits for every rank, servers included).
void groupBarrier(weft::testing::RankEnv& env, const std::string& name, int count);

std::unique_ptr<net::Client> connectClient(weft::testing::RankEnv& env, uint32_t worker,
                                           const std::string& ns = "ps");

// SGD with learning rate 1 on zero-initialized rows: a row's value is minus the sum of the
// gradients pushed to it, exact for small integers.
TableSpec exactTable(uint32_t id, uint32_t dim);

}  // namespace weft::ps::testing
