// Parameter-server wire codec: round trips of every message, strict rejection of malformed
// input (truncation at every byte, bad magic/version/flags/reserved bytes, oversized
// counts), reply checking, and CRC32C.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "paramserver/util/crc32c.h"
#include "paramserver/wire/codec.h"

namespace weft::ps::wire {
namespace {

constexpr RequestMeta kMeta{77, 3, 5, 9};

Message decodeOk(const Bytes& bytes, const WireLimits& limits = {}) {
  auto m = decodeMessage(bytes, limits);
  EXPECT_TRUE(m.isOk()) << m.status();
  return m.isOk() ? *m : Message{};
}

TEST(PsCodec, HeaderLayoutIsLittleEndianAndPacked) {
  const Bytes b = encodeHeartbeat(kMeta, 0x1122334455667788ull);
  ASSERT_EQ(b.size(), kHeaderBytes + 8);
  EXPECT_EQ(std::string(b.begin(), b.begin() + 4), "WFPS");
  EXPECT_EQ(b[4], kVersion);
  EXPECT_EQ(b[5], 0);
  EXPECT_EQ(b[6], static_cast<uint8_t>(Opcode::kHeartbeat));
  EXPECT_EQ(b[8], 77);  // request id, low byte first
  EXPECT_EQ(b[16], 3);  // src rank
  EXPECT_EQ(b[20], 5);  // table id
  EXPECT_EQ(b[28], 9);  // map version
  EXPECT_EQ(b[32], 8);  // payload bytes
  EXPECT_EQ(b[40], 0x88);
}

TEST(PsCodec, KeyedRoundTrip) {
  const std::vector<uint64_t> keys = {5, 1, 5, uint64_t{1} << 63};
  const std::vector<float> grads = {1, 2, 3, 4, 5, 6, 7, 8};
  for (const Opcode op : {Opcode::kPush, Opcode::kPull, Opcode::kPushPull, Opcode::kLocate}) {
    KeyedRequest r;
    r.op = op;
    r.dim = 2;
    r.clock = 11;
    r.keys = KeySpan::of(keys);
    const bool values = op == Opcode::kPush || op == Opcode::kPushPull;
    if (values) r.values = FloatSpan::of(grads);
    const Bytes b = encodeKeyed(kMeta, r);
    const Message m = decodeOk(b);
    EXPECT_EQ(m.header.request_id, 77u);
    EXPECT_EQ(m.header.key_count, 4u);
    auto d = decodeKeyed(m);
    ASSERT_TRUE(d.isOk()) << d.status();
    EXPECT_EQ(d->op, op);
    EXPECT_EQ(d->dim, 2u);
    EXPECT_EQ(d->clock, 11u);
    ASSERT_EQ(d->keys.size(), 4u);
    for (size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(d->keys[i], keys[i]);
    ASSERT_EQ(d->values.size(), values ? 8u : 0u);
    for (size_t i = 0; i < d->values.size(); ++i) EXPECT_EQ(d->values[i], grads[i]);
  }
}

// Values by reference: the keys travel, the gradients are named by (key, offset); the
// reference must fill the payload exactly, and inlineValues turns it back into a plain
// request carrying the gradients.
TEST(PsCodec, ValuesByReferenceRoundTripAndMalformedReferences) {
  const std::vector<uint64_t> keys = {9, 3};
  const std::vector<float> grads = {1, 2, 3, 4, 5, 6};
  const std::string key = "serialized-remote-key";
  for (const Opcode op : {Opcode::kPush, Opcode::kPushPull}) {
    Bytes b;
    uint8_t* at = encodeKeyedRefInPlace(kMeta, op, 3, 4, 2, key, 4096, b);
    std::memcpy(at, keys.data(), 16);
    ASSERT_EQ(b.size(), kHeaderBytes + kKeyedPrefixBytes + 16 + kValuesRefFixedBytes + key.size());
    const Message m = decodeOk(b);
    EXPECT_EQ(m.header.flags, kFlagValuesByRef);
    auto d = decodeKeyed(m);
    ASSERT_TRUE(d.isOk()) << d.status();
    EXPECT_TRUE(d->valuesByRef());
    EXPECT_EQ(d->values.size(), 0u);
    EXPECT_EQ(d->valueFloats(), 6u);
    EXPECT_EQ(d->values_ref.offset, 4096u);
    EXPECT_EQ(std::string(d->values_ref.key.begin(), d->values_ref.key.end()), key);
    ASSERT_EQ(d->keys.size(), 2u);
    EXPECT_EQ(d->keys[1], 3u);

    const Bytes plain = inlineValues(m.header, *d, FloatSpan::of(grads));
    const Message pm = decodeOk(plain);
    EXPECT_EQ(pm.header.flags, 0);
    EXPECT_EQ(pm.header.request_id, kMeta.request_id);
    auto pd = decodeKeyed(pm);
    ASSERT_TRUE(pd.isOk()) << pd.status();
    EXPECT_FALSE(pd->valuesByRef());
    EXPECT_EQ(pd->clock, 4u);
    ASSERT_EQ(pd->values.size(), 6u);
    EXPECT_EQ(pd->values[5], 6.0f);
    EXPECT_EQ(pd->keys[0], 9u);
  }
  // A Pull's reference is room for its values; a Locate takes no such flag.
  Bytes pull;
  std::memcpy(encodeKeyedRefInPlace(kMeta, Opcode::kPull, 3, 0, 2, key, 8, pull), keys.data(), 16);
  auto pd = decodeKeyed(decodeOk(pull));
  ASSERT_TRUE(pd.isOk()) << pd.status();
  EXPECT_TRUE(pd->valuesByRef());
  EXPECT_EQ(pd->valueFloats(), 6u);
  Bytes locate = encodeKeyed(kMeta, KeyedRequest{Opcode::kLocate, 1, 0, KeySpan::of(keys), {}, {}});
  locate[7] = kFlagValuesByRef;
  EXPECT_FALSE(decodeMessage(locate, {}).isOk());
  // A reply whose values the server wrote at the reference carries none.
  const Bytes placed = encodePlacedValuesReply(peekHeader(pull), 3, 2);
  auto view = checkReply(decodeOk(placed), kMeta.request_id, Opcode::kPull);
  ASSERT_TRUE(view.isOk()) << view.status();
  EXPECT_TRUE(view->values_mapped);
  EXPECT_TRUE(view->values_placed);
  EXPECT_TRUE(checkPlacedValuesReply(*view, 2, 3).isOk());
  EXPECT_FALSE(checkPlacedValuesReply(*view, 3, 3).isOk());
  EXPECT_FALSE(decodeValuesReply(*view, 2, 3).isOk());

  auto broken = [&](auto&& edit) {
    Bytes b;
    encodeKeyedRefInPlace(kMeta, Opcode::kPush, 3, 0, 2, key, 0, b);
    edit(b);
    auto m = decodeMessage(b, {});
    if (!m.isOk()) return m.status();
    auto d = decodeKeyed(*m);
    return d.isOk() ? Status::ok() : d.status();
  };
  const size_t len_at = kHeaderBytes + kKeyedPrefixBytes + 16 + 8;
  auto setLen = [&](Bytes& b, uint32_t v) { std::memcpy(b.data() + len_at, &v, 4); };
  // Key length 0, longer than the rest, shorter than the rest, above the limit.
  for (const uint32_t bad : {0u, static_cast<uint32_t>(key.size() + 1),
                             static_cast<uint32_t>(key.size() - 1), 100000u}) {
    const Status st = broken([&](Bytes& b) { setLen(b, bad); });
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(st.message().find("values reference"), std::string::npos) << st;
  }
  // Cut inside the reference (payload_bytes adjusted to match).
  const Status cut = broken([&](Bytes& b) {
    b.resize(len_at + 2);
    const uint64_t payload = b.size() - kHeaderBytes;
    std::memcpy(b.data() + 32, &payload, 8);
  });
  EXPECT_EQ(cut.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(cut.message().find("too short"), std::string::npos) << cut;
  // The by-reference flags came with protocol version 2: those messages carry it, and the
  // flags in a message of version 1 are malformed (a release-1 peer never gets them).
  EXPECT_EQ(peekHeader(pull).version, kVersionValuesByRef);
  EXPECT_EQ(peekHeader(placed).version, kVersionValuesByRef);
  const Status v1 = broken([&](Bytes& b) { b[4] = 1; });
  EXPECT_EQ(v1.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(v1.message().find("need protocol version 2, the message carries 1"), std::string::npos)
      << v1;
  Bytes mapped_v1 = encodeValuesReply(peekHeader(pull), 3, 2);
  EXPECT_EQ(peekHeader(mapped_v1).version, kVersion) << "a plain reply stays at version 1";
  markValuesMapped(mapped_v1);
  EXPECT_EQ(peekHeader(mapped_v1).version, kVersionValuesByRef);
  EXPECT_EQ(peekHeader(mapped_v1).flags, kFlagValuesMapped);
  mapped_v1[4] = 1;
  EXPECT_FALSE(decodeMessage(mapped_v1, {}).isOk());
}

TEST(PsCodec, OtherRequestsRoundTrip) {
  auto hello = decodeHello(decodeOk(encodeHello(kMeta, {1, 3, Role::kTool})));
  ASSERT_TRUE(hello.isOk());
  EXPECT_EQ(hello->max_version, 3);
  EXPECT_EQ(hello->role, Role::kTool);

  TableSpec spec;
  spec.id = 5;
  spec.name = "embeddings";
  spec.dim = 64;
  spec.init = {InitKind::kNormal, 99, 0.0f, 0.01f};
  spec.optimizer.kind = OptimizerKind::kFtrl;
  spec.optimizer.l1 = 0.5f;
  spec.consistency = {ConsistencyModel::kSsp, 3, 8};
  spec.admission = {4, 1024, 3};
  spec.evict_after_clocks = 10;
  auto created = decodeCreateTable(decodeOk(encodeCreateTable(kMeta, spec)));
  ASSERT_TRUE(created.isOk()) << created.status();
  EXPECT_EQ(*created, spec);

  auto clock = decodeClock(decodeOk(encodeClock(kMeta, {6, 41})));
  ASSERT_TRUE(clock.isOk());
  EXPECT_EQ(clock->worker, 6u);
  EXPECT_EQ(clock->clock, 41u);
  auto beat = decodeHeartbeat(decodeOk(encodeHeartbeat(kMeta, 1234)));
  ASSERT_TRUE(beat.isOk());
  EXPECT_EQ(*beat, 1234u);
  const Bytes ck_bytes = encodeCheckpoint(kMeta, {true, "run1/step9"});
  const Message ck = decodeOk(ck_bytes);
  EXPECT_EQ(ck.header.flags, kFlagRestore);
  auto c = decodeCheckpoint(ck, {});
  ASSERT_TRUE(c.isOk());
  EXPECT_TRUE(c->restore);
  EXPECT_EQ(c->path, "run1/step9");
  EXPECT_EQ(c->checkpoint_id, 0u);
  CheckpointRequest verify{true, "run1/step9", 0xfeedbeef, true};
  const Message v = decodeOk(encodeCheckpoint(kMeta, verify));
  EXPECT_EQ(v.header.flags, kFlagRestore | kFlagVerify);
  auto vc = decodeCheckpoint(v, {});
  ASSERT_TRUE(vc.isOk());
  EXPECT_TRUE(vc->verify);
  EXPECT_EQ(vc->checkpoint_id, 0xfeedbeefu);
}

TEST(PsCodec, RepliesRoundTrip) {
  const Header request = decodeOk(encodeHello(kMeta, {})).header;
  Bytes hello_bytes = encodeHelloReply(request, {1, 4, 7, 1000, 1 << 20});
  stampSource(hello_bytes, 4);
  const Message hm = decodeOk(hello_bytes);
  EXPECT_EQ(hm.header.src_rank, 4u);
  auto view = checkReply(hm, 77, Opcode::kHello);
  ASSERT_TRUE(view.isOk()) << view.status();
  auto hello = decodeHelloReply(*view);
  ASSERT_TRUE(hello.isOk());
  EXPECT_EQ(hello->server_rank, 4u);
  EXPECT_EQ(hello->max_payload_bytes, 1u << 20);

  Header pull = request;
  pull.opcode = static_cast<uint8_t>(Opcode::kPull);
  Bytes values = encodeValuesReply(pull, 2, 3);
  const float v[6] = {1, 2, 3, 4, 5, 6};
  std::memcpy(valuesReplyArea(values), v, sizeof(v));
  auto pv = checkReply(decodeOk(values), 77, Opcode::kPull);
  ASSERT_TRUE(pv.isOk());
  auto floats = decodeValuesReply(*pv, 3, 2);
  ASSERT_TRUE(floats.isOk());
  EXPECT_EQ((*floats)[5], 6.0f);
  EXPECT_FALSE(decodeValuesReply(*pv, 3, 4).isOk());                     // wrong dim
  EXPECT_FALSE(checkReply(decodeOk(values), 78, Opcode::kPull).isOk());  // wrong id
  EXPECT_FALSE(checkReply(decodeOk(values), 77, Opcode::kPush).isOk());  // wrong opcode

  const RowLocation locs[2] = {{3, 1, 4096}, {0, 0, 0}};
  Header locate = request;
  locate.opcode = static_cast<uint8_t>(Opcode::kLocate);
  const Bytes locate_reply = encodeLocateReply(locate, 2, locs);
  auto lv = checkReply(decodeOk(locate_reply), 77, Opcode::kLocate);
  ASSERT_TRUE(lv.isOk());
  auto l = decodeLocateReply(*lv, 2);
  ASSERT_TRUE(l.isOk());
  EXPECT_EQ((*l)[0].offset, 4096u);
  EXPECT_EQ((*l)[1].present, 0u);
}

TEST(PsCodec, ErrorReplyCarriesCodeMessageAndRetryClock) {
  const Header request = decodeOk(encodeHeartbeat(kMeta, 1)).header;
  WireLimits limits;
  limits.max_message_chars = 10;
  Bytes e =
      encodeError(request, Status(StatusCode::kNoResource, "wait for clock 4 please"), limits, 4);
  stampSource(e, 2);
  const Message m = decodeOk(e);
  auto err = decodeError(m);
  ASSERT_TRUE(err.isOk()) << err.status();
  EXPECT_EQ(err->code, StatusCode::kNoResource);
  EXPECT_EQ(err->retry_clock, 4u);
  EXPECT_EQ(err->message, "wait for c");  // cut at max_message_chars
  auto st = checkReply(m, 77, Opcode::kHeartbeat);
  ASSERT_FALSE(st.isOk());
  EXPECT_EQ(st.status().code(), StatusCode::kNoResource);
  EXPECT_NE(st.status().message().find("server rank 2"), std::string::npos);
}

// Every proper prefix of every message fails to decode (header or payload check), with a
// message that says what is missing.
TEST(PsCodec, TruncationAtEveryByteIsRejected) {
  const std::vector<uint64_t> keys = {1, 2, 3};
  const std::vector<float> grads = {1, 2, 3};
  KeyedRequest push;
  push.op = Opcode::kPush;
  push.keys = KeySpan::of(keys);
  push.values = FloatSpan::of(grads);
  TableSpec spec;
  spec.id = 1;
  spec.name = "t";
  const std::vector<Bytes> messages = {encodeKeyed(kMeta, push), encodeHello(kMeta, {}),
                                       encodeCreateTable(kMeta, spec), encodeClock(kMeta, {1, 2}),
                                       encodeCheckpoint(kMeta, {false, "x"})};
  for (const Bytes& full : messages) {
    for (size_t n = 0; n < full.size(); ++n) {
      const Bytes cut(full.begin(), full.begin() + static_cast<ptrdiff_t>(n));
      auto m = decodeMessage(cut, {});
      ASSERT_FALSE(m.isOk()) << "prefix of " << n << " bytes decoded";
      EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
      const std::string& text = m.status().message();
      EXPECT_TRUE(text.find("shorter than the 40-byte header") != std::string::npos ||
                  text.find("truncated") != std::string::npos)
          << text;
    }
  }
}

// Payload decoders reject short payloads even when the header agrees with the size.
TEST(PsCodec, ShortPayloadsWithConsistentHeaderAreRejected) {
  TableSpec spec;
  spec.id = 1;
  spec.name = "name";
  const Bytes full = encodeCreateTable(kMeta, spec);
  for (size_t payload = 0; payload < full.size() - kHeaderBytes; ++payload) {
    Bytes cut(full.begin(), full.begin() + static_cast<ptrdiff_t>(kHeaderBytes + payload));
    std::memcpy(cut.data() + 32, &payload, 8);
    EXPECT_FALSE(decodeCreateTable(decodeOk(cut)).isOk()) << payload;
  }
}

TEST(PsCodec, BadMagicVersionOpcodeFlagsAndReservedBytes) {
  const Bytes good = encodeClock(kMeta, {1, 2});
  Bytes b = good;
  b[0] = 'X';
  auto m = decodeMessage(b, {});
  ASSERT_FALSE(m.isOk());
  EXPECT_NE(m.status().message().find("bad magic"), std::string::npos);

  b = good;
  b[4] = 9;  // version 9
  m = decodeMessage(b, {});
  ASSERT_FALSE(m.isOk());
  EXPECT_EQ(m.status().code(), StatusCode::kNotSupported);
  EXPECT_NE(m.status().message().find("version 9"), std::string::npos);

  Bytes hello = encodeHello(kMeta, {});
  hello[4] = 9;  // Hello is readable whatever its version
  EXPECT_TRUE(decodeMessage(hello, {}).isOk());

  for (const uint8_t op : {uint8_t{0}, uint8_t{13}, uint8_t{255}}) {
    b = good;
    b[6] = op;
    EXPECT_FALSE(decodeMessage(b, {}).isOk()) << int{op};
  }
  b = good;
  b[7] = kFlagRestore;  // a Clock takes no flags
  m = decodeMessage(b, {});
  ASSERT_FALSE(m.isOk());
  EXPECT_NE(m.status().message().find("flag"), std::string::npos);

  Bytes ck = encodeCheckpoint(kMeta, {false, "dir"});
  ck[kHeaderBytes + 3] = 1;  // reserved byte
  EXPECT_FALSE(decodeCheckpoint(decodeOk(ck), {}).isOk());
  ck = encodeCheckpoint(kMeta, {false, "dir"});
  ck[7] = kFlagVerify;  // Verify needs Restore
  EXPECT_FALSE(decodeCheckpoint(decodeOk(ck), {}).isOk());
}

TEST(PsCodec, OversizedCountsAreRejectedByTheHeaderAlone) {
  WireLimits limits;
  limits.max_keys = 100;
  limits.max_payload_bytes = 4096;
  const std::vector<uint64_t> keys(101, 7);
  KeyedRequest pull;
  pull.keys = KeySpan::of(keys);
  const Bytes many = encodeKeyed(kMeta, pull);
  auto m = decodeHeader(many, limits);
  ASSERT_FALSE(m.isOk());
  EXPECT_NE(m.status().message().find("101 keys exceed the limit of 100"), std::string::npos);

  Bytes huge = encodeHeartbeat(kMeta, 1);
  const uint64_t declared = uint64_t{1} << 40;
  std::memcpy(huge.data() + 32, &declared, 8);
  m = decodeHeader(std::span<const uint8_t>(huge).first(kHeaderBytes), limits);
  ASSERT_FALSE(m.isOk());
  EXPECT_NE(m.status().message().find("exceeds the limit"), std::string::npos);
}

TEST(PsCodec, KeyedPayloadMustMatchCountAndDim) {
  const std::vector<uint64_t> keys = {1, 2};
  const std::vector<float> grads = {1, 2, 3, 4};
  KeyedRequest r;
  r.op = Opcode::kPush;
  r.dim = 2;
  r.keys = KeySpan::of(keys);
  r.values = FloatSpan::of(grads);
  Bytes b = encodeKeyed(kMeta, r);
  const uint32_t three = 3;
  std::memcpy(b.data() + 24, &three, 4);  // key_count 3, payload unchanged
  auto d = decodeKeyed(decodeOk(b));
  ASSERT_FALSE(d.isOk());
  EXPECT_NE(d.status().message().find("does not match 3 keys of dim 2"), std::string::npos);

  for (const uint32_t dim : {0u, kMaxDim + 1}) {
    b = encodeKeyed(kMeta, r);
    std::memcpy(b.data() + kHeaderBytes, &dim, 4);
    d = decodeKeyed(decodeOk(b));
    ASSERT_FALSE(d.isOk());
    EXPECT_NE(d.status().message().find("out of range"), std::string::npos);
  }
}

TEST(PsCodec, InvalidTableSpecsAreRejected) {
  TableSpec spec;
  spec.id = 1;
  spec.name = "t";
  spec.optimizer.learning_rate = -1;
  auto d = decodeCreateTable(decodeOk(encodeCreateTable(kMeta, spec)));
  ASSERT_FALSE(d.isOk());
  EXPECT_NE(d.status().message().find("learning_rate"), std::string::npos);
  spec.optimizer.learning_rate = 0.1f;
  spec.dim = 2000;
  EXPECT_FALSE(decodeCreateTable(decodeOk(encodeCreateTable(kMeta, spec))).isOk());
  spec.dim = 1;
  Bytes b = encodeCreateTable(kMeta, spec);
  b[kHeaderBytes + 5] = 9;  // optimizer kind 9
  EXPECT_FALSE(decodeCreateTable(decodeOk(b)).isOk());
}

TEST(PsCodec, Crc32cKnownValuesAndBothPathsAgree) {
  const char* check = "123456789";
  EXPECT_EQ(crc32c(check, 9), 0xE3069283u);
  EXPECT_EQ(crc32cPortable(check, 9), 0xE3069283u);
  std::vector<uint8_t> data(1000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 + 1);
  for (size_t n = 0; n < data.size(); n += 37) {
    EXPECT_EQ(crc32c(data.data(), n), crc32cPortable(data.data(), n)) << n;
    EXPECT_EQ(crc32c(data.data() + n, data.size() - n, crc32c(data.data(), n)),
              crc32c(data.data(), data.size()));
  }
}

}  // namespace
}  // namespace weft::ps::wire
