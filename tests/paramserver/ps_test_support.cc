#include "tests/paramserver/ps_test_support.h"

#include <chrono>
#include <thread>

namespace weft::ps::testing {

void workerDone(weft::testing::RankEnv& env) { must(env.store->add("done", 1), "store add"); }

void groupBarrier(weft::testing::RankEnv& env, const std::string& name, int count) {
  env.step("group barrier " + name);
  const std::string key = "gbarrier/" + name;
  must(env.store->add(key, 1), "store add");
  while (must(env.store->add(key, 0), "store add") < count) {
    if (env.deadline.expired()) throw std::runtime_error("group barrier " + name + " timed out");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

std::unique_ptr<net::Server> startServer(weft::testing::RankEnv& env, uint32_t server_id,
                                         uint32_t num_servers, const std::string& ns,
                                         const std::string& checkpoint_root) {
  env.step("starting the server");
  net::ServerOptions o;
  o.server_id = server_id;
  o.num_servers = num_servers;
  o.rank = env.rank;
  o.ns = ns;
  o.checkpoint_root = checkpoint_root;
  return must(net::Server::start(o, env.store, env.deadline), "Server::start");
}

void serveUntil(weft::testing::RankEnv& env, uint32_t server_id, uint32_t num_servers,
                int workers, const std::string& ns, const std::string& checkpoint_root) {
  auto server = startServer(env, server_id, num_servers, ns, checkpoint_root);
  env.step("serving");
  while (must(env.store->add("done", 0), "store add") < workers) {
    ASSERT_TRUE(server->health().isOk()) << server->health();
    ASSERT_FALSE(env.deadline.expired()) << "the workers did not finish";
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(server->health().isOk()) << server->health();
  must(server->stop(Deadline::afterSeconds(10)), "Server::stop");
}

std::unique_ptr<net::Client> connectClient(weft::testing::RankEnv& env, uint32_t worker,
                                           const std::string& ns) {
  env.step("connecting the client");
  net::ClientOptions o;
  o.rank = env.rank;
  o.worker = worker;
  o.ns = ns;
  return must(net::Client::connect(o, env.store, env.deadline), "Client::connect");
}

TableSpec exactTable(uint32_t id, uint32_t dim) {
  TableSpec spec;
  spec.id = id;
  spec.name = strCat("exact", id);
  spec.dim = dim;
  spec.optimizer.kind = OptimizerKind::kSgd;
  spec.optimizer.learning_rate = 1.0f;
  return spec;
}

}  // namespace weft::ps::testing
