// ImportRows (PROTOCOL.md §11): rows handed from one server's handler to another's keep
// their values and optimizer state; malformed or inconsistent imports are refused whole,
// creating no table and touching no row.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "paramserver/server/request_handler.h"
#include "ps_test_util.h"

namespace weft::ps {
namespace {

using wire::Opcode;

struct Node {
  explicit Node(uint32_t rank) : shard(ShardOptions{{}, rank}), handler(shard, HandlerOptions{}) {}
  Shard shard;
  RequestHandler handler;

  Status call(const Bytes& request) {
    auto reply = handler.handle(request);
    if (!reply.isOk()) return reply.status();
    auto m = wire::decodeMessage(*reply, {});
    if (!m.isOk()) return m.status();
    const wire::Header h = wire::peekHeader(request);
    return wire::checkReply(*m, h.request_id, static_cast<Opcode>(h.opcode)).status();
  }
  Table* table(uint32_t id) {
    auto lock = shard.readLock();
    return shard.table(id);
  }
};

TableSpec adagrad() {
  return testing::makeSpec(3, "emb", 4, OptimizerKind::kAdagrad);
}

std::vector<uint64_t> keys() {
  std::vector<uint64_t> k(300);
  std::iota(k.begin(), k.end(), 17);
  return k;
}

void pushOnes(Table& t, float scale) {
  const std::vector<uint64_t> k = keys();
  std::vector<float> g(k.size() * t.dim());
  for (size_t i = 0; i < g.size(); ++i) g[i] = scale * static_cast<float>(i % 5 + 1);
  ASSERT_TRUE(
      t.push(KeySpan::of(std::span<const uint64_t>(k)), FloatSpan::of(std::span<const float>(g)))
          .isOk());
}

std::vector<float> pullAll(Table& t) {
  const std::vector<uint64_t> k = keys();
  std::vector<float> out(k.size() * t.dim());
  t.pull(KeySpan::of(std::span<const uint64_t>(k)), out.data());
  return out;
}

// The source's rows as one ImportRows request.
Bytes importOf(Table& t, uint64_t request_id) {
  const Bytes records = t.exportRows([](uint64_t) { return true; });
  const auto rb = static_cast<uint32_t>(t.recordBytes());
  wire::ImportRowsRequest r{t.spec(), static_cast<uint32_t>(records.size() / rb), rb, records,
                          t.clocks().snapshot()};
  return wire::encodeImportRows({request_id, 0, t.spec().id, 2}, r);
}

TEST(PsImportRows, RowsAndOptimizerStateMove) {
  Node from(0), to(1);
  ASSERT_TRUE(from.shard.createTable(adagrad()).isOk());
  pushOnes(*from.table(3), 0.5f);
  const Bytes request = importOf(*from.table(3), 1);
  auto decoded = wire::decodeImportRows(*wire::decodeMessage(request, {}));
  ASSERT_TRUE(decoded.isOk()) << decoded.status();
  EXPECT_EQ(decoded->row_count, keys().size());
  ASSERT_TRUE(to.call(request).isOk());  // creates the table
  ASSERT_NE(to.table(3), nullptr);
  EXPECT_EQ(to.table(3)->rowCount(), keys().size());
  EXPECT_EQ(pullAll(*to.table(3)), pullAll(*from.table(3)));
  // The same push on both gives the same rows: the Adagrad accumulators moved too.
  pushOnes(*from.table(3), -1.0f);
  pushOnes(*to.table(3), -1.0f);
  EXPECT_EQ(pullAll(*to.table(3)), pullAll(*from.table(3)));
}

// The previous owner's worker clocks come with the rows (max with the receiver's own), so
// a BSP / SSP pull re-routed to the new owner is not parked on clocks it never heard.
TEST(PsImportRows, WorkerClocksComeWithTheRows) {
  TableSpec bsp = adagrad();
  bsp.consistency = {ConsistencyModel::kBsp, 0, 3};
  Node from(0), to(1);
  ASSERT_TRUE(from.shard.createTable(bsp).isOk());
  pushOnes(*from.table(3), 0.5f);
  for (const auto& [worker, clock] : {std::pair{0u, 4u}, {1u, 6u}, {2u, 5u}}) {
    ASSERT_TRUE(from.table(3)->clocks().finish(worker, clock, nullptr).isOk());
  }
  ASSERT_TRUE(to.shard.createTable(bsp).isOk());
  ASSERT_TRUE(to.table(3)->clocks().finish(2, 8, nullptr).isOk());  // reported here already
  ASSERT_TRUE(to.call(importOf(*from.table(3), 1)).isOk());
  EXPECT_EQ(to.table(3)->clocks().snapshot(), (std::vector<uint32_t>{5, 7, 9}));
  EXPECT_TRUE(to.table(3)->clocks().canRead(5));
  EXPECT_FALSE(to.table(3)->clocks().canRead(6));

  // A clock snapshot of another worker count is refused and changes nothing.
  pushOnes(*from.table(3), 1.0f);
  const Bytes records = from.table(3)->exportRows([](uint64_t) { return true; });
  const auto rb = static_cast<uint32_t>(from.table(3)->recordBytes());
  const auto before = pullAll(*to.table(3));
  wire::ImportRowsRequest bad{bsp, static_cast<uint32_t>(records.size() / rb), rb, records,
                              {1, 2}};
  const Status st = to.call(wire::encodeImportRows({2, 0, 3, 2}, bad));
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st;
  EXPECT_NE(st.message().find("clock snapshot has 2 entries"), std::string::npos) << st;
  EXPECT_EQ(pullAll(*to.table(3)), before);
  EXPECT_EQ(to.table(3)->clocks().snapshot(), (std::vector<uint32_t>{5, 7, 9}));
}

TEST(PsImportRows, MalformedImportsChangeNothing) {
  Node from(0), to(1);
  ASSERT_TRUE(from.shard.createTable(adagrad()).isOk());
  pushOnes(*from.table(3), 0.5f);
  const Bytes good = importOf(*from.table(3), 1);

  Bytes truncated = good;
  truncated.resize(truncated.size() - 3);
  const uint64_t payload = truncated.size() - wire::kHeaderBytes;
  std::memcpy(truncated.data() + 32, &payload, 8);
  EXPECT_EQ(to.call(truncated).code(), StatusCode::kInvalidArgument);

  // Records of another size than the spec's rows: refused before the table is created.
  const size_t rb = from.table(3)->recordBytes();
  {
    const Bytes records = from.table(3)->exportRows([](uint64_t) { return true; });
    Bytes padded;
    for (size_t at = 0; at < records.size(); at += rb) {
      padded.insert(padded.end(), records.begin() + at, records.begin() + at + rb);
      padded.insert(padded.end(), 4, 0);
    }
    const auto n = static_cast<uint32_t>(records.size() / rb);
    wire::ImportRowsRequest r{from.table(3)->spec(), n, static_cast<uint32_t>(rb + 4), padded,
                              from.table(3)->clocks().snapshot()};
    const Status st = to.call(wire::encodeImportRows({2, 0, 3, 2}, r));
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st;
    EXPECT_NE(st.message().find("the table's are"), std::string::npos) << st;
    EXPECT_EQ(to.table(3), nullptr) << "a refused import created the table";
  }

  // A NaN in the last record's values is a diverged row, not a malformed one: it moves as
  // it is (a checkpoint restore takes the same path).
  {
    Node diverged(2);
    Bytes nan = good;
    const float bad = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(nan.data() + nan.size() - rb + 16, &bad, 4);
    uint64_t key;
    std::memcpy(&key, nan.data() + nan.size() - rb, 8);
    ASSERT_TRUE(diverged.call(nan).isOk());
    std::vector<float> out(diverged.table(3)->dim());
    const std::vector<uint64_t> k = {key};
    diverged.table(3)->pull(KeySpan::of(std::span<const uint64_t>(k)), out.data());
    EXPECT_TRUE(std::isnan(out[0])) << out[0];
  }

  // A conflicting spec for an existing table.
  TableSpec other = adagrad();
  other.dim = 8;
  ASSERT_TRUE(to.shard.createTable(other).isOk());
  EXPECT_EQ(to.call(good).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(to.table(3)->rowCount(), 0u);
}

}  // namespace
}  // namespace weft::ps
