// The request handler end to end (bytes in, bytes out): version negotiation, table
// creation, push/pull/pushPull through the client codec over two servers, every error
// path of the issue (unknown table, dim mismatch, NaN, too many keys, stale shard map,
// malformed bytes) answered with an Error while the data stays intact, and Locate +
// one-sided validation.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <map>

#include "paramserver/client/client_codec.h"
#include "paramserver/server/request_handler.h"
#include "paramserver/server/row_access.h"
#include "ps_test_util.h"

namespace weft::ps {
namespace {

using wire::Opcode;

struct Server {
  explicit Server(uint32_t rank, wire::WireLimits limits = {})
      : shard(ShardOptions{{}, rank}), handler(shard, HandlerOptions{limits, ""}) {}
  Shard shard;
  RequestHandler handler;
};

Bytes call(Server& s, const Bytes& request) {
  auto reply = s.handler.handle(request);
  EXPECT_TRUE(reply.isOk()) << reply.status();
  return reply.isOk() ? std::move(reply).value() : Bytes{};
}

// The Status a reply carries (OK for a Reply answering `request`).
Status replyStatus(const Bytes& request, const Bytes& reply) {
  auto m = wire::decodeMessage(reply, {});
  if (!m.isOk()) return m.status();
  const wire::Header h = wire::peekHeader(request);
  return wire::checkReply(*m, h.request_id, static_cast<Opcode>(h.opcode)).status();
}

TableSpec embSpec() {
  TableSpec spec = testing::makeSpec(3, "emb", 4, OptimizerKind::kAdagrad);
  spec.init = {InitKind::kUniform, 1, -0.1f, 0.1f};
  return spec;
}

TEST(PsHandler, HelloNegotiatesTheVersion) {
  Server s(5);
  const Bytes req = wire::encodeHello({1, 0, 0, 0}, {1, 7, wire::Role::kWorker});
  const Bytes reply = call(s, req);
  auto m = wire::decodeMessage(reply, {});
  ASSERT_TRUE(m.isOk());
  auto view = wire::checkReply(*m, 1, Opcode::kHello);
  ASSERT_TRUE(view.isOk()) << view.status();
  auto hello = wire::decodeHelloReply(*view);
  ASSERT_TRUE(hello.isOk());
  EXPECT_EQ(hello->version, wire::kMaxVersion) << "the highest both speak";
  EXPECT_EQ(hello->server_rank, 5u);
  EXPECT_EQ(m->header.src_rank, 5u);
  // A client of an older release (version 1 only) is answered with version 1.
  const Bytes old = wire::encodeHello({3, 0, 0, 0}, {1, 1, wire::Role::kWorker});
  auto old_m = wire::decodeMessage(call(s, old), {});
  ASSERT_TRUE(old_m.isOk());
  auto old_hello = wire::decodeHelloReply(*wire::checkReply(*old_m, 3, Opcode::kHello));
  ASSERT_TRUE(old_hello.isOk());
  EXPECT_EQ(old_hello->version, 1u);
  const Bytes future = wire::encodeHello({2, 0, 0, 0}, {5, 9, wire::Role::kWorker});
  const Status st = replyStatus(future, call(s, future));
  EXPECT_EQ(st.code(), StatusCode::kNotSupported);
  EXPECT_NE(st.message().find("5..9"), std::string::npos);
}

TEST(PsHandler, CreateTableIsIdempotentAndRejectsConflicts) {
  Server s(0);
  const Bytes create = wire::encodeCreateTable({1, 0, 0, 0}, embSpec());
  EXPECT_TRUE(replyStatus(create, call(s, create)).isOk());
  EXPECT_TRUE(replyStatus(create, call(s, create)).isOk());  // a second worker
  TableSpec other = embSpec();
  other.dim = 8;
  const Bytes conflict = wire::encodeCreateTable({2, 0, 0, 0}, other);
  Status st = replyStatus(conflict, call(s, conflict));
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("already exists with a different spec"), std::string::npos);
  other = embSpec();
  other.id = 4;
  const Bytes same_name = wire::encodeCreateTable({3, 0, 0, 0}, other);
  st = replyStatus(same_name, call(s, same_name));
  EXPECT_NE(st.message().find("name is taken"), std::string::npos);
}

// Two servers, a shard map, the client codec: keys in any order with duplicates.
TEST(PsHandler, PushPullThroughClientCodecOverTwoServers) {
  std::map<uint32_t, std::unique_ptr<Server>> servers;
  for (const uint32_t r : {0u, 1u}) {
    servers[r] = std::make_unique<Server>(r);
    ASSERT_TRUE(servers[r]->shard.createTable(embSpec()).isOk());
    servers[r]->shard.setMapVersion(1);
  }
  const ShardMap map = std::move(ShardMap::create(1, {0, 1})).value();
  ClientCodec client(9);
  std::vector<uint64_t> keys;
  for (uint64_t k = 0; k < 200; ++k) keys.push_back((k * 7919) % 150);  // duplicates
  std::vector<float> grads(keys.size() * 4);
  for (size_t i = 0; i < grads.size(); ++i) grads[i] = 0.01f * static_cast<float>(i % 13);
  std::vector<float> pushed(keys.size() * 4);
  for (Outgoing& o : client.encodePushPull(map, 3, 4, 0, keys, grads)) {
    const Bytes reply = call(*servers[o.pending.server], o.message);
    ASSERT_TRUE(client.decodeReply(o.pending, reply, pushed.data()).isOk());
  }
  std::vector<float> pulled(keys.size() * 4, -1.0f);
  auto outgoing = client.encodePull(map, 3, 4, 0, keys);
  EXPECT_EQ(outgoing.size(), 2u);
  for (Outgoing& o : outgoing) {
    const Bytes reply = call(*servers[o.pending.server], o.message);
    ASSERT_TRUE(client.decodeReply(o.pending, reply, pulled.data()).isOk());
  }
  EXPECT_EQ(pulled, pushed);
  // Every key lives only on its owner.
  for (const uint64_t k : keys) {
    auto lock0 = servers[0]->shard.readLock();
    auto lock1 = servers[1]->shard.readLock();
    const bool on0 = servers[0]->shard.table(3)->rowAddress(k) != nullptr;
    const bool on1 = servers[1]->shard.table(3)->rowAddress(k) != nullptr;
    EXPECT_NE(on0, on1);
    EXPECT_EQ(on0, map.ownerOf(k) == 0);
  }
}

class PsHandlerErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    wire::WireLimits limits;
    limits.max_keys = 64;
    server_ = std::make_unique<Server>(2, limits);
    ASSERT_TRUE(server_->shard.createTable(embSpec()).isOk());
    const Bytes first = push(keys_, std::vector<float>(8 * 4, 0.5f));
    ASSERT_TRUE(replyStatus(first, call(*server_, first)).isOk());
    before_ = snapshot();
  }
  Bytes keyed(Opcode op, const std::vector<uint64_t>& keys, const std::vector<float>& values,
              uint32_t dim = 4, uint32_t table = 3, uint32_t map_version = 0) {
    wire::KeyedRequest r{op, dim, 0, KeySpan::of(keys), FloatSpan::of(values), {}};
    return wire::encodeKeyed({next_id_++, 1, table, map_version}, r);
  }
  Bytes push(const std::vector<uint64_t>& keys, const std::vector<float>& g) {
    return keyed(Opcode::kPush, keys, g);
  }
  Bytes snapshot() {
    auto lock = server_->shard.readLock();
    return server_->shard.table(3)->exportRows(nullptr);
  }
  // Sends a bad request: it gets an Error with `code` mentioning `text`; data unchanged;
  // the server still answers a good pull afterwards.
  void expectRejected(const Bytes& request, StatusCode code, const std::string& text) {
    const Status st = replyStatus(request, call(*server_, request));
    EXPECT_EQ(st.code(), code) << st;
    EXPECT_NE(st.message().find(text), std::string::npos) << st.message();
    EXPECT_EQ(snapshot(), before_);
    const Bytes pull = keyed(Opcode::kPull, keys_, {});
    EXPECT_TRUE(replyStatus(pull, call(*server_, pull)).isOk());
  }

  std::unique_ptr<Server> server_;
  std::vector<uint64_t> keys_ = {1, 2, 3, 4, 5, 6, 7, 8};
  Bytes before_;
  uint64_t next_id_ = 100;
};

TEST_F(PsHandlerErrors, UnknownTable) {
  expectRejected(keyed(Opcode::kPull, {1}, {}, 4, 77), StatusCode::kInvalidArgument,
                 "has no table 77 (tables: 3)");
}

TEST_F(PsHandlerErrors, DimensionMismatch) {
  expectRejected(keyed(Opcode::kPush, {1}, {1, 1}, 2), StatusCode::kInvalidArgument,
                 "dimension mismatch: the request has dim 2, the table has dim 4");
}

TEST_F(PsHandlerErrors, NanGradient) {
  std::vector<float> g(8 * 4, 1.0f);
  g[13] = std::numeric_limits<float>::quiet_NaN();
  expectRejected(push(keys_, g), StatusCode::kInvalidArgument, "is nan");
}

TEST_F(PsHandlerErrors, TooManyKeys) {
  const std::vector<uint64_t> many(65, 1);
  expectRejected(push(many, std::vector<float>(65 * 4, 1.0f)), StatusCode::kInvalidArgument,
                 "65 keys exceed the limit of 64");
}

TEST_F(PsHandlerErrors, StaleShardMap) {
  server_->shard.setMapVersion(4);
  expectRejected(keyed(Opcode::kPush, {1}, {1, 1, 1, 1}, 4, 3, 3), StatusCode::kUnavailable,
                 "routed with shard map version 3, server rank 2 serves version 4");
}

TEST_F(PsHandlerErrors, MalformedBytes) {
  Bytes good = push(keys_, std::vector<float>(32, 1.0f));
  expectRejected(Bytes(good.begin(), good.begin() + 10), StatusCode::kInvalidArgument,
                 "shorter than the 40-byte header");
  expectRejected(Bytes(good.begin(), good.end() - 1), StatusCode::kInvalidArgument, "truncated");
  good[0] ^= 0xff;
  expectRejected(good, StatusCode::kInvalidArgument, "bad magic");
  Bytes reply = wire::encodeHeartbeatReply(wire::peekHeader(push(keys_, {})), 1);
  expectRejected(reply, StatusCode::kInvalidArgument, "is not a request");
}

// Gradients by reference: the handler applies what the server fetched for the request;
// without them (or with a different count), or with a non-finite one among them, it is an
// Error and no row changes.
TEST_F(PsHandlerErrors, ValuesByReference) {
  Bytes ref;
  uint8_t* keys =
      wire::encodeKeyedRefInPlace({next_id_++, 1, 3, 0}, Opcode::kPush, 4, 0, 8, "key", 0, ref);
  std::memcpy(keys, keys_.data(), 8 * keys_.size());
  expectRejected(ref, StatusCode::kInvalidArgument, "are in the sender's memory and 0 were");
  std::vector<float> g(8 * 4, 0.25f);
  auto detailed = [&](const std::vector<float>& values) {
    return replyStatus(ref, server_->handler.handleDetailed(ref, {}, FloatSpan::of(values)).reply);
  };
  const Status short_values = detailed(std::vector<float>(31, 0.25f));
  EXPECT_NE(short_values.message().find("31 were fetched"), std::string::npos) << short_values;
  g[7] = std::numeric_limits<float>::infinity();
  EXPECT_NE(detailed(g).message().find("is inf"), std::string::npos);
  EXPECT_EQ(snapshot(), before_);
  g[7] = 0.25f;
  EXPECT_TRUE(detailed(g).isOk());
  // The same gradients inline move the rows the same way (a fresh server, same history).
  Server twin(2);
  ASSERT_TRUE(twin.shard.createTable(embSpec()).isOk());
  const Bytes first = push(keys_, std::vector<float>(8 * 4, 0.5f));
  ASSERT_TRUE(replyStatus(first, call(twin, first)).isOk());
  const Bytes second = push(keys_, g);
  ASSERT_TRUE(replyStatus(second, call(twin, second)).isOk());
  {
    auto lock = twin.shard.readLock();
    EXPECT_EQ(twin.shard.table(3)->exportRows(nullptr), snapshot());
  }
  // A Pull by reference: with a place for its values the handler writes them there and
  // replies without them; without one, the reply carries them as usual.
  Bytes pull;
  std::memcpy(
      wire::encodeKeyedRefInPlace({next_id_++, 1, 3, 0}, Opcode::kPull, 4, 0, 8, "key", 0, pull),
      keys_.data(), 8 * keys_.size());
  const Bytes plain = keyed(Opcode::kPull, keys_, {});
  const Bytes expected = call(*server_, plain);
  auto ev = wire::checkReply(*wire::decodeMessage(expected, {}), wire::peekHeader(plain).request_id,
                             Opcode::kPull);
  ASSERT_TRUE(ev.isOk()) << ev.status();
  std::vector<float> placed(8 * 4, -7.0f);
  const Bytes reply = server_->handler.handleDetailed(pull, {}, {}, placed.data()).reply;
  auto m = wire::decodeMessage(reply, {});
  ASSERT_TRUE(m.isOk()) << m.status();
  auto v = wire::checkReply(*m, wire::peekHeader(pull).request_id, Opcode::kPull);
  ASSERT_TRUE(v.isOk()) << v.status();
  EXPECT_TRUE(v->values_mapped);
  EXPECT_TRUE(wire::checkPlacedValuesReply(*v, 8, 4).isOk());
  EXPECT_EQ(std::memcmp(placed.data(), ev->body.data(), ev->body.size()), 0);
  const Bytes inline_reply = call(*server_, pull);
  auto iv = wire::checkReply(*wire::decodeMessage(inline_reply, {}),
                             wire::peekHeader(pull).request_id, Opcode::kPull);
  ASSERT_TRUE(iv.isOk()) << iv.status();
  EXPECT_FALSE(iv->values_mapped);
  EXPECT_TRUE(std::equal(iv->body.begin(), iv->body.end(), ev->body.begin(), ev->body.end()));
}

TEST_F(PsHandlerErrors, CheckpointWithoutRootIsRefused) {
  expectRejected(wire::encodeCheckpoint({5, 1, 0, 0}, {false, "x"}), StatusCode::kNotSupported,
                 "no checkpoint directory configured");
}

TEST(PsHandler, HeartbeatAndClockReplies) {
  Server s(0);
  TableSpec spec = embSpec();
  spec.consistency = {ConsistencyModel::kBsp, 0, 2};
  ASSERT_TRUE(s.shard.createTable(spec).isOk());
  const Bytes beat = wire::encodeHeartbeat({1, 0, 0, 0}, 99);
  const Bytes beat_reply = call(s, beat);
  auto m = wire::decodeMessage(beat_reply, {});
  ASSERT_TRUE(m.isOk());
  EXPECT_EQ(*wire::decodeHeartbeatReply(*wire::checkReply(*m, 1, Opcode::kHeartbeat)), 99u);
  const Bytes clock = wire::encodeClock({2, 0, 3, 0}, {1, 0});
  const Bytes clock_reply = call(s, clock);
  m = wire::decodeMessage(clock_reply, {});
  EXPECT_EQ(*wire::decodeClockReply(*wire::checkReply(*m, 2, Opcode::kClock)), 0u);
  const Bytes bad_worker = wire::encodeClock({3, 0, 3, 0}, {2, 0});
  EXPECT_NE(replyStatus(bad_worker, call(s, bad_worker)).message().find("has 2 workers"),
            std::string::npos);
}

// Locate gives (slab, offset); reading the row from the slab without locks (as a one-sided
// get would) and validating it gives the values a pull returns.
TEST(PsHandler, LocateAndOneSidedRead) {
  Server s(0);
  ASSERT_TRUE(s.shard.createTable(embSpec()).isOk());
  const std::vector<uint64_t> keys = {11, 12, 13};
  const std::vector<float> g(12, 0.25f);
  wire::KeyedRequest push{Opcode::kPush, 4, 0, KeySpan::of(keys), FloatSpan::of(g), {}};
  ASSERT_TRUE(replyStatus(wire::encodeKeyed({1, 0, 3, 0}, push),
                          call(s, wire::encodeKeyed({1, 0, 3, 0}, push)))
                  .isOk());
  const std::vector<uint64_t> ask = {12, 99, 11};
  wire::KeyedRequest locate{Opcode::kLocate, 4, 0, KeySpan::of(ask), {}, {}};
  const Bytes reply = call(s, wire::encodeKeyed({2, 0, 3, 0}, locate));
  auto m = wire::decodeMessage(reply, {});
  auto view = wire::checkReply(*m, 2, Opcode::kLocate);
  ASSERT_TRUE(view.isOk()) << view.status();
  auto locs = wire::decodeLocateReply(*view, 3);
  ASSERT_TRUE(locs.isOk());
  EXPECT_EQ((*locs)[1].present, 0u);
  auto lock = s.shard.readLock();
  Table& table = *s.shard.table(3);
  const std::vector<SlabInfo> slabs = table.slabs();
  for (const size_t i : {size_t{0}, size_t{2}}) {
    const RowLocation& l = (*locs)[i];
    ASSERT_EQ(l.present, 1u);
    ASSERT_LT(l.slab_id, slabs.size());
    const uint8_t* row = slabs[l.slab_id].base + l.offset;
    std::vector<uint8_t> copy(row, row + table.layout().readableBytes());
    float got[4];
    ASSERT_EQ(readRowConsistent(copy.data(), copy.size(), 4, ask[i], got), RowRead::kOk);
    const auto want = testing::pullRows(table, {ask[i]});
    for (int j = 0; j < 4; ++j) EXPECT_EQ(got[j], want[j]);
  }
}

}  // namespace
}  // namespace weft::ps
