// weft-info: version, enabled backends, configuration and identity of a Weft process.
//
//   weft-info                  version and backends
//   weft-info --config         every WEFT_* variable: value, source, allowed values, doc
//   weft-info --config --markdown   the same as a Markdown table (README)
//   weft-info --whoami         rank, local rank, node (bootstraps through the store)
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>

#include "common/bootstrap.h"
#include "common/config.h"

namespace {

using weft::config::ParamSpec;

constexpr const char* kUsage =
    "usage: weft-info [--config [--markdown]] [--whoami] [--help]\n"
    "  (no option)  version and enabled backends\n"
    "  --config     every WEFT_* variable with its value and where it came from\n"
    "  --markdown   with --config: print a Markdown table\n"
    "  --whoami     bootstrap and print rank, world size, local rank, node\n";

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

}  // namespace

int main(int argc, char** argv) {
  bool config = false, markdown = false, who = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--config") {
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
  return printVersion();
}
