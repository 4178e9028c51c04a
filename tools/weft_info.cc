// weft-info: version, enabled backends, configuration and identity of a Weft process.
//
//   weft-info                  version and backends
//   weft-info --config         every WEFT_* variable: value, source, allowed values, doc
//   weft-info --config --markdown   the same as a Markdown table (README)
//   weft-info --whoami         rank, local rank, node (bootstraps through the store)
//   weft-info --explain allreduce 64M [--ranks 4] [--nodes 1]
//                              the algorithm the collectives would pick, and the predicted
//                              time of every alternative (cost model + WEFT_ALGO_<OP>)
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>

#include "collectives/tuner/tuner.h"
#include "common/bootstrap.h"
#include "common/config.h"

namespace {

using weft::config::ParamSpec;

constexpr const char* kUsage =
    "usage: weft-info [--config [--markdown]] [--whoami] [--explain OP SIZE [--ranks N]\n"
    "                 [--nodes M]] [--help]\n"
    "  (no option)  version and enabled backends\n"
    "  --config     every WEFT_* variable with its value and where it came from\n"
    "  --markdown   with --config: print a Markdown table\n"
    "  --whoami     bootstrap and print rank, world size, local rank, node\n"
    "  --explain    collective OP (allreduce, broadcast, ...) of SIZE bytes per rank (64M,\n"
    "               1K, 8): the algorithm chosen and every alternative's predicted time\n";

struct Backend {
  const char* name;
  const char* what;
};

constexpr Backend kBackends[] = {
    {"ucx", "UCX (UCP) transport"},
    {"verbs", "native libibverbs transport"},
    {"cuda", "CUDA device memory and kernels"},
    {"torch", "PyTorch process-group backend"},
};

// WEFT_FEATURES is ",ucx,verbs," etc. (set by cmake/WeftOptions.cmake).
bool builtIn(const char* name) {
  return std::string_view(WEFT_FEATURES).find("," + std::string(name) + ",") !=
         std::string_view::npos;
}

int printVersion() {
  std::printf("weft %s\n", WEFT_VERSION);
  std::printf("backends (built in):\n");
  for (const auto& b : kBackends) {
    std::printf("  %-6s %-9s %s\n", b.name, builtIn(b.name) ? "enabled" : "disabled", b.what);
  }
  return 0;
}

std::string valueText(const ParamSpec& p, std::string* source) {
  auto raw = weft::config::raw(p.name);
  if (!raw.isOk()) return "?";
  *source = std::string(weft::config::sourceName(raw->source));
  weft::Status st = weft::config::validate(p, raw->text);
  return st.isOk() ? raw->text : raw->text + "  <-- INVALID";
}

int printConfig(bool markdown) {
  if (markdown) {
    std::printf("| variable | default | allowed | meaning |\n|---|---|---|---|\n");
    for (const auto& p : weft::config::allParams()) {
      std::printf("| `%s` | `%s` | %s | %s |\n", p.name, p.default_value,
                  weft::config::allowedText(p).c_str(), p.doc);
    }
    return 0;
  }
  int bad = 0;
  for (const auto& p : weft::config::allParams()) {
    std::string source;
    std::string value = valueText(p, &source);
    bad += value.find("<-- INVALID") != std::string::npos;
    std::printf("%-24s = %-14s [%s]\n    %s; %s\n", p.name,
                ("\"" + value + "\"").c_str(), source.c_str(), p.doc,
                weft::config::allowedText(p).c_str());
  }
  weft::Status st = weft::config::checkEnvironment();
  if (!st.isOk()) {
    std::fprintf(stderr, "weft-info: %s\n", st.message().c_str());
    return 2;
  }
  return bad ? 2 : 0;
}

int whoami() {
  double timeout = weft::config::getDouble("WEFT_TIMEOUT").valueOr(300.0);
  auto world = weft::bootstrap(weft::Deadline::afterSeconds(timeout));
  if (!world.isOk()) {
    std::fprintf(stderr, "weft-info --whoami: %s\n", world.status().toString().c_str());
    return 1;
  }
  const weft::BootInfo& i = world->info;
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  std::printf(
      "rank %d/%d local_rank %d/%d node %s (index %d of %d) host %s pid %d launcher %s\n",
      i.rank, i.size, i.local_rank, i.local_size, i.node_id.c_str(), i.node_index,
      i.num_nodes, host, static_cast<int>(getpid()), i.launcher.c_str());
  std::fflush(stdout);
  return 0;
}

struct ExplainArgs {
  std::string op;
  std::string size;
  int ranks = 2;
  int nodes = 1;
};

int explain(const ExplainArgs& a) {
  auto kind = weft::coll::parseCollKind(a.op);
  auto bytes = weft::coll::parseByteSize(a.size);
  auto tuner = weft::coll::Tuner::fromEnvironment();
  auto chunk = weft::config::getInt("WEFT_COLL_CHUNK");
  for (const weft::Status& st : {kind.status(), bytes.status(), tuner.status(), chunk.status()}) {
    if (!st.isOk()) {
      std::fprintf(stderr, "weft-info --explain: %s\n", st.message().c_str());
      return 2;
    }
  }
  if (a.ranks < 1 || a.nodes < 1 || a.nodes > a.ranks) {
    std::fprintf(stderr, "weft-info --explain: need 1 <= nodes <= ranks (got %d nodes, %d ranks)\n",
                 a.nodes, a.ranks);
    return 2;
  }
  const weft::coll::TopologyShape shape{a.ranks, a.nodes};
  std::fputs(tuner->explain(*kind, *bytes, shape, static_cast<size_t>(*chunk)).c_str(), stdout);
  return tuner->select(*kind, *bytes, shape, static_cast<size_t>(*chunk)).isOk() ? 0 : 2;
}

// Parses "--explain OP SIZE [--ranks N] [--nodes M]" from argv[i]; false on bad input.
bool parseExplain(int argc, char** argv, int& i, ExplainArgs& out) {
  if (i + 2 >= argc) return false;
  out.op = argv[++i];
  out.size = argv[++i];
  while (i + 2 < argc) {
    std::string_view opt = argv[i + 1];
    if (opt != "--ranks" && opt != "--nodes") break;
    const int v = std::atoi(argv[i + 2]);
    (opt == "--ranks" ? out.ranks : out.nodes) = v;
    i += 2;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  bool config = false, markdown = false, who = false, explainMode = false;
  ExplainArgs explainArgs;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--explain") {
      if (!parseExplain(argc, argv, i, explainArgs)) {
        std::fprintf(stderr, "weft-info: --explain needs OP and SIZE\n%s", kUsage);
        return 2;
      }
      explainMode = true;
    } else if (a == "--config") {
      config = true;
    } else if (a == "--markdown") {
      markdown = true;
    } else if (a == "--whoami") {
      who = true;
    } else if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "weft-info: unknown option '%s'\n%s", argv[i], kUsage);
      return 2;
    }
  }
  if (config) return printConfig(markdown);
  weft::Status st = weft::config::checkEnvironment();
  if (!st.isOk()) {
    std::fprintf(stderr, "weft-info: %s\n", st.message().c_str());
    return 2;
  }
  if (who) return whoami();
  if (explainMode) return explain(explainArgs);
  return printVersion();
}
