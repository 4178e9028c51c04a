#include "tools/ps_tool_util.h"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <thread>

#include "common/bootstrap.h"
#include "common/config.h"

namespace weft::ps::tools {

bool ArgReader::next() {
  if (++i_ >= argc_) return false;
  std::string a = argv_[i_];
  has_inline_ = false;
  const size_t eq = a.find('=');
  if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
    inline_value_ = a.substr(eq + 1);
    a = a.substr(0, eq);
    has_inline_ = true;
  }
  name_ = a;
  if (name_ == "-h" || name_ == "--help") throw HelpRequested(usage_);
  return true;
}

std::string ArgReader::value() {
  if (has_inline_) return inline_value_;
  if (i_ + 1 >= argc_) fail(strCat(name_, " needs a value"));
  return argv_[++i_];
}

int64_t ArgReader::intValue(int64_t lo, int64_t hi) {
  const std::string v = value();
  size_t used = 0;
  int64_t n = 0;
  try {
    n = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (v.empty() || used != v.size() || n < lo || n > hi) {
    fail(strCat(name_, " '", v, "': expected an integer in [", lo, ", ", hi, "]"));
  }
  return n;
}

double ArgReader::doubleValue(double lo, double hi) {
  const std::string v = value();
  size_t used = 0;
  double d = 0;
  try {
    d = std::stod(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (v.empty() || used != v.size() || !(d >= lo && d <= hi)) {  // NaN fails too
    fail(strCat(name_, " '", v, "': expected a number in [", lo, ", ", hi, "]"));
  }
  return d;
}

std::vector<std::string> ArgReader::listValue(std::initializer_list<const char*> allowed) {
  const std::string v = value();
  std::string names;
  for (const char* a : allowed) names += strCat(names.empty() ? "" : ", ", a);
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t comma = std::min(v.find(',', start), v.size());
    std::string item = v.substr(start, comma - start);
    if (std::find(allowed.begin(), allowed.end(), item) == allowed.end()) {
      fail(strCat(name_, ": unknown value \"", item, "\" (", names, ")"));
    }
    out.push_back(std::move(item));
    if (comma == v.size()) return out;
    start = comma + 1;
  }
}

void ArgReader::unknown() const { fail(strCat("unknown option '", name_, "'")); }

void ArgReader::fail(const std::string& why) const {
  throw UsageError(
      strCat(tool_, ": ", why, " (see --help)"));
}

int toolMain(const char* tool, const std::function<int()>& body) {
  try {
    return body();
  } catch (const HelpRequested& h) {
    std::cout << h.what();
    return 0;
  } catch (const UsageError& e) {
    std::cerr << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << tool << ": " << e.what() << "\n";
    return 1;
  }
}

// Unset: the default (-1 / 0); an invalid value throws, naming it (treating it as unset
// gave "this job has 1 rank" messages that hid the cause).
int envRank() { return static_cast<int>(must(config::getInt("WEFT_RANK"), "WEFT_RANK")); }

int envWorldSize() {
  return static_cast<int>(must(config::getInt("WEFT_WORLD_SIZE"), "WEFT_WORLD_SIZE"));
}

Deadline defaultDeadline() {
  auto t = config::getDouble("WEFT_TIMEOUT");
  return Deadline::afterSeconds(t.isOk() ? *t : 300);
}

Result<std::shared_ptr<Store>> connectEnvStore() {
  WEFT_ASSIGN_OR_RETURN(const std::string addr, config::getString("WEFT_STORE_ADDR"));
  if (addr.empty()) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "WEFT_STORE_ADDR is not set")
        .withHint("run under weft-run, or set WEFT_STORE_ADDR=host:port of a store");
  }
  return connectStore(addr, defaultDeadline());
}

double processCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

JobRoles jobRoles(int servers, std::string ns) {
  JobRoles j;
  j.rank = std::max(envRank(), 0);
  j.world = std::max(envWorldSize(), 1);
  j.servers = servers;
  j.ns = std::move(ns);
  if (servers < 1 || servers >= j.world) {
    throw UsageError(strCat("--servers ", servers, " needs a job of more ranks (this one has ",
                            j.world, "): run under weft-run -n <servers + workers>"));
  }
  j.store = must(connectEnvStore(), "connecting to the store");
  return j;
}

JobRoles::ServeResult JobRoles::serve(Deadline deadline) const {
  net::ServerOptions o;
  o.server_id = static_cast<uint32_t>(rank);
  o.num_servers = static_cast<uint32_t>(servers);
  o.rank = rank;
  o.ns = ns;
  o.checkpoint_root = checkpoint_root;
  auto server = must(net::Server::start(o, store, deadline), "starting the parameter server");
  const double cpu0 = processCpuSeconds();
  const double wall0 = monotonicSeconds();
  const std::string key = ns + "/shutdown";
  while (true) {
    auto done = store->get(key, Deadline::after(std::chrono::milliseconds(200)));
    if (done.isOk()) break;
    must(server->health(), "parameter server");
    if (deadline.expired()) throw std::runtime_error("parameter server: job deadline passed");
  }
  ServeResult r;
  r.cpu_s = processCpuSeconds() - cpu0;
  r.wall_s = monotonicSeconds() - wall0;
  r.stats = server->stats();
  must(server->stop(Deadline::afterSeconds(10)), "stopping the parameter server");
  return r;
}

std::unique_ptr<net::Client> JobRoles::connectWorker(Deadline deadline) const {
  net::ClientOptions o;
  o.rank = rank;
  o.worker = static_cast<uint32_t>(worker());
  o.ns = ns;
  return must(net::Client::connect(o, store, deadline), "connecting to the parameter servers");
}

void JobRoles::checkSameArguments(const char* tool, int argc, char** argv) const {
  const Status st =
      weft::checkSameArguments(*store, rank, world, tool, argc, argv, defaultDeadline());
  if (st.code() == StatusCode::kInvalidArgument) throw UsageError(st.message());
  must(st, "comparing the ranks' options");
}

void JobRoles::finishWorker() const {
  const int64_t n = must(store->add(ns + "/workers_done", 1), "store");
  if (n == workers()) must(store->set(ns + "/shutdown", "1"), "store");
}

void JobRoles::workerBarrier(const std::string& name, Deadline deadline) const {
  const std::string key = strCat(ns, "/barrier/", name);
  must(store->add(key, 1).status(), "store");
  while (must(store->add(key, 0), "store") < workers()) {
    if (deadline.expired()) throw std::runtime_error("worker barrier '" + name + "' timed out");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace weft::ps::tools
