// weft-ps-microbench: the parameter server's hot path without the network.
//
//   ps/index/{find,insert}            RowIndex alone (1M-entry index for find)
//   ps/table/{lookup,insert}          Table::pull of existing rows (random keys over a
//                                     1M-row table) / push creating rows, 1,000 keys per call
//   ps/optimizer/<opt>/dim:<d>        one row update by the optimizer kernel alone
//   ps/update/<opt>/dim:<d>           Table::push of 1,000 random existing keys of a 64K-row
//                                     table (dedupe, stripe locks, seqlock, row CRC, optimizer)
//   ps/codec/<op>/dim:<d>             encode / decode of 1,000-key requests and replies
//   ps/handle/<op>/dim:<d>            RequestHandler::handle of a 1,000-key request (decode,
//                                     apply, encode the reply): what one server handler
//                                     thread can do
//   ps/handle/push_dense/MiB:<m>      the same for a dense m MiB push (rows of dim 1024, SGD;
//                                     bytes_per_second counts the values)
// items_per_second counts keys (rows for ps/optimizer); bytes_per_second counts message
// bytes for codec and handle rows. Keys are uniform over 1M ids.
#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <vector>

#include "paramserver/server/optimizer.h"
#include "paramserver/server/request_handler.h"
#include "paramserver/server/row_index.h"
#include "paramserver/server/table.h"
#include "paramserver/util/crc32c.h"
#include "paramserver/util/hash.h"
#include "paramserver/wire/codec.h"

namespace weft::ps {
namespace {

constexpr size_t kBatch = 1000;
constexpr uint64_t kIdSpace = 1 << 20;

std::vector<uint64_t> randomKeys(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint64_t> keys(n);
  for (uint64_t& k : keys) k = mix64(rng() % kIdSpace);
  return keys;
}

// Distinct keys (no duplicates inside one request).
std::vector<uint64_t> distinctKeys(size_t n, uint64_t offset) {
  std::vector<uint64_t> keys(n);
  for (size_t i = 0; i < n; ++i) keys[i] = mix64(offset + i);
  return keys;
}

TableSpec spec(uint32_t dim, OptimizerKind kind) {
  TableSpec s;
  s.id = 1;
  s.name = "bench";
  s.dim = dim;
  s.optimizer.kind = kind;
  return s;
}

std::unique_ptr<Table> filledTable(uint32_t dim, OptimizerKind kind, size_t rows,
                                   const TableOptions& options = {}) {
  auto table = std::move(Table::create(spec(dim, kind), options)).value();
  std::vector<float> grads(kBatch * dim, 0.1f);
  for (size_t at = 0; at < rows; at += kBatch) {
    const auto keys = distinctKeys(kBatch, at);
    table->push(KeySpan::of(keys), FloatSpan::of(grads)).ignore();
  }
  return table;
}

void BM_IndexFind(benchmark::State& state) {
  RowIndex index;
  for (uint64_t i = 0; i < kIdSpace; ++i) {
    index.insert(mix64(i), hashKey(mix64(i), kIndexSeed), static_cast<uint32_t>(i));
  }
  const auto keys = randomKeys(kBatch, 1);
  std::vector<uint64_t> hashes;
  for (const uint64_t k : keys) hashes.push_back(hashKey(k, kIndexSeed));
  for (auto _ : state) {
    for (size_t i = 0; i < kBatch; ++i) benchmark::DoNotOptimize(index.find(keys[i], hashes[i]));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
}
BENCHMARK(BM_IndexFind)->Name("ps/index/find");

void BM_IndexInsert(benchmark::State& state) {
  auto index = std::make_unique<RowIndex>();
  uint64_t next = 0;
  for (auto _ : state) {
    if (index->size() >= kIdSpace) {
      state.PauseTiming();
      index = std::make_unique<RowIndex>();
      state.ResumeTiming();
    }
    for (size_t i = 0; i < kBatch; ++i, ++next) {
      const uint64_t k = mix64(next);
      index->insert(k, hashKey(k, kIndexSeed), static_cast<uint32_t>(next));
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
}
BENCHMARK(BM_IndexInsert)->Name("ps/index/insert");

// Batches of random keys over the whole table, cycled, so rows come from DRAM as they do on
// a server holding many more rows than its caches.
std::vector<std::vector<uint64_t>> keyBatches(size_t rows, size_t batches) {
  std::vector<std::vector<uint64_t>> out;
  std::mt19937_64 rng(99);
  for (size_t b = 0; b < batches; ++b) {
    std::vector<uint64_t> keys;
    for (size_t i = 0; i < kBatch; ++i) keys.push_back(mix64(rng() % rows));
    out.push_back(std::move(keys));
  }
  return out;
}

// Pulls / pushes of 1,000 uniform keys on a table of 2^20 rows (larger than the caches),
// on 1 or 2 threads (TableOptions::pool), as weft-ps-bench's server runs them.
void BM_TableLookup(benchmark::State& state, bool push) {
  const auto dim = static_cast<uint32_t>(state.range(0));
  ForkJoinPool pool(static_cast<uint32_t>(state.range(1)));
  TableOptions options;
  options.pool = &pool;
  auto table = filledTable(dim, OptimizerKind::kSgd, kIdSpace, options);
  const auto batches = keyBatches(kIdSpace, 256);
  std::vector<float> out(kBatch * dim);
  const std::vector<float> grads(kBatch * dim, 0.001f);
  size_t i = 0;
  for (auto _ : state) {
    const auto keys = KeySpan::of(batches[i++ % batches.size()]);
    if (push) {
      table->push(keys, FloatSpan::of(grads)).ignore();
    } else {
      table->pull(keys, out.data());
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
}
BENCHMARK_CAPTURE(BM_TableLookup, pull, false)
    ->Name("ps/table/lookup")
    ->ArgNames({"dim", "threads"})
    ->ArgsProduct({{1, 16}, {1, 2}});
BENCHMARK_CAPTURE(BM_TableLookup, push, true)
    ->Name("ps/table/push")
    ->ArgNames({"dim", "threads"})
    ->ArgsProduct({{1, 16}, {1, 2}});

void BM_TableInsert(benchmark::State& state) {
  const auto dim = static_cast<uint32_t>(state.range(0));
  auto table = std::move(Table::create(spec(dim, OptimizerKind::kSgd))).value();
  std::vector<float> grads(kBatch * dim, 0.1f);
  uint64_t next = 0;
  for (auto _ : state) {
    if (next >= kIdSpace) {
      state.PauseTiming();
      table = std::move(Table::create(spec(dim, OptimizerKind::kSgd))).value();
      next = 0;
      state.ResumeTiming();
    }
    state.PauseTiming();
    const auto keys = distinctKeys(kBatch, next);
    next += kBatch;
    state.ResumeTiming();
    table->push(KeySpan::of(keys), FloatSpan::of(grads)).ignore();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
}
BENCHMARK(BM_TableInsert)->Name("ps/table/insert")->ArgName("dim")->Arg(1)->Arg(16);

void BM_OptimizerKernel(benchmark::State& state, OptimizerKind kind) {
  const auto dim = static_cast<uint32_t>(state.range(0));
  OptimizerSpec o;
  o.kind = kind;
  std::vector<float> w(dim, 0.5f), g(dim, 0.01f), st(2 * dim, 0.1f);
  uint32_t step = 1;
  for (auto _ : state) {
    applyOptimizer(o, dim, step++, g.data(), w.data(), st.data());
    benchmark::DoNotOptimize(w.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_TableUpdate(benchmark::State& state, OptimizerKind kind) {
  const auto dim = static_cast<uint32_t>(state.range(0));
  constexpr size_t kRows = 64 * 1024;
  auto table = filledTable(dim, kind, kRows);
  const auto batches = keyBatches(kRows, 64);
  std::vector<float> grads(kBatch * dim, 0.001f);
  size_t i = 0;
  for (auto _ : state) {
    table->push(KeySpan::of(batches[i++ % batches.size()]), FloatSpan::of(grads)).ignore();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
}

void registerOptimizers() {
  for (const OptimizerKind kind :
       {OptimizerKind::kSgd, OptimizerKind::kAdagrad, OptimizerKind::kAdam, OptimizerKind::kFtrl}) {
    const std::string name(optimizerName(kind));
    benchmark::RegisterBenchmark(("ps/optimizer/" + name).c_str(), BM_OptimizerKernel, kind)
        ->ArgName("dim")
        ->Arg(1)
        ->Arg(16)
        ->Arg(64);
    benchmark::RegisterBenchmark(("ps/update/" + name).c_str(), BM_TableUpdate, kind)
        ->ArgName("dim")
        ->Arg(1)
        ->Arg(16)
        ->Arg(64);
  }
}

wire::KeyedRequest keyedRequest(wire::Opcode op, uint32_t dim, const std::vector<uint64_t>& keys,
                                const std::vector<float>& grads) {
  wire::KeyedRequest r;
  r.op = op;
  r.dim = dim;
  r.keys = KeySpan::of(keys);
  if (op != wire::Opcode::kPull) r.values = FloatSpan::of(grads);
  return r;
}

void BM_EncodePush(benchmark::State& state) {
  const auto dim = static_cast<uint32_t>(state.range(0));
  const auto keys = randomKeys(kBatch, 2);
  const std::vector<float> grads(kBatch * dim, 0.5f);
  size_t bytes = 0;
  for (auto _ : state) {
    Bytes b = wire::encodeKeyed({1, 0, 1, 0}, keyedRequest(wire::Opcode::kPush, dim, keys, grads));
    bytes = b.size();
    benchmark::DoNotOptimize(b.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}
BENCHMARK(BM_EncodePush)->Name("ps/codec/encode_push")->ArgName("dim")->Arg(1)->Arg(16);

void BM_DecodePush(benchmark::State& state) {
  const auto dim = static_cast<uint32_t>(state.range(0));
  const auto keys = randomKeys(kBatch, 2);
  const std::vector<float> grads(kBatch * dim, 0.5f);
  const Bytes b =
      wire::encodeKeyed({1, 0, 1, 0}, keyedRequest(wire::Opcode::kPush, dim, keys, grads));
  const wire::WireLimits limits;
  for (auto _ : state) {
    auto m = wire::decodeMessage(b, limits);
    auto r = wire::decodeKeyed(*m);
    benchmark::DoNotOptimize(r->keys[kBatch - 1]);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * b.size()));
}
BENCHMARK(BM_DecodePush)->Name("ps/codec/decode_push")->ArgName("dim")->Arg(1)->Arg(16);

void BM_DecodePullReply(benchmark::State& state) {
  const auto dim = static_cast<uint32_t>(state.range(0));
  const auto keys = distinctKeys(kBatch, 0);
  const Bytes req =
      wire::encodeKeyed({1, 0, 1, 0}, keyedRequest(wire::Opcode::kPull, dim, keys, {}));
  const Bytes reply = wire::encodeValuesReply(wire::peekHeader(req), dim, kBatch);
  std::vector<float> out(kBatch * dim);
  std::vector<uint32_t> positions(kBatch);
  for (uint32_t i = 0; i < kBatch; ++i) positions[i] = i;
  for (auto _ : state) {
    auto m = wire::decodeMessage(reply, {});
    auto view = wire::checkReply(*m, 1, wire::Opcode::kPull);
    auto values = wire::decodeValuesReply(*view, kBatch, dim);
    for (uint32_t i = 0; i < kBatch; ++i)
      values->copyTo(size_t{i} * dim, dim, out.data() + size_t{positions[i]} * dim);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * reply.size()));
}
BENCHMARK(BM_DecodePullReply)->Name("ps/codec/decode_pull_reply")->ArgName("dim")->Arg(1)->Arg(16);

void BM_Handle(benchmark::State& state, wire::Opcode op) {
  const auto dim = static_cast<uint32_t>(state.range(0));
  Shard shard;
  shard.createTable(spec(dim, OptimizerKind::kAdagrad)).ignore();
  RequestHandler handler(shard, {});
  std::vector<Bytes> requests;
  const std::vector<float> grads(kBatch * dim, 0.001f);
  for (uint64_t r = 0; r < 64; ++r) {
    const auto keys = randomKeys(kBatch, r);
    requests.push_back(wire::encodeKeyed({r, 0, 1, 0}, keyedRequest(op, dim, keys, grads)));
    // Warm the table so that pulls find rows.
    const Bytes push =
        wire::encodeKeyed({r, 0, 1, 0}, keyedRequest(wire::Opcode::kPush, dim, keys, grads));
    handler.handle(push).status().ignore();
  }
  size_t i = 0;
  size_t bytes = 0;
  for (auto _ : state) {
    const Bytes& req = requests[i++ % requests.size()];
    auto reply = handler.handle(req);
    bytes += req.size() + reply->size();
    benchmark::DoNotOptimize(reply->data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK_CAPTURE(BM_Handle, push, wire::Opcode::kPush)
    ->Name("ps/handle/push")
    ->ArgName("dim")
    ->Arg(1)
    ->Arg(16);
BENCHMARK_CAPTURE(BM_Handle, pull, wire::Opcode::kPull)
    ->Name("ps/handle/pull")
    ->ArgName("dim")
    ->Arg(1)
    ->Arg(16);
BENCHMARK_CAPTURE(BM_Handle, push_pull, wire::Opcode::kPushPull)
    ->Name("ps/handle/push_pull")
    ->ArgName("dim")
    ->Arg(1)
    ->Arg(16);

// A dense value as weft-ps-bench pushes it: state.range(0) MiB as rows of dim 1024 (256
// keys per MiB) of an SGD table; bytes_per_second counts the values.
void BM_HandleDensePush(benchmark::State& state) {
  constexpr uint32_t kDim = 1024;
  const size_t keys_per_request = static_cast<size_t>(state.range(0)) * 256;
  Shard shard;
  shard.createTable(spec(kDim, OptimizerKind::kSgd)).ignore();
  RequestHandler handler(shard, {});
  const auto keys = distinctKeys(keys_per_request, 0);
  const std::vector<float> grads(keys_per_request * kDim, 0.001f);
  const Bytes request =
      wire::encodeKeyed({1, 0, 1, 0}, keyedRequest(wire::Opcode::kPush, kDim, keys, grads));
  handler.handle(request).status().ignore();  // creates the rows
  for (auto _ : state) {
    auto reply = handler.handle(request);
    benchmark::DoNotOptimize(reply->data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * grads.size() * 4));
}
BENCHMARK(BM_HandleDensePush)->Name("ps/handle/push_dense")->ArgName("MiB")->Arg(1)->Arg(4);

// The per-row torn-read checksum over state.range(0) bytes (a dim-16 row's 72, a dim-1024
// row's 4104, a 64 KiB block), in L1 / L2.
void BM_Crc32c(benchmark::State& state) {
  std::vector<uint8_t> data(static_cast<size_t>(state.range(0)));
  std::mt19937 rng(1);
  for (uint8_t& b : data) b = static_cast<uint8_t>(rng());
  uint32_t crc = 0;
  for (auto _ : state) {
    crc = crc32c(data.data(), data.size(), crc);
    benchmark::DoNotOptimize(crc);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * data.size()));
}
BENCHMARK(BM_Crc32c)->Name("ps/crc32c")->ArgName("bytes")->Arg(72)->Arg(4104)->Arg(65536);

}  // namespace
}  // namespace weft::ps

int main(int argc, char** argv) {
  weft::ps::registerOptimizers();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
