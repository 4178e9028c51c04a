// weft-ps-ctr: logistic regression on synthetic click-through data through the parameter
// server, compared with a single-process trainer running the same optimizer.
//
//   weft-run -n 4 -- weft-ps-ctr --servers 2          # 2 servers + 2 workers
//   weft-ps-ctr --local                               # the single-process trainer only
//
// Data (generated here, deterministic from --seed): each example has --features active
// features (default 40), drawn Zipf(1) from a vocabulary of 2^20 ranks and hashed into a
// 2^24-id space; the label is Bernoulli(sigmoid(bias + sum of ground-truth weights)), the
// weights N(0, 0.35^2) per id. Training: minibatches of --batch examples; a worker pulls the
// batch's distinct weights, computes the log-loss gradient and pushes it (duplicate ids
// are summed by the server); the table uses Adagrad on the servers. Workers take every
// W-th example. After each epoch worker 0 prints test log-loss and AUC; with --compare
// (default) it then trains the single-process model (the same optimizer code: a ps::Table
// in this process, the same batches in the same order) and prints both AUCs, failing when
// they differ by more than 0.01.
//
// --checkpoint DIR: the servers keep checkpoints under DIR; after each epoch the workers
// write one job checkpoint (Client::checkpointJob, a consistent cut of both servers) named
// epoch-<e>, and after the last epoch they restore epoch-1 and worker 0 tests again: the
// figures must be those printed after epoch 1, to the last digit (else exit 1).
//
// Options: --servers N (2)  --train N (100000)  --test N (20000)  --features N (40)
//          --epochs N (3)  --batch N (1000)  --lr X (0.05)  --seed N (1)  --no-compare
//          --local  --checkpoint DIR
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <numeric>
#include <unordered_map>
#include <vector>

#include "paramserver/server/table.h"
#include "paramserver/util/hash.h"
#include "tools/ps_tool_util.h"

namespace {

using weft::strCat;
namespace ps = weft::ps;
namespace pt = weft::ps::tools;

constexpr uint64_t kIdBits = 24;
constexpr uint64_t kBiasKey = uint64_t{1} << kIdBits;  // outside the feature-id space
constexpr double kVocabulary = 1 << 20;
constexpr double kTrueStddev = 0.35;
constexpr double kTrueBias = -1.0;

struct Options {
  int servers = 2;
  size_t train = 100000, test = 20000, features = 40, epochs = 3, batch = 1000;
  float lr = 0.05f;
  uint64_t seed = 1;
  bool compare = true, local = false;
  std::string checkpoint;  // the servers' checkpoint root; "" = no checkpoints
};

Options parse(int argc, char** argv) {
  Options o;
  pt::ArgReader r(argc, argv, "weft-ps-ctr",
      "usage: weft-run -n N -- weft-ps-ctr [options]   (logistic regression on synthetic CTR data)\n"
      "  --servers N      server ranks (2)\n"
      "  --train N        training examples (100000)\n"
      "  --test N         test examples (20000)\n"
      "  --features N     active features per example (40)\n"
      "  --epochs N       epochs (3)\n"
      "  --batch N        examples per minibatch (1000)\n"
      "  --lr X           Adagrad learning rate (0.05)\n"
      "  --seed N         data seed (1)\n"
      "  --no-compare     skip the single-process trainer and the AUC check\n"
      "  --local          only the single-process trainer (no weft-run needed)\n"
      "  --checkpoint DIR job checkpoint after each epoch; restore epoch-1 at the end and check it\n");
  while (r.next()) {
    if (r.is("--servers")) o.servers = static_cast<int>(r.intValue(1, 1024));
    else if (r.is("--train")) o.train = static_cast<size_t>(r.intValue(1000, 1e9));
    else if (r.is("--test")) o.test = static_cast<size_t>(r.intValue(100, 1e9));
    else if (r.is("--features")) o.features = static_cast<size_t>(r.intValue(1, 1000));
    else if (r.is("--epochs")) o.epochs = static_cast<size_t>(r.intValue(1, 1000));
    else if (r.is("--batch")) o.batch = static_cast<size_t>(r.intValue(1, 1e6));
    else if (r.is("--lr")) o.lr = static_cast<float>(r.doubleValue(1e-6, 100));
    else if (r.is("--seed")) o.seed = static_cast<uint64_t>(r.intValue(0, INT64_MAX));
    else if (r.is("--no-compare")) o.compare = false;
    else if (r.is("--local")) o.local = true;
    else if (r.is("--checkpoint")) o.checkpoint = r.value();
    else r.unknown();
  }
  return o;
}

double unit(uint64_t h) { return static_cast<double>(h >> 11) * 0x1.0p-53; }

// Ground-truth weight of an id: N(0, kTrueStddev^2) by Box-Muller from its hash.
double trueWeight(uint64_t id) {
  const double u1 = std::max(unit(ps::hashKey(id, 0xc7a1)), 1e-300);
  const double u2 = unit(ps::hashKey(id, 0xc7a2));
  return kTrueStddev * std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

struct Dataset {
  size_t features = 0;
  std::vector<uint64_t> ids;  // features per example, row-major
  std::vector<uint8_t> labels;
  size_t size() const { return labels.size(); }
  const uint64_t* example(size_t i) const { return ids.data() + i * features; }
};

// Examples [first, first + n) of the stream seeded by `seed` (train and test differ).
Dataset generate(uint64_t seed, size_t first, size_t n, size_t features) {
  Dataset d;
  d.features = features;
  d.ids.resize(n * features);
  d.labels.resize(n);
  const double log_v = std::log(kVocabulary + 1);
  for (size_t i = 0; i < n; ++i) {
    uint64_t state = ps::hashKey(first + i, seed);
    double logit = kTrueBias;
    for (size_t f = 0; f < features; ++f) {
      state = ps::mix64(state + ps::kGoldenGamma);
      // Zipf(1) rank by inversion of the continuous 1/r law, then hashed to a 2^24 id.
      const auto rank = static_cast<uint64_t>(std::exp(unit(state) * log_v));
      const uint64_t id = ps::hashKey(rank * 64 + f % 4, 0x1d5) & ((uint64_t{1} << kIdBits) - 1);
      d.ids[i * features + f] = id;
      logit += trueWeight(id);
    }
    const double p = 1 / (1 + std::exp(-logit));
    d.labels[i] = unit(ps::mix64(state ^ 0x1abe1)) < p ? 1 : 0;
  }
  return d;
}

ps::TableSpec modelSpec(float lr) {
  ps::TableSpec spec;
  spec.id = 1;
  spec.name = "ctr-lr";
  spec.dim = 1;
  spec.optimizer.kind = ps::OptimizerKind::kAdagrad;
  spec.optimizer.learning_rate = lr;
  spec.optimizer.initial_accumulator = 0.1f;
  return spec;
}

// The distinct ids of examples `rows` (plus the bias) and, per feature slot, its index.
struct Batch {
  std::vector<uint64_t> keys;
  std::vector<uint32_t> slot;  // per (example, feature): index into keys
};

void makeBatch(const Dataset& d, const std::vector<size_t>& rows, Batch& b) {
  std::vector<uint64_t> all;
  all.reserve(rows.size() * d.features + 1);
  for (size_t r : rows) all.insert(all.end(), d.example(r), d.example(r) + d.features);
  all.push_back(kBiasKey);
  b.keys = all;
  std::sort(b.keys.begin(), b.keys.end());
  b.keys.erase(std::unique(b.keys.begin(), b.keys.end()), b.keys.end());
  b.slot.resize(all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    b.slot[i] = static_cast<uint32_t>(std::lower_bound(b.keys.begin(), b.keys.end(), all[i]) -
                                      b.keys.begin());
  }
}

double predict(const Batch& b, const std::vector<float>& w, size_t j, size_t features) {
  double z = w[b.slot.back()];
  for (size_t f = 0; f < features; ++f) z += w[b.slot[j * features + f]];
  return 1 / (1 + std::exp(-z));
}

// Log-loss gradient of the batch, summed per distinct id.
void gradient(const Dataset& d, const std::vector<size_t>& rows, const Batch& b,
              const std::vector<float>& w, std::vector<float>& g) {
  g.assign(b.keys.size(), 0.0f);
  for (size_t j = 0; j < rows.size(); ++j) {
    const auto e = static_cast<float>(predict(b, w, j, d.features) - d.labels[rows[j]]);
    for (size_t f = 0; f < d.features; ++f) g[b.slot[j * d.features + f]] += e;
    g[b.slot.back()] += e;
  }
}

struct Metrics {
  double logloss = 0, auc = 0;
};

Metrics evaluate(const Dataset& test, const std::vector<double>& p) {
  Metrics m;
  std::vector<size_t> order(test.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] < p[b]; });
  double pos = 0, rank_sum = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    const double q = std::clamp(p[order[i]], 1e-7, 1 - 1e-7);
    const bool y = test.labels[order[i]] != 0;
    m.logloss -= y ? std::log(q) : std::log(1 - q);
    if (y) {
      pos += 1;
      rank_sum += static_cast<double>(i + 1);
    }
  }
  const double neg = static_cast<double>(test.size()) - pos;
  m.logloss /= static_cast<double>(test.size());
  m.auc = (rank_sum - pos * (pos + 1) / 2) / std::max(pos * neg, 1.0);
  return m;
}

// A model a trainer can pull from and push to: the parameter server or a local Table.
struct Model {
  virtual ~Model() = default;
  virtual void pull(const std::vector<uint64_t>& keys, std::vector<float>& w) = 0;
  virtual void push(const std::vector<uint64_t>& keys, const std::vector<float>& g) = 0;
};

struct LocalModel final : Model {
  std::unique_ptr<ps::Table> table;
  explicit LocalModel(const ps::TableSpec& spec)
      : table(pt::must(ps::Table::create(spec), "creating the local table")) {}
  void pull(const std::vector<uint64_t>& keys, std::vector<float>& w) override {
    w.resize(keys.size());
    table->pull(ps::KeySpan::of(keys), w.data());
  }
  void push(const std::vector<uint64_t>& keys, const std::vector<float>& g) override {
    pt::must(table->push(ps::KeySpan::of(keys), ps::FloatSpan::of(g)), "local push");
  }
};

struct RemoteModel final : Model {
  ps::net::Client* client;
  weft::Deadline deadline;
  RemoteModel(ps::net::Client* c, weft::Deadline d) : client(c), deadline(d) {}
  void pull(const std::vector<uint64_t>& keys, std::vector<float>& w) override {
    w.resize(keys.size());
    pt::must(client->pullSync(1, keys, w.data(), deadline), "pull");
  }
  void push(const std::vector<uint64_t>& keys, const std::vector<float>& g) override {
    pt::must(client->pushSync(1, keys, g, deadline), "push");
  }
};

// One epoch over the examples of `shard` of `shards`, in minibatches of `batch` examples
// taken from the global batch sequence (so W workers together see the local order).
void trainEpoch(Model& m, const Dataset& d, size_t batch, size_t shard, size_t shards) {
  Batch b;
  std::vector<float> w, g;
  std::vector<size_t> rows;
  for (size_t begin = 0; begin < d.size(); begin += batch) {
    rows.clear();
    for (size_t i = begin; i < std::min(begin + batch, d.size()); ++i) {
      if (i % shards == shard) rows.push_back(i);
    }
    if (rows.empty()) continue;
    makeBatch(d, rows, b);
    m.pull(b.keys, w);
    gradient(d, rows, b, w, g);
    m.push(b.keys, g);
  }
}

Metrics test(Model& m, const Dataset& d) {
  std::vector<double> p(d.size());
  Batch b;
  std::vector<float> w;
  std::vector<size_t> rows;
  const size_t chunk = 10000;
  for (size_t begin = 0; begin < d.size(); begin += chunk) {
    rows.resize(std::min(chunk, d.size() - begin));
    std::iota(rows.begin(), rows.end(), begin);
    makeBatch(d, rows, b);
    m.pull(b.keys, w);
    for (size_t j = 0; j < rows.size(); ++j) p[begin + j] = predict(b, w, j, d.features);
  }
  return evaluate(d, p);
}

Metrics trainLocal(const Options& o, const Dataset& train, const Dataset& testset) {
  LocalModel m(modelSpec(o.lr));
  Metrics last;
  for (size_t e = 1; e <= o.epochs; ++e) {
    const double t0 = weft::monotonicSeconds();
    trainEpoch(m, train, o.batch, 0, 1);
    last = test(m, testset);
    std::printf("single-process epoch %zu: test logloss %.4f AUC %.4f (%.2f s)\n", e, last.logloss,
                last.auc, weft::monotonicSeconds() - t0);
  }
  return last;
}

int runWorker(const Options& o, const pt::JobRoles& roles, const Dataset& train,
              const Dataset& testset) {
  const weft::Deadline deadline = pt::defaultDeadline();
  auto client = roles.connectWorker(deadline);
  pt::must(client->createTable(modelSpec(o.lr), deadline), "createTable");
  RemoteModel m(client.get(), deadline);
  Metrics last, first;
  const uint32_t workers = static_cast<uint32_t>(roles.workers());
  for (size_t e = 1; e <= o.epochs; ++e) {
    const double t0 = weft::monotonicSeconds();
    trainEpoch(m, train, o.batch, static_cast<size_t>(roles.worker()),
               static_cast<size_t>(roles.workers()));
    roles.workerBarrier(strCat("epoch", e), deadline);
    if (roles.worker() == 0) {
      last = test(m, testset);
      std::printf("ps epoch %zu (%d servers, %d workers): test logloss %.4f AUC %.4f (%.2f s)\n",
                  e, roles.servers, roles.workers(), last.logloss, last.auc,
                  weft::monotonicSeconds() - t0);
      std::fflush(stdout);
    }
    if (e == 1) first = last;
    roles.workerBarrier(strCat("tested", e), deadline);
    if (!o.checkpoint.empty()) {
      const double c0 = weft::monotonicSeconds();
      pt::must(client->checkpointJob(strCat("epoch-", e), false, workers, deadline),
               "job checkpoint");
      if (roles.worker() == 0) {
        std::printf("checkpoint %s/epoch-%zu written by the %d servers as one cut (%.2f s)\n",
                    o.checkpoint.c_str(), e, roles.servers, weft::monotonicSeconds() - c0);
      }
    }
  }
  bool restored_ok = true;
  if (!o.checkpoint.empty()) {
    pt::must(client->checkpointJob("epoch-1", true, workers, deadline), "job restore");
    if (roles.worker() == 0) {
      const Metrics again = test(m, testset);
      restored_ok = again.logloss == first.logloss && again.auc == first.auc;
      std::printf("restored epoch-1: test logloss %.4f AUC %.4f, %s\n", again.logloss,
                  again.auc, restored_ok ? "the same as after epoch 1" : "NOT the epoch-1 figures");
    }
    roles.workerBarrier("restored", deadline);
  }
  roles.finishWorker();
  if (!restored_ok) return 1;
  if (roles.worker() != 0 || !o.compare) return 0;
  const Metrics local = trainLocal(o, train, testset);
  const double diff = std::fabs(local.auc - last.auc);
  std::printf("AUC: parameter server %.4f, single process %.4f, difference %.4f (limit 0.01): %s\n",
              last.auc, local.auc, diff, diff <= 0.01 ? "OK" : "FAILED");
  return diff <= 0.01 ? 0 : 1;
}

int run(const Options& o, int argc, char** argv) {
  const double t0 = weft::monotonicSeconds();
  if (!o.local) {
    pt::JobRoles roles = pt::jobRoles(o.servers, "ctr");
    roles.checkpoint_root = o.checkpoint;
    roles.checkSameArguments("weft-ps-ctr", argc, argv);
    if (roles.isServer()) {
      const auto r = roles.serve(pt::defaultDeadline());
      std::printf("server %d: %llu requests, CPU %.2f s over %.2f s\n", roles.rank,
                  static_cast<unsigned long long>(r.stats.requests), r.cpu_s, r.wall_s);
      return 0;
    }
    const Dataset train = generate(o.seed, 0, o.train, o.features);
    const Dataset testset = generate(o.seed + 1000003, 0, o.test, o.features);
    if (roles.worker() == 0) {
      std::printf("data: %zu train / %zu test examples, %zu features each, ids in 2^24 (%.2f s)\n",
                  o.train, o.test, o.features, weft::monotonicSeconds() - t0);
    }
    return runWorker(o, roles, train, testset);
  }
  const Dataset train = generate(o.seed, 0, o.train, o.features);
  const Dataset testset = generate(o.seed + 1000003, 0, o.test, o.features);
  {
    std::printf("data: %zu train / %zu test examples, %zu features each (%.2f s)\n", o.train,
                o.test, o.features, weft::monotonicSeconds() - t0);
    trainLocal(o, train, testset);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return pt::toolMain("weft-ps-ctr", [&] { return run(parse(argc, argv), argc, argv); });
}
