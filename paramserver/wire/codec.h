// Encoding and strict decoding of parameter-server messages (format: PROTOCOL.md).
//
// Decoding never trusts the input: every length, count, enum and flag is checked against
// the message size and the configured WireLimits before anything is read, and any problem
// is a kInvalidArgument (kNotSupported for an unknown version) naming the opcode, the
// request id, the sender rank and what was wrong. Decoded views (Message, KeyedRequest)
// point into the caller's bytes, which must outlive them.
//
// Contract: pure functions, safe from any thread; no allocation beyond the returned values.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "paramserver/row_layout.h"
#include "paramserver/table_spec.h"
#include "paramserver/wire/byte_io.h"
#include "paramserver/wire/header.h"
#include "paramserver/wire/packed_span.h"

namespace weft::ps::wire {

// Configurable bounds on what a peer may send (WEFT_PS_MAX_KEYS, WEFT_PS_MAX_PAYLOAD_BYTES).
struct WireLimits {
  uint32_t max_keys = 1u << 20;                      // keys per request
  uint64_t max_payload_bytes = uint64_t{256} << 20;  // bytes after the header
  uint32_t max_message_chars = 4096;                 // error-reply text (longer text is cut)
  uint32_t max_path_chars = 1024;                    // checkpoint path

  // Reads WEFT_PS_MAX_KEYS and WEFT_PS_MAX_PAYLOAD_BYTES.
  static Result<WireLimits> fromConfig();
};

// The header of every reply and request; fields not given are 0.
struct RequestMeta {
  uint64_t request_id = 0;
  uint32_t src_rank = 0;
  uint32_t table_id = 0;
  uint32_t map_version = 0;
};

// A decoded message: the header and a view of its payload.
struct Message {
  Header header{};
  std::span<const uint8_t> payload;
  Opcode opcode() const { return static_cast<Opcode>(header.opcode); }
};

// Validates a 40-byte header on its own (a stream reader can reject a message before
// receiving its payload): magic, opcode, version, flags, key_count and payload_bytes
// against the limits.
Result<Header> decodeHeader(std::span<const uint8_t> bytes, const WireLimits& limits);
// decodeHeader plus: the message is exactly header + payload_bytes long.
Result<Message> decodeMessage(std::span<const uint8_t> bytes, const WireLimits& limits);
// Best effort for error replies: the header fields of a message that may not decode
// (all zero when fewer than 40 bytes arrived).
Header peekHeader(std::span<const uint8_t> bytes);

// --- requests ------------------------------------------------------------------------
enum class Role : uint32_t { kWorker = 0, kServer = 1, kTool = 2 };

struct HelloRequest {
  uint16_t min_version = kMinVersion;
  uint16_t max_version = kMaxVersion;
  Role role = Role::kWorker;
};

// Push, Pull, PushPull and Locate. `values` holds key_count * dim gradients for Push and
// PushPull and is empty otherwise.
struct KeyedRequest {
  Opcode op = Opcode::kPull;
  uint32_t dim = 1;
  uint32_t clock = 0;  // the worker's clock (consistency checks for pulls)
  KeySpan keys;
  FloatSpan values;
  // kFlagValuesByRef: `values` is empty; the key_count * dim floats (Push, PushPull: the
  // gradients; Pull: room for the values) lie at offset of the sender's region whose
  // serialized transport RemoteKey is key (never empty then).
  struct ValuesRef {
    uint64_t offset = 0;
    std::span<const uint8_t> key;
  } values_ref;
  bool valuesByRef() const { return !values_ref.key.empty(); }
  size_t valueFloats() const { return keys.size() * size_t{dim}; }
};

struct ClockRequest {
  uint32_t worker = 0;  // worker index in [0, num_workers)
  uint32_t clock = 0;   // the clock the worker just finished
};

struct CheckpointRequest {
  bool restore = false;
  std::string path;  // relative to the server's checkpoint root
  // Write: the id to record in the MANIFEST (the client picks one per checkpoint call, the
  // same for every server). Restore: the id the checkpoint must carry (0: any).
  uint32_t checkpoint_id = 0;
  bool verify = false;  // with restore: read and check everything, change nothing
};

// Rows a server hands over after a shard-map change: the table's spec (the receiver creates
// the table when it lacks it) and row_count records (Table::exportRows format, record_bytes
// each: key, last_clock, steps, values, optimizer state). key_count is row_count.
struct ImportRowsRequest {
  TableSpec spec;
  uint32_t row_count = 0;
  uint32_t record_bytes = 0;
  std::span<const uint8_t> records;
  std::vector<uint32_t> clocks;  // the sender's worker clocks of the table (ClockTracker)
};
// Bytes of the ImportRows prefix after the spec (record_bytes, clock_count).
inline constexpr size_t kImportPrefixBytes = 8;
// At most this many clocks in an ImportRows (a table's worker count is a u32 of its spec).
inline constexpr uint32_t kMaxImportClocks = uint32_t{1} << 20;
// The smallest record: key u64, last_clock u32, steps u32, one value.
inline constexpr uint32_t kMinRecordBytes = 20;

Bytes encodeHello(const RequestMeta& meta, const HelloRequest& hello);
Bytes encodeCreateTable(const RequestMeta& meta, const TableSpec& spec);
Bytes encodeKeyed(const RequestMeta& meta, const KeyedRequest& request);
// encodeKeyed without building the request first, for senders that copy keys and values
// straight from their own buffers: sizes `out` to the message (reusing its capacity),
// writes the header and the dim/clock prefix, and returns where the caller must write the
// keys (8 * key_count bytes, u64 LE) and the values (4 * key_count * dim bytes, f32 LE;
// nullptr for a Pull). Bytes are unaligned.
struct KeyedArea {
  uint8_t* keys = nullptr;
  uint8_t* values = nullptr;
};
KeyedArea encodeKeyedInPlace(const RequestMeta& meta, Opcode op, uint32_t dim, uint32_t clock,
                             uint32_t key_count, Bytes& out);
// Push / PushPull / Pull with kFlagValuesByRef: the message carries the keys (the returned
// area) and a reference to the values at `offset` of the sender's region `key` (a
// serialized transport RemoteKey, at most kMaxValuesKeyBytes).
uint8_t* encodeKeyedRefInPlace(const RequestMeta& meta, Opcode op, uint32_t dim, uint32_t clock,
                               uint32_t key_count, std::string_view key, uint64_t offset,
                               Bytes& out);
// The same request with its gradients inline (no reference): `r` decoded from a message with
// kFlagValuesByRef, `values` its key_count * dim floats.
Bytes inlineValues(const Header& header, const KeyedRequest& r, FloatSpan values);
Bytes encodeClock(const RequestMeta& meta, const ClockRequest& clock);
Bytes encodeHeartbeat(const RequestMeta& meta, uint64_t nonce);
Bytes encodeCheckpoint(const RequestMeta& meta, const CheckpointRequest& request);

Bytes encodeImportRows(const RequestMeta& meta, const ImportRowsRequest& request);

Result<HelloRequest> decodeHello(const Message& m);
// The spec's id is the header's table_id; records is a view into the message.
Result<ImportRowsRequest> decodeImportRows(const Message& m);
// The spec's id is the header's table_id. Validated with validateTableSpec.
Result<TableSpec> decodeCreateTable(const Message& m);
Result<KeyedRequest> decodeKeyed(const Message& m);
Result<ClockRequest> decodeClock(const Message& m);
Result<uint64_t> decodeHeartbeat(const Message& m);
Result<CheckpointRequest> decodeCheckpoint(const Message& m, const WireLimits& limits);

// TableSpec body shared by CreateTable and checkpoint files (id not included).
void appendTableSpec(const TableSpec& spec, Bytes& out);
Result<TableSpec> readTableSpec(ByteReader& in, uint32_t id);

// --- replies -------------------------------------------------------------------------
struct HelloReply {
  uint16_t version = kVersion;
  uint32_t server_rank = 0;
  uint32_t map_version = 0;
  uint32_t max_keys = 0;
  uint64_t max_payload_bytes = 0;
  // The largest request the server receives eagerly (WEFT_PS_EAGER_BYTES); 0: not told.
  uint32_t eager_bytes = 0;
};

struct CheckpointReply {
  uint32_t tables = 0;
  uint64_t rows = 0;
  uint32_t checkpoint_id = 0;  // the id in the MANIFEST written or read (0: none recorded)
};

struct ErrorReply {
  StatusCode code = StatusCode::kInternal;
  uint8_t request_op = 0;
  uint32_t retry_clock = 0;  // nonzero: a pull that may succeed once the table reaches it
  std::string message;
};

// A decoded Reply: the opcode it answers, the dim it carries, and its body.
struct ReplyView {
  Opcode request_op = Opcode::kReply;
  uint32_t dim = 0;
  uint32_t key_count = 0;
  std::span<const uint8_t> body;
  bool values_mapped = false;  // kFlagValuesMapped
  bool values_placed = false;  // kFlagValuesPlaced: no values here, they are at the reference
};

// The reply header echoes request_id, table_id and map_version of `request`.
// A values reply (Pull, PushPull) is built in place: encodeValuesReply sizes the buffer
// and returns it; valuesReplyArea() is where the key_count * dim floats go.
Bytes encodeValuesReply(const Header& request, uint32_t dim, uint32_t key_count);
// The same message built in `out`, reusing its capacity (the values area is not cleared).
void encodeValuesReplyInPlace(const Header& request, uint32_t dim, uint32_t key_count,
                              Bytes& out);
uint8_t* valuesReplyArea(Bytes& reply);
Bytes encodeEmptyReply(const Header& request, uint32_t dim);
Bytes encodeHelloReply(const Header& request, const HelloReply& hello);
Bytes encodeClockReply(const Header& request, uint32_t min_clock);
Bytes encodeHeartbeatReply(const Header& request, uint64_t nonce);
Bytes encodeCheckpointReply(const Header& request, const CheckpointReply& reply);
Bytes encodeLocateReply(const Header& request, uint32_t dim,
                        std::span<const RowLocation> locations);
// `request` may be a peekHeader() of an undecodable message.
// Replies carry src_rank 0 until the server stamps its rank with stampSource().
Bytes encodeError(const Header& request, const Status& status, const WireLimits& limits,
                  uint32_t retry_clock = 0);

// Sets the header's src_rank of an encoded message.
void stampSource(Bytes& message, uint32_t src_rank);
// Sets kFlagValuesMapped on an encoded Reply (and the version that flag needs).
void markValuesMapped(Bytes& reply);

// Checks that `reply` answers (request_id, request_op): a Reply is returned as a view, an
// Error as its Status (message prefixed with the server rank), anything else is
// kPeerFailure.
Result<ReplyView> checkReply(const Message& reply, uint64_t request_id, Opcode request_op);
Result<ErrorReply> decodeError(const Message& m);
Result<HelloReply> decodeHelloReply(const ReplyView& r);
// Pull / PushPull: key_count * dim floats.
Result<FloatSpan> decodeValuesReply(const ReplyView& r, uint32_t key_count, uint32_t dim);
// A Pull / PushPull with kFlagValuesByRef whose values the server wrote at the reference:
// the reply has kFlagValuesMapped | kFlagValuesPlaced, key_count and dim, and no values.
Bytes encodePlacedValuesReply(const Header& request, uint32_t dim, uint32_t key_count);
Status checkPlacedValuesReply(const ReplyView& r, uint32_t key_count, uint32_t dim);
Result<uint32_t> decodeClockReply(const ReplyView& r);
Result<uint64_t> decodeHeartbeatReply(const ReplyView& r);
Result<CheckpointReply> decodeCheckpointReply(const ReplyView& r);
Result<std::vector<RowLocation>> decodeLocateReply(const ReplyView& r, uint32_t key_count);

// Bytes of the Reply prefix (request opcode, dim) that starts every Reply payload.
inline constexpr size_t kReplyPrefixBytes = 8;
// Fixed bytes of a keyed request's payload before its keys (dim, clock).
inline constexpr size_t kKeyedPrefixBytes = 8;
// A values reference: u64 offset, u32 key length, then the key bytes.
inline constexpr size_t kValuesRefFixedBytes = 12;
inline constexpr size_t kMaxValuesKeyBytes = 4096;
// Bytes of one Locate reply entry.
inline constexpr size_t kLocationBytes = 16;

}  // namespace weft::ps::wire
