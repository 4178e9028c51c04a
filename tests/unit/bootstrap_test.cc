// Bootstrap: launcher conventions (faked environments) and topology through a store.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <map>
#include <optional>
#include <thread>

#include "common/bootstrap.h"

namespace weft {
namespace {

struct FakeEnv : EnvSource {
  std::map<std::string, std::string> vars;
  FakeEnv(std::initializer_list<std::pair<const std::string, std::string>> v) : vars(v) {}
  const char* get(const char* name) const override {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  }
};

TEST(Bootstrap, WeftVariablesWin) {
  FakeEnv env{{"WEFT_RANK", "3"},          {"WEFT_WORLD_SIZE", "8"},
              {"WEFT_LOCAL_RANK", "1"},    {"WEFT_LOCAL_SIZE", "2"},
              {"WEFT_STORE_ADDR", "h:99"}, {"WEFT_NODE_ID", "nodeB"},
              {"WEFT_JOB_ID", "j1"},       {"OMPI_COMM_WORLD_RANK", "0"},
              {"OMPI_COMM_WORLD_SIZE", "2"}};
  auto r = detectBootInfo(env);
  ASSERT_TRUE(r.isOk()) << r.status();
  EXPECT_EQ(r->launcher, "weft");
  EXPECT_EQ(r->rank, 3);
  EXPECT_EQ(r->size, 8);
  EXPECT_EQ(r->local_rank, 1);
  EXPECT_EQ(r->local_size, 2);
  EXPECT_EQ(r->node_id, "nodeB");
  EXPECT_EQ(r->store_addr, "h:99");
  EXPECT_EQ(r->job_id, "j1");
  EXPECT_FALSE(r->host_store);
}

TEST(Bootstrap, OpenMpi) {
  FakeEnv env{{"OMPI_COMM_WORLD_RANK", "1"},
              {"OMPI_COMM_WORLD_SIZE", "2"},
              {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
              {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
              {"PMIX_NAMESPACE", "prterun-x-1@1"},
              {"TMPDIR", "/tmp"}};
  auto r = detectBootInfo(env);
  ASSERT_TRUE(r.isOk()) << r.status();
  EXPECT_EQ(r->launcher, "openmpi");
  EXPECT_EQ(r->rank, 1);
  EXPECT_EQ(r->size, 2);
  EXPECT_EQ(r->local_rank, 1);
  EXPECT_EQ(r->local_size, 2);
  EXPECT_EQ(r->job_id, "prterun-x-1@1");
  EXPECT_EQ(r->store_addr.rfind("file:/tmp/weft-store-", 0), 0u) << r->store_addr;
}

TEST(Bootstrap, Slurm) {
  FakeEnv env{{"SLURM_PROCID", "5"},       {"SLURM_NTASKS", "6"},
              {"SLURM_LOCALID", "2"},      {"SLURM_JOB_ID", "77"},
              {"SLURM_STEP_ID", "0"},      {"SLURMD_NODENAME", "cn12"},
              {"WEFT_STORE_ADDR", "cn1:5000"}};
  auto r = detectBootInfo(env);
  ASSERT_TRUE(r.isOk()) << r.status();
  EXPECT_EQ(r->launcher, "slurm");
  EXPECT_EQ(r->rank, 5);
  EXPECT_EQ(r->size, 6);
  EXPECT_EQ(r->local_rank, 2);
  EXPECT_EQ(r->local_size, 0);  // derived through the store later
  EXPECT_EQ(r->node_id, "cn12");
  EXPECT_EQ(r->job_id, "slurm-77.0");
  EXPECT_EQ(r->store_addr, "cn1:5000");
}

TEST(Bootstrap, TorchrunHostsStoreAboveMasterPort) {
  FakeEnv env{{"RANK", "0"},          {"WORLD_SIZE", "4"},          {"LOCAL_RANK", "0"},
              {"LOCAL_WORLD_SIZE", "2"}, {"MASTER_ADDR", "10.0.0.1"}, {"MASTER_PORT", "29500"}};
  auto r = detectBootInfo(env);
  ASSERT_TRUE(r.isOk()) << r.status();
  EXPECT_EQ(r->launcher, "torchrun");
  EXPECT_EQ(r->size, 4);
  EXPECT_EQ(r->local_size, 2);
  EXPECT_EQ(r->store_addr, "10.0.0.1:29501");
  EXPECT_TRUE(r->host_store);
}

TEST(Bootstrap, PmiAndSingle) {
  FakeEnv pmi{{"PMI_RANK", "1"}, {"PMI_SIZE", "3"}, {"MPI_LOCALRANKID", "1"},
              {"MPI_LOCALNRANKS", "3"}};
  auto r = detectBootInfo(pmi);
  ASSERT_TRUE(r.isOk()) << r.status();
  EXPECT_EQ(r->launcher, "pmi");
  EXPECT_EQ(r->rank, 1);
  EXPECT_EQ(r->size, 3);
  EXPECT_EQ(r->local_size, 3);
  FakeEnv none{};
  auto s = detectBootInfo(none);
  ASSERT_TRUE(s.isOk()) << s.status();
  EXPECT_EQ(s->launcher, "single");
  EXPECT_EQ(s->rank, 0);
  EXPECT_EQ(s->size, 1);
  EXPECT_EQ(s->local_rank, 0);
  EXPECT_EQ(s->store_addr, "");
}

TEST(Bootstrap, MalformedValuesNameTheVariable) {
  auto expectBad = [](FakeEnv env, const std::string& needle) {
    auto r = detectBootInfo(env);
    ASSERT_FALSE(r.isOk());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status();
  };
  expectBad(FakeEnv{{"WEFT_RANK", "two"}, {"WEFT_WORLD_SIZE", "4"}}, "WEFT_RANK=\"two\"");
  expectBad(FakeEnv{{"WEFT_RANK", "4"}, {"WEFT_WORLD_SIZE", "4"}}, "rank 4 is not below");
  expectBad(FakeEnv{{"WEFT_RANK", "1"}}, "must be set together");
  expectBad(FakeEnv{{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "-2"}}, "SLURM_NTASKS=\"-2\"");
  expectBad(FakeEnv{{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"},
                    {"MASTER_PORT", "http"}},
            "MASTER_PORT");
}

TEST(Bootstrap, TopologyThroughStore) {
  // 5 ranks as threads: nodes a,b,a,c,b -> node indices 0,1,0,2,1.
  const std::vector<std::string> nodes = {"a", "b", "a", "c", "b"};
  auto store = makeHashStore();
  std::vector<BootInfo> infos(nodes.size());
  std::vector<std::vector<int>> maps(nodes.size());
  std::vector<Status> results(nodes.size());
  std::vector<std::thread> threads;
  for (size_t r = 0; r < nodes.size(); ++r) {
    infos[r].rank = static_cast<int>(r);
    infos[r].size = static_cast<int>(nodes.size());
    infos[r].node_id = nodes[r];
    threads.emplace_back([&, r] {
      results[r] = deriveTopology(*store, infos[r], maps[r], Deadline::afterSeconds(10));
    });
  }
  for (auto& t : threads) t.join();
  const int want_local[] = {0, 0, 1, 0, 1};
  const int want_lsize[] = {2, 2, 2, 1, 2};
  for (size_t r = 0; r < nodes.size(); ++r) {
    ASSERT_TRUE(results[r].isOk()) << results[r];
    EXPECT_EQ(infos[r].local_rank, want_local[r]) << r;
    EXPECT_EQ(infos[r].local_size, want_lsize[r]) << r;
    EXPECT_EQ(infos[r].num_nodes, 3);
    EXPECT_EQ(maps[r], (std::vector<int>{0, 1, 0, 2, 1}));
  }
}

TEST(Bootstrap, MissingRankTimesOutNamingIt) {
  auto store = makeHashStore();
  BootInfo info;
  info.rank = 0;
  info.size = 2;
  info.node_id = "a";
  std::vector<int> map;
  Status st = deriveTopology(*store, info, map, Deadline::afterSeconds(0.2));
  ASSERT_FALSE(st.isOk());
  EXPECT_EQ(st.code(), StatusCode::kTimeout);
  EXPECT_NE(st.message().find("waiting for the node id of rank 1"), std::string::npos) << st;
}

TEST(Bootstrap, LastRankOutRemovesTheFileStore) {
  // 2 ranks as threads on one file store (what mpirun without WEFT_STORE_ADDR gets).
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("weft-store-test-" + std::to_string(::getpid())))
                              .string();
  std::vector<std::optional<World>> worlds(2);
  std::vector<Status> results(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      BootInfo info;
      info.rank = r;
      info.size = 2;
      info.node_id = "a";
      info.store_addr = "file:" + dir;
      Result<World> w = bootstrap(info, Deadline::afterSeconds(10));
      results[static_cast<size_t>(r)] = w.status();
      if (w.isOk()) worlds[static_cast<size_t>(r)].emplace(std::move(*w));
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(results[0].isOk()) << results[0];
  ASSERT_TRUE(results[1].isOk()) << results[1];
  EXPECT_TRUE(std::filesystem::exists(dir));
  worlds[1].reset();
  EXPECT_TRUE(std::filesystem::exists(dir)) << "rank 0 has not finished: the store stays";
  worlds[0].reset();
  EXPECT_FALSE(std::filesystem::exists(dir)) << "the last rank out removes " << dir;
}

}  // namespace
}  // namespace weft
